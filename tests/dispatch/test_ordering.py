"""Per-lead ordering between workers: a later event for the same email never overtakes an
earlier one that another worker has claimed, while its routes are being written or while
another event of its batch is read from an API. Each worker here has its own store on the
one SQLite file, as separate processes do (tests/e2e/test_ordering.py runs real ones)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hub.config.models import Config
from hub.store.base import EventStore
from hub.store.models import Event, State
from tests.dispatch.support import (
    FB_ENV,
    all_in,
    enqueue,
    facebook_yaml,
    flat_endpoint_yaml,
    opened_store,
    recording_target,
    running,
    slow_graph,
    states,
    target_yaml,
    wait_for,
    write_config,
)

SAME = "same@example.com"


class _SlowRoutes:
    """A worker's store whose route writes wait until the test lets them go: the window
    between a claim and its routes (milliseconds, in life) held open."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.routing = asyncio.Event()
        self.let_go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def set_routes(self, routes: Any, *, reading: Any = ()) -> list[int]:
        self.routing.set()
        await self.let_go.wait()
        return await self._store.set_routes(routes, reading=reading)


def _config(directory: Path, target_url: str, graph_url: str = "http://127.0.0.1:9") -> Config:
    return write_config(
        directory,
        target_yaml("default", target_url),
        flat_endpoint_yaml("forms", "default"),
        facebook_yaml(graph_url),
        environ=FB_ENV,
    )


async def _waiting(store: EventStore, event_id: int) -> bool:
    """Whether the event was put back to wait for an earlier one."""
    event = (await states(store, [event_id]))[event_id]
    return "waiting for event" in (event.last_error or "")


async def test_a_claim_whose_routes_are_not_written_yet_is_not_overtaken(
    tmp_path: Path,
) -> None:
    """Worker 1 claims A and has not written its routes yet; worker 2 claims B, a later event
    for the same email. B waits (A's lead is not known yet: it may be B's), and goes out after
    A. (B used to go at once: the ordering check only saw events whose keys were recorded.)"""
    with recording_target() as (url, target):
        config = _config(tmp_path / "cfg", url)
        db = tmp_path / "hub.db"
        async with opened_store(db) as store_1, opened_store(db) as store_2:
            slow = _SlowRoutes(store_1)
            (a,) = await enqueue(store_1, "forms", [{"email": SAME, "first_name": "A"}], prefix="a")
            async with running(config, slow):
                await asyncio.wait_for(slow.routing.wait(), 10)
                async with running(config, store_2):
                    docs = [{"email": SAME, "first_name": "B"}]
                    (b,) = await enqueue(store_2, "forms", docs, prefix="b")
                    await wait_for(lambda: _waiting(store_2, b), what="B waiting for A")
                    assert target.calls == []
                    slow.let_go.set()
                    await wait_for(all_in(State.DELIVERED, store_2, [a, b]), what="delivered")
    assert target.names(SAME) == ["A", "B"]


class _LetGoOnCheck:
    """A worker's store that lets another worker's held route write go as soon as it has
    answered its first ordering check: that worker's routes are written right after."""

    def __init__(self, store: EventStore, other: _SlowRoutes) -> None:
        self._store = store
        self.other = other
        self.checks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def blockers(self, checks: Any) -> dict[int, Event]:
        found = await self._store.blockers(checks)
        self.checks += 1
        self.other.let_go.set()
        return found


async def test_a_wait_of_milliseconds_for_another_worker_s_routes_puts_nothing_back(
    tmp_path: Path,
) -> None:
    """B (another lead) is checked while worker 1's claim of A has no routes yet: worker 2
    looks again a moment later, finds A is another lead, and sends B without putting it back
    in the queue (no release, no wait of ORDER_WAIT)."""
    with recording_target() as (url, target):
        config = _config(tmp_path / "cfg", url)
        db = tmp_path / "hub.db"
        async with opened_store(db) as store_1, opened_store(db) as store_2:
            slow = _SlowRoutes(store_1)
            looking = _LetGoOnCheck(store_2, slow)
            (a,) = await enqueue(store_1, "forms", [{"email": "a@example.com"}], prefix="a")
            async with running(config, slow):
                await asyncio.wait_for(slow.routing.wait(), 10)
                async with running(config, looking) as worker_2:
                    (b,) = await enqueue(store_2, "forms", [{"email": "b@example.com"}], prefix="b")
                    await wait_for(all_in(State.DELIVERED, store_2, [a, b]), what="delivered")
            event = (await states(store_2, [b]))[b]
    assert looking.checks >= 2  # blocked by A's claim at first, free at the next look
    assert worker_2.metrics.events.labels("released")._value.get() == 0
    assert (event.attempts, event.last_error) == (1, None)
    assert sorted(target.calls) == [("a@example.com", ""), ("b@example.com", "")]


async def test_an_event_read_with_its_batch_s_slow_read_is_not_overtaken(
    tmp_path: Path,
) -> None:
    """The audit's case: worker 1's claim holds a Facebook event F, whose lead is read from a
    Graph API that answers once B is in (it answered 3 s late, and A had to go out within
    2 s), and A (a form lead); B, for A's email, comes in while A is being sent and goes to
    worker 2. A is routed at once, before F's read, so B waits for it:
    the target gets A, then B (it got B first: A's routes waited for F's read)."""
    with (
        recording_target(slow={"A": 1.0}) as (url, target),
        slow_graph(None) as (graph_url, graph),
    ):
        config = _config(tmp_path / "cfg", url, graph_url)
        db = tmp_path / "hub.db"
        async with opened_store(db) as store_1, opened_store(db) as store_2:
            (f,) = await enqueue(store_1, "fb", [{"leadgen_id": "4242", "page_id": "1"}])
            (a,) = await enqueue(store_1, "forms", [{"email": SAME, "first_name": "A"}], prefix="a")
            async with running(config, store_1):
                await wait_for(lambda: graph.held == 1, what="F being read")
                await wait_for(lambda: bool(target.calls), what="A sent")
                assert target.calls == [(SAME, "A")] and graph.held == 1  # before F's read
                async with running(config, store_2):
                    docs = [{"email": SAME, "first_name": "B"}]
                    (b,) = await enqueue(store_2, "forms", docs, prefix="b")
                    graph.ended.set()  # F's read answers (held until now, not 3 s)
                    await wait_for(all_in(State.DELIVERED, store_2, [a, b, f]), what="all sent")
            events: dict[int, Event] = await states(store_1, [a, b, f])
    assert target.names(SAME) == ["A", "B"]
    assert target.names("4242@fb.example") == ["F"]
    assert all(e.attempts == 1 for e in events.values())
