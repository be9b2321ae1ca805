"""The SQLite store's connections, one at a time: opening (and re-opening) the file, the
schema and its migrations, the write lock, and running a batch of jobs in one transaction.

What the store's writer and reader threads (:mod:`hub.store.sqlite_threads`) and the
writer process (:mod:`hub.store.sqlite_child`) share. Nothing here imports asyncio or the
log set-up (a line's logger is fetched when it is written): the writer process imports
this module, and it starts in about a third less time without them, at every ``serve``
on SQLite and at every restart of its writer.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import resource
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hub import sqlite_file
from hub.store.base import (
    NotAFile,
    NotAnEventStore,
    StoreError,
    StoreStats,
    StoreUnavailable,
    log,
    newer_schema,
    stored_version,
)
from hub.store.sql import queries

if TYPE_CHECKING:
    from hub.logs import Failures

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

MAX_BATCH = 256  # jobs per transaction
BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another process's lock
#: Seconds between two tries for the write lock while another connection holds it (see
#: :func:`begin_immediate`).
LOCK_POLL = 0.001

Q = queries("sqlite")
#: A file's device and inode (:func:`hub.sqlite_file.identity`), None when none was seen.
Identity = tuple[int, int] | None


#: What to do about a failed open or write, by SQLite's primary result code or the errno.
#: Every failure used to say "check that its directory exists and is writable", which sent
#: the operator of a full disk or of a file another process kept locked to the wrong place.
_HINTS = {
    sqlite3.SQLITE_BUSY: (
        f"another process held its write lock past the busy timeout ({BUSY_TIMEOUT_MS // 1000}"
        " s); look for a transaction left open on the file (a sqlite3 shell, a backup)"
    ),
    sqlite3.SQLITE_FULL: "its filesystem is full; free space there",
    sqlite3.SQLITE_READONLY: "it or its directory is read-only; make both writable",
    sqlite3.SQLITE_IOERR: (
        "the disk failed to read or write it (an I/O error; a filesystem the kernel turned "
        "read-only after an error gives this too); look in the system log (dmesg)"
    ),
    # (a --db naming another kind of file, or a damaged store: its directory is not the matter)
    sqlite3.SQLITE_NOTADB: (
        "the file is no SQLite database; check that the URL names the event store (the file "
        "`leadhub serve --db` writes), or restore the store from a backup"
    ),
    sqlite3.SQLITE_CORRUPT: (
        "the database file is damaged; restore the store from a backup (one `leadhub backup` "
        "made), or recover what it holds with the sqlite3 shell's .recover"
    ),
}
_FDS = (
    "this process has no file descriptor left (its limit, `ulimit -n`, is reached: raise it, "
    "or look for connections held open)"
)
_ERRNO_HINTS = {
    errno.ENOSPC: _HINTS[sqlite3.SQLITE_FULL],
    errno.EROFS: _HINTS[sqlite3.SQLITE_READONLY],
    errno.EIO: _HINTS[sqlite3.SQLITE_IOERR],
    errno.EMFILE: _FDS,
    errno.ENFILE: "the system has no file descriptor left (fs.file-max); raise it",
}
_HINT = "check that its directory exists and is writable"


def storage_hint(exc: BaseException) -> str:
    """What to check about a SQLite file that could not be opened or written (``exc``, an
    :class:`OSError` or a :class:`sqlite3.Error`): its filesystem full, read-only, failing..."""
    if isinstance(exc, ReadOnlyHere):
        return _HINTS[sqlite3.SQLITE_READONLY]
    if isinstance(exc, OSError) and exc.errno in _ERRNO_HINTS:
        return _ERRNO_HINTS[exc.errno]
    code = getattr(exc, "sqlite_errorcode", None)
    hint = _HINT if code is None else _HINTS.get(code & 0xFF, _HINT)
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        hint += _size_limit_note()
    return hint


def _size_limit_note() -> str:
    """For an I/O error under a file size limit: SQLite reports a write past the limit
    (EFBIG) as a disk I/O error, with nothing to see in the system log."""
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit == resource.RLIM_INFINITY:
        return ""
    return (
        f"; or the file reached this process's file size limit (`ulimit -f`: {limit:,} bytes;"
        " systemd's LimitFSIZE=): raise it and restart the hub"
    )


class ReadOnlyHere(PermissionError):
    """A database file this process may not write (:func:`refuse_read_only`)."""


def refuse_read_only(path: Path) -> None:
    """Raise :class:`ReadOnlyHere` (EACCES) when the database file at ``path`` is there
    and this process may not write it. SQLite opens such a file for writing read-only
    without a word, and makes its ``-wal`` and ``-shm`` beside it, read-only as the file is:
    a command that then failed (``leadhub vacuum``, a purge) left them, and once the file
    was made writable as its message said, the ``-shm`` left read-only still failed every
    write ("attempt to write a readonly database")."""
    if path.exists() and not os.access(path, os.W_OK):
        raise ReadOnlyHere(errno.EACCES, "the file is read-only here", str(path))


def a_directory(path: Path | str, example: str) -> str | None:
    """What to do when ``path``, a database file's, names a directory (``--db
    sqlite:////var/lib/leadhub``, the data directory rather than the file in it), or None
    when it does not: SQLite says only "unable to open database file", and the hint to check
    that the directory exists and is writable pointed at the wrong thing."""
    if not Path(path).is_dir():
        return None
    return f"it is a directory, not a database file: name a file in it ({example})"


def unavailable(path: Path, exc: BaseException) -> StoreUnavailable:
    """The error for a store that cannot be opened or written, saying what to check."""
    folder = a_directory(path, f"sqlite:///{path / 'leadhub.db'}")
    msg = f"The event store {str(path)!r} cannot be opened or written ({exc}); "
    if folder is not None:
        return NotAFile(f"{msg}{folder}.")
    return StoreUnavailable(f"{msg}{storage_hint(exc)}.")


def vanished(path: Path, exc: BaseException) -> StoreUnavailable:
    """The error for a re-open that found no database file at ``path`` (see
    :data:`WRITE_MODES`)."""
    reason = sqlite_file.vanished_reason("store", "hub")
    msg = f"The event store {str(path)!r} cannot be opened or written ({exc}); {reason}."
    return StoreUnavailable(msg)


def foreign_wal(path: Path) -> StoreUnavailable | None:
    """The refusal of a first open of a restored backup beside the write-ahead log of the
    store it replaced (:func:`hub.sqlite_file.foreign_wal`: SQLite would read that log into
    it, a reader as well as a writer); None when there is none. Only before this process
    has the file open: reading the file's header closes a descriptor of it, which drops the
    POSIX locks of SQLite's connections to it."""
    msg = sqlite_file.foreign_wal(path, title="The event store", noun="store")
    return None if msg is None else StoreUnavailable(msg)


