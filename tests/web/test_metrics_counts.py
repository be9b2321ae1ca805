"""``leadhub_events{state}`` at a scrape: every state but ``delivered`` read each time, through
the state's index; ``delivered``, which grows with every lead and costs a read of them all,
read each time too while that is cheap, else again only once RECOUNT times as long as its last
count took has passed; one that ran out of time, RETRY later (twice that after two in a row)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from hub.store import open_store
from hub.store.base import EventStore
from hub.store.models import State
from hub.web.metrics import COUNTS_TIMEOUT, DEAR, RECOUNT, RETRY, WebMetrics
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


class LockedAtDelivered(CountingStore):
    """The store, with its events table locked (ACCESS EXCLUSIVE, by a transaction of another
    connection, as a ``VACUUM FULL`` or a migration would hold it) before each count of the
    delivered events while :attr:`locking`, until :meth:`unlock`: that count waits for the
    lock, past its budget, while the other states were read at once."""

    def __init__(self, store: EventStore, lock: asyncpg.Connection) -> None:
        super().__init__(store)
        self.lock = lock
        self.locking = False
        self._held: asyncpg.transaction.Transaction | None = None

    async def counts(self, states: tuple[State, ...] | None = None) -> dict[State, int]:
        if self.locking and states is not None and State.DELIVERED in states:
            self._held = self.lock.transaction()
            await self._held.start()
            await self.lock.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        return await super().counts(states)

    async def unlock(self) -> None:
        if self._held is not None:
            await self._held.rollback()
            self._held = None


async def test_a_count_of_the_delivered_events_that_ran_out_of_time_is_tried_a_minute_later(
    postgres_schema: tuple[str, str],
) -> None:
    """A count of the delivered events that waits past the scrape's budget (for a lock on
    PostgreSQL) is tried again :data:`RETRY` later, and after a second in a row twice as late:
    its time was taken as a count's, and the next was tried only RECOUNT times as long later
    (20 minutes, for a count that met the 3 s budget), the gauge missing or old meanwhile."""
    step = COUNTS_TIMEOUT - 0.5  # each count "takes" this: 0.5 s (real) left for delivered
    assert RECOUNT * step > 4 * RETRY
    clock = Ticking(step)
    metrics = WebMetrics(monotonic=clock)
    dsn, schema = postgres_schema
    store = open_store(f"{dsn}?schema={schema}")
    await store.open()
    lock = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
    try:
        locked = LockedAtDelivered(store, lock)
        await _deliver(store, "one")

        async def scrape() -> dict[str, float]:
            clock.now += RETRY
            asked = len(locked.asked)
            try:
                return _gauges(await metrics.render(locked))  # type: ignore[arg-type]
            finally:
                await locked.unlock()
                counted = any(State.DELIVERED in (a or ()) for a in locked.asked[asked:])
                tried.append(counted)

        tried: list[bool] = []
        locked.locking = True
        assert "delivered" not in await scrape()  # ran out of time (the others read)
        assert "delivered" not in await scrape()  # a minute later: out of time again
        locked.locking = False
        assert "delivered" not in await scrape()  # a minute later: not yet (two minutes)
        assert (await scrape())["delivered"] == 1  # two minutes later: counted
        assert tried == [True, True, False, True]
    finally:
        await lock.close()
        await store.close()


class HeldAtDelivered(CountingStore):
    """The store, each count of the delivered events held until :attr:`release` (a slow count
    in flight), :attr:`counting` set once one is."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.counting = asyncio.Event()
        self.release = asyncio.Event()

    async def counts(self, states: tuple[State, ...] | None = None) -> dict[State, int]:
        if states is not None and State.DELIVERED in states:
            self.counting.set()
            await self.release.wait()
        return await super().counts(states)


async def test_a_scrape_while_another_counts_the_delivered_events_does_not_count_them_again(
    store: EventStore,
) -> None:
    """Two scrapes at once (two Prometheus servers): the second, while the first one's count
    of the delivered events is in flight, reads the other states and shows no new count of
    them rather than starting a second count of every lead; the next scrape counts them
    again, also after a scrape cancelled during its count. Before, each scrape that began
    before the first count ended started its own (each count that ran out of time then
    doubled the retry's wait too)."""
    metrics = WebMetrics(monotonic=Ticking(0.0))  # each count takes no time: cheap
    held = HeldAtDelivered(store)
    await _deliver(store, "one")

    def delivered_counts() -> int:
        return sum(1 for asked in held.asked if asked is not None and State.DELIVERED in asked)

    first = asyncio.create_task(metrics.render(held))  # type: ignore[arg-type]
    await held.counting.wait()
    second = _gauges(await metrics.render(held))  # type: ignore[arg-type]
    assert "delivered" not in second and second["queued"] == 0
    held.release.set()
    assert _gauges(await first)["delivered"] == 1
    assert delivered_counts() == 1
    held.release.clear()
    held.counting.clear()
    cancelled = asyncio.create_task(metrics.render(held))  # type: ignore[arg-type]
    await held.counting.wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    held.release.set()
    assert _gauges(await metrics.render(held))["delivered"] == 1  # type: ignore[arg-type]
    assert delivered_counts() == 3


class SlowOthers(HeldAtDelivered):
    """:class:`HeldAtDelivered` whose count of the other states takes all but ``DEAR / 5`` of
    the scrape's budget by the clock :attr:`now`."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.now = 0.0
        self.started = 0  # counts of the delivered events

    async def counts(self, states: tuple[State, ...] | None = None) -> dict[State, int]:
        if states is not None and State.DELIVERED not in states:
            self.now += COUNTS_TIMEOUT - DEAR / 5
        elif states is not None:
            self.started += 1
        return await super().counts(states)


async def test_a_count_of_the_delivered_events_is_not_started_every_scrape_with_no_budget_left(
    store: EventStore,
) -> None:
    """The other states' count took all but a few ms of the scrape's budget: a count of the
    delivered events given those ms ran out of them in less than DEAR, which read as an error
    (tried again at the next scrape, not RETRY later), and its read of every lead (cancelled,
    on SQLite run on in the reader all the same) was started again at every scrape."""
    slow = SlowOthers(store)  # (its delivered counts never released: none would answer)
    metrics = WebMetrics(monotonic=lambda: slow.now)
    await _deliver(store, "one")
    for _ in range(3):
        slow.now += 15.0  # scraped every 15 s
        assert "queued" in _gauges(await metrics.render(slow))  # type: ignore[arg-type]
    assert slow.started <= 1
