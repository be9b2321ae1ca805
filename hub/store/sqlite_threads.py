"""The SQLite store's two threads: one writer doing group commit, one reader.

Every write goes through the writer thread and its own connection. It takes whatever
jobs are waiting (up to :data:`~hub.store.sqlite_conn.MAX_BATCH`), runs them in ONE
``BEGIN IMMEDIATE`` transaction, commits once, and only then resolves the callers' futures
(one ``call_soon_threadsafe`` per batch). Enqueues run together as a few multi-row inserts
(:mod:`hub.store.bulk`); other jobs, and every job again after a bulk insert fails on
one job's data, run each inside a savepoint so one job's failure does not undo the
others. Many concurrent requests therefore share one fsync, and a result is never
reported before it is durable.

Both threads check before each use that the database path still names the file they
opened (same device and inode); if it moved or vanished they re-open, and an
unopenable path raises :class:`StoreUnavailable`: the store heals itself once the path
is fixed (:class:`~hub.store.sqlite_conn.Reopening`). Only the store's first open
(:meth:`Writer.connect`) may create the file: a re-open never does
(:data:`~hub.store.sqlite_conn.WRITE_MODES`), so a file deleted, moved away or hidden while
the hub runs stops the writes (503) instead of being replaced by a new, empty store; nor
does that first open make one beside the ``-wal`` of a store whose file is gone
(:func:`~hub.store.sqlite_conn.orphan_wal`): SQLite would delete it, and the writes it
holds with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.store.base import StoreError, StoreStats, StoreUnavailable
from hub.store.sqlite_conn import (
    MAX_BATCH,
    Identity,
    Job,
    Reopening,
    T,
    WriteFailures,
    begin_immediate,
    bulk_or_each,
    is_job_error,
    job_failure,
    savepointed,
    unavailable,
)

#: Runs the bulk payloads of one batch in one go: one result per payload, in order.
BulkRunner = Callable[[sqlite3.Connection, list[Any]], list[Any]]


class _Item:
    __slots__ = ("bulk", "fn", "future", "loop")

    def __init__(self, fn: Job[Any], bulk: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.bulk = bulk
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


def _settle(done: list[tuple[_Item, bool, Any]]) -> None:
    """Resolve callers' futures (on their loop's thread) unless they gave up waiting."""
    for item, ok, value in done:
        if item.future.done():
            continue
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)


_STOP = object()


class Writer:
    """The one thread that writes: runs queued jobs in group-committed transactions.

    Jobs that carry a ``bulk`` payload are first run together by the ``bulk`` runner
    (a few multi-row statements per table for the whole batch); if it fails on a job's data the
    transaction starts over with each job's own function, one savepoint each. Results
    are handed back with ONE ``call_soon_threadsafe`` per batch and event loop. Jobs
    submitted during one event loop iteration are handed to the thread together at its end
    (one wake-up, and they land in the same batch).
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        stats: StoreStats,
        bulk: BulkRunner | None = None,
    ) -> None:
        self._conn = Reopening(path, synchronous=synchronous, writer=True, stats=stats)
        self._stats = stats
        self._failures = WriteFailures()
        self._bulk = bulk
        #: Lists of items (one list per event loop iteration that submitted), or _STOP.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Items submitted in the current iteration of each event loop, handed over at its end.
        self._gathered: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        self._thread: threading.Thread | None = None
        #: Set by the writer thread before its last drain of the queue.
        self._closing = False
        #: Why a write is refused while the thread does not run (a store opened read-only
        #: sets its own reason).
        self.not_running = "The event store is not open; call `await store.open()` first."

    def files(self) -> tuple[Identity, Identity]:
        """The identities of the file this writer opened last and of its log
        (:meth:`Reopening.files`): what a writer process it starts is to find there."""
        return self._conn.files()

    async def connect(self) -> None:
        """Open the writer's connection (making or migrating the schema when needed) outside
        any transaction, before :meth:`start`: a store whose file is current opens without
        the write lock, so it does not wait for another process's write transaction. Once
        the thread runs, the connection is its own: nothing to do (an open store opened
        again). The one open that creates a missing file (a fresh install); the thread's
        re-opens, and the writer process's, never do (:data:`WRITE_MODES`)."""
        if self._thread is not None and self._thread.is_alive():
            return
        await asyncio.to_thread(functools.partial(self._conn.get, create=True))

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="leadhub-store-writer", daemon=True)
        self._thread.start()

    async def submit(self, fn: Job[T], bulk: Any = None) -> T:
        """Run ``fn(conn)`` inside a write transaction; return its result once committed.

        With ``bulk``, the writer's bulk runner may do the work instead (same result).
        """
        if self._thread is None or not self._thread.is_alive():
            raise StoreError(self.not_running)
        loop = asyncio.get_running_loop()
        item = _Item(fn, bulk, loop)
        # Handed to the writer at the end of this loop iteration, together with whatever
        # else the iteration submitted: one wake-up of the writer for many requests.
        gathered = self._gathered.get(loop)
        if gathered is None:
            self._gathered[loop] = [item]
            loop.call_soon(self._hand_over, loop)
        else:
            gathered.append(item)
        result: T = await item.future
        return result

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._gathered.pop(loop, None)
        if not items:
            return
        self._queue.put(items)
        if self._closing:
            self._drain_closed()  # the writer is past its last look at the queue

    async def stop(self) -> None:
        if self._thread is None:
            return
        for loop in list(self._gathered):
            self._hand_over(loop)
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Item] = list(first)
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.extend(nxt)
            self._hand_back(self._run_batch([i for i in batch if not i.future.done()]))
        self._conn.drop()
        self._closing = True
        self._drain_closed()

    def _drain_closed(self) -> None:
        """Fail what was queued after the stop request (it would otherwise wait forever)."""
        closed = StoreError("The event store was closed before this write ran.")
        left: list[tuple[_Item, bool, Any]] = []
        while True:
            try:
                items = self._queue.get_nowait()
            except queue.Empty:
                break
            if items is not _STOP:
                left.extend((item, False, closed) for item in items)
        self._hand_back(left)

    @staticmethod
    def _hand_back(done: list[tuple[_Item, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Item, bool, Any]]] = {}
        for entry in done:
            by_loop.setdefault(entry[0].loop, []).append(entry)
        for loop, entries in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, entries)

    def _run_batch(self, batch: list[_Item]) -> list[tuple[_Item, bool, Any]]:
        if not batch:
            return []
        try:
            conn = self._conn.get()
            changes = conn.total_changes
            begin_immediate(conn)
            outcomes = self._run_jobs(conn, batch)
            conn.execute("COMMIT")
        except StoreUnavailable as exc:
            self._failures.failed("store_unavailable", exc, len(batch))
            return [(item, False, exc) for item in batch]
        except Exception as exc:
            # The database itself failed (I/O, locked past the timeout, disk full...):
            # nothing in this batch was committed; start over on a fresh connection.
            self._failures.failed("store_write_failed", exc, len(batch))
            if self._conn.conn is not None and self._conn.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.conn.execute("ROLLBACK")
            self._conn.drop()
            err = unavailable(self._conn.path, exc)
            return [(item, False, err) for item in batch]
        if conn.total_changes != changes:
            self._failures.committed()
        self._stats.commits += 1
        self._stats.jobs += len(batch)
        return [(item, ok, value) for item, (ok, value) in zip(batch, outcomes, strict=True)]

    def _run_jobs(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[tuple[bool, Any]]:
        """Every job's outcome inside the open transaction; raises only for the database."""
        outcomes: list[tuple[bool, Any] | None] = [None] * len(batch)
        bulk = [i for i, item in enumerate(batch) if item.bulk is not None]
        if bulk and self._bulk is not None:
            runner = self._bulk
            done = bulk_or_each(
                conn,
                [batch[i] for i in bulk],
                lambda c, items: runner(c, [item.bulk for item in items]),
                lambda c, item: item.fn(c),
            )
            for i, outcome in zip(bulk, done, strict=True):
                outcomes[i] = outcome
        for i, item in enumerate(batch):
            if outcomes[i] is None:
                outcomes[i] = savepointed(conn, item.fn)
        return [o for o in outcomes if o is not None]


class Reader:
    """Reads on their own connection and thread, so they never wait behind a commit."""

    def __init__(self, path: Path, *, stats: StoreStats, mode: str = "rw") -> None:
        self._conn = Reopening(path, synchronous="", writer=False, stats=stats, mode=mode)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self, files: tuple[Identity, Identity] = (None, None)) -> None:
        """Start its thread; ``files``: the file the store's writer opened and its log
        (:meth:`Writer.files`), which the first read is to find there as well."""
        if self._pool is not None:
            return
        if self._conn.opened is None:
            self._conn.opened, self._conn.wal = files
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "leadhub-store-reader")

    async def submit(self, fn: Job[T]) -> T:
        """Run ``fn(conn)`` on the reader connection (autocommit: sees every commit)."""
        if self._pool is None:
            msg = "The event store is not open; call `await store.open()` first."
            raise StoreError(msg)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Job[T]) -> T:
        conn = self._conn.get()
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            if is_job_error(exc):
                raise job_failure(exc) from exc
            self._conn.drop()
            raise unavailable(self._conn.path, exc) from exc

    async def stop(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        await asyncio.get_running_loop().run_in_executor(pool, self._conn.drop)
        pool.shutdown(wait=True)