def orphan_wal(path: Path) -> StoreUnavailable | None:
    """The refusal of a first open that finds a write-ahead log holding something beside no
    database file (or an empty one) at ``path``; None when there is none (see
    :func:`hub.sqlite_file.orphan_wal`: SQLite would delete it, and the writes it holds)."""
    msg = sqlite_file.orphan_wal(path, title="The event store", noun="store")
    return None if msg is None else StoreUnavailable(msg)


#: Seconds between two lines of one failure of the writer (the same error again and again).
FAILURE_EVERY = 1.0


class WriteFailures:
    """The writer's lines about failed commits, at most one a second for each error.

    A full disk or a read-only file fails every commit until it is fixed, each one a batch of
    deliveries that get 503 (each with its own ``delivery_received`` line): the writer logs
    ``store_write_failed`` (or ``store_unavailable``) at the first, then at most once per
    :data:`FAILURE_EVERY` s for the same error, with ``unlogged`` (how many batches went
    unlogged since), and ``store_write_recovered`` at the first commit after (``failed``:
    the jobs that failed meanwhile, ``seconds`` since the first failure), a warning (the
    writer process logs from that level up). The writer's use of :class:`hub.logs.Failures`,
    which the dispatcher's claims use too.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: Made at the first failure: the log set-up is imported only when there is one
        #: to tell (see the module's docstring).
        self._run: Failures | None = None

    def failed(self, name: str, exc: BaseException, jobs: int) -> None:
        """A batch of ``jobs`` was not committed: ``name`` is the line's event."""
        if self._run is None:
            from hub import logs

            self._run = logs.Failures(
                "store_write_recovered", every=FAILURE_EVERY, clock=self._clock, logger=log
            )
        self._run.failed(name, str(exc), jobs, jobs=jobs)

    def committed(self) -> None:
        """A batch that changed rows was committed: ends a run of failures. (A transaction
        that changed nothing commits on a full disk too.)"""
        if self._run is not None:
            self._run.succeeded()


