"""A step back of the store's clock, undone by the next claim (the clock mark): lease ends
move back with the due times, and their holders' tokens still hold.

Each backend and writer (``store_url``), on a ManualClock whose wall reading the test sets
back; on PostgreSQL also the race of an outcome with the claim undoing a step, and an
instance whose measure of the server's clock is off by the step."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock, ServerTime
from hub.store import EventStore, LeaseLost
from hub.store.models import Ack, State
from hub.store.postgres import PostgresStore
from tests.store.conftest import opened
from tests.store.helpers import delivery

HOUR = 3600.0
LEASE = 60.0


async def enqueued(store: EventStore, *delivery_ids: str) -> list[int]:
    """The event ids of one delivery per id."""
    return [(await store.enqueue(delivery(d)))[0].id for d in delivery_ids]


async def test_a_dead_workers_lease_ends_when_meant_to_and_a_live_one_keeps_its_token(
    store_url: str, clock: ManualClock
) -> None:
    """Two events claimed under 60 s leases, one by a worker that dies then, one by a worker
    still sending; the clock goes back an hour. The dead worker's event is claimed again
    once its lease's 60 s have passed (before, an hour and 60 s); the live worker's lease is
    not shortened (nothing is claimed at 59 s) and its delivery is written under the lease
    the claim gave it (before the token moved with the end: LeaseLost)."""
    async with opened(store_url, clock) as store:
        first, second = await enqueued(store, "dies", "lives")
        (dead,) = await store.claim(limit=1, lease=LEASE)
        (live,) = await store.claim(limit=1, lease=LEASE)
        assert (dead.id, live.id) == (first, second)
        clock.set(clock.time() - HOUR)
        with capture_logs() as logs:
            assert await store.claim(limit=10, lease=LEASE) == []
        [stepped] = [e for e in logs if e["event"] == "clock_stepped_back"]
        assert (stepped["seconds"], stepped["leases"]) == (HOUR, 2)
        clock.advance(LEASE - 1)
        assert await store.claim(limit=10, lease=LEASE) == []
        await store.ack(live.id, lead_id="L1", created=True, lease=live.lease)
        clock.advance(2)
        (again,) = await store.claim(limit=10, lease=LEASE)
        assert again.id == dead.id
        # the dead worker's token is no longer the event's; the new claim's is
        with pytest.raises(LeaseLost):
            await store.ack(dead.id, lead_id="L0", created=True, lease=dead.lease)
        assert await store.ack_many([Ack(dead.id, "L2", True, again.lease)]) == []
        for eid, lead in ((first, "L2"), (second, "L1")):
            event = await store.get(eid)
            assert event is not None and (event.state, event.lead_id) == (State.DELIVERED, lead)


async def test_tokens_hold_across_two_steps_back(store_url: str, clock: ManualClock) -> None:
    """A lease claimed before two steps back (and one claimed between them) keeps its token
    through both: every outcome kind under it applies."""
    async with opened(store_url, clock) as store:
        ids = await enqueued(store, "a", "b", "c")
        (a,) = await store.claim(limit=1, lease=LEASE)
        clock.set(clock.time() - 10)
        (b,) = await store.claim(limit=1, lease=LEASE)
        clock.set(clock.time() - 20)
        (c,) = await store.claim(limit=1, lease=LEASE)
        assert [a.id, b.id, c.id] == ids
        await store.retry(a.id, at=clock.time() + 5, error="500", lease=a.lease)
        await store.release(b.id, at=clock.time(), reason=None, lease=b.lease)
        await store.dead(c.id, error="x", lease=c.lease)
        states = [(await store.get(i)) for i in ids]
        assert [e.state for e in states if e is not None] == [
            State.RETRYING,
            State.QUEUED,
            State.DEAD,
        ]


# -- PostgreSQL only ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pg_store(dsn: str, schema: str, clock: ManualClock) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(dsn, schema=schema, clock=clock)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def waiting_for_locks(dsn: str, count: int) -> None:
    """Until ``count`` backends of the test's database wait for a lock (asked on a connection
    of its own: within a transaction, pg_stat_activity keeps its first answer)."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(1000):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise AssertionError(f"fewer than {count} backends waiting for a lock")


async def test_postgres_an_outcome_racing_the_undo_of_a_step_still_applies(
    postgres_schema: tuple[str, str],
) -> None:
    """An ack whose statement began before a claim undoing a step back committed, and waited
    for the event's row that claim had moved, is written (before: LeaseLost, the lead sent
    again at its lease's end). The claim is held at its clock mark by a lock the test takes,
    the ack queued behind it, then the lock let go."""
    dsn, schema = postgres_schema
    clock = ManualClock()
    async with pg_store(dsn, schema, clock) as store:
        (eid,) = await enqueued(store, "race")
        (held,) = await store.claim(limit=1, lease=LEASE)  # (writes the clock mark)
        blocker = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT 1 FROM meta WHERE key = 'clock_mark' FOR UPDATE")
            clock.set(clock.time() - HOUR)
            claim = asyncio.create_task(store.claim(limit=1, lease=LEASE))
            await waiting_for_locks(dsn, 1)  # moved the lease, waits to write the mark
            ack = asyncio.create_task(store.ack(eid, lead_id="L", created=True, lease=held.lease))
            await waiting_for_locks(dsn, 2)  # the ack waits for the event's row
            await tx.rollback()
            assert await claim == []
            await ack
        finally:
            await blocker.close()
        event = await store.get(eid)
        assert event is not None and (event.state, event.lead_id) == (State.DELIVERED, "L")


class Resumed:
    """This machine's clock, whose monotonic reading the test jumps ahead: an instance
    measured against the server reads the server's time plus the jump until it measures
    again, as one measured before a step back of the server's clock reads the time before
    the step (the server's clock itself cannot be stepped here)."""

    def __init__(self) -> None:
        self.jump = 0.0

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic() + self.jump


async def test_postgres_a_claim_follows_a_step_of_the_servers_clock(
    postgres_schema: tuple[str, str],
) -> None:
    """An instance whose server time is an hour off the server's (measured before the
    server's clock went back an hour; here it measures again only every 4 hours) claims with the
    server's time: its lease ends a lease from the server's now, not an hour later. (Left
    to its next measurement, its claims moved the shared clock mark forward again after
    another instance had undone the step, which that one then undid again.)"""
    dsn, schema = postgres_schema
    base = Resumed()
    store = PostgresStore(dsn, schema=schema, clock=ServerTime(base, every=4 * HOUR))
    await store.open()
    try:
        (eid,) = await enqueued(store, "follow")
        base.jump = HOUR
        (claimed,) = await store.claim(limit=1, lease=LEASE)
        assert claimed.id == eid and claimed.lease is not None
        assert abs(claimed.lease - (time.time() + LEASE)) < HOUR / 4, claimed.lease - time.time()
    finally:
        await store.close()
