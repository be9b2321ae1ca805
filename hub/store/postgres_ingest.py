"""The PostgreSQL store's enqueues: a 200 is sent after its delivery's commit.

Most deliveries carry one lead. Those of concurrent requests are gathered and written
together: whatever one turn of the event loop read goes in ONE statement (``enqueue_many`` in
``hub/store/sql/postgres.sql``) and one commit, up to :data:`MAX_BATCH` deliveries, with at
most :data:`MAX_FLUSHES` such statements in flight, each on its own pooled connection. The
statement inserts the events first (``ON CONFLICT DO NOTHING`` on the delivery id) and a
delivery row for each one inserted; a delivery id stored before, earlier in the batch, or by
another instance meanwhile is looked up and answered ``duplicate``. A delivery of several
leads (a Facebook batch) takes the general path: one transaction, event by event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.store import bulk
from hub.store.base import Settle, StoreStats, StoreUnavailable, settle_later, tell_when_done
from hub.store.models import EnqueueResult
from hub.store.sql import queries

if TYPE_CHECKING:
    import asyncpg

    Conn = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
#: ``PostgresStore._conn``: a pooled connection (in a transaction unless told otherwise).
Connect = Callable[..., contextlib.AbstractAsyncContextManager["Conn"]]
_Answer = asyncio.Future[list[EnqueueResult]]

Q = queries("postgres")

#: Most one-lead deliveries written in one statement, and most such statements in flight.
MAX_BATCH = 256
MAX_FLUSHES = 4


class Writes:
    """The gathered writes of one store (see the module)."""

    def __init__(self, connect: Connect, stats: StoreStats) -> None:
        self._connect = connect
        #: Statements of gathered one-lead deliveries (``commits``) and the deliveries in them.
        self.stats = stats
        self._gathered: list[tuple[bulk.Pending, _Answer]] = []
        self._flush_due = False
        self._flushes = 0
        self._flushing: set[asyncio.Task[None]] = set()

    async def enqueue(self, pending: bulk.Pending) -> list[EnqueueResult]:
        """Store ``pending``; its results once committed."""
        if len(pending.events) != 1:
            return await self._enqueue_each(pending)
        return await self._gather(pending)

    def submit(self, pending: bulk.Pending, tell: Settle) -> None:
        """:meth:`enqueue`, its outcome told to ``tell`` instead of returned (one task fewer
        for a one-lead delivery: it waits in the gathered statement as a future)."""
        if len(pending.events) != 1:
            settle_later(self._enqueue_each(pending), tell)
            return
        tell_when_done(self._gather(pending), tell)

    def _gather(self, pending: bulk.Pending) -> _Answer:
        """A future of ``pending``'s results, written with the next gathered statement."""
        loop = asyncio.get_running_loop()
        done: _Answer = loop.create_future()
        self._gathered.append((pending, done))
        self._schedule_flush(loop)
        return done

    async def finish(self) -> None:
        """Write what is still gathered and wait for every write in flight."""
        while self._gathered or self._flushing:
            if self._gathered and self._flushes < MAX_FLUSHES:
                self._start_flush()
            else:
                await asyncio.wait(set(self._flushing), return_when=asyncio.FIRST_COMPLETED)

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write what is gathered at the end of this loop iteration (every request read in
        it joins), unless a write is already due or :data:`MAX_FLUSHES` are in flight."""
        if not self._flush_due and self._flushes < MAX_FLUSHES:
            self._flush_due = True
            loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_due = False
        if not self._gathered or self._flushes >= MAX_FLUSHES:
            return
        batch, self._gathered = self._gathered[:MAX_BATCH], self._gathered[MAX_BATCH:]
        self._flushes += 1
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[bulk.Pending, _Answer]]) -> None:
        """One statement for ``batch``; each caller gets its answer (or the store's error)."""
        try:
            try:
                async with self._connect(transaction=False) as conn:
                    answers = await conn.fetch(Q["enqueue_many"], *_columns(batch))
                self.stats.commits += 1
                self.stats.jobs += len(batch)
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
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

    async def _enqueue_each(self, pending: bulk.Pending) -> list[EnqueueResult]:
        """The general path: event by event in one transaction (see :func:`_enqueue`)."""
        async with self._connect() as conn:
            return await _enqueue(conn, pending)


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
    """Store ``pending`` event by event (inside the caller's transaction), each event already
    stored, or repeated in the delivery, reported as a duplicate; the delivery row is kept
    only if one of its events is new."""
    results: list[EnqueueResult] = []
    seen: dict[str, int] = {}
    row: int | None = None
    for delivery_id, document in pending.events:
        known = seen.get(delivery_id)
        if known is None:
            known = await conn.fetchval(Q["find_event"], pending.endpoint, delivery_id)
        if known is not None:
            seen[delivery_id] = known
            results.append(EnqueueResult(known, True, delivery_id))
            continue
        if row is None:
            row = await conn.fetchval(Q["insert_delivery"], *_delivery_values(pending))
        doc = None if document is None else document.decode()
        new = await conn.fetchval(
            Q["insert_event"], row, pending.endpoint, delivery_id, doc, pending.now
        )
        if new is None:  # stored meanwhile by another transaction: a duplicate
            new = await conn.fetchval(Q["find_event"], pending.endpoint, delivery_id)
            results.append(EnqueueResult(new, True, delivery_id))
        else:
            results.append(EnqueueResult(new, False, delivery_id))
        seen[delivery_id] = new
    if row is not None and all(r.duplicate for r in results):
        await conn.execute(Q["delete_delivery"], row)
    return results