#: How a reader opens the file (URI parameters). ``mode=rw``: a reader never creates an empty
#: database where the real one vanished. A store that cannot be written here is read with
#: ``mode=ro`` (SQLite makes, or reads, the WAL index beside the file) or, where not even the
#: WAL index can be made (a read-only directory), ``mode=ro&immutable=1``: the file alone,
#: without locks or its WAL (SQLite's way to read a database on read-only media).
READ_MODES = {"rw": "mode=rw", "ro": "mode=ro", "immutable": "mode=ro&immutable=1"}
#: How a writer opens the file, by whether it may create it. Only the store's first open
#: (``SQLiteStore.open``: a fresh install) may. Every later open, the re-open after
#: ``store_file_changed`` or a failed write and the writer process's (a restarted one
#: included), is ``mode=rw``: a file deleted, moved away or hidden (its volume unmounted)
#: while the hub runs used to be replaced by a new, empty store at once, the hub going on
#: with ids from 1, no memory of earlier deliveries, and the waiting events left in the old
#: file; now the writes fail (503, the senders retry) until the file is back.
WRITE_MODES = sqlite_file.WRITE_MODES


def connect(
    path: Path, *, synchronous: str, writer: bool, mode: str = "rw", create: bool = False
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with our pragmas; a
    reader's opens the file as ``mode`` says (:data:`READ_MODES`), a writer's creates a
    missing one only with ``create`` (:data:`WRITE_MODES`), and not beside a write-ahead
    log left by a store whose file is gone (:func:`orphan_wal`) or beside the log of a store
    a restored backup replaced (:func:`foreign_wal`)."""
    if writer and create:
        # Looked at by the first open alone: the file's header is read through a descriptor
        # of its own, and closing it drops every POSIX lock this process holds on the file
        # (SQLite's, of the connections already open), which other processes rely on.
        if (orphaned := orphan_wal(path) or foreign_wal(path)) is not None:
            raise orphaned
        sqlite_file.make_private(path)
    if writer:
        refuse_read_only(path)
    how = WRITE_MODES[create] if writer else READ_MODES[mode]
    conn = sqlite3.connect(
        sqlite_file.uri(path, how), uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # SQLite's temporary files (a statement's journal past 64 KiB, a sort or a set of ids
        # too large for its cache) in memory: it makes them in /var/tmp, /usr/tmp, /tmp or
        # the working directory, and where none is writable (a container with a read-only
        # root filesystem, the --db volume alone writable) a purge of a few hundred events,
        # serve's retention, or a replay failed with "disk I/O error", sending its operator
        # to the disk. Memory enough: a replay of 200,000 events peaked 10 MB higher.
        conn.execute("PRAGMA temp_store = MEMORY")
        if writer:
            refuse_the_sandboxs(conn, path)  # before anything is written to it
            refuse_anothers(conn, path)
            if create and is_new(conn):
                # Before the first page is written (switching to WAL writes the header): a
                # file made without it keeps its size for good (see :func:`give_back_step`).
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            if not is_current(conn):
                migrate(conn)  # first: the schema script's indexes and view name new columns
                conn.executescript(Q["schema"])
            # From here on the write lock is waited for by begin_immediate, not by SQLite's
            # busy handler (whose sleeps grow to 100 ms: see there).
            conn.execute("PRAGMA busy_timeout = 0")
        else:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


#: The schema version this code writes (``meta.schema_version``); older files are migrated.
SCHEMA_VERSION = 4
#: Every table, index and view the schema script makes.
SCHEMA_OBJECTS = frozenset(
    re.findall(r"(?:TABLE|INDEX|VIEW) IF NOT EXISTS (\w+)", Q["schema"], re.IGNORECASE)
)
#: Objects of older versions that the schema script drops: a file holding one is not current
#: (a leadhub older than the refusal of newer files could open this one and make it again).
OBSOLETE_OBJECTS = frozenset(
    re.findall(r"DROP (?:TABLE|INDEX|VIEW) IF EXISTS (\w+)", Q["schema"], re.IGNORECASE)
)


def begin_immediate(conn: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """``BEGIN IMMEDIATE`` on a writer's connection (its busy timeout 0), waiting up to
    ``timeout`` seconds for another connection's write lock by trying again every
    :data:`LOCK_POLL`; past it, SQLite's "database is locked" error is raised as before.

    SQLite's own busy handler sleeps longer and longer between tries (1, 2, 5, ... ms, then
    100 ms each once it has waited a third of a second) and is never told when the lock is
    released. Against a writer that takes the lock in many short steps (a purge or replay run
    by another process, each step a few to a few tens of milliseconds with the lock free in
    between), its tries kept landing inside a step: webhooks waited up to 1.5 s (p50 120 to
    350 ms) for their commit during a 180,000-event purge whose steps each held the lock for
    milliseconds. Tried every millisecond, a writer gets the lock in the first gap.
    """
    deadline: float | None = None

    def waiting() -> bool:
        nonlocal deadline
        if deadline is None:
            deadline = time.monotonic() + timeout
            return True
        return time.monotonic() < deadline

    begin_when_free(conn, LOCK_POLL, waiting)


def begin_when_free(conn: sqlite3.Connection, poll: float, waiting: Callable[[], bool]) -> None:
    """``BEGIN IMMEDIATE``, tried again every ``poll`` seconds while another connection holds
    the write lock and ``waiting()`` (asked at each refusal) says to go on; SQLite's
    "database is locked" error is raised once it says not, any other error at once."""
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF != sqlite3.SQLITE_BUSY or not waiting():
                raise
        time.sleep(poll)


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's ``meta.schema_version``; a clear refusal naming the file when it is not
    a whole number (:func:`~hub.store.base.stored_version`)."""
    row = conn.execute(Q["schema_version"]).fetchone()
    found = None if row is None else row[0]
    with contextlib.suppress(TypeError, ValueError):
        return int(row[0])  # (no row: a TypeError, said below)
    file = conn.execute("PRAGMA database_list").fetchone()[2]
    return stored_version(found, repr(file), SCHEMA_VERSION)


