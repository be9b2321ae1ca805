"""The PostgreSQL event store: several hub instances on one database.

The same tables and rules as the SQLite store (``hub/store/sql/postgres.sql`` beside
``sqlite.sql``), on an asyncpg connection pool. Each call is one transaction, except that
the one-lead deliveries of concurrent requests are written together
(:mod:`hub.store.postgres_ingest`). Claims take
rows ``FOR UPDATE SKIP LOCKED``, so instances claim side by side and never take the same
event; the rate limit's calls are counted in ``rate_slots`` under a per-account advisory
lock, so every instance together stays within an account's limit. Rows come back in the
column order of SQLite's ``event_rows``, and :func:`hub.store.rows.event_of` builds the
events of both backends.

Connection settings come from the URL and libpq's environment variables (``PGPASSWORD``
for the password: keep it out of the URL and the config). Two options of our own:
``?schema=NAME`` (tables in that schema, made if missing: several hubs, or test runs, in
one database) and ``?pool=N`` (most connections, default 10).
"""

from __future__ import annotations

import array
import asyncio
import builtins
import contextlib
import itertools
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import orjson

from hub.clock import SYSTEM_CLOCK, Clock, ServerTime, SystemClock
from hub.store import postgres_pooler as pooler
from hub.store import rows
from hub.store.base import (
    CLOCK_STEP_BACK,
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
    CommitWait,
    LockTimedOut,
    NotAnEventStore,
    Replayed,
    Settle,
    StoreError,
    StoreStats,
    StoreUnavailable,
    lease_lost,
    log,
    log_clock_step,
    newer_schema,
    no_event,
    ordering_checks,
    spans_by_name,
    state_counts,
    stored_version,
    with_clock_shift,
)
from hub.store.models import (
    PAUSE_HELD,
    Ack,
    EnqueueResult,
    Event,
    IncomingDelivery,
    Listed,
    Route,
    SlotAnswer,
    State,
)
from hub.store.postgres_ingest import DEADLOCK_TRIES, Writes, aborted, before_rerun
from hub.store.rows import row_of, to_pending
from hub.store.sql import queries
from hub.store.turns import WAITER_GRACE, Waiter, deal, my_place, set_aside

Q = queries("postgres")

if TYPE_CHECKING:
    from hub.store.postgres_ingest import Conn as _Conn
_Isolation = Literal["read_committed", "repeatable_read"]

#: Connections in the pool by default (``?pool=N``).
POOL_SIZE = 10
#: Seconds to wait for a connection to the server, and for any one statement.
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0
#: How the hub's connections name themselves to the server (``pg_stat_activity``).
APPLICATION_NAME = "leadhub"
#: The reading of what the store's commits wait for (:meth:`PostgresStore.commit_wait`, on a
#: connection of its own): seconds it may take, and seconds its answer is kept (the watchdog
#: and each failed transaction ask; one reading serves them all).
WAIT_READ_WITHIN = 3.0
WAIT_READ_KEPT = 5.0
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: The schema version this code writes (``meta.schema_version``); older stores are migrated.
SCHEMA_VERSION = 2
#: Seconds the server lets one of our sessions sit idle inside a transaction before it ends
#: the session (``idle_in_transaction_session_timeout``, unless the URL sets it). Our
#: transactions send their statements back to back, so only a frozen instance (a machine
#: that stopped answering, a network cut, a paused VM) idles in one; it may hold the claims'
#: turn or an account's rate-limit lock, and every other instance waited on it for as long as
#: the server kept the session: with PostgreSQL's defaults (no such timeout, TCP keepalive
#: after 2 h) hours, for a machine gone without closing its connections.
IDLE_IN_TRANSACTION = 10.0
#: Seconds a session of the hub may sit frozen in the middle of a statement while it holds up
#: one of this instance's turns (the claims', an account's calls', a purge's, the schema's)
#: before this instance ends it (:meth:`PostgresStore._take_turn`): as long as the server
#: lets one sit idle inside a transaction. The server itself never ends such a session (the
#: ``frozen_holders`` query says why); a look runs every half of this while a turn waits.
FROZEN_AFTER = IDLE_IN_TRANSACTION
#: Seconds between two ``store_turn_waiting`` lines at the least.
TURN_TOLD_EVERY = 60.0
#: An offset between this machine's clock and the database's this large (seconds) is logged
#: as a warning (``clock_differs``): the machine's NTP is off. The hub keeps working on the
#: database's time.
CLOCK_WARN = 1.0
#: Makes first-time schema creation safe when several instances start together; $1 is the
#: URL's ``?schema=`` (NULL: the default, ``current_schema()``). Like the claims' and purges'
#: locks (``postgres.sql``), its key names the schema: hubs on other schemas never wait on it.
#: (``current_schema()`` alone would not do here: it is NULL while the schema is not made.)
_SCHEMA_LOCK = (
    "SELECT pg_advisory_xact_lock("
    "hashtextextended('leadhub.schema:' || coalesce($1::text, current_schema(), ''), 0))"
)

