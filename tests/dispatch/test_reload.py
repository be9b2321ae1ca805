"""Dispatcher.reload: a new configuration while events flow, against real HTTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from hub.config import load
from hub.config.models import Config
from hub.dispatch.leadsquared import CAPTURE_PATH
from hub.dispatch.worker import Dispatcher
from hub.store.models import State
from tests.dispatch.support import (
    KEYS,
    all_in,
    enqueue,
    flat_endpoint_yaml,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_post,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread


class Recorder:
    """A fake LeadSquared that answers Success and counts the calls under each path prefix;
    ``/slow`` answers after ``delay`` seconds."""

    def __init__(self, delay: float = 0.4) -> None:
        self.calls: dict[str, int] = {}
        self.delay = delay

    async def capture(self, request: Request) -> Response:
        prefix = request.url.path.split("/")[1]
        body = await request.json()
        if prefix == "slow":
            await asyncio.sleep(self.delay)
        self.calls[prefix] = self.calls.get(prefix, 0) + 1
        email = next(i["Value"] for i in body if i["Attribute"] == "EmailAddress")
        message = {"Id": "a", "RelatedId": f"{prefix}:{email}", "IsCreated": True}
        return JSONResponse({"Status": "Success", "Message": message})


def capacities(dispatcher: Dispatcher) -> dict[str, float]:
    """``leadhub_lane_capacity`` by target, as a scrape of ``dispatcher``'s registry reads it."""
    (family,) = (
        m for m in dispatcher.metrics.registry.collect() if m.name == "leadhub_lane_capacity"
    )
    return {sample.labels["target"]: sample.value for sample in family.samples}


@pytest.fixture
def recorder() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()
    routes = [Route(f"/{p}{CAPTURE_PATH}", rec.capture, methods=["POST"]) for p in "abc"]
    routes.append(Route(f"/slow{CAPTURE_PATH}", rec.capture, methods=["POST"]))
    with serve_in_thread(Starlette(routes=routes)) as url:
        yield url, rec


async def test_new_endpoint_and_target_and_a_changed_target(
    tmp_path: Path, recorder: tuple[str, Recorder]
) -> None:
    """After a reload the events of a new endpoint go to a new target, and a target whose
    settings changed is sent through a lane of its own (the old one closed)."""
    url, rec = recorder
    first = write_config(
        tmp_path / "one", target_yaml("default", f"{url}/a"), flat_endpoint_yaml("forms", "default")
    )
    second = write_config(
        tmp_path / "two",
        target_yaml("default", f"{url}/b"),  # moved: a new lane
        target_yaml("extra", f"{url}/c"),
        flat_endpoint_yaml("forms", "default"),
        flat_endpoint_yaml("more", "extra"),
    )
    async with opened_store(tmp_path / "hub.db") as store:
        before = await enqueue(store, "forms", leads("f", 5), prefix="f")
        async with running(first, store) as dispatcher:
            await wait_for(all_in(State.DELIVERED, store, before), what="the first events")
            old_lane = dispatcher.lanes["default"]
            with capture_logs() as logs:
                await dispatcher.reload(second)
            assert set(dispatcher.lanes) == {"default", "extra"}
            assert dispatcher.lanes["default"] is not old_lane
            # each target's capacity gauge reads its lane now, not the one it replaced
            assert capacities(dispatcher) == {
                name: lane.capacity for name, lane in dispatcher.lanes.items()
            }
            assert old_lane.capacity != dispatcher.lanes["default"].capacity
            after = await enqueue(store, "forms", leads("g", 5), prefix="g")
            more = await enqueue(store, "more", leads("m", 5), prefix="m")
            await wait_for(all_in(State.DELIVERED, store, after + more), what="after reload")
        assert rec.calls == {"a": 5, "b": 5, "c": 5}
        (reloaded,) = (e for e in logs if e["event"] == "dispatcher_reloaded")
        assert reloaded["targets"] == ["default", "extra"]
        assert (reloaded["lanes_replaced"], reloaded["lanes_closed"]) == (["default"], [])
        assert (await store.get(more[0])).lead_id == "c:m0@example.com"  # type: ignore[union-attr]