#: The tables of the Lead.Capture sandbox's database (hub/sandbox/schema.sql).
SANDBOX_TABLES = frozenset({"leads", "activities"})


def refuse_the_sandboxs(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse (:class:`NotAnEventStore`) a file holding the sandbox's database and no event
    store. ``LEADHUB_DB`` is also ``leadhub sandbox --db`` (the container image sets it), so
    a sandbox run first makes its leads there; ``serve`` then added the hub's tables beside
    them, and the sandbox refused the file from then on. (The sandbox refuses a file holding
    an event store likewise: hub/sandbox/db.py.)"""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if SANDBOX_TABLES <= tables and "events" not in tables:
        msg = (
            f"{str(path)!r} is no event store: it holds the Lead.Capture sandbox's leads (its "
            "leads and activities tables; leadhub sandbox --db reads LEADHUB_DB too); give "
            "the hub a file of its own, like sqlite:///leadhub.db, and the sandbox another "
            "(--db sandbox.db)"
        )
        raise NotAnEventStore(msg)


#: Tables every event store has held, at every schema version: a file holding tables and
#: neither of these is another application's database.
HUB_TABLES = frozenset({"events", "meta"})
#: How many of another database's tables a refusal names.
TABLES_SHOWN = 5


def refuse_anothers(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse (:class:`NotAnEventStore`) a file holding tables none of which is the hub's:
    another application's database, named by a typo'd ``--db`` or a ``LEADHUB_DB`` meant for
    something else. ``serve`` added its tables beside that application's and took webhooks
    into them. An empty file (no table) is a new store's."""
    tables = sorted(
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%'"
        )
    )
    if not tables or HUB_TABLES & set(tables):
        return
    shown = ", ".join(tables[:TABLES_SHOWN])
    if len(tables) > TABLES_SHOWN:
        shown += f" and {len(tables) - TABLES_SHOWN} more"
    msg = (
        f"{str(path)!r} is no event store: it holds another database's tables ({shown}) and "
        "none of the hub's (events, meta), so the hub writes nothing there; check that the "
        "URL names the event store (a typo may name another application's database), or "
        "give the hub a file of its own, like sqlite:///leadhub.db"
    )
    raise NotAnEventStore(msg)