#: The tables and indexes the schema script makes: when every one is there, open runs no DDL
#: (which only the tables' owner may run, even as CREATE ... IF NOT EXISTS).
_STORE_OBJECTS = sorted(set(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", Q["schema"])))
#: The table each index of the schema script is on (an index is needed where its table is).
_INDEXED = dict(re.findall(r"CREATE INDEX IF NOT EXISTS (\w+) ON (\w+)", Q["schema"]))
#: What serve does with each table (a purge also deletes events and deliveries), and the
#: tables whose id sequence its writes draw from: checked at open (``missing_rights``).
_RIGHTS = {
    "meta": "SELECT,INSERT,UPDATE",
    "deliveries": "SELECT,INSERT,DELETE",
    "events": "SELECT,INSERT,UPDATE,DELETE",
    "lead_keys": "SELECT,INSERT,DELETE",
    "rate_slots": "SELECT,INSERT,UPDATE,DELETE",
    "rate_waiters": "SELECT,INSERT,UPDATE,DELETE",
    "held_spans": "SELECT,INSERT,UPDATE,DELETE",
}
_SEQUENCES = ("deliveries", "events", "rate_slots")
#: What a web instance (``serve --role web``) does, only take deliveries in: its enqueues,
#: the counts of /metrics and the ping of /readyz. A least-privilege role granted just
#: this was refused at start, listing privileges only a worker uses.
_INGEST_RIGHTS = {
    "meta": "SELECT,INSERT,UPDATE",
    "deliveries": "SELECT,INSERT",
    "events": "SELECT,INSERT",
}
_INGEST_SEQUENCES = ("deliveries", "events")

#: The values of ``synchronous_commit`` whose commits wait for the synchronous standbys that
#: ``synchronous_standby_names`` names (``local`` and ``off`` do not).
_WAITS_FOR_STANDBY = ("on", "remote_write", "remote_apply")

#: The database encodings that hold whatever text a lead carries, as the hub sends it (UTF-8):
#: UTF8, and SQL_ASCII, which stores the bytes sent without a check (``_check_encoding``).
_ENCODINGS = ("UTF8", "SQL_ASCII")

#: A replay's ids behind a pooler (``PostgresStore._replay_ids``): an SQL cursor, a page at a time.
_REPLAY_CURSOR = "DECLARE leadhub_replay NO SCROLL CURSOR FOR "
_REPLAY_FETCH = "FETCH FORWARD 10000 FROM leadhub_replay"

#: What a lost server or connection raises: the store is unavailable, not broken.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    # the server ended a session of ours left idle in a transaction (IDLE_IN_TRANSACTION)
    asyncpg.IdleInTransactionSessionTimeoutError,
    # a connection the server ended while it sat in the pool, met mid-protocol
    asyncpg.InternalClientError,
    # a lock waited for past a lock_timeout (the URL's, the role's or the database's): the
    # instances' turns at claiming and at an account's calls are locks; as a bug, each such
    # wait was a traceback and spent an attempt of the event it met
    asyncpg.LockNotAvailableError,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pooled connection's reset on release, behind a pooler: nothing to reset. asyncpg
    still rolls back a transaction left open before it calls this; the store's settings are
    each transaction's (:mod:`hub.store.postgres_pooler`), its cursors end with their
    transaction, it takes no session lock nor listens, and :func:`_know_arrays` keeps
    asyncpg's own reading of types from leaving a setting behind."""


#: The array types the store's statements send or read that asyncpg does not know without
#: asking the server (bigint[], smallint[], double precision[], bytea[]).
_ARRAYS = "SELECT $1::bigint[], $2::smallint[], $3::double precision[], $4::bytea[]"


async def _know_arrays(conn: asyncpg.Connection) -> None:
    """Behind a pooler, have a new connection learn the array types the store uses, in a
    transaction of its own. asyncpg learns a type the first time a statement uses it, and
    turns jit off for the session while it reads the catalog (``set_config(..., false)``),
    putting back the value it found. Inside one of the store's transactions it found the
    transaction's own ``jit off`` and put nothing back: the server session kept jit off for
    whichever client the pooler gave it next. Here it finds the session's value, and puts it
    back in the same transaction, on the same server session."""
    async with conn.transaction():
        await conn.fetchrow(_ARRAYS, None, None, None, None)


#: What to do about a lock another session holds against the hub's writes.
_END_THE_HOLDER = (
    "end that session's transaction (COMMIT or ROLLBACK there, or SELECT "
    "pg_terminate_backend(pid)), or let the statement holding it (a CREATE INDEX without "
    "CONCURRENTLY, a LOCK TABLE) finish"
)
#: What to say of a wait for another instance's start (its schema lock, its migration).
_STARTING = (
    "an expected wait, over once that start commits (its tables made or migrated: "
    "seconds); if it lasts, see that instance's log (its own start may wait: "
    "store_lock_waiting, store_commit_waiting)"
)


def _retrieve(done: asyncio.Future[None]) -> None:
    """Retrieve a shared ping's outcome, so that one nobody awaited any more (its probes
    timed out) is not logged by asyncio as never retrieved."""
    if not done.cancelled():
        done.exception()


def _holder(
    pid: int,
    application: str | None,
    state: str | None,
    event: str | None = None,
    since: float | None = None,
) -> str:
    """A session holding a lock, as seen: its pid, with its application and state where
    this role may see them (and, when given, its wait event and seconds in that state)."""
    if state is None:
        return f"pid {pid}"
    more = (f", {event}" if event else "") + (
        f", {since:.1f} s in that state" if since is not None else ""
    )
    return f"pid {pid} ({application or 'no application_name'}, {state}{more})"


def _lock_wait(rows: Sequence[Any]) -> CommitWait:
    """What to say of the hub's sessions waiting over a second for a lock (``lock_waits``'
    ``rows``: the waiting pid, the relation, whether it waits for the schema lock, then its
    holder: pid, application, state, whether it holds the schema lock, whether it waits
    itself). The holders named are the ends of the chains (a holder that waits itself, another
    instance's migration behind a DBA's lock, is a link); when every one is another leadhub
    instance opening the store (it holds the schema lock while it makes or migrates the
    tables), the wait is an expected one, and nobody is told to end its transaction. As for a
    standby, the watchdog's 503 and ``store_stalled`` guessed at a stopped server or a
    network."""
    waiting = {row[0] for row in rows}
    relations: list[str] = []
    for row in rows:
        relation = "the store's schema lock" if row[2] else row[1]
        if relation and relation not in relations:
            relations.append(relation)
    seen = [row for row in rows if row[3] is not None]
    ends = [row for row in seen if not row[7]] or seen
    holders: dict[int, tuple[str, bool]] = {}
    for row in ends:
        holders.setdefault(row[3], (_holder(row[3], row[4], row[5]), bool(row[6])))
    starting = bool(holders) and all(start for _, start in holders.values())
    count = len(waiting)
    sessions = f"{count} session{'s' if count > 1 else ''} of the hub waiting over a second"
    held = ", ".join(shown for shown, _ in holders.values())
    on = f" on {', '.join(relations)}" if relations else ""
    if starting:
        text = (
            f"its writes wait for another leadhub instance opening the store (wait event type "
            f"Lock{on}: {sessions}, held by {held}, which holds the store's schema lock while "
            f"it makes or migrates the tables): {_STARTING}."
        )
    else:
        said = f"held by {held}" if held else "its holder not seen"
        text = (
            f"its writes wait for a lock another session holds (wait event type Lock{on}: "
            f"{sessions}, {said}): {_END_THE_HOLDER}."
        )
    return CommitWait(
        "lock",
        text,
        holders=held or None,
        relation=", ".join(relations) or None,
        starting=starting,
    )


def _lock_held(rows: Sequence[Any], lock_timeout: str) -> CommitWait:
    """What to say of the locks others hold that every insert waits for (``lock_holders``'
    ``rows``: relation, mode, holder's pid, application, state, whether it holds the schema
    lock), read after a ``lock_timeout`` cancelled a statement of the hub's: the statement's
    wait is over, and the store was said only to have "cancelled a statement", with no word
    of the lock (its holder, the table)."""
    held: dict[int, list[str]] = {}
    shown: dict[int, str] = {}
    starting = True
    relations: list[str] = []
    for relation, mode, pid, application, state, start in rows:
        shown.setdefault(pid, _holder(pid, application, state))
        held.setdefault(pid, []).append(f"{mode} on {relation}")
        starting = starting and bool(start)
        if relation not in relations:
            relations.append(relation)
    holders = "; ".join(f"held by {shown[pid]}: {', '.join(locks)}" for pid, locks in held.items())
    # (what to do about the lock_timeout itself, the cancelled statement's error says)
    setting = f"lock_timeout = {lock_timeout} for the hub's sessions"
    if starting:
        text = (
            f"its writes wait for another leadhub instance opening the store, and lock_timeout "
            f"cancels them ({setting}; {holders}, which holds the store's schema lock while "
            f"it makes or migrates the tables): {_STARTING}."
        )
    else:
        text = (
            f"its writes wait for a lock another session holds, and lock_timeout cancels them "
            f"({setting}; {holders}): {_END_THE_HOLDER}."
        )
    return CommitWait(
        "lock",
        text,
        holders=", ".join(shown.values()),
        relation=", ".join(relations),
        starting=starting,
    )


class PostgresStore(BatchedStore):
    """An :class:`hub.store.base.EventStore` on a PostgreSQL database."""

    def __init__(
        self,
        dsn: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        schema: str | None = None,
        pool_size: int = POOL_SIZE,
        shown: str | None = None,
        create: bool = True,
        stall_after: float = STALL_AFTER,
        ingest_only: bool = False,
    ) -> None:
        """``dsn`` for asyncpg (without our options); ``shown``: the URL for messages and
        logs, without a password; ``create``: make the schema and tables when missing (a
        reading command opens with False, so a mistyped URL is not a new, empty store);
        ``stall_after``: seconds a delivery may wait for its commit before it is answered
        503 (:data:`hub.store.base.STALL_AFTER`); ``ingest_only``: the opener only takes
        deliveries in (a web instance), and the start checks the role's privileges for that.

        A real ``clock`` (:class:`hub.clock.SystemClock`) is set to the database server's
        (:class:`hub.clock.ServerTime`: measured at open, then about every minute), so that
        instances on machines whose clocks disagree still agree on what they share: an
        account's rate window, leases, due times. A test's clock is used as given."""
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            msg = (
                f"Schema name {schema!r} is not a plain identifier; use letters, digits and "
                "underscores (at most 63), starting with a letter or underscore."
            )
            raise StoreError(msg)
        if not 1 <= pool_size <= 1000:
            msg = f"Pool size {pool_size} is out of range; give ?pool= from 1 to 1000."
            raise StoreError(msg)
        self.dsn = dsn
        self.clock: Clock = ServerTime(clock) if isinstance(clock, SystemClock) else clock
        self._clock_warned = False
        #: Its claims' readings of the clock, to tell a step forward of it by.
        self._watch = ClockWatch()
        self.schema = schema
        self.pool_size = pool_size
        self.shown = shown or dsn
        self.create = create
        self.ingest_only = ingest_only
        self._pool: asyncpg.Pool | None = None
        #: Behind a pooler that shares server sessions: each transaction's ``BEGIN`` and
        #: settings, by isolation and read-only (:mod:`hub.store.postgres_pooler`); else empty.
        self._begin: dict[tuple[str, bool], str] = {}
        self._local: dict[str, str] = {}  # (those settings)
        #: The server's settings found off at open that let a crash of its machine lose or
        #: corrupt what was committed (``fsync``, ``full_page_writes``).
        self.not_crash_safe: list[str] = []
        #: Statements of gathered one-lead deliveries (``commits``) and the deliveries in them.
        self.stats = StoreStats()
        self._writes = Writes(
            self._conn,
            self.stats,
            stall_after=stall_after,
            clock=self.clock,
            commit_wait=self.commit_wait,
        )
        #: The last reading of :meth:`commit_wait` (``time.monotonic()``, its answer), and
        #: the lock that makes callers meanwhile share one reading.
        self._wait_read: tuple[float, CommitWait | None] | None = None
        #: The store's sessions' ``synchronous_commit`` (:meth:`_commit_durably`).
        self._commit = "on"
        self._wait_reading = asyncio.Lock()
        #: The turns (advisory locks) being waited for: when each wait began (monotonic), and
        #: the look that ends frozen sessions holding them up, while one runs.
        self._turns: dict[int, float] = {}
        self._turn_ids = itertools.count()
        self._frozen_look: asyncio.Task[None] | None = None
        self._turn_told: float | None = None  # (the last store_turn_waiting line, monotonic)
        #: The ping in flight, which concurrent pings share (:meth:`ping`).
        self._ping_flight: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.shown!r}, schema={self.schema!r})"

    # -- life cycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._begin = {}
        # application_name: the hub's connections are easy to find in pg_stat_activity.
        # jit off: short statements whose row estimates are large (a JSON array's elements
        # count as 100 rows each) crossed jit_above_cost, and compiling them took longer
        # than running them (4-20 ms for a 64-event ordering check that runs in well under 1).
        settings = {"application_name": APPLICATION_NAME, "jit": "off"}
        idle = "idle_in_transaction_session_timeout"
        if idle not in urllib.parse.parse_qs(urllib.parse.urlsplit(self.dsn).query):
            settings[idle] = f"{round(IDLE_IN_TRANSACTION * 1000)}ms"
        if self.schema:  # quoted, as it is created: a name with capitals is not folded
            settings["search_path"] = f'"{self.schema}"'
        try:
            pool = await self._create_pool(settings)
        except asyncpg.ProtocolViolationError as exc:  # (_create_pool: only a pooler's)
            log().info("store_pooler_detected", url=self.shown, reason=str(exc))
            pool = await self._pooled(settings)
        else:
            if not await self._settings_arrived(pool):
                reason = "the connection's settings did not reach the server"
                log().info("store_pooler_detected", url=self.shown, reason=reason)
                pool = await self._pooled(settings)
        self._pool = pool
        try:
            await self._commit_durably(settings)
            async with self._conn() as conn:  # (its first acquire measures the clock)
                await self._refuse_anothers(conn)
                if not self.create:
                    if await conn.fetchval("SELECT to_regclass('events')") is None:
                        raise StoreError(await self._no_store(conn))
                    await self._migrate(conn)  # an older store: its commands need the columns
                    return
                await self._check_encoding(conn)
                found = await conn.fetchrow(Q["missing_objects"], _STORE_OBJECTS, self.schema)
                assert found is not None  # (an aggregate: one row)
                missing, role = self._needed(found[0]), str(found[1])
                schema = f'"{self.schema or found[2] or "public"}"'  # (for messages)
                if found[3]:
                    raise StoreError(self._no_usage(role, schema))
                if "events" in missing and not self.schema:
                    await self._refuse_new_beside(conn, schema)
                may: Any = None  # (what the role may make there: for the refusal)
                try:
                    if missing:
                        may = await conn.fetchrow(Q["may_make"], self.schema)
                        await self._take_turn(conn, _SCHEMA_LOCK, self.schema)
                        if self.schema and not may[1]:  # (another instance's: IF NOT EXISTS)
                            # Not when it is there: CREATE SCHEMA IF NOT EXISTS needs CREATE on
                            # the database even then, and a schema a DBA made for the hub's
                            # role (CREATE SCHEMA ... AUTHORIZATION) was refused its tables.
                            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                        if await conn.fetchval("SELECT to_regclass('meta')") is not None:
                            # A store made before: its version is read first (a refusal
                            # when it is not a number, or not there). The schema script's
                            # insert of the current version filled a row deleted by hand,
                            # and serve took the store as current, where the commands (and
                            # SQLite's serve) refuse it. (With nothing missing no script
                            # runs, and _migrate reads the version.)
                            self._version(await conn.fetchval(Q["schema_version"]))
                        await conn.execute(Q["schema"])
                except asyncpg.InsufficientPrivilegeError as exc:
                    added = [] if "events" in missing else list(missing)  # (a store made before)
                    msg = self._cannot_make(exc, role, schema, made=False, may=may, added=added)
                    raise StoreError(msg) from exc
                await self._check_rights(conn, role, schema)
                try:
                    await self._migrate(conn)
                except asyncpg.InsufficientPrivilegeError as exc:
                    raise StoreError(self._cannot_make(exc, role, schema, made=True)) from exc
                # After the migration: its ALTER TABLE events waits for the running
                # instances' pings, each holding the insert's lock on events while it waits
                # for meta's last_ping row (ping_locks); this transaction held that row, and
                # a ping deadlocked with it (the start or the ping aborted, 40P01).
                if not missing:  # a server that takes no writes (a standby) is told at open,
                    await conn.execute(Q["ping"], str(self.clock.time()))  # as the DDL found it
        except BaseException:
            await self.close()
            raise
        offset = self.clock.offset if isinstance(self.clock, ServerTime) else None
        log().info(
            "store_opened",
            url=self.shown,
            schema=self.schema,
            settings="per transaction" if self._begin else "per session",
            clock_offset=None if offset is None else round(offset, 3),
        )

    def _needed(self, missing: Sequence[str]) -> list[str]:
        """Of the store's ``missing`` objects, those this opener must make: all of them, but
        for a web instance (``ingest_only``) only those of the tables ingest uses, when the
        store is there. A release adding a table only workers use (``held_spans``) had each
        web instance run as a role that does not own the tables refused until the owner had
        started once, though it never uses the table."""
        if not self.ingest_only or "events" in missing:
            return list(missing)
        return [name for name in missing if _INDEXED.get(name, name) in _INGEST_RIGHTS]

    def _cannot_make(
        self,
        exc: asyncpg.InsufficientPrivilegeError,
        role: str,
        schema: str,
        *,
        made: bool,
        may: Any = None,
        added: Sequence[str] = (),
    ) -> str:
        """Why the store's tables could not be made (``made`` False) or migrated at open: the
        role may not (``permission denied for database``/``schema``, ``must be owner of
        table``), which was told as "the event store failed" and no word of what to do.
        ``may``: the ``may_make`` row read before the tables were made (the right that is
        missing, and its GRANT: a first start said "GRANT CREATE on it" of a schema it was to
        make, which needs CREATE on the database). ``added``: what this release adds to a
        store an earlier one made (a table, an index), which its owner makes."""
        first = str(exc).splitlines()[0]
        if added:
            what = (
                f"this release adds {', '.join(added)} to the store an earlier one made, which "
                "only the owner of its tables may do: start this release once as the role "
                "owning them"
            )
        elif made:
            what = (
                f"this release migrates its tables to schema version {SCHEMA_VERSION}, which "
                "only their owner may do: start this release once as the role owning them"
            )
        elif may is not None and not may[1] and not may[2]:
            database = f'"{may[0]}"'
            what = (
                f"the store is made at the first start, and this role may not make its "
                f"schema {schema} (no CREATE privilege on database {database}): as the "
                f'database\'s owner, run CREATE SCHEMA {schema} AUTHORIZATION "{role}" (this '
                f"role then makes the tables in it), or GRANT CREATE ON DATABASE {database} TO "
                f'"{role}"; or start `leadhub serve` once as the database\'s owner'
            )
        elif may is not None and may[1] and not may[3]:
            what = (
                f"the store's tables are made at the first start, and this role may not make "
                f"tables in schema {schema} (no CREATE privilege on it; PostgreSQL 15 and later "
                "give it on schema public to the database's owner alone): as the schema's "
                f'owner, run GRANT CREATE ON SCHEMA {schema} TO "{role}"; or start `leadhub '
                "serve` once as the schema's owner"
            )
        else:
            what = (
                f"the store's tables in schema {schema} are missing or incomplete, and this "
                "role may not make them: start `leadhub serve` once as the role that owns the "
                "schema (or the database), or GRANT CREATE on it to this one"
            )
        return (
            f"Cannot open the event store {self.shown!r} as role {role!r} ({first}): {what}; "
            f"for a role that does not own the tables, GRANT SELECT, INSERT, UPDATE, DELETE ON "
            f'ALL TABLES IN SCHEMA {schema} TO "{role}" and GRANT USAGE ON ALL SEQUENCES IN '
            f'SCHEMA {schema} TO "{role}".'
        )

    def _no_usage(self, role: str, schema: str) -> str:
        """The URL's schema is there, but the role may not use it (no USAGE): told as a
        permission denied for the database (it tried to make the schema it could not see)."""
        return (
            f"Cannot open the event store {self.shown!r}: the role {role!r} may not use schema "
            f"{schema} (no USAGE privilege: its tables are not seen); as its owner, run: GRANT "
            f'USAGE ON SCHEMA {schema} TO "{role}"; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL '
            f'TABLES IN SCHEMA {schema} TO "{role}"; GRANT USAGE ON ALL SEQUENCES IN SCHEMA '
            f'{schema} TO "{role}";'
        )

    async def _refuse_anothers(self, conn: _Conn) -> None:
        """Refuse (:class:`NotAnEventStore`) a schema whose ``events`` or ``meta`` table is
        another application's (without the hub's columns): a URL naming that application's
        schema, or the default one it shares. serve ran the schema script beside it and
        failed with 'column "state" does not exist (SQLSTATE 42703)', a command with
        'relation "meta" does not exist', neither saying what was wrong."""
        found = [str(r[0]) for r in await conn.fetch(Q["anothers_tables"])]
        if not found:
            return
        schema = self.schema or await conn.fetchval("SELECT current_schema()")
        tables = " and ".join(found)
        msg = (
            f'{self.shown!r} is no event store: its schema "{schema}" holds another '
            f"application's {tables} table{'s' if len(found) > 1 else ''} (not the hub's: "
            "without its columns), so the hub writes nothing there; check that the URL "
            "names the event store, or give the hub a schema of its own with "
            "?schema=leadhub (made at the first start)."
        )
        raise NotAnEventStore(msg)

    async def _refuse_new_beside(self, conn: _Conn, schema: str) -> None:
        """Refuse to make a new store in ``schema`` (the first schema of the search path that
        exists, the URL naming none) when another schema of that path holds one: the path
        changed since that store was made (a schema named after the role, made later, comes
        first in PostgreSQL's default ``"$user", public``; an ``ALTER ROLE ... SET
        search_path``). serve made new, empty tables there without a word, and the deliveries
        the old store held, answered 200 and not yet sent, were left behind for good."""
        found = [str(r[0]) for r in await conn.fetch(Q["stores_elsewhere"])]
        if not found:
            return
        there = f'"{found[0]}"'
        msg = (
            f"Cannot open the event store {self.shown!r}: a new one would be made in schema "
            f"{schema}, the first of the search path that exists, while schema {there} on "
            "that path holds the event store (the search path changed since: a schema named "
            "after the role made later, or ALTER ROLE ... SET search_path), whose deliveries "
            f"would be left behind unsent; add ?schema={found[0]} to the URL to go on with "
            f"that store (or ?schema={schema.strip(chr(34))} to start a new, empty one)."
        )
        raise StoreError(msg)

    async def _check_encoding(self, conn: _Conn) -> None:
        """Refuse to start on a database whose encoding cannot hold every character a lead
        may carry (:data:`_ENCODINGS` can). In one made ``ENCODING 'LATIN1'`` (or WIN1252,
        EUC_JP...) a lead with a character outside it (a name in Devanagari, an emoji, an
        address with an accent it lacks) was answered 200, its raw body being stored as
        bytes, and then failed at every attempt ("character ... has no equivalent in
        encoding", SQLSTATE 22P05: its identity keys, a document, an error are text) until
        it was dead: the start said nothing."""
        encoding = str(await conn.fetchval("SELECT current_setting('server_encoding')"))
        if encoding in _ENCODINGS:
            return
        database = await conn.fetchval("SELECT current_database()")
        msg = (
            f"Cannot use the event store {self.shown!r}: its database {database!r} has "
            f"encoding {encoding}, which cannot hold every character a lead may carry (a "
            "name in Devanagari, an emoji): such leads would be answered 200 and then fail "
            "at every attempt. Give the hub a UTF8 database (CREATE DATABASE leadhub "
            "ENCODING 'UTF8' TEMPLATE template0) and point the URL at it."
        )
        raise StoreError(msg)

    async def _check_rights(self, conn: _Conn, role: str, schema: str) -> None:
        """Refuse to start, naming what is missing and the GRANTs, when the connecting role
        lacks a privilege that serve's writes use (:data:`_RIGHTS`, and USAGE on the
        tables' id sequences; a web instance's: :data:`_INGEST_RIGHTS`). A role that opens
        the store without the DDL (not its owner) but lacks USAGE on the sequences would
        answer every webhook 503 (``permission denied for sequence events_id_seq``: the
        writes draw ids with nextval), its start silent."""
        rights, sequences = (
            (_INGEST_RIGHTS, _INGEST_SEQUENCES) if self.ingest_only else (_RIGHTS, _SEQUENCES)
        )
        tables = list(rights)
        missing = await conn.fetch(
            Q["missing_rights"], tables, [rights[t] for t in tables], list(sequences)
        )
        if not missing:
            return
        msg = (
            f"The role {role!r} lacks privileges the hub needs on the event store "
            f"{self.shown!r}: {', '.join(r[0] for r in missing)}. As the tables' owner, run: "
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO "{role}"; '
            f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO "{role}";'
        )
        raise StoreError(msg)

    async def _no_store(self, conn: _Conn) -> str:
        """Why a command finds no ``events`` table: none in the schema, or a schema the
        connecting role may not use (no USAGE: its tables are not seen). The latter was told
        as "no event store" to an operator whose own role ran ``leadhub events`` against a
        store that ``serve``, under another role, was using all along."""
        where = f"schema {self.schema!r} of " if self.schema else ""
        if self.schema:
            usable = await conn.fetchval(
                "SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1",
                self.schema,
            )
            if usable is False:
                role = await conn.fetchval("SELECT current_user")
                return (
                    f"the role {role!r} may not use {where}{self.shown!r} (no USAGE privilege "
                    "on the schema: its tables are not seen); connect as the role `leadhub "
                    f'serve` uses, or GRANT USAGE ON SCHEMA "{self.schema}" TO "{role}", with '
                    "the rights on its tables the command needs (SELECT to list, UPDATE to "
                    "replay, DELETE to purge)."
                )
        return (
            f"no event store in {where}{self.shown!r}; pass --db (or LEADHUB_DB) with the URL "
            "`leadhub serve` uses."
        )

    async def _create_pool(
        self, settings: dict[str, str], *, dsn: str | None = None, statements: int = 100
    ) -> asyncpg.Pool:
        """A pool of connections with ``settings`` as startup settings; ``statements``:
        asyncpg's cache of named prepared statements (0: none, unnamed ones only)."""
        try:
            return await asyncpg.create_pool(
                dsn or self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                server_settings=settings,
                statement_cache_size=statements,  # (100: asyncpg's default)
                # behind a pooler (no named statements) nothing of the store's outlives its
                # transactions: asyncpg's reset on release (RESET ALL and more) would be one
                # more transaction and round trip through the pooler for each of the store's,
                # and would clear the name PgBouncer shows the hub's clients by
                reset=None if statements else _keep_session,
                init=None if statements else _know_arrays,
            )
        except asyncpg.ProtocolViolationError as exc:
            if not pooler.refused(exc):
                raise self._unavailable(exc) from exc
            if statements:
                raise  # (open: a pooler, then)
            msg = (
                f"Cannot open the event store {self.shown!r}: the connection pooler refused a "
                f"setting of the URL ({exc}); take it out of the URL, or list it in "
                "PgBouncer's ignore_startup_parameters."
            )
            raise StoreError(msg) from exc
        except asyncpg.ClientConfigurationError as exc:
            # an option of the URL the driver refuses (?sslmode=bogus): no wait mends it (an
            # InterfaceError, it was told as the server not reached, and serve waited for it)
            msg = f"Cannot open the event store {self.shown!r}: {exc}; correct the URL."
            raise StoreError(msg) from exc
        except _UNAVAILABLE as exc:  # (statement mode: at _know_arrays's transaction)
            raise self._no_ssl(exc) or self._statement_mode(exc) or self._unavailable(exc) from exc
        except (asyncpg.PostgresError, ValueError) as exc:  # bad credentials, database, DSN
            msg = f"Cannot open the event store {self.shown!r}: {exc}"
            raise StoreError(msg) from exc

    def _no_ssl(self, exc: BaseException) -> StoreError | None:
        """The error to fix when ``exc`` is a server without SSL refusing the SSL that the
        URL's ``sslmode`` requires (asyncpg's "rejected SSL upgrade"); else None. Waiting
        does not turn SSL on: told as the server not reached ("check that PostgreSQL is
        running"), serve waited out its --store-wait for it."""
        if not (isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc)):
            return None
        msg = (
            f"Cannot open the event store {self.shown!r}: the server does not offer SSL "
            f"({exc}), which the URL's sslmode requires; turn SSL on in the server (ssl = on), "
            "or take sslmode=require (verify-ca, verify-full) out of the URL."
        )
        return StoreError(msg)

    def _statement_mode(self, exc: BaseException) -> StoreError | None:
        """The error to fix when ``exc`` is PgBouncer in statement mode ending a transaction
        (waiting will not change it); else None."""
        if not pooler.statement_mode(exc):
            return None
        msg = (
            f"The event store {self.shown!r} is behind PgBouncer in statement pooling mode "
            f"({exc}), which runs no transaction of several statements, and each of the "
            "store's is one: set pool_mode = transaction (or session) for the hub's database "
            "in PgBouncer."
        )
        return StoreError(msg)

    async def _settings_arrived(self, pool: asyncpg.Pool) -> bool:
        """Whether ``pool``'s startup settings reached the server (one round trip, at open);
        if not, the pool is closed: a pooler dropped them."""
        try:
            async with pool.acquire() as conn:
                arrived = bool(await conn.fetchval(pooler.SETTINGS_ARRIVED))
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, _UNAVAILABLE):
                raise self._unavailable(exc) from exc
            if isinstance(exc, asyncpg.PostgresError):
                raise StoreError(f"Cannot open the event store {self.shown!r}: {exc}") from exc
            raise
        if not arrived:
            await pool.close()
        return arrived

    async def _pooled(self, settings: dict[str, str]) -> asyncpg.Pool:
        """A pool for a server behind a pooler that shares server sessions between clients
        (:mod:`hub.store.postgres_pooler`): the settings are each transaction's, and no
        statement is a named one."""
        dsn, idle = pooler.split_setting(self.dsn, "idle_in_transaction_session_timeout")
        local = dict(settings)
        if idle is not None:
            local["idle_in_transaction_session_timeout"] = idle
        self._begin_with(local)
        startup = {k: v for k, v in settings.items() if k in pooler.STARTUP}
        return await self._create_pool(startup, dsn=dsn, statements=0)

    def _begin_with(self, settings: dict[str, str]) -> None:
        """Behind a pooler: each transaction begins by setting ``settings`` for itself."""
        self._local = settings
        self._begin = {
            (isolation, readonly): pooler.begin(settings, isolation=isolation, readonly=readonly)
            for isolation in ("read_committed", "repeatable_read")
            for readonly in (False, True)
        }

    async def _commit_durably(self, settings: dict[str, str]) -> None:
        """Make every commit of the store's reach the disk before it returns, whatever the
        server's default, now or later: a delivery is answered 200 once its transaction
        committed.

        With ``synchronous_commit = off`` (a common tuning, for the server, the database or
        the role) a commit returns before its WAL is written: PostgreSQL killed or its
        machine down within the next few hundred milliseconds lost deliveries the hub had
        answered 200 (the sender does not send them again). The store sets the value it
        finds at open for its own sessions (a startup setting of a new pool; each
        transaction's, behind a pooler), ``on`` (PostgreSQL's default) in place of ``off``:
        a default changed to ``off`` while it runs does not reach them either. ``fsync`` or
        ``full_page_writes`` off cannot be mended by a session: kept in
        :attr:`not_crash_safe`, which serve warns of (a command's output stays its own)."""
        async with self._conn(readonly=True) as conn:
            found = await conn.fetchrow(Q["durability"])
        assert found is not None  # (a SELECT of settings: one row)
        commit, fsync, full_pages = (str(value) for value in found)
        unsafe = {"fsync": fsync, "full_page_writes": full_pages}
        self.not_crash_safe = sorted(name for name, value in unsafe.items() if value == "off")
        kept = {"synchronous_commit": "on" if commit == "off" else commit}
        self._commit = kept["synchronous_commit"]
        if self._begin:
            self._begin_with({**self._local, **kept})
        else:
            old, self._pool = self._pool, None
            if old is not None:
                await old.close()
            self._pool = await self._create_pool({**settings, **kept})
        if commit == "off":
            log().info("store_commits_made_durable", url=self.shown, synchronous_commit="on")

    async def _sync_clock(self, conn: _Conn) -> None:
        """Measure this machine's clock against the database's (a :class:`ServerTime`
        clock only, when due), on ``conn``."""
        clock = self.clock
        if isinstance(clock, ServerTime) and clock.due():
            await self._measure(clock, conn)

    async def _follow_server(self, conn: _Conn, server: float) -> None:
        """Measure a :class:`ServerTime` clock again now, not at its next minute, when it
        reads more than half :data:`CLOCK_STEP_BACK` from ``server`` (the server's clock,
        read in a claim's turn): the server's clock was stepped. Every instance's claims
        then read times within that of the server's, so the clock mark they share sees a
        step of it once. (Left to the minute, an instance not measured yet read the time
        before the step: the mark went forward again after each undo by another instance,
        and the step was undone again at that one's next claim, leases and all.)"""
        clock = self.clock
        if isinstance(clock, ServerTime) and abs(clock.time() - server) > CLOCK_STEP_BACK / 2:
            await self._measure(clock, conn)

    async def _measure(self, clock: ServerTime, conn: _Conn) -> None:
        """Measure ``clock`` against the database's on ``conn``; warn once of a large offset."""
        offset = await clock.measure(lambda: conn.fetchval(Q["server_time"]))
        if abs(offset) >= CLOCK_WARN and not self._clock_warned:
            log().warning(
                "clock_differs",
                offset=round(offset, 3),
                note="this machine's clock differs from the database server's; the hub "
                "uses the server's time, but check NTP on both",
            )
        self._clock_warned = abs(offset) >= CLOCK_WARN

    def _version(self, found: Any) -> int:
        """``meta.schema_version``'s value as a number; a refusal naming the store when it
        is not one (:func:`~hub.store.base.stored_version`)."""
        where = f"in schema {self.schema!r} of {self.shown!r}" if self.schema else repr(self.shown)
        return stored_version(found, where, SCHEMA_VERSION)

    async def _migrate(self, conn: _Conn) -> None:
        """Bring tables made by an older leadhub up to :data:`SCHEMA_VERSION`, under the
        schema lock (several instances may start together); a current store is only read."""
        found = self._version(await conn.fetchval(Q["schema_version"]))
        if found > SCHEMA_VERSION:
            raise newer_schema(found, SCHEMA_VERSION)
        if found == SCHEMA_VERSION:
            return
        await self._take_turn(conn, _SCHEMA_LOCK, self.schema)
        start = version = self._version(await conn.fetchval(Q["schema_version"]))
        # (asked first: once a migration's statement has failed, the transaction answers
        # nothing more)
        role = await conn.fetchval("SELECT current_user") if start < SCHEMA_VERSION else ""
        try:
            while version < SCHEMA_VERSION:
                await conn.execute(Q[f"migrate_{version}"])
                version += 1
        except asyncpg.InsufficientPrivilegeError as exc:
            if self.create:  # serve's open tells it with the GRANTs (_cannot_make)
                raise
            raise self._not_migrated(start, str(role), exc) from exc
        if start < SCHEMA_VERSION:
            log().info("store_migrated", from_version=start, to_version=SCHEMA_VERSION)

    def _not_migrated(self, found: int, role: str, exc: asyncpg.PostgresError) -> StoreUnavailable:
        """The refusal of an older store that ``role`` may not migrate (not the owner of its
        tables: an operator's read-only role running ``leadhub events`` after an upgrade,
        before the new ``serve`` migrated it). It was told as the statement's failure alone,
        "failed: must be owner of table events (SQLSTATE 42501)", where a role's own reads of
        a current store work (SQLite's read-only open says likewise: check_readable)."""
        where = f"in schema {self.schema!r} of {self.shown!r}" if self.schema else repr(self.shown)
        msg = (
            f"the event store {where} has schema version {found}, older than this leadhub's "
            f"({SCHEMA_VERSION}), and the role {role!r} may not migrate it ({exc}); start "
            "this leadhub's `leadhub serve` on it first, or run a leadhub command on it once "
            "as the role that owns its tables (the one `leadhub serve` uses)."
        )
        return StoreUnavailable(msg)

    async def close(self) -> None:
        await self._writes.finish()  # answer every enqueue before closing
        if self._frozen_look is not None:
            self._frozen_look.cancel()
        if self._ping_flight is not None:  # (a ping waiting for a lock: not for the close)
            self._ping_flight.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(10.0):
                    await pool.close()
            except Exception:  # a dead server: drop the connections without goodbyes
                pool.terminate()

    async def ping(self) -> None:
        """A write, after taking the lock a delivery's insert takes (``ping_locks``): it
        waits when webhooks' inserts wait.

        Concurrent pings share the one in flight, which runs to its end whoever stops
        awaiting it. Under a lock that holds up inserts, each probe of ``/readyz`` and
        ``/metrics`` (every 0.2 s from a probe loop) took a pooled connection and waited in
        it, and the probes held the whole pool until the lock went: the webhooks' writes
        and the dispatcher's waited for a connection behind them."""
        flight = self._ping_flight
        if flight is None or flight.done():
            flight = self._ping_flight = asyncio.ensure_future(self._ping())
            flight.add_done_callback(_retrieve)
        try:
            await asyncio.shield(flight)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.cancelled() and task is not None and not task.cancelling():
                msg = f"The event store {self.shown!r} is closing; the ping was ended."
                raise StoreUnavailable(msg) from None
            raise

    async def _ping(self) -> None:
        async with self._conn() as conn:
            await conn.execute(Q["ping_locks"])
            await conn.execute(Q["ping"], str(self.clock.time()))

    @contextlib.asynccontextmanager
    async def _conn(
        self,
        *,
        isolation: _Isolation = "read_committed",
        readonly: bool = False,
        transaction: bool = True,
    ) -> AsyncIterator[_Conn]:
        """A pooled connection inside one transaction (with ``transaction=False``: each
        statement its own, except behind a pooler); driver errors become store errors."""
        if self._pool is None:
            msg = f"The event store {self.shown!r} is not open; call open() first."
            raise StoreError(msg)
        acquired = False  # (a connect that timed out waited for no commit)
        try:
            async with self._pool.acquire() as conn:
                acquired = True
                await self._sync_clock(conn)  # (about once a minute)
                if self._begin:  # behind a pooler: every statement in a transaction
                    async with pooler.transaction(conn, self._begin[isolation, readonly]):
                        yield conn
                    return
                if not transaction:
                    yield conn
                    return
                async with conn.transaction(isolation=isolation, readonly=readonly):
                    yield conn
        except StoreError:
            raise
        except _UNAVAILABLE as exc:
            # a write's time ran out: its commit may have waited for a synchronous standby
            waited = isinstance(exc, TimeoutError) and acquired and not readonly
            if waited and (wait := await self.commit_wait()):
                msg = f"The event store {self.shown!r} did not answer in time: {wait.text}"
                raise StoreUnavailable(msg) from exc
            raise self._statement_mode(exc) or self._unavailable(exc) from exc
        except asyncpg.ReadOnlySQLTransactionError as exc:
            raise await self._read_only(exc) from exc
        except asyncpg.PostgresError as exc:
            msg = f"The event store {self.shown!r} failed: {exc} (SQLSTATE {exc.sqlstate})"
            raise StoreError(msg) from exc

    async def _read_only(self, exc: asyncpg.PostgresError) -> StoreUnavailable:
        """A server that takes no writes (SQLSTATE 25006: a standby, or a primary that a
        failover is demoting, met through a stale DNS name or pool) is an outage to wait out,
        as a stopped one is: webhooks get 503, the dispatcher's events go back untried,
        serve's --store-wait keeps trying. A plain StoreError was logged as a bug with its
        traceback and spent an attempt of each event it met.

        A primary whose sessions begin read-only (``default_transaction_read_only`` on for the
        server, the database or the role: a DBA's freeze, or a managed service's guard of a
        nearly full disk) is told as such: it was told as a standby, and its operator sent to
        point the URL at a primary it already named."""
        if await self._read_only_by_default():
            msg = (
                f"The event store {self.shown!r} takes no writes ({exc}): the server is a "
                "primary, but default_transaction_read_only is on for the hub's sessions (set "
                "on the server, the database or the role, or in the URL; some managed "
                "services turn it on when the disk is nearly full): free disk space, or turn "
                "it off (ALTER DATABASE ... RESET default_transaction_read_only, or the role's)."
            )
            return StoreUnavailable(msg)
        msg = (
            f"The event store {self.shown!r} takes no writes ({exc}); it is a standby, or a "
            "failover is under way: point the URL at the primary (libpq's "
            "target_session_attrs=read-write picks it among several hosts)."
        )
        return StoreUnavailable(msg)

    async def commit_wait(self) -> CommitWait | None:
        """What the store's commits wait for: a synchronous standby that does not confirm
        them (``synchronous_standby_names`` naming one that is gone, stopped or never made),
        or its writes for a lock another session holds (:func:`_lock_wait`; with a
        ``lock_timeout`` set, which ends those waits before they are seen, the locks held
        against inserts on its tables: :func:`_lock_held`), else None (also when it cannot
        be read within :data:`WAIT_READ_WITHIN`, on a connection of its own: the pool's may
        all be waiting). A session of the hub frozen mid-statement that holds those writes up
        is ended by the reading (:meth:`_end_frozen_on`): the server never ends it.

        Such a commit does not fail: it waits for as long as the standby is missing, the
        store's sessions committing with ``synchronous_commit = on`` at least
        (:meth:`_commit_durably`), and the server says nothing. serve's first open waited
        there silently, then was told "cannot be reached ... check that PostgreSQL is
        running" after the driver's timeout; webhooks got 503 with a guessed cause. Found
        by the wait event ``SyncRep`` of the hub's sessions (by their application_name) in
        ``pg_stat_activity``, waited over a second. One reading serves the callers of
        :data:`WAIT_READ_KEPT` seconds. Its :attr:`~CommitWait.headline` is what ``/readyz``
        answers (holders and settings only in the log)."""
        async with self._wait_reading:
            now = time.monotonic()
            if self._wait_read is not None and now - self._wait_read[0] < WAIT_READ_KEPT:
                return self._wait_read[1]
            found = await self._read_commit_wait()
            self._wait_read = (time.monotonic(), found)
            return found

    async def _read_commit_wait(self) -> CommitWait | None:
        """:meth:`commit_wait`'s reading, on a connection of its own."""
        held: list[Any] = []
        try:
            async with self._looking() as conn:
                found = await conn.fetchrow(Q["standby_wait"], APPLICATION_NAME)
                locked = await conn.fetch(Q["lock_waits"], APPLICATION_NAME, self.schema)
                if locked:
                    # Writes held up by a session of the hub frozen mid-statement (a sender's
                    # retry of a delivery another instance froze while inserting) wait for
                    # ever: the server never ends it. Ended here, they go on.
                    try:
                        await self._end_frozen_on(conn)
                    except Exception as exc:  # (the reading still tells the wait)
                        log().warning("store_frozen_look_failed", url=self.shown, error=str(exc))
                if not locked and found is not None and found[4] != "0":
                    # a lock_timeout: the hub's waits end before they are seen
                    held = await conn.fetch(Q["lock_holders"], self.schema)
        except Exception:
            return None
        if found is None:
            return None
        waiting, names, synchronous, hidden, lock_timeout = found
        if locked and not waiting:
            return _lock_wait(locked)
        if waiting:
            seen = f"{waiting} session{'s' if waiting > 1 else ''} of the hub waiting over a second"
        elif names and self._commit in _WAITS_FOR_STANDBY and not synchronous and not hidden:
            # (a wait the driver's timeout cancelled is over: the setting and the standbys
            # connected tell it)
            seen = "no synchronous standby is connected"
        elif held:
            return _lock_held(held, str(lock_timeout))
        else:
            return None
        text = (
            f"its commits wait for a synchronous standby to confirm them (wait event SyncRep: "
            f"{seen}; the primary's synchronous_standby_names = {str(names)!r}): bring that "
            "standby back (or connect one it names), or change synchronous_standby_names on "
            "the primary (empty: no standby waited for) and reload it. A waiting commit is "
            "on the primary's disk already and completes once confirmed."
        )
        return CommitWait("standby", text)

    @contextlib.asynccontextmanager
    async def _looking(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own (the pool's may all be waiting), named ``leadhub-look``, for
        a look at the server's sessions that ends within :data:`WAIT_READ_WITHIN` seconds, or
        raises (the connection dropped without a goodbye: the server may be the one not
        answering)."""
        conn: asyncpg.Connection | None = None
        # (without the URL's idle_in_transaction_session_timeout, a startup setting a pooler
        # refuses, as the pool does behind one: a look runs no transaction)
        dsn, _ = pooler.split_setting(self.dsn, "idle_in_transaction_session_timeout")
        try:
            async with asyncio.timeout(WAIT_READ_WITHIN):
                conn = await asyncpg.connect(
                    dsn,
                    statement_cache_size=0,  # (a pooler's transaction mode: no named ones)
                    server_settings={"application_name": f"{APPLICATION_NAME}-look"},
                )
                yield conn
                await conn.close()
        except BaseException:
            if conn is not None:
                conn.terminate()
            raise

    async def _take_turn(self, conn: _Conn, query: str, *args: Any) -> Any:
        """The value of ``query``, a statement that takes an advisory lock (a turn: the
        claims', an account's calls', a purge's, the schema's), however long another session
        holds it. While this waits over :data:`FROZEN_AFTER` seconds, a look ends the
        sessions of the hub frozen in the middle of a statement that hold up one of its waits
        (:meth:`_end_frozen`): the server never ends them, and every instance waited on one
        frozen in its turn for as long as its connection lasted."""
        turn = next(self._turn_ids)
        self._turns[turn] = time.monotonic()
        timer = asyncio.get_running_loop().call_later(FROZEN_AFTER, self._look_for_frozen)
        try:
            return await conn.fetchval(query, *args)
        except asyncpg.LockNotAvailableError:
            # (a lock_timeout cut the wait short of FROZEN_AFTER: each wait may, for as long
            # as the holder is frozen, so the look is not left to the timer)
            self._look_for_frozen()
            raise
        finally:
            timer.cancel()
            del self._turns[turn]

    def _look_for_frozen(self) -> None:
        if self._frozen_look is None or self._frozen_look.done():
            self._frozen_look = asyncio.ensure_future(self._end_frozen_while_waiting())

    async def _end_frozen_while_waiting(self) -> None:
        """A look (:meth:`_end_frozen`) now, then every half of :data:`FROZEN_AFTER` seconds
        while a turn has waited that long. (Not asked before the first: the event loop's
        timer may fire a few milliseconds before ``time.monotonic()`` says it is due, and a
        first look skipped so was never run.)"""
        while self._pool is not None:
            await self._end_frozen()
            await asyncio.sleep(FROZEN_AFTER / 2)
            now = time.monotonic()
            if not any(now - began >= FROZEN_AFTER for began in self._turns.values()):
                return

    async def _end_frozen(self) -> None:
        """:meth:`_end_frozen_on` a connection of its own; a failure logged
        (``store_frozen_look_failed``)."""
        try:
            async with self._looking() as conn:
                if not await self._end_frozen_on(conn):
                    await self._tell_turn_wait(conn)
        except Exception as exc:
            log().warning("store_frozen_look_failed", url=self.shown, error=str(exc))

    async def _tell_turn_wait(self, conn: asyncpg.Connection) -> None:
        """Log ``store_turn_waiting`` (at most once a :data:`TURN_TOLD_EVERY`): a turn has
        waited over :data:`FROZEN_AFTER` seconds for sessions that are not frozen sessions of
        the hub (a slow statement of another instance's, a session idle in its transaction
        until the server ends it, one this role cannot see), named with what this role sees of
        them. The dispatcher sent nothing meanwhile, and no line said why."""
        now = time.monotonic()
        if self._turn_told is not None and now - self._turn_told < TURN_TOLD_EVERY:
            return
        holders = [_holder(*row) for row in await conn.fetch(Q["turn_holders"], APPLICATION_NAME)]
        if not holders:  # (the wait is over)
            return
        self._turn_told = now
        waited = max((now - began for began in self._turns.values()), default=0.0)
        log().warning(
            "store_turn_waiting", url=self.shown, waited=round(waited, 1),
            holders=", ".join(holders),
        )  # fmt: skip

    async def _end_frozen_on(self, conn: asyncpg.Connection) -> int:
        """Ends each session of the hub frozen mid-statement that holds up one of the hub's
        lock waits or holds a turn (the ``frozen_holders`` query), logged as
        ``store_frozen_session_ended``; one this role may not end (another role's, without
        ``pg_signal_backend``) is logged as ``store_frozen_session_left``, with the fix. Its
        transaction is rolled back: the frozen instance, once it goes on, finds its
        connection closed and runs it again. How many it found."""
        found = await conn.fetch(Q["frozen_holders"], APPLICATION_NAME, FROZEN_AFTER)
        for pid, client, frozen_for, transaction_for in found:
            held = {
                "pid": pid,
                "client": client,
                "frozen_for": round(frozen_for, 1),
                "transaction_for": round(transaction_for, 1),
            }
            try:
                await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            except asyncpg.InsufficientPrivilegeError as exc:
                fix = (
                    "end it with pg_terminate_backend as its role or a superuser, and run "
                    "every instance as one role (or GRANT pg_signal_backend to the hub's)"
                )
                log().warning(
                    "store_frozen_session_left", url=self.shown, error=str(exc), fix=fix, **held
                )
                continue
            log().warning("store_frozen_session_ended", url=self.shown, **held)
        return len(found)

    async def _read_only_by_default(self) -> bool:
        """Whether the server is a primary whose sessions begin read-only (one read, on the
        way to an error only; False when it cannot be told)."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT), self._conn(readonly=True) as conn:
                found = await conn.fetchrow(
                    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
                )
        except (StoreError, TimeoutError):
            return False
        return found is not None and found[0] is False and found[1] == "on"

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        if isinstance(exc, asyncpg.InsufficientResourcesError):
            return StoreUnavailable(self._short_of(exc))
        if isinstance(exc, asyncpg.LockNotAvailableError):
            return LockTimedOut(self._cancelled(exc))
        if isinstance(exc, asyncpg.QueryCanceledError):
            return StoreUnavailable(self._cancelled(exc))
        if isinstance(exc, asyncpg.ProtocolViolationError) and "max_client_conn" in str(exc):
            # PgBouncer full: answered, as a server short of connections does (_short_of)
            msg = (
                f"The event store {self.shown!r} refused the work ({exc}): the connection "
                "pooler has no client connection left; raise its max_client_conn (PgBouncer), "
                "or lower ?pool= on the instances."
            )
            return StoreUnavailable(msg)
        if pooler.QUERY_WAIT in str(exc):
            # PgBouncer's pool for the database and user taken for its query_wait_timeout
            msg = (
                f"The event store {self.shown!r} refused the work ({exc}): the connection "
                "pooler had no server connection free for the hub within its "
                "query_wait_timeout (PostgreSQL itself is up); its pool for this database and "
                "user is smaller than its clients need (in session mode each connection of "
                "the hub's ?pool= holds one for its life): raise default_pool_size (and "
                "max_db_connections), use pool_mode = transaction, or lower ?pool= on the "
                "instances."
            )
            return StoreUnavailable(msg)
        if pooler.QUERY_TIMEOUT in str(exc):
            # PgBouncer's query_timeout: as a statement_timeout, but it ends the connection
            msg = (
                f"The event store {self.shown!r} ended a statement of the hub ({exc}): the "
                "connection pooler's query_timeout (PgBouncer) is shorter than the hub's "
                "waits (a claim's turn, an account's calls, a lock another session holds; "
                "PostgreSQL itself is up); set query_timeout = 0 for the hub's database in "
                f"PgBouncer: the hub ends a statement after {COMMAND_TIMEOUT:g} s itself."
            )
            return StoreUnavailable(msg)
        # (a timeout's text is empty: say what it was)
        why = str(exc) or (
            "the server did not answer in time" if isinstance(exc, TimeoutError) else "-"
        )
        msg = (
            f"The event store {self.shown!r} cannot be reached ({type(exc).__name__}: {why}); "
            "check that PostgreSQL is running and the URL's host, port and database."
        )
        return StoreUnavailable(msg)

    def _cancelled(self, exc: asyncpg.QueryCanceledError | asyncpg.LockNotAvailableError) -> str:
        """A statement the server cancelled: a ``statement_timeout`` (SQLSTATE 57014) or a
        ``lock_timeout`` (55P03), the URL's or one a DBA set on the role or database, shorter
        than a wait of the store's (a claim's turn, an account's calls, a lock another session
        holds), or ``pg_cancel_backend`` (57014): an outage the server names. The first was
        said to be unreachable ("check that PostgreSQL is running": the network, while the
        server answered every statement), the second a store error (a traceback, as for a bug,
        and an attempt spent of each event sent meanwhile)."""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        locked = isinstance(exc, asyncpg.LockNotAvailableError)
        setting = "lock_timeout" if locked else "statement_timeout"
        also = "" if locked else ", or an administrator's pg_cancel_backend"
        return (
            f"The event store {self.shown!r} cancelled a statement of the hub ({first}): a "
            f"{setting} (the URL's, or one set on the role or the database) shorter than the "
            f"hub's waits{also}; give the hub's connections "
            f"{setting}=0 (?{setting}=0 in the URL, or ALTER ROLE ... SET {setting} = 0 behind "
            f"PgBouncer): the hub ends a statement after {COMMAND_TIMEOUT:g} s itself."
        )

    def _short_of(self, exc: asyncpg.InsufficientResourcesError) -> str:
        """A server that answered but is short of something (SQLSTATE class 53): what to do
        about it. Said to be unreachable, with "check that PostgreSQL is running", a full disk
        sent its operator to the network and the URL (seen with the tables' tablespace on a
        full disk: every webhook 503, every claim refused, the server up all along)."""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, asyncpg.DiskFullError):
            advice = (
                "the database server's disk is full: free space there (or grow it); webhooks "
                "get 503 meanwhile, and writes resume by themselves once it has room"
            )
        elif isinstance(exc, asyncpg.TooManyConnectionsError) and (
            limited := re.search(r"too many connections for (role|database) (.*)", first)
        ):
            # a CONNECTION LIMIT of the role or database, the server having connections left
            # (it read "the server has no connection left ... raise max_connections")
            kind, name = limited.groups()
            advice = (
                f"the {kind} {name} has a CONNECTION LIMIT below the connections the "
                f"instances open (up to ?pool= each, {self.pool_size} here), the server having "
                f"connections left: raise it (ALTER {kind.upper()} {name} CONNECTION LIMIT n, "
                "or -1 for none), or lower ?pool= on the instances"
            )
        elif isinstance(exc, asyncpg.TooManyConnectionsError):
            advice = (
                "the server has no connection left: lower ?pool= on the instances, or raise "
                "the server's max_connections"
            )
        else:
            advice = "the server is short of what it names: see its log"
        return f"The event store {self.shown!r} refused the work ({first}); {advice}."

    # -- ingest ---------------------------------------------------------------------------

    async def enqueue(self, delivery: IncomingDelivery) -> builtins.list[EnqueueResult]:
        if not delivery.events and delivery.skim is None:
            return []
        pending = to_pending(row_of(delivery, self.clock.time()))
        if pending is None:
            raise BodyNotSkimmed
        return await self._writes.enqueue(pending)

    def submit(self, delivery: IncomingDelivery, tell: Settle) -> None:
        """:meth:`enqueue` without a task of its own (``hub.store.base.Submits``): ``tell``
        runs once the gathered statement holding the delivery has committed."""
        if not delivery.events and delivery.skim is None:
            tell([])
            return
        pending = to_pending(row_of(delivery, self.clock.time()))
        if pending is None:
            tell(BodyNotSkimmed())
            return
        self._writes.submit(pending, tell)

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
        exclude, unrouted = sorted(exclude_targets), sorted(exclude_unrouted)
        known = None if known_endpoints is None else sorted(known_endpoints)
        for tries_left in reversed(range(DEADLOCK_TRIES)):
            try:
                return await self._claim(limit, lease, exclude, unrouted, known)
            except StoreError as exc:
                if tries_left and aborted(exc):  # (it wrote nothing: see aborted)
                    await before_rerun("claim", 0, exc, tries_left)
                    continue
                raise
        raise AssertionError("unreachable")  # (the last try returns or raises)

    async def _claim(
        self,
        limit: int,
        lease: float,
        exclude: builtins.list[str],
        unrouted: builtins.list[str],
        known: builtins.list[str] | None,
    ) -> builtins.list[Event]:
        """:meth:`claim`'s transaction."""
        async with self._conn() as conn:
            # Claims take turns (lock_claims): none is ever committed after a later one's
            # ordering check has read the store. Time is read once the turn is ours.
            await self._follow_server(conn, float(await self._take_turn(conn, Q["lock_claims"])))
            reading = self._watch.read(self.clock)
            now = reading.now
            shift, stepped = await self._clock_mark(conn, reading)
            waiting = await conn.fetch(Q["claimable_waiting"], now, exclude, limit, unrouted, known)
            expired = await conn.fetch(Q["claimable_expired"], now, exclude, limit, unrouted, known)
            ids = sorted({r[0] for r in waiting} | {r[0] for r in expired})[:limit]
            found = []
            if ids:
                await conn.execute(Q["mark_claimed"], ids, now + lease, now)
                found = await conn.fetch(Q["event_rows"], ids)
        self._watch.keep(reading, shift)  # (committed)
        if stepped is not None:  # (logged once committed: a try rolled back applied nothing)
            log_clock_step(*stepped)
        return with_clock_shift([rows.event_of(r) for r in found], shift)

    async def _clock_mark(
        self, conn: _Conn, reading: ClockReading
    ) -> tuple[float, tuple[float, int, int, int] | None]:
        """Keep the store's clock mark, in a claim's turn (as SQLite's ``_clock_mark``): a
        time more than :data:`CLOCK_STEP_BACK` before it is a step back of the store's clock
        (the database server's, or a test's): the waiting events' due times and the claimed
        events' lease ends go back as much, and so the clock shift grows
        (``clock_stepped_back``), once for every instance on the store. A step forward this
        instance saw (``ahead``: a :class:`ServerTime` clock measured again after a step of
        the server's clock, see :func:`clock_step`), less the steps another instance applied
        since this one's last claim (:meth:`ClockReading.unapplied`), moves the lease ends
        forward and the shift down as much (``clock_stepped_forward``). Returns the shift,
        and the step applied for :func:`log_clock_step` (the claim logs it once committed: a
        claim aborted by a deadlock and run again logged a step applied once twice)."""
        row = await conn.fetchrow(Q["clock_mark"])
        assert row is not None  # (one row, of two subqueries)
        now = reading.now
        shift, step = reading.against(*row)
        if step is None:
            return shift, None
        stepped = None
        if step:
            moved = slots = 0
            if step > 0:
                moved = _count(await conn.execute(Q["clock_stepped_back"], step, now))
                slots = await self._slots_stepped_back(conn, step, now)
            leases = _count(await conn.execute(Q["leases_stepped_back"], step))
            shift += step
            await conn.execute(Q["set_clock_shift"], repr(shift))
            stepped = (step, moved, leases, slots)
        await conn.execute(Q["set_clock_mark"], repr(now))
        return shift, stepped

    async def _slots_stepped_back(self, conn: _Conn, step: float, now: float) -> int:
        """Move the rate slots said to end after ``now`` and the waiters' turns back by
        ``step`` (a step back of the clock, undone in a claim's turn), each account under its
        lock (``lock_account``, taken in the accounts' order): rows take_slots writes under
        it are moved only between two of its turns. How many slots moved."""
        moved = 0
        for row in await conn.fetch(Q["stepped_accounts"], now):
            await self._take_turn(conn, Q["lock_account"], row[0])
            moved += _count(await conn.execute(Q["slots_stepped_back"], step, now, row[0]))
            await conn.execute(Q["waiters_stepped_back"], step, now, row[0])
        return moved

    async def ack(
        self,
        event_id: int,
        *,
        lead_id: str | None,
        created: bool | None,
        lease: float | None = None,
    ) -> None:
        await self._update(
            "ack", event_id, lease, lead_id, None if created is None else int(created)
        )

    async def retry(
        self, event_id: int, *, at: float, error: str, lease: float | None = None
    ) -> None:
        await self._update("retry", event_id, lease, at, error)

    async def release(
        self, event_id: int, *, at: float, reason: str | None = None, lease: float | None = None
    ) -> None:
        await self._update("release", event_id, lease, at, reason)

    async def dead(self, event_id: int, *, error: str, lease: float | None = None) -> None:
        await self._update("finish", event_id, lease, State.DEAD.value, error)

    async def unmatched(self, event_id: int, *, reason: str, lease: float | None = None) -> None:
        await self._update("finish", event_id, lease, State.UNMATCHED.value, reason)

    async def skipped(self, event_id: int, *, reason: str, lease: float | None = None) -> None:
        await self._update("finish", event_id, lease, State.SKIPPED.value, reason)

    async def _update(self, query: str, event_id: int, lease: float | None, *args: Any) -> None:
        """One outcome: ``query`` takes (id, *args, now, lease).

        One under a lease that wrote nothing is tried once more, in the same transaction,
        before it is a lost lease: a claim that undid a step back of the clock
        (:meth:`_clock_mark`) may have committed while the statement waited for the event's
        row, which it then checked (its moved lease end) against the clock shift of its own
        snapshot, from before the step, and missed; the next statement's snapshot sees both.
        (A live holder's delivery left unwritten is sent again once its lease ends.)"""
        params = (event_id, *args, self.clock.time(), lease)
        async with self._conn() as conn:
            done = await conn.execute(Q[query], *params)
            if not _count(done) and lease is not None:
                done = await conn.execute(Q[query], *params)  # (see the docstring)
            if _count(done):
                return
            if lease is not None and await conn.fetchval(Q["find_id"], event_id):
                raise lease_lost(event_id)
            raise no_event(event_id)

    async def set_routes(
        self, routes: Sequence[Route], *, reading: Sequence[int] = ()
    ) -> builtins.list[int]:
        if not routes and not reading:
            return []
        ids = [int(r.event_id) for r in routes]
        found: set[int] = set()
        async with self._conn() as conn:
            if routes:
                found = {
                    r[0]
                    for r in await conn.fetch(
                        Q["set_routes"],
                        ids,
                        [r.target for r in routes],
                        [r.mapping for r in routes],
                        self.clock.time(),
                    )
                }
                await conn.execute(Q["delete_lead_keys"], sorted(found))
                keys = [
                    (str(k), r.event_id)
                    for r in routes
                    if r.event_id in found
                    for k in r.lead_keys
                    if k
                ]
                if keys:
                    await conn.execute(
                        Q["insert_lead_keys"], [k for k, _ in keys], [e for _, e in keys]
                    )
            if reading:
                await conn.execute(Q["mark_reading"], [int(i) for i in reading])
        return [i for i in ids if i not in found]

    async def ack_many(self, acks: Sequence[Ack]) -> builtins.list[int]:
        """Several deliveries in one transaction; one aborted by a deadlock is tried again.

        Its rows are locked in the order its plan meets them, and a claim that applies a step
        of the clock locks every leased row (``leases_stepped_back``) in another: each may
        hold a row the other waits for, and the server then aborts one. The claim is simply
        tried again; an ack aborted so was a plain store failure, and the lane gave the
        delivered events back to the queue: each lead was sent again."""
        if not acks:
            return []
        ids = [int(a.event_id) for a in acks]
        now = self.clock.time()
        for tries_left in reversed(range(DEADLOCK_TRIES)):
            try:
                done = await self._ack_many(acks, now)
            except StoreError as exc:
                if tries_left and aborted(exc):
                    await before_rerun("ack_many", len(acks), exc, tries_left)
                    continue
                raise
            return [i for i in ids if i not in done]
        raise AssertionError("unreachable")  # (the last try returns or raises)

    async def _ack_many(self, acks: Sequence[Ack], now: float) -> set[int]:
        """:meth:`ack_many`'s transaction: the ids it wrote."""
        done: set[int] = set()
        async with self._conn() as conn:
            for _ in range(2):  # the second time, those under a lease not written (_update)
                left = [a for a in acks if a.event_id not in done]
                written = await conn.fetch(
                    Q["ack_many"],
                    [int(a.event_id) for a in left],
                    [a.lead_id for a in left],
                    [None if a.created is None else int(a.created) for a in left],
                    [a.lease for a in left],
                    now,
                    [a.at for a in left],
                )
                done |= {r[0] for r in written}
                if all(a.lease is None or a.event_id in done for a in acks):
                    break
        return done

    async def set_enrichment(self, event_id: int, enrichment: Any) -> None:
        data = None if enrichment is None else rows.dumps(enrichment, what="enrichment").decode()
        async with self._conn() as conn:
            done = await conn.execute(Q["set_enrichment"], event_id, data, self.clock.time())
        if not _count(done):
            raise no_event(event_id)

    # -- reads ----------------------------------------------------------------------------

    async def blockers(self, checks: Sequence[tuple[int, Sequence[str]]]) -> dict[int, Event]:
        asked = ordering_checks(checks)
        if not asked:
            return {}
        # One snapshot: a blocker found is still pending when its row is read.
        async with self._conn(isolation="repeatable_read", readonly=True) as conn:
            answers = await conn.fetch(
                Q["blockers"], orjson.dumps(asked).decode(), self.clock.time() - ROUTING_GRACE
            )
            pairs = [(r["asker"], r["blocker"]) for r in answers if r["blocker"] is not None]
            if not pairs:
                return {}
            found = await conn.fetch(Q["event_rows"], sorted({b for _, b in pairs}))
        by_id = {r["id"]: rows.event_of(r) for r in found}
        return {asker: by_id[b] for asker, b in pairs if b in by_id}

    async def get(self, event_id: int) -> Event | None:
        async with self._conn(readonly=True) as conn:
            found = await conn.fetchrow(Q["event_rows"], [int(event_id)])
        return None if found is None else rows.event_of(found)

    async def list(
        self,
        *,
        state: State | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        since: float | None = None,
    ) -> builtins.list[Event]:
        wanted = None if state is None else State(state).value
        async with self._conn(isolation="repeatable_read", readonly=True) as conn:
            found_ids = await conn.fetch(Q["list_ids"], wanted, endpoint, max(0, limit), since)
            ids = [r[0] for r in found_ids]
            found = await conn.fetch(Q["event_rows"], ids) if ids else []
        return [rows.event_of(r) for r in reversed(found)]

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
        wanted = None if state is None else State(state).value
        upto = MAX_ID if before is None else before - 1
        async with self._conn(readonly=True) as conn:
            found = await conn.fetch(
                Q["list_page"], wanted, endpoint, max(0, limit), since, upto, documents
            )
        return [rows.listed_of(r) for r in found]

    async def counts(self, states: Collection[State] | None = None) -> dict[State, int]:
        async with self._conn(readonly=True) as conn:
            if states is None:
                found = await conn.fetch(Q["counts"])
            else:
                found = await conn.fetch(Q["counts_of"], [str(state) for state in states])
        return state_counts(((r[0], r[1]) for r in found), states)

    async def _replayable(self, selection: Replayed) -> int:
        async with self._conn(readonly=True) as conn:
            return int(await conn.fetchval(Q["replayable"], *_replay_args(selection)))

    async def _replay_ids(self, selection: Replayed) -> array.array[int]:
        found: array.array[int] = array.array("q")
        # a cursor: the ids come a page at a time, never as one list of records
        async with self._conn(readonly=True) as conn:
            if self._begin:  # asyncpg's cursor is a named statement: an SQL cursor instead
                await conn.execute(_REPLAY_CURSOR + Q["replay_ids"], *_replay_args(selection))
                while page := await conn.fetch(_REPLAY_FETCH):
                    found.extend(row[0] for row in page)
                return found
            cursor = conn.cursor(Q["replay_ids"], *_replay_args(selection), prefetch=10_000)
            async for row in cursor:
                found.append(row[0])
        return found

    async def _requeue(self, ids: Sequence[int], states: builtins.list[str], now: float) -> int:
        async with self._conn() as conn:
            found = await conn.fetch(Q["requeue"], list(ids), states, now)
            requeued = [r[0] for r in found]
            if requeued:
                await conn.execute(Q["delete_lead_keys"], requeued)
        return len(requeued)

    async def _purge_window(self, after: int) -> tuple[int, float] | None:
        async with self._conn(readonly=True) as conn:
            found = await conn.fetchrow(Q["purge_window"], after, PURGE_WINDOW)
        if found is None or found[0] is None:  # (an aggregate: one row, NULLs when empty)
            return None
        return int(found[0]), float(found[1])

    async def _newest_received(self) -> float | None:
        async with self._conn(readonly=True) as conn:
            found = await conn.fetchval(Q["newest_received"])
        return None if found is None else float(found)

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
        taken = (after, upto, states, before, endpoint)
        if dry_run:
            async with self._conn(readonly=True) as conn:
                return int(await conn.fetchval(Q["purgeable_count"], *taken)), 0
        async with self._conn() as conn:
            await self._take_turn(conn, Q["lock_purge"])
            purged = await conn.fetch(Q["purgeable_events"], *taken)
            if not purged:
                return 0, 0
            ids = [r[0] for r in purged]
            await conn.execute(Q["delete_events"], ids)
            await conn.execute(Q["delete_lead_keys"], ids)
            status = await conn.execute(Q["purge_deliveries"], sorted({r[1] for r in purged}))
        return len(purged), int(status.split()[-1])

    async def next_due(self) -> float | None:
        async with self._conn(readonly=True) as conn:
            found = await conn.fetchval(Q["next_due"])
        return None if found is None else float(found)

    async def resume_held(self, targets: Sequence[str]) -> int:
        async with self._conn() as conn:
            done = await conn.execute(
                Q["resume_held"], self.clock.time(), list(targets), PAUSE_HELD
            )
        return int(done.split()[-1])

    async def keep_spans(self, kind: str, name: str, spans: Sequence[tuple[float, float]]) -> None:
        async with self._conn() as conn:
            rows = [(kind, name, began, ended) for began, ended in spans]
            await conn.executemany(Q["keep_span"], rows)
            await conn.execute(Q["prune_spans"], kind, name, SPANS_KEPT)

    async def kept_spans(
        self, kind: str, names: Sequence[str]
    ) -> dict[str, builtins.list[tuple[float, float]]]:
        async with self._conn(readonly=True) as conn:
            return spans_by_name(await conn.fetch(Q["kept_spans"], kind, list(names)))

    async def resume_reads(self, endpoints: Sequence[str]) -> int:
        async with self._conn() as conn:
            done = await conn.execute(Q["resume_reads"], self.clock.time(), list(endpoints))
        return int(done.split()[-1])

    # -- rate limits shared by every instance on this database -----------------------------

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
        async with self._conn() as conn:
            # The count, the waiters' turns and the new slots are one step for every
            # instance on the database.
            await self._take_turn(conn, Q["lock_account"], account)
            now = self.clock.time()
            latest = now + max(hold, SLOT_HORIZON)
            await conn.execute(Q["expire_slots"], account, now + SLOT_EPSILON, window, latest)
            lapsed = (account, now, now + window + WAITER_GRACE + SLOT_EPSILON)
            await conn.execute(Q["expire_waiters_slots"], *lapsed)
            await conn.execute(Q["expire_waiters"], *lapsed)
            count = await conn.fetchval(Q["count_slots"], account)
            waiters = {
                r[0]: Waiter(r[0], float(r[1]), int(r[2]), float(r[3]), [int(i) for i in r[4]])
                for r in await conn.fetch(Q["waiters"], account)
            }
            me = waiter if waiter is not None else ""
            d = deal(me, want, calls=calls, count=count, now=now, waiters=waiters)
            if d.drop:
                await conn.execute(Q["drop_slots"], d.drop)
            mine = []
            if d.mine:
                handed = await conn.fetch(Q["hand_over"], d.mine, now + hold)
                mine = sorted(int(r[0]) for r in handed)
            total = d.new_mine + sum(d.theirs.values())
            new = []
            if total:
                got = await conn.fetch(Q["take_slots"], account, now + hold, total)
                new = [int(r[0]) for r in got]
            new_mine, theirs = set_aside(d, waiters, new)
            mine += new_mine
            for name, (ready, since) in theirs.items():
                await conn.execute(Q["set_aside"], account, name, ready, since)
            if mine:
                answer = SlotAnswer(tuple(mine))
            else:
                k = d.count - calls
                if k < 0:  # a slot set aside for it had stopped counting: ask again now
                    answer = SlotAnswer(())
                else:
                    ends_at = float(await conn.fetchval(Q["slot_end"], account, k))
                    answer = SlotAnswer(
                        (), max(0.0, ends_at + window - now), in_flight=ends_at > now
                    )
            if waiter is not None:
                place = my_place(
                    d, me, want, own=waiters.get(me), now=now, wait=answer.wait, window=window
                )
                if place is None:
                    await conn.execute(Q["stop_waiting"], account, me)
                else:
                    await conn.execute(Q["set_waiting"], account, me, *place)
        return answer

    async def stop_waiting(self, account: str, waiter: str) -> None:
        async with self._conn() as conn:
            # (under the account's lock, as a claim moving its slots after a step back: each
            # locks several of its slots, and in no set order)
            await self._take_turn(conn, Q["lock_account"], account)
            await conn.execute(Q["stop_waiting_slots"], account, waiter)
            await conn.execute(Q["stop_waiting"], account, waiter)

    async def end_slots(self, account: str, ends: Sequence[tuple[int, float]]) -> None:
        if not ends:
            return
        async with self._conn() as conn:
            # (several rows: under the account's lock, as stop_waiting)
            await self._take_turn(conn, Q["lock_account"], account)
            await conn.execute(
                Q["end_slots"], [e[0] for e in ends], [e[1] for e in ends], self.clock.time()
            )

    async def give_back_slots(self, account: str, slots: Sequence[int]) -> None:
        if not slots:
            return
        async with self._conn() as conn:
            await self._take_turn(conn, Q["lock_account"], account)
            await conn.execute(Q["drop_slots"], list(slots))

    async def fill_window(self, account: str, *, calls: int) -> None:
        async with self._conn() as conn:
            await self._take_turn(conn, Q["lock_account"], account)
            now = self.clock.time()
            counted = await conn.fetchval(Q["count_slots_from"], account, now)
            if counted < calls:
                await conn.execute(Q["take_slots"], account, now, calls - counted)


def _replay_args(selection: Replayed) -> tuple[Any, ...]:
    """A replay's selection as the parameters of ``replayable`` and ``replay_ids``."""
    return (selection.states, selection.ids, selection.endpoint, selection.since)


def _count(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])
