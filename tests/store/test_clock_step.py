"""A step back of the store's clock, undone by the next claim (the clock mark): lease ends
move back with the due times, and their holders' tokens still hold. A step forward, seen by
an instance that claimed before it (its monotonic clock), moves the lease ends forward.

Each backend and writer (``store_url``), on a ManualClock whose wall reading the test sets
back; on PostgreSQL also the race of an outcome with the claim undoing a step, and an
instance whose measure of the server's clock is off by the step."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock, ServerTime
from hub.store import EventStore, LeaseLost
from hub.store.base import CLOCK_STEP_BACK
from hub.store.models import Ack, SlotAnswer, State
from hub.store.postgres import PostgresStore
from hub.store.sqlite import SQLiteStore
from tests.store.conftest import opened, sqlite_url
from tests.store.helpers import delivery, waiting_for_locks

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


async def test_a_step_back_leaves_an_accounts_rate_window_as_it_was(
    store_url: str, clock: ManualClock
) -> None:
    """Five calls to an account (5 calls per 1 s window), four ended and one in flight, when
    the clock goes back a minute; the next claim undoes the step for the rate slots too. The
    window has room a window (and CLOCK_STEP_BACK) after the four ended, not a minute and a
    window later (before, no call went out for the step's length); the call in flight still
    counts until its hold."""
    window = 1.0
    async with opened(store_url, clock) as store:

        async def take(want: int = 1) -> SlotAnswer:
            return await store.take_slots("acct", calls=5, window=window, hold=12.0, want=want)

        assert await store.claim(limit=1, lease=LEASE) == []  # (the clock's mark)
        taken = await take(5)
        assert len(taken.slots) == 5
        clock.advance(0.5)
        for slot in taken.slots[:4]:
            await store.end_slots("acct", [(slot, store.clock.time())])
        clock.step(-60)
        with capture_logs() as logs:
            assert await store.claim(limit=1, lease=LEASE) == []
        [stepped] = [e for e in logs if e["event"] == "clock_stepped_back"]
        assert stepped["slots"] == 5
        # (a step is undone to within CLOCK_STEP_BACK: the mark is the last claim's time)
        full = await take()
        assert full.slots == () and full.wait <= window + CLOCK_STEP_BACK
        clock.advance(window + CLOCK_STEP_BACK)
        again = await take(5)
        assert len(again.slots) == 4


# -- a step forward ---------------------------------------------------------------------


def second_url(store_url: str) -> str:
    """The URL of another store object on ``store_url``'s database (one writer process per
    file is enough: its claims go through its writer thread either way)."""
    return store_url.removesuffix("?writer=process")


def steps_forward(logs: Sequence[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    """(seconds, leases) of each ``clock_stepped_forward`` in ``logs``."""
    return [(e["seconds"], e["leases"]) for e in logs if e["event"] == "clock_stepped_forward"]


async def test_a_step_forward_keeps_a_live_holders_lease(
    store_url: str, clock: ManualClock
) -> None:
    """Two instances (store objects on one database) claiming; one holds an event, its call
    in flight, when the clock is stepped forward two leases (the monotonic clock runs on).
    The other's next claim does not take it (before: it did, and sent the lead again), the
    holder's outcome is written under the lease its claim gave it, and the lease's end moved
    by the step only: once the time it had left has passed, the event is claimed again."""
    async with opened(store_url, clock) as holder, opened(second_url(store_url), clock) as other:
        assert await other.claim(limit=1, lease=LEASE) == []
        first, second = await enqueued(holder, "lives", "dies")
        (live,) = await holder.claim(limit=1, lease=LEASE)
        (dead,) = await holder.claim(limit=1, lease=LEASE)
        assert (live.id, dead.id) == (first, second)
        clock.advance(1)
        clock.step(2 * LEASE)
        with capture_logs() as logs:
            assert await other.claim(limit=10, lease=LEASE) == []
        assert steps_forward(logs) == [(2 * LEASE, 2)]
        await holder.ack(live.id, lead_id="L1", created=True, lease=live.lease)
        clock.advance(LEASE - 2)
        assert await other.claim(limit=10, lease=LEASE) == []
        clock.advance(2)
        (again,) = await other.claim(limit=10, lease=LEASE)
        assert again.id == dead.id
        event = await other.get(live.id)
        assert event is not None and (event.state, event.lead_id) == (State.DELIVERED, "L1")


async def test_a_step_forward_is_applied_once_by_two_instances(
    store_url: str, clock: ManualClock
) -> None:
    """Two instances that both claimed before a step forward of an hour both see it; the
    first claim after it moves the lease ends, the other's does not move them again: the
    dead worker's event is claimed again when its lease was meant to end, not an hour later
    (nor, without the fix, at once)."""
    async with opened(store_url, clock) as one, opened(second_url(store_url), clock) as two:
        (eid,) = await enqueued(one, "dies")
        (held,) = await one.claim(limit=1, lease=LEASE)
        assert await two.claim(limit=1, lease=LEASE) == []
        clock.step(HOUR)
        with capture_logs() as logs:
            assert await one.claim(limit=10, lease=LEASE) == []
            assert await two.claim(limit=10, lease=LEASE) == []
            clock.advance(LEASE - 1)
            assert await two.claim(limit=10, lease=LEASE) == []
            assert await one.claim(limit=10, lease=LEASE) == []
        assert steps_forward(logs) == [(HOUR, 1)]
        clock.advance(2)
        (again,) = await two.claim(limit=10, lease=LEASE)
        assert again.id == held.id == eid


async def test_a_step_forward_is_applied_once_though_nobody_claimed_for_a_while_after(
    store_url: str, clock: ManualClock
) -> None:
    """Two instances that both claimed before a step forward of 10 minutes; the first claim
    after it applies it; then nobody claims for 10 minutes (lanes full of slow calls, a
    stop). The other instance's next claim does not apply the step again (before, its mark
    check let it: the mark was older than the step, and the dead worker's lease ended 10
    minutes after it was meant to): the dead worker's event is claimed at once."""
    step = 600.0
    async with opened(store_url, clock) as one, opened(second_url(store_url), clock) as two:
        (eid,) = await enqueued(one, "dies")
        (held,) = await one.claim(limit=1, lease=LEASE)
        assert await two.claim(limit=1, lease=LEASE) == []
        clock.step(step)
        with capture_logs() as logs:
            assert await one.claim(limit=10, lease=LEASE) == []
            clock.advance(step)
            claimed = await two.claim(limit=10, lease=LEASE)
        assert steps_forward(logs) == [(step, 1)]
        assert [e.id for e in claimed] == [held.id] == [eid]