def is_new(conn: sqlite3.Connection) -> bool:
    """Whether the database is new: nothing written to its file yet (no page), where its
    ``auto_vacuum`` mode can still be chosen. (Setting it on an existing file writes its
    header, taking the write lock at every open; and changes nothing without a VACUUM.)"""
    return int(conn.execute("PRAGMA page_count").fetchone()[0]) == 0


#: Modes of ``PRAGMA auto_vacuum``: a store made since incremental vacuum came gives the pages
#: a purge frees back to the filesystem (:func:`give_back_step`); an older one (NONE) keeps
#: them for new events, the file at its largest, until ``leadhub vacuum`` converts it.
AUTO_VACUUM_NONE, AUTO_VACUUM_INCREMENTAL = 0, 2


def give_back_step(conn: sqlite3.Connection, pages: int) -> int:
    """Inside a write transaction: up to ``pages`` free pages given back (the last pages of
    the file moved into free ones and the file's end cut off, once checkpointed); returns how
    many. ``PRAGMA incremental_vacuum(1)`` once per page: Python's sqlite3 steps a statement
    without result columns once, and each step of the pragma frees one page, so a
    ``incremental_vacuum(N)`` freed one page here, and all N where stepped to its end."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    for _ in range(min(pages, free)):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return free - int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def is_current(conn: sqlite3.Connection) -> bool:
    """Whether the file is at :data:`SCHEMA_VERSION` with every object of the schema script.

    Read only. The script writes (its ``INSERT OR IGNORE`` of the version takes the write
    lock even when it inserts nothing), so run on every open it made each open, the CLI's
    reading commands' included, and the writer's re-open after a failed write, wait for
    another process's write transaction and fail after the busy timeout ("database is
    locked") when that one lasted longer. A file that is current needs none of it.
    """
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if not SCHEMA_OBJECTS <= names or OBSOLETE_OBJECTS & names:
        return False
    return schema_version(conn) == SCHEMA_VERSION


@contextlib.contextmanager
def write_transaction(
    conn: sqlite3.Connection, begin: Callable[[sqlite3.Connection], None] = begin_immediate
) -> Iterator[None]:
    """A write transaction on ``conn`` for the block: ``begin`` (:func:`begin_immediate` by
    default), committed at its end, rolled back when it raises. SQLite has rolled a
    transaction back itself after some errors (a full disk, a file size limit reached:
    migrate_3's copy of the events is as big as they are); a ROLLBACK then failed ("cannot
    rollback - no transaction is active"), and that was the error told, with "check that its
    directory exists and is writable"."""
    begin(conn)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an older leadhub up to :data:`SCHEMA_VERSION` (idempotent).

    Runs before the schema script, whose tables, indexes and view are then those of the
    current version (each ``migrate_N`` takes version N to N + 1 and drops the view, which
    the script makes again). A new, empty file has nothing to migrate.
    """
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise newer_schema(found, SCHEMA_VERSION)
    if found == SCHEMA_VERSION:
        return
    with write_transaction(conn, begin_migration):
        # read again under the lock: another process may have migrated meanwhile
        start = version = schema_version(conn)
        if start < SCHEMA_VERSION:
            # said before it, not only once done: the copy of schema 4 takes seconds per million
            # events, during which the hub takes no webhook (it listens once its store is open).
            # A warning, so that the commands (which write warnings and worse to stderr) say it
            # too: `leadhub events --limit 1`, run to migrate a big store before the new serve,
            # sat silent for minutes on ten million events.
            log().warning(
                "store_migrating",
                from_version=start,
                to_version=SCHEMA_VERSION,
                note="a copy of the events table, seconds per million events; the store takes "
                "no writes meanwhile",
            )
        while version < SCHEMA_VERSION:
            run_script(conn, Q[f"migrate_{version}"])
            version += 1
        if start < SCHEMA_VERSION:
            # The new tables' indexes (migrate_3's copy of the events has none: its dedupe
            # index included) and the view, in the same transaction: a file is never at the new
            # version without them, and the lock is held once, not again for each index (with
            # SQLite's busy timeout, in another process waiting for them, as in its own).
            run_script(conn, Q["schema"])
    if start < SCHEMA_VERSION:
        # The migration went through the write-ahead log (migrate_3: a copy of the whole events
        # table, 0.7 GB per million events), which SQLite reuses but never shrinks while a
        # connection is open: the -wal file stayed that big beside the store for as long as
        # the hub ran. Its pages are in the database once checkpointed; the file is cut back
        # then (best effort: a reader of another process may hold it; the last connection to
        # close removes the file in any case).
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        log().info("store_migrated", from_version=start, to_version=SCHEMA_VERSION)


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run the statements of ``script`` one by one, inside the caller's transaction (a
    connection's ``executescript`` would commit it first)."""
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def begin_migration(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` for a migration, waiting for the write lock as long as its holder
    keeps writing (the store's ``-wal`` file changes), and up to :data:`MIGRATION_QUIET` (the
    busy timeout) once not.

    Another leadhub opening the store at the same moment (``serve --role web`` and ``--role
    worker`` started together, a ``leadhub events`` run beside them) is migrating it, which
    holds the lock for seconds per million events (migrate_3 copies the events table): the
    busy timeout alone (10 s) ended this process's start with "database is locked ... look for
    a transaction left open" from about two million events on. A transaction left open by a
    sqlite3 shell writes nothing, and still fails after the busy timeout.
    """
    wal = Path(f"{conn.execute('PRAGMA database_list').fetchone()[2]}-wal")

    def written() -> tuple[int, int] | None:
        try:
            stat = wal.stat()
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    seen, quiet_since = written(), time.monotonic()
    said = False

    def waiting() -> bool:
        nonlocal seen, quiet_since, said
        if not said:  # (once: another leadhub migrating it, as a rule)
            said = True
            # (a warning, for the commands' stderr too: see store_migrating)
            log().warning("store_migration_waiting", reason="another process holds its lock")
        now = written()
        if now != seen:
            seen, quiet_since = now, time.monotonic()
            return True
        return time.monotonic() - quiet_since < MIGRATION_QUIET

    conn.execute("PRAGMA busy_timeout = 0")
    try:
        begin_when_free(conn, MIGRATION_POLL, waiting)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


#: Seconds between two tries for the write lock while another process migrates the store.
MIGRATION_POLL = 0.05
#: Seconds without a write to the ``-wal`` file after which a migration stops waiting for the
#: write lock (:func:`begin_migration`): the busy timeout's.
MIGRATION_QUIET = BUSY_TIMEOUT_MS / 1000


#: The oldest schema version a read-only open reads as it is: version 4 made the events table
#: again with AUTOINCREMENT (how ids are handed out), its columns, indexes and view as version
#: 3's. A version-3 store on read-only media (a backup taken before the upgrade) was refused
#: by ``leadhub events`` from schema 4 on, though nothing it reads had changed.
READABLE_FROM = 3


def check_readable(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse (:class:`StoreUnavailable`) a store opened read-only whose schema this code does
    not read: a newer one (as the writer's open does) or one older than :data:`READABLE_FROM`,
    which only a writable open can migrate."""
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise newer_schema(found, SCHEMA_VERSION)
    if found < READABLE_FROM:
        msg = (
            f"the event store {str(path)!r} has schema version {found}, older than this "
            f"leadhub's ({SCHEMA_VERSION}), and cannot be written here to migrate it; run a "
            "leadhub command on it once where it is writable (or on a writable copy) first."
        )
        raise StoreUnavailable(msg)


def is_job_error(exc: BaseException) -> bool:
    """Whether ``exc`` belongs to one job (bad input, a bug) rather than the database."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return True
    return not isinstance(exc, sqlite3.Error)


class Reopening:
    """A connection to ``path`` that re-opens itself when the file behind the path changes."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        writer: bool,
        stats: StoreStats,
        mode: str = "rw",
        opened: Identity = None,
        wal: Identity = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.writer = writer
        self.stats = stats
        self.mode = mode
        self.conn: sqlite3.Connection | None = None
        self.identity: Identity = None
        #: The file opened last and its write-ahead log (kept when the connection is
        #: dropped; the writer process's are its parent's, see :meth:`files`).
        self.opened, self.wal = opened, wal

    def files(self) -> tuple[Identity, Identity]:
        """The identities of the file opened last and of its write-ahead log."""
        return self.opened, self.wal

    def get(self, *, create: bool = False) -> sqlite3.Connection:
        """The connection, (re-)opened if needed; a writer's open creates a missing file
        only with ``create`` (the store's first open). A missing file raises
        :class:`StoreUnavailable` saying it went missing (:func:`vanished`); another file
        than the one opened before, with that one's log still beside it, saying so
        (:func:`hub.sqlite_file.stale_wal`: SQLite would read the new file through the old
        one's log, its events hidden and the old store's shown, ids taken on from them)."""
        ident = sqlite_file.identity(self.path)
        if self.conn is not None and ident != self.identity:
            log().warning("store_file_changed", path=str(self.path.absolute()), writer=self.writer)
            self.drop()
        if self.conn is None:
            if ident is not None and self.opened is not None and ident != self.opened:
                stale = sqlite_file.stale_wal(
                    self.path, self.wal, title="The event store", runner="hub"
                )
                if stale is not None:
                    raise StoreUnavailable(stale)
            try:
                self.conn = connect(
                    self.path,
                    synchronous=self.synchronous,
                    writer=self.writer,
                    mode=self.mode,
                    create=create,
                )
            except (sqlite3.Error, OSError) as exc:
                if not create and sqlite_file.missing(self.path):
                    raise vanished(self.path, exc) from exc
                raise unavailable(self.path, exc) from exc
            self.identity = self.opened = sqlite_file.identity(self.path)
            self.wal = sqlite_file.identity(sqlite_file.wal_of(self.path))
            self.stats.opens += 1
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
        self.conn = None
        self.identity = None


P = TypeVar("P")


def savepointed(conn: sqlite3.Connection, fn: Job[Any]) -> tuple[bool, Any]:
    """``(True, fn(conn))``, or ``(False, error)`` with only ``fn``'s writes undone.

    Raises what is not the job's own error (the database failed: see ``is_job_error``).
    """
    conn.execute("SAVEPOINT job")
    try:
        value = fn(conn)
    except Exception as exc:
        if not is_job_error(exc):
            raise
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return (False, job_failure(exc))
    conn.execute("RELEASE job")
    return (True, value)


def bulk_or_each(
    conn: sqlite3.Connection,
    payloads: list[P],
    together: Callable[[sqlite3.Connection, list[P]], list[Any]],
    one: Callable[[sqlite3.Connection, P], Any],
) -> list[tuple[bool, Any]]:
    """Inside an open transaction: ``together`` for all payloads in one go or, when that
    meets one payload's bad data, the transaction started over with ``one`` per payload,
    each in its own savepoint (see :func:`savepointed`). One outcome per payload, in order.
    """
    try:
        return [(True, value) for value in together(conn, payloads)]
    except Exception as exc:
        if not is_job_error(exc):
            raise
    # start over, one savepoint per payload, so only the faulty one fails
    conn.execute("ROLLBACK")
    begin_immediate(conn)
    return [savepointed(conn, functools.partial(_one_of, one, p)) for p in payloads]


def _one_of(
    one: Callable[[sqlite3.Connection, P], Any], payload: P, conn: sqlite3.Connection
) -> Any:
    return one(conn, payload)


def job_failure(exc: Exception) -> Exception:
    """What a job's own failure ``exc`` (see :func:`is_job_error`) raises to its caller: a
    database error as :class:`StoreError`, anything else as it is."""
    if isinstance(exc, sqlite3.Error):
        msg = f"The event store rejected a write: {exc}."
        err = StoreError(msg)
        err.__cause__ = exc
        return err
    return exc
