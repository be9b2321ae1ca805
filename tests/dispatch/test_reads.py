"""Lead reads (Graph, LinkedIn, HubSpot) run in the background: a slow or silent API holds up
no other event, reads are bounded per endpoint and within the lease, and stop puts them back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hub.config.models import Config
from hub.dispatch.worker import Dispatcher
from hub.store.models import State
from tests.dispatch.support import (
    FB_ENV,
    all_in,
    enqueue,
    facebook_yaml,
    flat_endpoint_yaml,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    slow_graph,
    states,
    target_yaml,
    wait_for,
    write_config,
)


def config(directory: Path, target_url: str, graph_url: str, extra: str = "") -> Config:
    """Target ``default`` at ``target_url``; endpoints ``fb`` (Graph at ``graph_url``; ``extra``:
    more of its lines) and the flat ``forms``."""
    return write_config(
        directory,
        target_yaml("default", target_url),
        facebook_yaml(graph_url, extra),
        flat_endpoint_yaml("forms", "default"),
        environ=FB_ENV,
    )


def notices(count: int, start: int = 0) -> list[dict[str, str]]:
    """``count`` Facebook leadgen changes naming leads ``9000<n>``."""
    return [{"leadgen_id": f"9000{n}", "page_id": "1"} for n in range(start, start + count)]


async def test_a_silent_graph_api_holds_up_no_other_event(tmp_path: Path) -> None:
    """A Graph API that never answers: the flat events claimed with the Facebook ones, and
    those queued while the reads hang, are delivered at once, long before the read timeout
    (they used to wait for it: the batch's reads were awaited before any event was queued)."""
    with sandbox_server() as (url, _), slow_graph(None) as (graph_url, graph):
        cfg = config(tmp_path / "cfg", url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            fb = await enqueue(store, "fb", notices(3), prefix="fb")
            first = await enqueue(store, "forms", leads("first", 3), prefix="a")
            async with running(cfg, store) as dispatcher:
                await wait_for(all_in(State.DELIVERED, store, first), what="first")
                await wait_for(lambda: graph.held == 3, what="three reads held")
                later = await enqueue(store, "forms", leads("later", 3), prefix="b")
                await wait_for(all_in(State.DELIVERED, store, later), what="later")
                waiting = await states(store, fb)
                assert dispatcher.metrics.graph_errors.labels("network")._value.get() == 0
        # still being read, so before the read timeout (10 s): the flat events waited for none
        # (a bound of the design's, not a time the test measures: it asserted took < 5 s)
        assert {e.state for e in waiting.values()} == {State.SENDING}
        emails = {lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads")}
        assert emails == {f"{p}{n}@example.com" for p in ("first", "later") for n in range(3)}


async def test_each_read_event_goes_out_as_its_read_ends(tmp_path: Path) -> None:
    """Reads held until the flat events are delivered: the flat events go first, then each
    Facebook lead, routed and sent after its own read; every one is delivered, read once.
    (The reads were answered 1.5 s late, and the flat events had to be delivered within
    1.2 s: on a loaded machine they might not be. Now the test ends the reads.)"""
    with sandbox_server() as (url, _), slow_graph(None) as (graph_url, graph):
        cfg = config(tmp_path / "cfg", url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            fb = await enqueue(store, "fb", notices(4), prefix="fb")
            flat = await enqueue(store, "forms", leads("f", 4), prefix="a")
            async with running(cfg, store):
                await wait_for(all_in(State.DELIVERED, store, flat), what="flat")
                assert graph.held == 4
                assert {e.state for e in (await states(store, fb)).values()} == {State.SENDING}
                graph.ended.set()  # the reads answer
                await wait_for(all_in(State.DELIVERED, store, fb), what="Facebook leads")
            events = await states(store, fb)
        assert all(e.attempts == 1 and e.enrichment is not None for e in events.values())
        assert sorted(graph.reads) == [f"9000{n}" for n in range(4)]
        emails = {lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads")}
        assert {f"9000{n}@fb.example" for n in range(4)} <= emails


async def test_reads_are_bounded_per_endpoint_and_the_rest_wait_in_the_queue(
    tmp_path: Path,
) -> None:
    """With 2 reads allowed per endpoint and a Graph that never answers, a claim takes no
    more of that endpoint's events than it may read at once plus one claim's worth: the
    others stay queued, untouched, while flat events go on being claimed and sent."""
    with sandbox_server() as (url, _), slow_graph(None) as (graph_url, graph):
        cfg = config(tmp_path / "cfg", url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            fb = await enqueue(store, "fb", notices(3), prefix="fb")
            async with running(cfg, store, reads_per_endpoint=2, batch=3) as dispatcher:
                await wait_for(lambda: graph.held == 2, what="two reads held")
                more = await enqueue(store, "fb", notices(20, start=3), prefix="fb2")
                flat = await enqueue(store, "forms", leads("f", 10), prefix="a")
                await wait_for(all_in(State.DELIVERED, store, flat), timeout=5, what="flat")
                await asyncio.sleep(0.3)  # claims go on meanwhile
                claimed = [e for e in (await states(store, fb + more)).values() if e.attempts]
                assert graph.most_held == 2
                assert len(dispatcher._reads) == 3  # two reading, one waiting for a slot
        assert len(claimed) == 3
        assert {e.id for e in claimed} == set(fb)


async def test_stop_cancels_the_reads_and_puts_their_events_back(tmp_path: Path) -> None:
    """Stopping while reads hang (a Graph that never answers, a read timeout of ten minutes):
    stop does not wait for them, their events go back due now, their attempt not counted,
    none left sending; a later run reads and delivers them."""
    with sandbox_server() as (url, _):
        with slow_graph(None) as (graph_url, graph):
            cfg = config(tmp_path / "cfg", url, graph_url, "read_timeout: 10m\n")
            async with opened_store(tmp_path / "hub.db") as store:
                fb = await enqueue(store, "fb", notices(3), prefix="fb")
                # (a lease that fits the reads; stop may give sends ten minutes too)
                dispatcher = Dispatcher(config=cfg, store=store, poll=0.05, lease=3600.0)
                await dispatcher.start()
                try:
                    await wait_for(lambda: graph.held == 3, what="three reads held")
                finally:
                    # A hang guard, not a measure of speed: a stop that waited for the reads
                    # would wait for their ten-minute timeout.
                    async with asyncio.timeout(60):
                        await dispatcher.stop(timeout=600.0)
                events = await states(store, fb)
        # cancelled, not ended by their timeout (an attempt counted, retried later)
        assert {(e.state, e.attempts) for e in events.values()} == {(State.QUEUED, 0)}
        assert all(e.next_attempt_at <= time.time() for e in events.values())
        with slow_graph(0.0) as (graph_url, _):
            cfg = config(tmp_path / "cfg2", url, graph_url)
            async with opened_store(tmp_path / "hub.db") as store, running(cfg, store):
                await wait_for(all_in(State.DELIVERED, store, fb), what="delivered next time")


async def test_a_read_that_would_outlast_the_lease_is_not_started(tmp_path: Path) -> None:
    """A lease too short for a read (twice the endpoint's read_timeout and the margin) reads
    nothing: the event goes back untried, with the reason and the lease to give."""
    with sandbox_server() as (url, _), slow_graph(0.0) as (graph_url, graph):
        cfg = config(tmp_path / "cfg", url, graph_url, "read_timeout: 8s\n")
        async with opened_store(tmp_path / "hub.db") as store:
            (eid,) = await enqueue(store, "fb", notices(1), prefix="fb")
            async with running(cfg, store, lease=20.0):

                async def put_back() -> bool:
                    event = (await states(store, [eid]))[eid]
                    return event.state == State.QUEUED and event.last_error is not None

                await wait_for(put_back, what="put back")
            event = (await states(store, [eid]))[eid]
        assert graph.reads == []
        assert event.attempts == 0
        assert "--lease of at least 22s" in (event.last_error or "")
        assert event.next_attempt_at > time.time() + 10  # not claimed again at once


async def test_a_shorter_read_timeout_fits_a_shorter_lease(tmp_path: Path) -> None:
    """The same 20 s lease with the endpoint's read_timeout at 2s (reads end within 4 s): the
    lead is read and delivered, where the default 10 s (reads up to 20 s) would not fit."""
    with sandbox_server() as (url, _), slow_graph(0.0) as (graph_url, graph):
        cfg = config(tmp_path / "cfg", url, graph_url, "read_timeout: 2s\n")
        async with opened_store(tmp_path / "hub.db") as store:
            fb = await enqueue(store, "fb", notices(1), prefix="fb")
            async with running(cfg, store, lease=20.0):
                await wait_for(all_in(State.DELIVERED, store, fb), what="delivered")
        assert len(graph.reads) == 1
