"""The dispatcher's fast path: claims sized to the lanes, batched writes, and what they keep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.config import ConfigError
from hub.dispatch.worker import Dispatcher
from hub.store import EventStore
from hub.store.models import State
from hub.units import RateLimit
from tests.dispatch.support import (
    all_in,
    enqueue,
    flat_endpoint_yaml,
    forms_config,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread

CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"
SEEN: list[str] = []


async def _slowish(request: Request) -> Response:
    """Succeeds after 20 ms, recording the email it was sent."""
    body = await request.json()
    email = next(i["Value"] for i in body if i["Attribute"] == "EmailAddress")
    SEEN.append(email)
    await asyncio.sleep(0.02)
    return JSONResponse({"Status": "Success", "Message": {"Id": "a", "RelatedId": email}})


@pytest.fixture(scope="module")
def slowish_lsq() -> Iterator[str]:
    """A fake LeadSquared that takes 20 ms per call."""
    app = Starlette(routes=[Route(CAPTURE, _slowish, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield url


async def test_a_backlog_is_claimed_as_the_lane_has_room_never_claimed_and_put_back(
    tmp_path: Path, slowish_lsq: str
) -> None:
    """With 2 senders and a 64-event claim, no event is released back: claims fit the lane."""
    SEEN.clear()
    config = forms_config(tmp_path, slowish_lsq, timeout="5s")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("b", 80))
        async with running(config, store, concurrency=2, batch=64) as dispatcher:
            await wait_for(all_in(State.DELIVERED, store, ids), what="all delivered")
            lane = dispatcher.lanes["default"]
            # 20 ms calls: the lane now takes far more than its first (timeout-based) size
            assert lane.capacity > 2 * lane.concurrency
        assert dispatcher.metrics.events.labels("released")._value.get() == 0
        events = await states(store, ids)
        assert all(e.attempts == 1 for e in events.values())
    assert sorted(SEEN) == sorted(f"b{n}@example.com" for n in range(80))


async def test_a_rate_limited_lane_holds_what_the_limit_lets_out_in_time(
    tmp_path: Path,
) -> None:
    """At 1/1s with a 30 s lease a lane holds 10 events, fewer than its 16 senders: more would
    wait for the limit past their lease and go back. At 5/1s with the shortest lease a 1 s
    timeout allows (8 s: calls must start within 1 s of their claim), it holds 5, what the
    limit lets out in that second, not the 13 of a third of the lease."""
    config = forms_config(tmp_path, "http://127.0.0.1:9", rate_limit="1/1s", timeout="1s")
    async with opened_store(tmp_path / "hub.db") as store:
        async with running(config, store, lease=30.0) as dispatcher:
            lane = dispatcher.lanes["default"]
            assert (lane.concurrency, lane.capacity) == (16, 10)
    config = forms_config(tmp_path, "http://127.0.0.1:9", rate_limit="5/1s", timeout="1s")
    async with opened_store(tmp_path / "hub2.db") as store:
        async with running(config, store, lease=8.0) as dispatcher:
            assert dispatcher.lanes["default"].capacity == 5


async def _slow(request: Request) -> Response:
    """Succeeds after 1.5 s."""
    body = await request.json()
    email = next(i["Value"] for i in body if i["Attribute"] == "EmailAddress")
    await asyncio.sleep(1.5)
    return JSONResponse({"Status": "Success", "Message": {"Id": "a", "RelatedId": email}})


async def test_a_lane_holds_no_more_than_its_senders_can_start_within_the_lease(
    tmp_path: Path,
) -> None:
    """A target answering in 1.5 s, with a lease that leaves 1 s to start a call in (10 s
    lease, 2 s timeout): each of the 4 senders can start one call in time, not two. The lane
    held twice its senders (its floor), and the second half waited 1.5 s for a sender and went
    back, untried, at every claim: every event is now sent on its first claim."""
    app = Starlette(routes=[Route(CAPTURE, _slow, methods=["POST"])])
    config = None
    with serve_in_thread(app) as url:
        config = forms_config(tmp_path, url, timeout="2s")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("w", 12))
            async with running(config, store, concurrency=4, lease=10.0) as dispatcher:
                await wait_for(all_in(State.DELIVERED, store, ids), what="all delivered")
            events = await states(store, ids)
    assert [e.attempts for e in events.values()] == [1] * 12
    assert dispatcher.metrics.events.labels("released")._value.get() == 0


async def test_processes_sharing_an_account_s_limit_learn_to_claim_their_share(
    tmp_path: Path,
) -> None:
    """Two dispatchers on one store share an account's 10 calls a second, with a lease that
    leaves 1 s to start a call in. Each lane reckons it may hold what the limit lets out in
    that second, 10, but gets about half of the limit's slots: the other half waited for the
    limit past their window and went back, untried, at every claim (133-158 put-backs for 80
    leads in four runs). Each lane now learns from those put-backs to hold its share (26-57;
    the drain took no longer: 8-9 s against 10)."""
    async with _sharing_a_limit(tmp_path, "r") as (one, ids, first, second):
        await wait_for(all_in(State.DELIVERED, one, ids), what="all delivered")
        lanes = [d.lanes["default"] for d in (first, second)]
        assert [lane.capacity < lane._reckoned() for lane in lanes] == [True, True]
    async with opened_store(tmp_path / "hub.db") as store:
        events = await states(store, ids)
    # one attempt each: no call went out twice, none was refused by the sandbox's limit
    assert [e.attempts for e in events.values()] == [1] * 80
    released = sum(d.metrics.events.labels("released")._value.get() for d in (first, second))
    assert released < len(ids)


@asynccontextmanager
async def _sharing_a_limit(
    tmp_path: Path, prefix: str, limit: int = 10, count: int = 80
) -> AsyncIterator[tuple[EventStore, list[int], Dispatcher, Dispatcher]]:
    """``count`` leads queued, and two dispatchers on one store draining them into a sandbox
    that, like their target, lets ``limit`` calls a second through, with a lease leaving 1 s
    to start a call in: (the first's store, the event ids, the two dispatchers)."""
    with sandbox_server(rate_limit=RateLimit(limit, 1.0)) as (url, _):
        config = forms_config(tmp_path, url, rate_limit=f"{limit}/1s", timeout="1s")
        async with (
            opened_store(tmp_path / "hub.db") as one,
            opened_store(tmp_path / "hub.db") as two,
        ):
            ids = await enqueue(one, "forms", leads(prefix, count))
            async with (
                running(config, one, lease=8.0) as first,
                running(config, two, lease=8.0) as second,
            ):
                yield one, ids, first, second


def _capacity_gauge(dispatcher: Dispatcher) -> float | None:
    """``leadhub_lane_capacity`` of the ``default`` target, as a scrape of ``dispatcher``'s
    registry reads it now."""
    registry = dispatcher.metrics.registry
    return registry.get_sample_value("leadhub_lane_capacity", {"target": "default"})


async def test_the_capacity_gauge_shows_what_a_lane_learnt_at_each_cut(tmp_path: Path) -> None:
    """``leadhub_lane_capacity`` shows what each lane may hold: the 10 a second its limit lets
    out at first and, two processes sharing that limit as above, at each
    ``lane_capacity_cut`` (read as the line is logged) the halved capacity the line gives, the
    cut lane's capacity. Only the log line showed what a lane had learnt."""
    dispatchers: list[Dispatcher] = []
    #: At each cut: (the line's capacity and was, and for each dispatcher whether its lane
    #: holds the event the line is about, its gauge and its lane's capacity)
    cuts: list[tuple[int, int, list[tuple[bool, float | None, int]]]] = []

    def at_cut(_: object, __: str, line: structlog.typing.EventDict) -> NoReturn:
        if line["event"] == "lane_capacity_cut":
            event_id = structlog.contextvars.get_contextvars()["event_id"]
            lanes = [(d.lanes["default"], _capacity_gauge(d)) for d in dispatchers]
            seen = [(lane.holds(event_id), shown, lane.capacity) for lane, shown in lanes]
            cuts.append((line["capacity"], line["was"], seen))
        raise structlog.DropEvent

    structlog.configure(processors=[at_cut])
    async with _sharing_a_limit(tmp_path, "g") as (one, ids, first, second):
        dispatchers += [first, second]
        assert [_capacity_gauge(d) for d in dispatchers] == [10, 10]
        await wait_for(all_in(State.DELIVERED, one, ids), what="all delivered")
        assert [_capacity_gauge(d) for d in dispatchers] == [
            d.lanes["default"].capacity for d in dispatchers
        ]
    assert cuts, "no lane learnt to hold less"
    for capacity, was, seen in cuts:
        assert capacity < was
        [(shown, lane_capacity)] = [(shown, held) for holds, shown, held in seen if holds]
        assert shown == lane_capacity == capacity


async def test_stop_at_off_writes_every_finished_delivery(tmp_path: Path) -> None:
    """Stopping mid-drain at `off`: none left sending, and every delivered lead is in LSQ."""
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url)
        async with opened_store(tmp_path / "hub.db") as store:
            docs = leads("s", 400)
            ids = await enqueue(store, "forms", docs)
            async with running(config, store) as dispatcher:
                await wait_for(
                    lambda: (
                        dispatcher.metrics.sends.labels("default", "delivered")._value.get() >= 20
                    ),
                    what="first sends",
                )
            events = await states(store, ids)
        delivered = {e.id for e in events.values() if e.state == State.DELIVERED}
        assert all(e.state in (State.DELIVERED, State.QUEUED) for e in events.values())
        assert len(delivered) >= 20
        assert dispatcher.metrics.events.labels("delivered")._value.get() == len(delivered)
        in_lsq = {lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads")}
        assert {f"s{ids.index(i)}@example.com" for i in delivered} <= in_lsq


async def test_one_leads_events_keep_their_order_across_many_small_claims(
    tmp_path: Path,
) -> None:
    """Updates of one lead, mixed with other leads and claimed 3 at a time, arrive in order."""
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url)
        async with opened_store(tmp_path / "hub.db") as store:
            docs: list[dict[str, object]] = []
            for n in range(1, 16):
                docs += [{"email": "same@example.com", "seq": n}, {"email": f"o{n}@example.com"}]
            ids = await enqueue(store, "forms", docs)
            async with running(config, store, concurrency=16, batch=3):
                await wait_for(all_in(State.DELIVERED, store, ids), what="all delivered")
        leads = {lead["EmailAddress"]: lead for lead in sandbox_get(url, "/_sandbox/leads")}
        assert len(leads) == 16
        same = leads["same@example.com"]
        activities = sandbox_get(url, f"/_sandbox/leads/{same['ProspectID']}/activities")
        seqs = [
            next(d["Value"] for d in a["Data"] if d["Attribute"] == "mx_Seq") for a in activities
        ]
        assert seqs == [str(n) for n in range(1, 16)]


