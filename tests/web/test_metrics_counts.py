"""``leadhub_events{state}`` at a scrape: every state but ``delivered`` read each time, through
the state's index; ``delivered``, which grows with every lead and costs a read of them all,
read each time too while that is cheap, else again only once RECOUNT times as long as its last
count took has passed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.store.base import EventStore
from hub.store.models import State
from hub.web.metrics import DEAR, RECOUNT, WebMetrics
from tests.dispatch.support import opened_store
from tests.store.helpers import delivery


class Ticking:
    """A monotonic clock at ``now`` that moves on by ``step`` at each reading: a count read
    between two readings took ``step``."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _gauges(text: bytes) -> dict[str, float]:
    found = re.findall(rb'^leadhub_events\{state="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {state.decode(): float(value) for state, value in found}


async def _deliver(store: EventStore, name: str) -> None:
    """Store a delivery and ack it (claiming whatever else waits too)."""
    [stored] = await store.enqueue(delivery(name))
    claimed = await store.claim(limit=10, lease=30)
    assert stored.id in [event.id for event in claimed]
    await store.ack(stored.id, lead_id=name, created=True)


class CountingStore:
    """The store, recording which states each count asked for."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.asked: list[tuple[State, ...] | None] = []

    async def counts(self, states: tuple[State, ...] | None = None) -> dict[State, int]:
        self.asked.append(states)
        return await self.store.counts(states)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    """A real SQLite store, closed after the test."""
    async with opened_store(tmp_path / "hub.db") as opened:
        yield opened


async def test_delivered_is_counted_again_only_after_recount_times_its_last_count(
    store: EventStore,
) -> None:
    clock = Ticking(DEAR)  # each count of the delivered events "takes" DEAR
    metrics = WebMetrics(monotonic=clock)
    counting = CountingStore(store)
    await _deliver(store, "one")
    await store.enqueue(delivery("waiting"))
    first = _gauges(await metrics.render(counting))  # type: ignore[arg-type]
    assert first["delivered"] == 1 and first["queued"] == 1
    await _deliver(store, "two")  # (claims "waiting" first: it is sending now)
    clock.now += RECOUNT * DEAR / 2  # half the wait
    second = _gauges(await metrics.render(counting))  # type: ignore[arg-type]
    assert second["delivered"] == 1  # the last count, kept
    assert (second["queued"], second["sending"]) == (0, 1)  # read again: current
    clock.now += RECOUNT * DEAR  # the wait is over
    third = _gauges(await metrics.render(counting))  # type: ignore[arg-type]
    assert third["delivered"] == 2
    whole_reads = [asked for asked in counting.asked if asked is None or State.DELIVERED in asked]
    assert whole_reads == [(State.DELIVERED,), (State.DELIVERED,)]  # never all states at once
    others = tuple(state for state in State if state is not State.DELIVERED)
    assert counting.asked.count(others) == 3


async def test_a_cheap_count_of_the_delivered_events_is_made_at_every_scrape(
    store: EventStore,
) -> None:
    """A count that took less than DEAR (a small store) is made again at the next scrape."""
    metrics = WebMetrics(monotonic=Ticking(DEAR / 2))
    await _deliver(store, "one")
    assert _gauges(await metrics.render(store))["delivered"] == 1
    await _deliver(store, "two")
    assert _gauges(await metrics.render(store))["delivered"] == 2
