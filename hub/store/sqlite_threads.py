"""The SQLite store's two threads: one writer doing group commit, one reader.

Every write goes through the writer thread and its own connection. It takes whatever
jobs are waiting (up to :data:`MAX_BATCH`), runs them in ONE ``BEGIN IMMEDIATE``
transaction, each inside a savepoint so one job's failure does not undo the others,
commits once, and only then resolves each caller's future. Many concurrent requests
therefore share one fsync, and a result is never reported before it is durable.

Both threads check before each use that the database path still names the file they
opened (same device and inode); if it moved or vanished they re-open, and an
unopenable path raises :class:`StoreUnavailable`: the store heals itself once the path
is fixed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hub import logs
from hub.store.base import StoreError, StoreUnavailable
from hub.store.sql import queries

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

MAX_BATCH = 256  # jobs per transaction
BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another process's lock

Q = queries("sqlite")


def log() -> Any:
    """The store's logger, fetched per use so it follows the current structlog set-up."""
    return logs.get_logger("hub.store")


@dataclass
class StoreStats:
    """Counters of the writer thread (read them from tests and metrics)."""

    #: Write transactions committed.
    commits: int = 0
    #: Jobs run inside those transactions.
    jobs: int = 0
    #: Times a connection was (re-)opened.
    opens: int = 0


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def unavailable(path: Path, exc: BaseException) -> StoreUnavailable:
    msg = (
        f"The event store {str(path)!r} cannot be opened or written ({exc}); "
        "check that its directory exists and is writable."
    )
    return StoreUnavailable(msg)


def connect(path: Path, *, synchronous: str, writer: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with our pragmas."""
    if writer:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    else:
        # mode=rw: a reader never creates an empty database where the real one vanished.
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if writer:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.executescript(Q["schema"])
        else:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _is_job_error(exc: BaseException) -> bool:
    """Whether ``exc`` belongs to one job (bad input, a bug) rather than the database."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return True
    return not isinstance(exc, sqlite3.Error)


class _Conn:
    """A connection to ``path`` that re-opens itself when the file behind the path changes."""

    def __init__(self, path: Path, *, synchronous: str, writer: bool, stats: StoreStats) -> None:
        self.path = path
        self.synchronous = synchronous
        self.writer = writer
        self.stats = stats
        self.conn: sqlite3.Connection | None = None
        self.identity: tuple[int, int] | None = None

    def get(self) -> sqlite3.Connection:
        ident = _identity(self.path)
        if self.conn is not None and ident != self.identity:
            log().warning("store_file_changed", path=str(self.path), writer=self.writer)
            self.drop()
        if self.conn is None:
            try:
                self.conn = connect(self.path, synchronous=self.synchronous, writer=self.writer)
            except (sqlite3.Error, OSError) as exc:
                raise unavailable(self.path, exc) from exc
            self.identity = _identity(self.path)
            self.stats.opens += 1
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
        self.conn = None
        self.identity = None


class _Item:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Job[Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


_STOP = object()


class Writer:
    """The one thread that writes: runs queued jobs in group-committed transactions."""

    def __init__(self, path: Path, *, synchronous: str, stats: StoreStats) -> None:
        self._conn = _Conn(path, synchronous=synchronous, writer=True, stats=stats)
        self._stats = stats
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="leadhub-store-writer", daemon=True)
        self._thread.start()

    async def submit(self, fn: Job[T]) -> T:
        """Run ``fn(conn)`` inside a write transaction; return its result once committed."""
        if self._thread is None or not self._thread.is_alive():
            msg = "The event store is not open; call `await store.open()` first."
            raise StoreError(msg)
        item = _Item(fn)
        self._queue.put(item)
        result: T = await asyncio.wrap_future(item.future)
        return result

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            self._run_batch([i for i in batch if i.future.set_running_or_notify_cancel()])
        self._conn.drop()
        # Anything queued after the stop request would otherwise wait forever.
        closed = StoreError("The event store was closed before this write ran.")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and item.future.set_running_or_notify_cancel():
                item.future.set_exception(closed)

    def _run_batch(self, batch: list[_Item]) -> None:
        if not batch:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn = self._conn.get()
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = item.fn(conn)
                except Exception as exc:
                    if not _is_job_error(exc):
                        raise
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, _wrap(exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, value))
            conn.execute("COMMIT")
        except StoreUnavailable as exc:
            log().error("store_unavailable", error=str(exc))
            for item in batch:
                item.future.set_exception(exc)
            return
        except Exception as exc:
            # The database itself failed (I/O, locked past the timeout, disk full...):
            # nothing in this batch was committed; start over on a fresh connection.
            log().error("store_write_failed", error=str(exc), jobs=len(batch))
            if self._conn.conn is not None and self._conn.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.conn.execute("ROLLBACK")
            self._conn.drop()
            err = unavailable(self._conn.path, exc)
            for item in batch:
                item.future.set_exception(err)
            return
        self._stats.commits += 1
        self._stats.jobs += len(batch)
        for item, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)


def _wrap(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        msg = f"The event store rejected a write: {exc}."
        err = StoreError(msg)
        err.__cause__ = exc
        return err
    return exc


class Reader:
    """Reads on their own connection and thread, so they never wait behind a commit."""

    def __init__(self, path: Path, *, stats: StoreStats) -> None:
        self._conn = _Conn(path, synchronous="", writer=False, stats=stats)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is not None:
            return
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
            if _is_job_error(exc):
                raise _wrap(exc) from exc
            self._conn.drop()
            raise unavailable(self._conn.path, exc) from exc

    async def stop(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        await asyncio.get_running_loop().run_in_executor(pool, self._conn.drop)
        pool.shutdown(wait=True)
