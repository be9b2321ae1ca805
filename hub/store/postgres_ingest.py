"""The PostgreSQL store's enqueues: a 200 is sent after its delivery's commit.

Most deliveries carry one lead. Those of concurrent requests are gathered and written
together: whatever one turn of the event loop read goes in ONE statement (``enqueue_many`` in
``hub/store/sql/postgres.sql``) and one commit, up to :data:`MAX_BATCH` deliveries, with at
most :data:`MAX_FLUSHES` such statements in flight, each on its own pooled connection. The
statement inserts the events first (``ON CONFLICT DO NOTHING`` on the delivery id) and a
delivery row for each one inserted; a delivery id stored before, earlier in the batch, or by
another instance meanwhile is looked up and answered ``duplicate``. A delivery of several
leads (a Facebook batch) is written alone, in one statement of the same kind
(``enqueue_batch``): event by event, it took two round trips a lead, 2 s for 1,000 leads
at a 1 ms round trip and 20 s with a database 10 ms away, near the watchdog's
:data:`~hub.store.base.STALL_AFTER` and past most senders' timeouts.

Every write inserts its events in the order of their (endpoint, delivery id), their ids
drawn beforehand in the order of the deliveries, and of the leads in a delivery (which the
dispatcher keeps). An insert waits at a delivery id another write holds uncommitted; two
writes taking shared ids in other orders (two batches holding the same leads, sorted
otherwise; such a batch and the one-lead deliveries of its leads gathered on another
instance) each held one the other waited for: the server broke the deadlock, after
``deadlock_timeout``, by aborting one, and its deliveries (up to :data:`MAX_BATCH` of a
gathered statement) were answered 503 with an error line though the store was up; a sender
that does not retry lost its leads. In one order, the later write waits for the earlier's
commit and answers the ids it stored as duplicates.

A delivery that has waited :data:`hub.store.base.STALL_AFTER` for its commit (a server that
hangs rather than refusing) is answered with :class:`StoreUnavailable` (503) by one watchdog
timer, without cancelling the statement: asyncpg's cancellation waits on the same hung
server. Its write may still commit when the server comes back; the sender's retry is then a
duplicate of it. Before it answers, the watchdog asks the store what its commits wait for
(``commit_wait``: a synchronous standby that does not confirm them, or a lock another
session holds), for at most a few
seconds, and says it in the answers and in ``store_stalled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from hub.clock import SYSTEM_CLOCK, Clock
from hub.store import bulk
from hub.store.base import (
    STALL_AFTER,
    CommitWait,
    Settle,
    StoreError,
    StoreStats,
    StoreUnavailable,
    log,
    tell_when_done,
)
from hub.store.models import EnqueueResult
from hub.store.sql import queries

if TYPE_CHECKING:
    Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
#: ``PostgresStore._conn``: a pooled connection (in a transaction unless told otherwise).
Connect = Callable[..., contextlib.AbstractAsyncContextManager["Conn"]]
_Answer = asyncio.Future[list[EnqueueResult]]

Q = queries("postgres")

#: Most one-lead deliveries written in one statement, and most such statements in flight.
MAX_BATCH = 256
MAX_FLUSHES = 4
#: Seconds between two ``store_stalled`` lines at the least.
STALLED_EVERY = 1.0
#: Tries of a transaction the server aborted to break a deadlock, or for a serialization
#: failure (it wrote nothing: see :func:`aborted`).
DEADLOCK_TRIES = 3
#: Seconds before such a transaction runs again, at most, per try made (see
#: :func:`before_rerun`).
RERUN_PAUSE = 0.05


def aborted(exc: BaseException) -> bool:
    """Whether ``exc`` (a store error, or the driver's) is a transaction the server rolled
    back to break a deadlock (SQLSTATE 40P01) or for a serialization failure (40001): nothing
    of it was written, and it may simply run again. Such a write (an older release inserting a
    batch lead by lead in another order, during a rolling deploy, against this one's sorted
    inserts) was answered 503 with an error line, every delivery of its gathered statement
    with it, and a claim so aborted was a ``claim_failed`` line and a second's wait."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    return isinstance(cause, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError))


async def before_rerun(what: str, count: int, exc: BaseException, tries_left: int) -> None:
    """Log a transaction :func:`aborted` (``store_deadlock_retried``), then wait a moment
    before it runs again: up to :data:`RERUN_PAUSE` s times the tries made, at random. The
    other side, woken by the abort, then takes what it waited for first; run again at once,
    the store's transaction could lock it first again and meet the other side once more (a
    second abort; a third was a store error)."""
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    log().info("store_deadlock_retried", what=what, events=count, sqlstate=sqlstate)
    tried = DEADLOCK_TRIES - tries_left
    await asyncio.sleep(random.uniform(0.5, 1.0) * RERUN_PAUSE * tried)


class Writes:
    """The gathered writes of one store (see the module)."""

    def __init__(
        self,
        connect: Connect,
        stats: StoreStats,
        *,
        stall_after: float = STALL_AFTER,
        clock: Clock = SYSTEM_CLOCK,
        commit_wait: Callable[[], Awaitable[CommitWait | None]] | None = None,
    ) -> None:
        """``clock``: what :data:`STALLED_EVERY` is counted by (the store's; a test's clock
        times the lines without depending on when a loaded machine runs the watchdog);
        ``commit_wait``: what the store's commits wait for, when known (the store's
        ``commit_wait``, bounded in time), said in the watchdog's answers and lines."""
        self._connect = connect
        self._clock = clock
        self._commit_wait = commit_wait
        #: The watchdog's answers waiting for ``commit_wait`` (a task each pass).
        self._telling: set[asyncio.Task[None]] = set()
        #: What ``commit_wait`` said for the answers told in the next ``store_stalled`` line.
        self._stalled_wait: CommitWait | None = None
        #: Statements of gathered one-lead deliveries (``commits``) and the deliveries in them.
        self.stats = stats
        self.stall_after = stall_after
        self._gathered: list[tuple[bulk.Pending, _Answer]] = []
        self._flush_due = False
        self._flushes = 0
        #: The writes under way: gathered statements, and deliveries of several leads.
        self._flushing: set[asyncio.Task[Any]] = set()
        #: Every answer still owed, oldest first, with when it was asked (``time.monotonic``).
        self._owed: deque[tuple[float, _Answer]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        #: ``store_stalled`` at most once a :data:`STALLED_EVERY`: the watchdog's passes a few
        #: ms apart (the answers of one hang, asked a loop turn apart) are one line. What the
        #: passes answered since the last line (``failing``), when its line is not due yet, and
        #: the timer that logs it once it is.
        self._stalled_told: float | None = None
        self._stalled_untold = 0
        self._stalled_timer: asyncio.TimerHandle | None = None

    async def enqueue(self, pending: bulk.Pending) -> list[EnqueueResult]:
        """Store ``pending``; its results once committed."""
        return await self._answer(pending)

    def submit(self, pending: bulk.Pending, tell: Settle) -> None:
        """:meth:`enqueue`, its outcome told to ``tell`` instead of returned (no task of its
        own for a one-lead delivery: it waits in the gathered statement as a future)."""
        tell_when_done(self._answer(pending), tell)

    def _answer(self, pending: bulk.Pending) -> _Answer:
        """A future of ``pending``'s results, owed until committed (or stalled)."""
        loop = asyncio.get_running_loop()
        done: _Answer = loop.create_future()
        owed = self._owed
        while owed and owed[0][1].done():  # answered (mostly in order): forgotten as we go
            owed.popleft()
        owed.append((time.monotonic(), done))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.stall_after, self._watch)
        if len(pending.events) == 1:
            self._gathered.append((pending, done))  # written with the next gathered statement
            self._schedule_flush(loop)
        else:
            self._start(self._enqueue_each(pending, done))
        return done

    def _watch(self) -> None:
        """The watchdog (one timer, not one per delivery): what has waited ``stall_after``
        for its commit is answered :class:`StoreUnavailable`; it looks again at the next."""
        self._watchdog = None
        now = time.monotonic()
        owed = self._owed
        failing: list[_Answer] = []
        while owed and (owed[0][1].done() or now - owed[0][0] >= self.stall_after):
            _, done = owed.popleft()
            if not done.done():
                failing.append(done)
        if failing and self._commit_wait is None:
            self._fail_stalled(failing, None)
        elif failing:
            task = asyncio.get_running_loop().create_task(self._fail_told(failing))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)
        if owed:
            wait = max(owed[0][0] + self.stall_after - now, 0.01)
            self._watchdog = asyncio.get_running_loop().call_later(wait, self._watch)

    async def _fail_told(self, failing: list[_Answer]) -> None:
        """:meth:`_fail_stalled`, saying what the commits wait for when the store tells it."""
        assert self._commit_wait is not None
        found: CommitWait | None = None
        try:
            found = await self._commit_wait()
        finally:  # (cancelled: answered all the same)
            self._fail_stalled(failing, found)

    def _fail_stalled(self, failing: list[_Answer], found: CommitWait | None) -> None:
        """Answer ``failing`` (waited ``stall_after`` for their commit) unavailable, saying
        ``found`` (what the commits wait for) when known, and tell them in ``store_stalled``."""
        wait = found.text if found is not None else None
        self._stalled_wait = found
        self._stalled_untold += len(failing)
        if self._stalled_timer is None:
            self._tell_stalled()
        why = (
            f": {wait} Nothing unanswered was acknowledged."
            if wait
            else " (a stopped server, a lock never released, a network that drops packets?); "
            "nothing unanswered was acknowledged."
        )
        for done in failing:
            if not done.done():
                done.set_exception(
                    StoreUnavailable(f"PostgreSQL has not answered for {self.stall_after:g} s{why}")
                )

    def _tell_stalled(self) -> None:
        """Log ``store_stalled`` for the answers the watchdog gave since the last line (each
        told within :data:`STALLED_EVERY` of its answer), or, when a line was logged less than
        that ago, once that much has passed."""
        self._stalled_timer = None
        if not self._stalled_untold:
            return
        now = self._clock.monotonic()
        told = self._stalled_told
        if told is not None and 0 <= now - told < STALLED_EVERY:
            loop = asyncio.get_running_loop()
            self._stalled_timer = loop.call_later(told + STALLED_EVERY - now, self._tell_stalled)
            return
        self._stalled_told = now
        failing, self._stalled_untold = self._stalled_untold, 0
        found = self._stalled_wait
        # (waits_for: the cause's kind, standby or lock, for alerts to match on)
        cause = {"cause": found.text, "waits_for": found.cause} if found is not None else {}
        log().error("store_stalled", waited=self.stall_after, failing=failing, **cause)

    async def finish(self) -> None:
        """Write what is still gathered and wait for every write in flight, but not for a
        write that has hung longer than ``stall_after`` (the watchdog answered its callers)."""
        if self._telling:  # (the watchdog's answers, each pass a few seconds at most)
            await asyncio.wait(set(self._telling))
        while True:
            self._gathered = [(p, done) for p, done in self._gathered if not done.done()]
            if not self._gathered and not self._flushing:
                return
            if self._gathered and self._flushes < MAX_FLUSHES:
                self._start_flush()
                continue
            ended, _ = await asyncio.wait(
                set(self._flushing), timeout=self.stall_after, return_when=asyncio.FIRST_COMPLETED
            )
            if not ended:
                log().error("store_writes_abandoned", writes=len(self._flushing))
                return

    def _start(self, write: Any) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write what is gathered at the end of this loop iteration (every request read in
        it joins), unless a write is already due or :data:`MAX_FLUSHES` are in flight."""
        if not self._flush_due and self._flushes < MAX_FLUSHES:
            self._flush_due = True
            loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_due = False
        if self._flushes >= MAX_FLUSHES:
            return
        # (those the watchdog answered are not written: their senders were told 503)
        waiting = [(p, done) for p, done in self._gathered if not done.done()]
        if not waiting:
            self._gathered = []
            return
        batch, self._gathered = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
        self._flushes += 1
        self._start(self._flush(batch))

    async def _flush(self, batch: list[tuple[bulk.Pending, _Answer]]) -> None:
        """One statement for ``batch``; each caller gets its answer (or the store's error).
        One the server aborted (:func:`aborted`) runs again, for the callers still waiting."""
        try:
            for tries_left in reversed(range(DEADLOCK_TRIES)):
                try:
                    async with self._connect(transaction=False) as conn:
                        answers = await conn.fetch(Q["enqueue_many"], *_columns(batch))
                    self.stats.commits += 1
                    self.stats.jobs += len(batch)
                    break
                except Exception as exc:
                    batch = [(p, done) for p, done in batch if not done.done()]
                    if tries_left and batch and aborted(exc):
                        await before_rerun("enqueue_many", len(batch), exc, tries_left)
                        continue
                    for _, done in batch:
                        done.set_exception(exc)
                    return
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    raise
            rest: list[tuple[str, str, _Answer]] = []
            for (pending, done), (new, known) in zip(batch, answers, strict=True):
                ((delivery_id, _),) = pending.events
                if done.done():
                    continue
                if new is not None:
                    done.set_result([EnqueueResult(new, False, delivery_id)])
                elif known is not None:
                    done.set_result([EnqueueResult(known, True, delivery_id)])
                else:  # stored meanwhile: earlier in this batch, or by another transaction
                    rest.append((pending.endpoint, delivery_id, done))
            if rest:
                try:
                    async with self._connect(transaction=False) as conn:
                        for endpoint, delivery_id, done in rest:
                            found = await conn.fetchval(Q["find_event"], endpoint, delivery_id)
                            if not done.done():
                                done.set_result([EnqueueResult(found, True, delivery_id)])
                except Exception as exc:
                    for _, _, done in rest:
                        if not done.done():
                            done.set_exception(exc)
        finally:
            for _, done in batch:  # never leave a caller waiting (the task was cancelled)
                if not done.done():
                    done.set_exception(StoreUnavailable("the write was interrupted; try again"))
            self._flushes -= 1
            if self._gathered:
                self._schedule_flush(asyncio.get_running_loop())

    async def _enqueue_each(self, pending: bulk.Pending, done: _Answer) -> None:
        """A delivery of several leads: one statement in a transaction (see :func:`_enqueue`);
        its results or its error set on ``done``, unless the watchdog answered it first."""
        for tries_left in reversed(range(DEADLOCK_TRIES)):
            try:
                async with self._connect() as conn:
                    results = await _enqueue(conn, pending)
                break
            except BaseException as exc:
                if tries_left and not done.done() and aborted(exc):
                    await before_rerun("enqueue_batch", len(pending.events), exc, tries_left)
                    continue
                if not done.done():
                    done.set_exception(
                        exc
                        if isinstance(exc, Exception)
                        else StoreUnavailable("the write was interrupted; try again")
                    )
                if not isinstance(exc, Exception):
                    raise
                return
        if not done.done():
            done.set_result(results)


def _columns(batch: list[tuple[bulk.Pending, _Answer]]) -> list[list[Any]]:
    """``enqueue_many``'s nine arrays for one-lead deliveries."""
    out: list[list[Any]] = [[] for _ in range(9)]
    for p, _ in batch:
        ((delivery_id, document),) = p.events
        row = (
            *_delivery_values(p),
            delivery_id,
            None if document is None else document.decode(),
            p.now,
        )
        for column, value in zip(out, row, strict=True):
            column.append(value)
    return out


def _delivery_values(p: bulk.Pending) -> tuple[Any, ...]:
    """The ``deliveries`` row of ``p``: endpoint, received_at, content_type, headers, body,
    body_format."""
    return (p.endpoint, p.received_at, p.content_type, p.headers.decode(), p.body, p.body_format)


async def _enqueue(conn: Conn, pending: bulk.Pending) -> list[EnqueueResult]:
    """Store ``pending`` in one statement (``enqueue_batch``, inside the caller's
    transaction), each event already stored, or repeated in the delivery, reported as a
    duplicate; the delivery row is stored only if one of its events is new. The results are
    in the delivery's order."""
    documents = [None if doc is None else doc.decode() for _, doc in pending.events]
    rows = await conn.fetch(
        Q["enqueue_batch"],
        *_delivery_values(pending),
        [delivery_id for delivery_id, _ in pending.events],
        documents,
        pending.now,
    )
    results: list[EnqueueResult] = []
    for (delivery_id, _), (new, known) in zip(pending.events, rows, strict=True):
        if new is not None:
            results.append(EnqueueResult(new, False, delivery_id))
            continue
        if known is None:  # earlier in the delivery, or stored meanwhile by another write
            known = await conn.fetchval(Q["find_event"], pending.endpoint, delivery_id)
        results.append(EnqueueResult(known, True, delivery_id))
    return results