async def test_a_lane_that_goes_away_gives_its_queued_events_back(
    tmp_path: Path, recorder: tuple[str, Recorder]
) -> None:
    """A slow target's queued events are put back when a reload drops it, and mapped anew:
    they go where the new mapping says. The send in flight finishes where it started."""
    url, rec = recorder
    slow = target_yaml("slowone", f"{url}/slow") + "concurrency: 1\n"
    first = write_config(
        tmp_path / "one",
        target_yaml("default", f"{url}/a"),
        slow,
        flat_endpoint_yaml("forms", "slowone"),
    )
    second = write_config(
        tmp_path / "two", target_yaml("default", f"{url}/a"), flat_endpoint_yaml("forms", "default")
    )
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("s", 12), prefix="s")
        async with running(first, store) as dispatcher:
            await wait_for(lambda: rec.calls.get("slow", 0) >= 1, what="a slow send done")
            with capture_logs() as logs:
                await dispatcher.reload(second)
            assert set(dispatcher.lanes) == {"default"}
            # the gone target has no capacity gauge left
            assert capacities(dispatcher) == {"default": dispatcher.lanes["default"].capacity}
            (reloaded,) = (e for e in logs if e["event"] == "dispatcher_reloaded")
            assert (reloaded["lanes_replaced"], reloaded["lanes_closed"]) == ([], ["slowone"])
            await wait_for(all_in(State.DELIVERED, store, ids), what="every event delivered")
        events = [await store.get(i) for i in ids]
        by_target = {e.target for e in events if e is not None}
        assert by_target == {"slowone", "default"}
        assert rec.calls["slow"] + rec.calls["a"] == 12  # each event sent once
        assert 1 <= rec.calls["slow"] <= 3
        assert all(e is not None and e.attempts >= 1 for e in events)


async def test_reload_before_start_only_swaps_the_config(
    tmp_path: Path, recorder: tuple[str, Recorder]
) -> None:
    url, rec = recorder
    first = write_config(
        tmp_path / "one", target_yaml("default", f"{url}/a"), flat_endpoint_yaml("forms", "default")
    )
    second = write_config(
        tmp_path / "two", target_yaml("default", f"{url}/b"), flat_endpoint_yaml("forms", "default")
    )
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("x", 3), prefix="x")
        dispatcher = Dispatcher(config=first, store=store, poll=0.05)
        await dispatcher.reload(second)
        await dispatcher.start()
        try:
            await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        finally:
            await dispatcher.stop(timeout=5)
    assert rec.calls == {"b": 3}


