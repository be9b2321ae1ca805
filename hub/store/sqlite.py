"""The SQLite event store: one file in WAL mode, durable on commit, safe for several processes.

Writes go through one writer thread that commits concurrent requests together
(:mod:`hub.store.sqlite_threads`); with ``writer="process"`` enqueues go to a child process
doing the same for them alone (:mod:`hub.store.sqlite_process`), so the event loop never
shares its GIL with the writing. Claims run in ``BEGIN IMMEDIATE`` transactions, so several
worker processes on one file never take the same event. The SQL lives in
``hub/store/sql/sqlite.sql``.
"""

from __future__ import annotations

import array
import builtins
import functools
import os
import sqlite3
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import orjson

from hub.clock import SYSTEM_CLOCK, Clock
from hub.store import bulk, rows
from hub.store.base import (
    MAX_ID,
    PURGE_WINDOW,
    ROUTING_GRACE,
    SLOT_EPSILON,
    SLOT_HORIZON,
    SPANS_KEPT,
    STALL_AFTER,
    BatchedStore,
    BodyNotSkimmed,
    ClockReading,
    ClockWatch,
    Replayed,
    Settle,
    StoreError,
    StoreStats,
    lease_lost,
    log,
    log_clock_step,
    no_event,
    ordering_checks,
    settle_later,
    spans_by_name,
    state_counts,
    with_clock_shift,
)
from hub.store.models import (
    PAUSE_HELD,
    Ack,
    EnqueueResult,
    Event,
    IncomingDelivery,
    Listed,
    Purged,
    Route,
    SlotAnswer,
    State,
)
from hub.store.rows import row_of, to_pending
from hub.store.sqlite_conn import (
    AUTO_VACUUM_INCREMENTAL,
    Q,
    check_readable,
    give_back_step,
    unavailable,
)
from hub.store.sqlite_process import IngestProcess
from hub.store.sqlite_threads import Reader, Writer
from hub.store.turns import WAITER_GRACE, Waiter, deal, my_place, set_aside

#: ``?writer=`` values: where enqueues are written. ``thread``: the store's writer thread, in
#: this process; ``process``: a child process of their own (``leadhub serve`` with a web role).
WRITERS = ("thread", "process")
#: How a store is read where it cannot be written (``read_only=``; the reading commands'
#: fall-back, see ``hub.store.commands``): ``ro``, SQLite's read-only mode, which reads the
#: WAL (making its index beside the file if missing); ``immutable``, where not even that
#: index can be made: the database file alone, its WAL unread.
READ_ONLY = ("ro", "immutable")
#: Seconds between two steps of a purge or replay (:attr:`SQLiteStore.step_pause`).
STEP_PAUSE = 0.005
#: Free pages a step of :meth:`SQLiteStore.give_back` gives back, in one short write
#: transaction (4 MB of 4 KiB pages; about 12 ms on a laptop's SSD, a purge step's order).
GIVE_BACK_STEP = 1000
#: ``?synchronous=`` values accepted in a store URL. FULL survives power loss; NORMAL
#: (WAL) survives a process crash and may lose the last commits on power loss.
SYNCHRONOUS = ("full", "normal", "extra")


#: The claimable ids as one JSON array (one step to fetch).
_CLAIMABLE_IDS = f"SELECT json_group_array(id) FROM ({Q['claimable'].strip().rstrip(';')})"
#: Event rows, each query fetching them as one value (see ``rows.packed``).
_ROWS_BY_IDS = rows.packed(Q["rows_by_ids"])
_GET = rows.packed(Q["get"])
_LIST = rows.packed(Q["list"])


def _json(value: Any) -> str:
    """``value`` as JSON text, for a parameter that a JSON function reads.

    Bound as TEXT, never as a BLOB: since 3.45 SQLite reads a BLOB given to a JSON function
    as binary JSONB first (3.45.0 failed on text JSON in a BLOB; later releases fall back to
    reading it as text).
    """
    return orjson.dumps(value).decode()


def _ids(values: Sequence[int]) -> str:
    return _json([int(v) for v in values])