async def test_a_targets_concurrency_sets_its_senders(tmp_path: Path, slowish_lsq: str) -> None:
    """`concurrency: 3` in a target file gives its lane 3 senders, over the dispatcher's 16."""
    config = write_config(
        tmp_path / "cfg",
        target_yaml("default", slowish_lsq) + "concurrency: 3\n",
        flat_endpoint_yaml("forms", "default"),
    )
    assert config.targets["default"].concurrency == 3
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("c", 6))
        async with running(config, store, concurrency=16) as dispatcher:
            assert dispatcher.lanes["default"].concurrency == 3
            await wait_for(all_in(State.DELIVERED, store, ids), what="all delivered")


@pytest.mark.parametrize("value", ["0", "257", "many", "2.5", "true"])
def test_a_bad_concurrency_is_a_config_error_naming_the_fix(tmp_path: Path, value: str) -> None:
    """A concurrency that is not a whole number from 1 to 256 fails to load, saying so."""
    with pytest.raises(ConfigError, match="'concurrency' of target 'default' must be a whole"):
        write_config(
            tmp_path / "cfg",
            target_yaml("default", "http://127.0.0.1:1") + f"concurrency: {value}\n",
            flat_endpoint_yaml("forms", "default"),
        )


async def test_a_lane_that_holds_one_event_logs_no_cut(tmp_path: Path) -> None:
    """Two processes sharing 2 calls a second: each lane learns to hold one event, and its
    events still wait past their window for the other's slots. A lane holding one cuts
    nothing more: no ``lane_capacity_cut`` line then (one said "capacity 1, was 1" at each
    such event, and the gauge test, on a loaded machine, read it as a cut that was none)."""
    cuts: list[tuple[int, int]] = []

    def at_cut(_: object, __: str, line: structlog.typing.EventDict) -> NoReturn:
        if line["event"] == "lane_capacity_cut":
            cuts.append((line["capacity"], line["was"]))
        raise structlog.DropEvent

    structlog.configure(processors=[at_cut])
    async with _sharing_a_limit(tmp_path, "o", limit=2, count=16) as (one, ids, _, _):
        await wait_for(all_in(State.DELIVERED, one, ids), what="all delivered")
    assert cuts, "no lane learnt to hold less"
    assert all(capacity < was for capacity, was in cuts), cuts