async def test_a_gap_in_which_nobody_claimed_is_no_step(store_url: str, clock: ManualClock) -> None:
    """Real time in which nobody claimed (every instance stopped, or frozen, for an hour)
    lengthens no lease: an instance that claimed before it, whose monotonic clock ran on as
    the time did, and an instance started after a step of the clock, which cannot tell the
    step from such a gap, both claim the dead workers' events at once."""
    async with opened(store_url, clock) as store:
        first, second = await enqueued(store, "a", "b")
        await store.claim(limit=2, lease=LEASE)
        clock.advance(HOUR)
        with capture_logs() as logs:
            (again,) = await store.claim(limit=1, lease=LEASE)
        assert again.id == first and steps_forward(logs) == []
        clock.step(HOUR)
    async with opened(store_url, clock) as started:
        with capture_logs() as logs:
            claimed = await started.claim(limit=10, lease=LEASE)
        assert [e.id for e in claimed] == [first, second] and steps_forward(logs) == []


async def test_sqlite_a_claim_counts_its_lease_from_the_time_in_the_writers_turn(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A claim that waits for the writer while the clock steps forward two leases (the
    writer held by a job the test lets go after the step) counts its new lease from the
    time in its turn, in which it applies the step to the older leases: neither lease has
    ended a lease less a second later (before, the new one counted from the time before the
    step and had ended at once)."""
    async with opened(sqlite_url(tmp_path), clock) as store:
        assert isinstance(store, SQLiteStore)
        await enqueued(store, "older", "newer")
        (older,) = await store.claim(limit=1, lease=LEASE)
        gate = threading.Event()
        held = asyncio.create_task(store._writer.submit(lambda conn: gate.wait(30.0)))
        claim = asyncio.create_task(store.claim(limit=1, lease=LEASE))
        await asyncio.sleep(0)  # (both handed to the writer, which waits at the gate)
        with capture_logs() as logs:
            clock.step(2 * LEASE)
            gate.set()
            assert await held
            (newer,) = await claim
        assert steps_forward(logs) == [(2 * LEASE, 1)]
        clock.advance(LEASE - 1)
        assert await store.claim(limit=10, lease=LEASE) == []
        clock.advance(2)
        again = await store.claim(limit=10, lease=LEASE)
        assert sorted(e.id for e in again) == [older.id, newer.id]


# -- PostgreSQL only ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pg_store(dsn: str, schema: str, clock: ManualClock) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(dsn, schema=schema, clock=clock)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


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
            await waiting_for_locks(dsn, schema, 1)  # moved the lease, waits to write the mark
            ack = asyncio.create_task(store.ack(eid, lead_id="L", created=True, lease=held.lease))
            await waiting_for_locks(dsn, schema, 2)  # the ack waits for the event's row
            await tx.rollback()
            assert await claim == []
            await ack
        finally:
            await blocker.close()
        event = await store.get(eid)
        assert event is not None and (event.state, event.lead_id) == (State.DELIVERED, "L")


async def test_postgres_a_batch_of_acks_deadlocked_with_the_undo_of_a_step_is_written(
    postgres_schema: tuple[str, str],
) -> None:
    """A batch of acks (ack_many) that holds one leased row and waits for another, which a
    claim undoing a step back holds while it waits for the first: the server breaks the
    deadlock by aborting the batch, which is tried again and written (before: a store
    failure, and the lane gave the delivered events back to the queue to be sent again).
    The planner is told to use indexes, as it does on a large table (rows met in the batch's
    order); a lock the test takes on the middle leased row orders the waits."""
    dsn, schema = postgres_schema
    clock = ManualClock()
    indexed = dsn + ("&" if "?" in dsn else "?")
    indexed += "enable_hashjoin=off&enable_mergejoin=off&enable_seqscan=off"
    # The server checks a wait for a deadlock once, deadlock_timeout after it began, and
    # aborts the session whose check finds the cycle. The batch's wait begins first, so it
    # is the one aborted, but only if the cycle is there by then: the blocker's rollback, which
    # closes it, comes after the test has seen both waits. At the default 1 s, a loaded machine
    # (a CI run at a load average of 8 to 16) took longer: the batch's check found no cycle,
    # and the claim's found it and was aborted instead. 5 s leaves room for the test's steps.
    indexed += "&deadlock_timeout=5s"
    async with pg_store(indexed, schema, clock) as store:
        first, middle, last = await enqueued(store, "a", "b", "c")
        held = {}
        for _ in range(3):
            (event,) = await store.claim(limit=1, lease=LEASE)
            held[event.id] = event
            clock.advance(0.5)
        blocker = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT 1 FROM events WHERE id = $1 FOR UPDATE", middle)
            clock.set(clock.time() - HOUR)
            claim = asyncio.create_task(store.claim(limit=1, lease=LEASE))
            await waiting_for_locks(dsn, schema, 1)  # holds the first row, waits for the middle one
            acks = [Ack(i, f"L{i}", True, held[i].lease) for i in (last, first)]
            with capture_logs() as logs:
                batch = asyncio.create_task(store.ack_many(acks))
                await waiting_for_locks(dsn, schema, 2)  # holds the last row, waits for the first
                await tx.rollback()
                results = await asyncio.gather(claim, batch, return_exceptions=True)
        finally:
            await blocker.close()
        assert results[1] == [], results
        # The batch is aborted first. Its second try may meet the claim again: the batch's
        # abort wakes the claim, but until the claim runs again the last row is free, and the
        # second try can lock it first and be aborted (or the claim be) once more. Each such
        # round is retried as the first; none writes anything twice.
        retried = [e["what"] for e in logs if e["event"] == "store_deadlock_retried"]
        assert retried[:1] == ["ack_many"] and set(retried) <= {"ack_many", "claim"}, retried
        assert not isinstance(results[0], BaseException), results
        for eid in (first, last):
            found = await store.get(eid)
            delivered = (State.DELIVERED, f"L{eid}")
            assert found is not None and (found.state, found.lead_id) == delivered


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


async def test_a_token_seen_in_ci_holds(tmp_path: Path, clock: ManualClock) -> None:
    """The state a CI run left (tests/dispatch/test_clock_step.py, 1 run in about 25 under
    load): a claim handed out the lease end 1796037884.716743 (SQLite's printf('%.17g')
    renders such an end up to 4 units in the last place off), a step forward of
    120.00000012 s (as a clock measures one) moved the stored end to 1796038004.7167442 and
    the shift to -120.00000012037344: the end less the token plus the shift is 1.07e-6, and
    an outcome compared within 1e-6 s was refused as a lost lease, the lead sent again a
    lease later. Compared within 1e-3 s (two claims' tokens are a lease apart), it is
    written."""
    import sqlite3

    url = sqlite_url(tmp_path)
    async with opened(url, clock) as store:
        (eid,) = await enqueued(store, "held")
    with contextlib.closing(sqlite3.connect(tmp_path / "events.db")) as conn, conn:
        conn.execute(
            "UPDATE events SET state = 'sending', next_attempt_at = 1796038004.7167442 "
            "WHERE id = ?",
            (eid,),
        )
        conn.execute("INSERT INTO meta (key, value) VALUES ('clock_shift', '-120.00000012037344')")
    async with opened(url, clock) as store:
        assert await store.ack_many([Ack(eid, "L1", True, 1796037884.716743)]) == []
        event = await store.get(eid)
        assert event is not None and event.state is State.DELIVERED