@pytest.mark.parametrize(("first", "second"), [("v1", "v2"), ("1", "true")])
async def test_events_queued_before_a_reload_are_sent_with_the_new_mapping(
    tmp_path: Path, first: str, second: str
) -> None:
    """A reload that changes a mapping (its target as it was) applies to every event sent
    after it, as the README says, not only to those claimed after it: the events a lane held,
    claimed and mapped before the reload, went out with the old mapping (a fix of a wrong
    value, or a new ``skip_if``, missed up to a lane's worth of leads: a lease of sends).
    Only the send in flight keeps the old one; each event is sent once. A constant changed
    from 1 to true (Python's ``1 == True``) is a change too: "1" and "true" are sent."""
    sent: list[tuple[str, str]] = []  # (email, mx_Version) in the order they came

    async def capture(request: Request) -> Response:
        body = {i["Attribute"]: i["Value"] for i in await request.json()}
        await asyncio.sleep(0.2)  # a slow target: the lane holds the rest meanwhile
        sent.append((body["EmailAddress"], body["mx_Version"]))
        message = {"Id": "a", "RelatedId": body["EmailAddress"], "IsCreated": True}
        return JSONResponse({"Status": "Success", "Message": message})

    def config(version: str) -> Config:
        slow = target_yaml("default", url) + "concurrency: 1\n"
        extra = f"  mx_Version: {{ value: {version} }}\n"
        # (one directory, as a reload reads: the mappings' places alike)
        return write_config(
            tmp_path / "cfg", slow, flat_endpoint_yaml("forms", "default", extra=extra)
        )

    app = Starlette(routes=[Route(CAPTURE_PATH, capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("v", 20), prefix="v")
            async with running(config(first), store) as dispatcher:
                await wait_for(lambda: len(sent) >= 2, what="the first sends")
                before = len(sent)
                with capture_logs() as logs:
                    await dispatcher.reload(config(second))
                await wait_for(all_in(State.DELIVERED, store, ids), what="every event delivered")
    old = [email for email, version in sent if version == first]
    assert len(old) <= before + 1, sent  # the one in flight during the reload, at most
    assert sorted(email for email, _ in sent) == sorted(f"v{n}@example.com" for n in range(20))
    (reloaded,) = (e for e in logs if e["event"] == "dispatcher_reloaded")
    assert reloaded["remapped"] >= 1, reloaded  # (what the lane held: its capacity)


async def test_reloads_that_change_no_mapping_leave_the_lanes_sending(
    tmp_path: Path, recorder: tuple[str, Recorder]
) -> None:
    """A reload that reads the same files again (a watcher signalling for nothing, a storm of
    SIGHUPs) remaps nothing: the events the lanes hold stay there, and a rate-limited target
    goes on sending while such reloads keep coming. Each reload put every held event back and
    its senders gave up the slots they waited for: one reload a second sent nothing at all."""
    url, rec = recorder
    directory = tmp_path / "cfg"
    target = target_yaml("default", f"{url}/a", rate_limit="4/1s")
    # (a filter: a path compiled to steps, alike when its text is)
    extra = "  mx_Tag: \"$.tags[?(@.kind == 'a')].name\"\n"
    endpoint = flat_endpoint_yaml("forms", "default", extra=extra)
    config = write_config(directory, target, endpoint)
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("r", 24))
        async with running(config, store) as dispatcher:
            await wait_for(lambda: rec.calls.get("a", 0) >= 1, what="the first send")
            with capture_logs() as logs:
                for _ in range(300):  # a reload every 0.2 s: 60 s at most
                    if await all_in(State.DELIVERED, store, ids)():
                        break
                    await dispatcher.reload(load(directory, KEYS))
                    await asyncio.sleep(0.2)
            assert await all_in(State.DELIVERED, store, ids)(), rec.calls
    reloads = [e for e in logs if e["event"] == "dispatcher_reloaded"]
    assert reloads and all(e["remapped"] == 0 for e in reloads), reloads
    assert rec.calls == {"a": 24}


async def test_a_pause_a_reload_ended_still_does_not_use_up_give_up_after(
    tmp_path: Path,
) -> None:
    """The sandbox refuses the target's keys (401: paused) for longer than give_up_after
    (2 s); a reload gives the right keys, and the sandbox's first answers then are 500s. The
    leads are retried (the paused time is no time to try in, also once a reload replaced the
    lane), and delivered once the faults stop, one lead each (before: the new lane knew of no
    pause, and each lead was dead at its first 500, "gave up after 1 attempt(s) over 2s")."""
    retry = "{initial: 200ms, max_interval: 500ms, give_up_after: 2s}"
    wrong = {"LSQ_ACCESS": "wrong-access", "LSQ_SECRET": "wrong-secret"}
    with sandbox_server() as (url, _), capture_logs() as logs:
        directory = tmp_path / "cfg"
        documents = (
            target_yaml("default", url, retry=retry),
            flat_endpoint_yaml("forms", "default"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            async with running(write_config(directory, *documents, environ=wrong), store) as d:
                ids = await enqueue(store, "forms", leads("held", 2))
                await wait_for(lambda: d.lanes["default"].pause_level >= 1, what="the pause")
                await asyncio.sleep(3.0)  # paused past give_up_after
                sandbox_post(url, "/_sandbox/faults", {"every": 1, "kinds": ["500"]})
                await d.reload(load(directory, KEYS))

                async def failed_twice_or_dead() -> bool:
                    events = (await states(store, ids)).values()
                    return all(e.attempts >= 2 for e in events) or any(
                        e.state is State.DEAD for e in events
                    )

                await wait_for(failed_twice_or_dead, what="two failures each, after the reload")
                assert not [e for e in logs if e["event"] == "event_dead"]
                sandbox_post(url, "/_sandbox/faults", {"rate": 0})
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
            emails = sorted(lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads"))
    assert emails == ["held0@example.com", "held1@example.com"]