class SQLiteStore(BatchedStore):
    """An :class:`hub.store.base.EventStore` on one SQLite file."""

    #: Between two steps of a purge or replay, the write lock is left free this long (or as
    #: long as the step took, when longer), so the writers of other processes (the ingest
    #: writer, another hub) that wait for it get it (they try every ``LOCK_POLL``, see
    #: ``begin_immediate``). Back to back, the steps left it free for a fraction of a
    #: millisecond: webhooks waited up to 0.8 s for their commit during a 100,000-event
    #: replay made of 10 ms steps.
    step_pause = STEP_PAUSE

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = SYSTEM_CLOCK,
        synchronous: str = "full",
        writer: str = "thread",
        stall_after: float | None = None,
        read_only: str | None = None,
    ) -> None:
        if synchronous.lower() not in SYNCHRONOUS:
            msg = (
                f"Unknown SQLite synchronous mode {synchronous!r}; "
                f"use one of {', '.join(SYNCHRONOUS)}."
            )
            raise StoreError(msg)
        if writer not in WRITERS:
            msg = f"Unknown SQLite writer {writer!r}; use one of {', '.join(WRITERS)}."
            raise StoreError(msg)
        if read_only not in (None, *READ_ONLY):
            msg = f"Unknown read-only mode {read_only!r}; use one of {', '.join(READ_ONLY)}."
            raise StoreError(msg)
        #: None, or how a store that cannot be written here is read (see :data:`READ_ONLY`).
        self.read_only = read_only
        self.writer = writer
        self.path = Path(path)
        self.clock = clock
        #: Its claims' readings of the clock, to tell a step forward of it by.
        self._watch = ClockWatch()
        self.synchronous = synchronous.upper()
        self.stats = StoreStats()
        # Absolute, so a later change of working directory cannot move the database.
        where = self.path.absolute()
        self._writer = Writer(
            where, synchronous=self.synchronous, stats=self.stats, bulk=bulk.insert
        )
        self._reader = Reader(where, stats=self.stats, mode=read_only or "rw")
        if read_only is not None:
            self._writer.not_running = (
                f"The event store {str(self.path)!r} was opened read-only: it cannot be "
                "written by this process."
            )
        #: With ``writer="process"``, enqueues run in a child process (see sqlite_process).
        self._ingest: IngestProcess | None = None
        if writer == "process" and read_only is None:
            self._ingest = IngestProcess(
                where,
                synchronous=self.synchronous,
                stats=self.stats,
                stall_after=STALL_AFTER if stall_after is None else stall_after,
                files=self._writer.files,
            )

    def __repr__(self) -> str:
        return (
            f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r}, "
            f"writer={self.writer!r})"
        )

    # -- life cycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self.read_only is not None:
            await self._open_read_only()
            return
        # The first open makes missing directories (a fresh volume); a re-open after a
        # failure never does, so a vanished mount is reported instead of papered over.
        try:
            self.path.absolute().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unavailable(self.path, exc) from exc
        try:
            # Opens and makes (or migrates) the schema; a current file takes no write lock.
            await self._writer.connect()
        except BaseException:
            await self.close()
            raise
        self._writer.start()
        self._reader.start(self._writer.files())
        try:
            if self._ingest is not None:
                await self._ingest.start()
        except BaseException:
            await self.close()
            raise
        try:
            shrinks: bool | None = await self.shrinks()
        except StoreError:
            shrinks = None  # (not to be told: the reads say why, when it matters)
        # (absolute: ``sqlite:///leadhub.db``, the default, is relative to the working
        # directory, which a reader of the log cannot tell)
        log().info(
            "store_opened",
            path=str(self.path.absolute()),
            synchronous=self.synchronous,
            writer=self.writer,
            shrinks=shrinks,
        )
        if shrinks is False:
            # (info: the commands, which log warnings and worse, open old stores too)
            log().info(
                "store_keeps_size",
                path=str(self.path.absolute()),
                note="made by an earlier leadhub: its file does not shrink after a purge "
                "(the space freed is reused for new events); to give it back, stop the hub and "
                "run `leadhub vacuum --db URL` once",
            )

    async def _open_read_only(self) -> None:
        """Only the reader, on a file this process cannot write: nothing made or migrated
        (a schema not this code's is refused), every write refused."""
        self._reader.start()
        try:
            await self._reader.submit(functools.partial(check_readable, path=self.path))
        except BaseException:
            await self.close()
            raise
        log().info("store_opened", path=str(self.path.absolute()), read_only=self.read_only)

    async def close(self) -> None:
        if self._ingest is not None:
            await self._ingest.stop()
        await self._writer.stop()
        await self._reader.stop()

    async def ping(self) -> None:
        if self._ingest is not None:
            await self._ingest.check()
        now = self.clock.time()
        await self._writer.submit(lambda conn: conn.execute(Q["ping"], {"now": str(now)}))
        await self._reader.submit(lambda conn: conn.execute("SELECT 1").fetchone())

    async def commit_wait(self) -> None:
        """Nothing: SQLite's writes wait for no standby, and another process's write lock
        is waited for the busy timeout, then refused saying so."""
        return None

    # -- ingest ---------------------------------------------------------------------------

    async def enqueue(self, delivery: IncomingDelivery) -> builtins.list[EnqueueResult]:
        if not delivery.events and delivery.skim is None:
            return []
        row = row_of(delivery, self.clock.time())
        if self._ingest is not None:
            # The child checks a skimmed body, compresses and writes: its core, not the loop's.
            return await self._ingest.enqueue(row)
        pending = to_pending(row)
        if pending is None:
            raise BodyNotSkimmed

        def job(conn: sqlite3.Connection) -> builtins.list[EnqueueResult]:
            # the per-delivery path, when the batch's bulk insert met a duplicate or an error
            return bulk.insert_one(conn, pending)

        return await self._writer.submit(job, bulk=pending)

    def submit(self, delivery: IncomingDelivery, tell: Settle) -> None:
        """:meth:`enqueue` without a coroutine (``hub.store.base.Submits``): ``tell`` runs
        as the writer process's answer is read. The thread writer, a child to (re)start and
        a delivery with nothing to store take :meth:`enqueue` in a task."""
        ingest = self._ingest
        if ingest is None or not ingest.running or not (delivery.events or delivery.skim):
            settle_later(self.enqueue(delivery), tell)
            return
        ingest.submit(row_of(delivery, self.clock.time()), tell)

    # -- dispatch -------------------------------------------------------------------------

    async def claim(
        self,
        *,
        limit: int,
        lease: float,
        exclude_targets: Collection[str] = (),
        exclude_unrouted: Collection[str] = (),
        known_endpoints: Collection[str] | None = None,
    ) -> builtins.list[Event]:
        if limit < 1:
            return []
        params = {
            "now": 0.0,  # (read in the writer's turn, below)
            "exclude": _json(sorted(exclude_targets)),
            "unrouted": _json(sorted(exclude_unrouted)),
            "known": None if known_endpoints is None else _json(sorted(known_endpoints)),
            "limit": limit,
        }

        reading: ClockReading | None = None

        def job(conn: sqlite3.Connection) -> tuple[str | None, float]:
            # The time is read in the writer's turn, with the step it may apply: a lease
            # counted from a time read before a step the turn then applied ends the step
            # early (forward) or late (back).
            nonlocal reading
            reading = self._watch.read(self.clock)
            now = params["now"] = reading.now
            shift = _clock_mark(conn, reading)
            # Every statement fetches one value: each step of a cursor is a GIL hand-over.
            (ids,) = conn.execute(_CLAIMABLE_IDS, params).fetchone()
            if ids == "[]":
                return None, shift
            conn.execute(Q["mark_claimed"], {"ids": ids, "lease_until": now + lease, "now": now})
            packed: str | None = conn.execute(_ROWS_BY_IDS, {"ids": ids}).fetchone()[0]
            return packed, shift

        # Rows become events here, not in the writer thread: decompressing and parsing the
        # bodies there would hold the GIL (and hand it back and forth) while it writes.
        packed, shift = await self._writer.submit(job)
        if reading is not None:  # (committed)
            self._watch.keep(reading, shift)
        return with_clock_shift(rows.events(packed), shift)

    async def ack(
        self,
        event_id: int,
        *,
        lead_id: str | None,
        created: bool | None,
        lease: float | None = None,
    ) -> None:
        await self._update(
            "ack",
            event_id,
            lease,
            lead_id=lead_id,
            created=None if created is None else int(created),
        )

    async def retry(
        self, event_id: int, *, at: float, error: str, lease: float | None = None
    ) -> None:
        await self._update("retry", event_id, lease, at=at, error=error)

    async def release(
        self, event_id: int, *, at: float, reason: str | None = None, lease: float | None = None
    ) -> None:
        await self._update("release", event_id, lease, at=at, reason=reason)

    async def dead(self, event_id: int, *, error: str, lease: float | None = None) -> None:
        await self._update("finish", event_id, lease, state=State.DEAD.value, error=error)

    async def unmatched(self, event_id: int, *, reason: str, lease: float | None = None) -> None:
        await self._update("finish", event_id, lease, state=State.UNMATCHED.value, error=reason)

    async def skipped(self, event_id: int, *, reason: str, lease: float | None = None) -> None:
        await self._update("finish", event_id, lease, state=State.SKIPPED.value, error=reason)

    async def set_routes(
        self, routes: Sequence[Route], *, reading: Sequence[int] = ()
    ) -> builtins.list[int]:
        if not routes and not reading:
            return []
        # One statement per table for the whole batch (each statement is a GIL hand-over
        # for the writer thread): the routes travel as one JSON array.
        ids = _ids([r.event_id for r in routes])
        params = {
            "routes": _json(
                [
                    [r.event_id, r.target, r.mapping, [str(k) for k in r.lead_keys if k]]
                    for r in routes
                ]
            ),
            "ids": ids,
            "now": self.clock.time(),
        }
        marks = {"reading": _ids(reading)}

        def job(conn: sqlite3.Connection) -> builtins.list[int]:
            missing = []
            if routes:
                updated = conn.execute(Q["set_routes"], params).rowcount
                conn.execute(Q["delete_lead_keys"], params)
                conn.execute(Q["insert_route_keys"], params)
                missing = _unknown(conn, ids, expected=len(routes), updated=updated)
            if reading:
                conn.execute(Q["mark_reading"], marks)
            return missing

        return await self._writer.submit(job)

    async def ack_many(self, acks: Sequence[Ack]) -> builtins.list[int]:
        if not acks:
            return []
        params = {
            "acks": _json(
                [
                    [
                        a.event_id,
                        a.lead_id,
                        None if a.created is None else int(a.created),
                        a.lease,
                        a.at,
                    ]
                    for a in acks
                ]
            ),
            "now": self.clock.time(),
        }

        def job(conn: sqlite3.Connection) -> builtins.list[int]:
            # The ids the statement wrote, not those found delivered at this instant after it:
            # another worker that took over the lease and delivered the event at the very same
            # clock reading made a lost ack look written (no `event_lease_lost` line).
            written = {row[0] for row in conn.execute(Q["ack_many"], params).fetchall()}
            return [int(a.event_id) for a in acks if a.event_id not in written]

        return await self._writer.submit(job)

    async def set_enrichment(self, event_id: int, enrichment: Any) -> None:
        data = None if enrichment is None else rows.dumps(enrichment, what="enrichment")
        await self._update("set_enrichment", event_id, None, enrichment=data)

    async def _update(self, query: str, event_id: int, lease: float | None, **params: Any) -> None:
        params.update(id=event_id, now=self.clock.time(), lease=lease)
        sql = Q[query]

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount:
                return
            if lease is not None and conn.execute(Q["find_id"], {"id": event_id}).fetchone():
                raise lease_lost(event_id)
            raise no_event(event_id)

        await self._writer.submit(job)

    # -- reads ----------------------------------------------------------------------------

    async def blockers(self, checks: Sequence[tuple[int, Sequence[str]]]) -> dict[int, Event]:
        asked = ordering_checks(checks)
        if not asked:
            return {}
        # (claims made before routed_since no longer count as being routed: ROUTING_GRACE)
        params = {"asked": _json(asked), "routed_since": self.clock.time() - ROUTING_GRACE}

        def job(conn: sqlite3.Connection) -> dict[int, Event]:
            # One read transaction: a blocker found is still pending when it is read back.
            # Two statements for the whole batch (each step is a GIL hand-over).
            conn.execute("BEGIN")
            try:
                answers = orjson.loads(conn.execute(Q["blockers"], params).fetchone()[0])
                pairs = [(asker, blocker) for asker, blocker in answers if blocker is not None]
                if not pairs:
                    return {}
                ids = _ids(sorted({blocker for _, blocker in pairs}))
                found = conn.execute(_ROWS_BY_IDS, {"ids": ids}).fetchone()[0]
                by_id = {event.id: event for event in rows.events(found)}
                return {asker: by_id[b] for asker, b in pairs if b in by_id}
            finally:
                conn.execute("COMMIT")

        return await self._reader.submit(job)

    async def get(self, event_id: int) -> Event | None:
        def job(conn: sqlite3.Connection) -> Event | None:
            got = rows.events(conn.execute(_GET, {"id": event_id}).fetchone()[0])
            return got[0] if got else None

        return await self._reader.submit(job)

    async def list(
        self,
        *,
        state: State | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        since: float | None = None,
    ) -> builtins.list[Event]:
        params = {
            "state": None if state is None else State(state).value,
            "endpoint": endpoint,
            "limit": max(0, limit),
            "since": since,
        }
        found = await self._reader.submit(lambda conn: conn.execute(_LIST, params).fetchone()[0])
        return rows.events(found, newest_first=True)

    async def list_page(
        self,
        *,
        state: State | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = 500,
        documents: bool = False,
    ) -> builtins.list[Listed]:
        params = {
            "state": None if state is None else State(state).value,
            "endpoint": endpoint,
            "since": since,
            "upto": MAX_ID if before is None else before - 1,
            "limit": max(0, limit),
            "documents": int(documents),
        }
        found = await self._reader.submit(
            lambda conn: conn.execute(Q["list_page"], params).fetchall()
        )
        return [rows.listed_of(r) for r in found]

    async def counts(self, states: Collection[State] | None = None) -> dict[State, int]:
        if states is None:
            found = await self._reader.submit(lambda conn: conn.execute(Q["counts"]).fetchall())
        else:
            params = {"states": _json([str(state) for state in states])}
            found = await self._reader.submit(
                lambda conn: conn.execute(Q["counts_of"], params).fetchall()
            )
        return state_counts(found, states)

    async def _replayable(self, selection: Replayed) -> int:
        params = _replay_params(selection)
        found = await self._reader.submit(
            lambda conn: conn.execute(Q["replayable"], params).fetchone()
        )
        return int(found[0])

    async def _replay_ids(self, selection: Replayed) -> array.array[int]:
        params = _replay_params(selection)

        def job(conn: sqlite3.Connection) -> array.array[int]:
            return array.array("q", (row[0] for row in conn.execute(Q["replay_ids"], params)))

        return await self._reader.submit(job)

    async def _requeue(self, ids: Sequence[int], states: builtins.list[str], now: float) -> int:
        params = {"ids": _ids(ids), "states": _json(states), "now": now}

        def job(conn: sqlite3.Connection) -> int:
            requeued = [r[0] for r in conn.execute(Q["requeue"], params).fetchall()]
            if requeued:
                conn.execute(Q["delete_lead_keys"], {"ids": _ids(requeued)})
            return len(requeued)

        return await self._writer.submit(job)

    async def _purge_window(self, after: int) -> tuple[int, float] | None:
        params = {"after": after, "window": PURGE_WINDOW}
        upto, first = await self._reader.submit(
            lambda conn: conn.execute(Q["purge_window"], params).fetchone()
        )
        return None if upto is None else (int(upto), float(first))

    async def _newest_received(self) -> float | None:
        found = await self._reader.submit(
            lambda conn: conn.execute(Q["newest_received"]).fetchone()
        )
        return None if found is None else float(found[0])

    async def _purge_range(
        self,
        after: int,
        upto: int,
        *,
        before: float,
        states: builtins.list[str],
        endpoint: str | None,
        dry_run: bool,
    ) -> tuple[int, int]:
        params = {
            "after": after,
            "upto": upto,
            "states": _json(states),
            "before": before,
            "endpoint": endpoint,
        }
        if dry_run:
            found = await self._reader.submit(
                lambda conn: conn.execute(Q["purgeable_events"], params).fetchall()
            )
            return len(found), 0

        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            purged = conn.execute(Q["purgeable_events"], params).fetchall()
            if not purged:
                return 0, 0
            ids = _ids([r[0] for r in purged])
            conn.execute(Q["delete_events"], {"ids": ids})
            conn.execute(Q["delete_lead_keys"], {"ids": ids})
            deliveries = _ids(sorted({r[1] for r in purged}))
            freed = conn.execute(Q["purge_deliveries"], {"ids": deliveries}).rowcount
            return len(purged), freed

        return await self._writer.submit(job)

    async def _after_purge(self, purged: Purged) -> None:
        """The pages a purge freed given back to the filesystem (:meth:`give_back`). A purge
        that deleted nothing gives back what an earlier one left, a step's worth or more: a
        hub killed in its give-back (a purge's deletes are committed before it), or a
        give-back that failed, left its free pages in the file until a later purge deleted
        events, which after a backlog purged at start is ``--purge-after`` later (60 MB kept
        for 30 days)."""
        await self.give_back(least=1 if purged.events else GIVE_BACK_STEP)

    async def shrinks(self) -> bool:
        """Whether the file was made with incremental vacuum (:meth:`give_back` shrinks it)."""
        mode = await self._reader.submit(
            lambda conn: conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        )
        return int(mode) == AUTO_VACUUM_INCREMENTAL

    async def give_back(self, least: int = 1) -> int:
        """Give the file's free pages back to the filesystem, when it has ``least`` or more;
        returns how many bytes.

        SQLite reuses the pages of deleted rows for new ones but never shrinks the file by
        itself: after a backlog (a million events queued while a target was paused, then
        purged) the file stayed at its high-water mark for good. A store made with
        ``auto_vacuum = INCREMENTAL`` (every store made since this release; ``leadhub
        vacuum`` converts an older one) moves its last pages into free ones and cuts the end
        off, here in steps of :data:`GIVE_BACK_STEP` pages, each its own short write
        transaction, the write lock left free between them as between a purge's steps
        (:attr:`step_pause`), so ingest goes on answering. In WAL mode the cut reaches the
        file only at a checkpoint, which is then asked for: a PASSIVE one, SQLite's own kind
        (it waits for no reader or writer; what it could not finish, SQLite's next automatic
        checkpoint does). Logs ``store_space_given_back``; a store failure meanwhile is
        logged (``store_give_back_failed``) and left for the next purge: the purge is done.
        """
        if self.read_only is not None:
            return 0
        try:
            return await self._give_back(least)
        except StoreError as exc:
            log().warning("store_give_back_failed", path=str(self.path.absolute()), error=str(exc))
            return 0

    async def _give_back(self, least: int) -> int:
        mode, free, page_size = await self._reader.submit(
            lambda conn: conn.execute(
                "SELECT * FROM pragma_auto_vacuum, pragma_freelist_count, pragma_page_size"
            ).fetchone()
        )
        if mode != AUTO_VACUUM_INCREMENTAL or not free or int(free) < least:
            return 0
        size_before = _size(self.path)
        pages, left = 0, int(free)
        while left > 0:
            started = time.monotonic()
            step = min(GIVE_BACK_STEP, left)
            given = await self._writer.submit(functools.partial(give_back_step, pages=step))
            pages += given
            left -= step
            if given < step:
                break  # none left (new events took some meanwhile)
            if left > 0:
                await self._between_steps(time.monotonic() - started)
        await self._reader.submit(
            lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        )
        freed = pages * int(page_size)
        self.stats.bytes_freed += freed
        log().info(
            "store_space_given_back",
            path=str(self.path.absolute()),
            pages=pages,
            bytes=freed,
            size_before=size_before,
            size_after=_size(self.path),
        )
        return freed

    async def next_due(self) -> float | None:
        found = await self._reader.submit(lambda conn: conn.execute(Q["next_due"]).fetchone())
        return None if found is None or found[0] is None else float(found[0])

    async def resume_held(self, targets: Sequence[str]) -> int:
        params = {"targets": _json(list(targets)), "held": PAUSE_HELD}

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(Q["resume_held"], {**params, "now": self.clock.time()}).rowcount

        return int(await self._writer.submit(job))

    async def keep_spans(self, kind: str, name: str, spans: Sequence[tuple[float, float]]) -> None:
        at = {"kind": kind, "name": name}
        rows = [{**at, "began": began, "ended": ended} for began, ended in spans]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(Q["keep_span"], rows)
            conn.execute(Q["prune_spans"], {**at, "keep": SPANS_KEPT})

        await self._writer.submit(job)

    async def kept_spans(
        self, kind: str, names: Sequence[str]
    ) -> dict[str, builtins.list[tuple[float, float]]]:
        asked = {"kind": kind, "names": _json(list(names))}

        def job(conn: sqlite3.Connection) -> builtins.list[sqlite3.Row]:
            return conn.execute(Q["kept_spans"], asked).fetchall()

        return spans_by_name(await self._reader.submit(job))

    async def resume_reads(self, endpoints: Sequence[str]) -> int:
        params = {"endpoints": _json(list(endpoints))}

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(Q["resume_reads"], {**params, "now": self.clock.time()}).rowcount

        return int(await self._writer.submit(job))

    # -- rate limits shared by every process on this file ----------------------------------

    async def take_slots(
        self,
        account: str,
        *,
        calls: int,
        window: float,
        hold: float,
        want: int = 1,
        waiter: str | None = None,
    ) -> SlotAnswer:
        # A write transaction (BEGIN IMMEDIATE in the writer): the count, the waiters' turns
        # and the new slots are one atomic step for every process on this file. Time is
        # read inside it.
        def job(conn: sqlite3.Connection) -> SlotAnswer:
            now = self.clock.time()
            acct = {"account": account}
            conn.execute(
                Q["expire_slots"],
                {
                    **acct,
                    "now": now + SLOT_EPSILON,
                    "window": window,
                    "latest": now + max(hold, SLOT_HORIZON),
                },
            )
            lapsed = {**acct, "now": now, "latest": now + window + WAITER_GRACE + SLOT_EPSILON}
            conn.execute(Q["expire_waiters_slots"], lapsed)
            conn.execute(Q["expire_waiters"], lapsed)
            count = conn.execute(Q["count_slots"], acct).fetchone()[0]
            waiters = {
                r[0]: Waiter(r[0], float(r[1]), int(r[2]), float(r[3]), orjson.loads(r[4]))
                for r in conn.execute(Q["waiters"], acct)
            }
            me = waiter if waiter is not None else ""
            d = deal(me, want, calls=calls, count=count, now=now, waiters=waiters)
            if d.drop:
                conn.execute(Q["drop_slots"], {"ids": _json(d.drop)})
            mine = []
            if d.mine:
                handed = conn.execute(Q["hand_over"], {"ids": _json(d.mine), "ends_at": now + hold})
                mine = sorted(int(r[0]) for r in handed)
            slot = {**acct, "ends_at": now + hold}
            new = [
                int(conn.execute(Q["take_slot"], slot).fetchone()[0])
                for _ in range(d.new_mine + sum(d.theirs.values()))
            ]
            new_mine, theirs = set_aside(d, waiters, new)
            mine += new_mine
            for name, (ready, since) in theirs.items():
                conn.execute(
                    Q["set_aside"], {**acct, "waiter": name, "ready": _json(ready), "since": since}
                )
            if mine:
                answer = SlotAnswer(tuple(mine))
            else:
                k = d.count - calls
                if k < 0:  # a slot set aside for it had stopped counting: ask again now
                    answer = SlotAnswer(())
                else:
                    ends = conn.execute(Q["slot_end"], {**acct, "k": k})
                    ends_at = float(ends.fetchone()[0])
                    answer = SlotAnswer(
                        (), max(0.0, ends_at + window - now), in_flight=ends_at > now
                    )
            if waiter is not None:
                place = my_place(
                    d, me, want, own=waiters.get(me), now=now, wait=answer.wait, window=window
                )
                who = {**acct, "waiter": me}
                if place is None:
                    conn.execute(Q["stop_waiting"], who)
                else:
                    since, left, until = place
                    conn.execute(
                        Q["set_waiting"], {**who, "since": since, "want": left, "until": until}
                    )
            return answer

        return await self._writer.submit(job)

    async def stop_waiting(self, account: str, waiter: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            who = {"account": account, "waiter": waiter}
            conn.execute(Q["stop_waiting_slots"], who)
            conn.execute(Q["stop_waiting"], who)

        await self._writer.submit(job)

    async def fill_window(self, account: str, *, calls: int) -> None:
        def job(conn: sqlite3.Connection) -> None:
            now = self.clock.time()
            at = {"account": account, "now": now}
            counted = conn.execute(Q["count_slots_from"], at).fetchone()[0]
            for _ in range(calls - counted):
                conn.execute(Q["take_slot"], {"account": account, "ends_at": now})

        await self._writer.submit(job)

    async def end_slots(self, account: str, ends: Sequence[tuple[int, float]]) -> None:
        if not ends:
            return
        params = {"ends": _json([list(e) for e in ends]), "now": self.clock.time()}
        await self._writer.submit(lambda conn: conn.execute(Q["end_slots"], params))

    async def give_back_slots(self, account: str, slots: Sequence[int]) -> None:
        if not slots:
            return
        ids = {"ids": _json(list(slots))}
        await self._writer.submit(lambda conn: conn.execute(Q["drop_slots"], ids))


def _clock_mark(conn: sqlite3.Connection, reading: ClockReading) -> float:
    """Keep the store's clock mark (the latest time a claim read, written at most once per
    :data:`CLOCK_STEP_BACK` s); a time more than that before it is a step back of the wall
    clock: the waiting events' due times, the claimed events' lease ends and the rate slots
    of the calls before it go back as much, and the clock shift grows by as much
    (``clock_stepped_back``). A step forward this store
    object saw (its ``reading``'s ``ahead``, see :func:`clock_step`), less the steps another
    store object applied since its last claim (:meth:`ClockReading.unapplied`), moves the
    lease ends forward and the shift down as much (``clock_stepped_forward``). Read in the
    claim's transaction, so processes sharing the file apply a step once. Returns the clock
    shift: what a lease's end plus it is the lease's token (see ``sqlite.sql``)."""
    now = reading.now
    shift, step = reading.against(*conn.execute(Q["clock_mark"]).fetchone())
    if step is None:
        return shift
    if step:
        moved = slots = 0
        if step > 0:
            moved = conn.execute(Q["clock_stepped_back"], {"by": step, "now": now}).rowcount
            slots = conn.execute(Q["slots_stepped_back"], {"by": step, "now": now}).rowcount
            conn.execute(Q["waiters_stepped_back"], {"by": step, "now": now})
        leases = conn.execute(Q["leases_stepped_back"], {"by": step}).rowcount
        shift += step
        conn.execute(Q["set_clock_shift"], {"shift": repr(shift)})
        log_clock_step(step, moved, leases, slots)
    conn.execute(Q["set_clock_mark"], {"now": repr(now)})
    return shift


def _size(path: Path) -> int | None:
    """The size of the file at ``path`` in bytes; None when it cannot be read."""
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _replay_params(selection: Replayed) -> dict[str, Any]:
    """A replay's selection as the parameters of ``replayable`` and ``replay_ids``."""
    return {
        "states": _json(selection.states),
        "ids": None if selection.ids is None else _ids(selection.ids),
        "endpoint": selection.endpoint,
        "since": selection.since,
    }


def _unknown(conn: sqlite3.Connection, ids: str, *, expected: int, updated: int) -> list[int]:
    """The ids naming no event, looked up only when a batch update touched fewer rows."""
    if updated >= expected:
        return []
    return [int(r[0]) for r in conn.execute(Q["unknown_ids"], {"ids": ids})]
