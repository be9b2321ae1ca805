"""The sandbox's SQLite storage: leads, visitors, accounts and Lead Capture activities.

One :class:`SandboxDB` owns one ``sqlite3`` connection (a file, or ``:memory:``
shared by every request because it is the only connection). Every call runs on
one dedicated worker thread (:meth:`SandboxDB.call`), so the connection is never
used by two threads and the event loop never blocks on SQLite. Email and phone
uniqueness is enforced by unique indexes on ``email_key`` (lower-cased email)
and ``phone_key`` (digits of Phone); a write that breaks one raises
``sqlite3.IntegrityError``.

A file is checked as the event store checks its own (:mod:`hub.sqlite_file`): only the first
open creates it, and not beside a ``-wal`` left by a sandbox whose file is gone (SQLite would
delete the log, and the leads it holds); before each call the path must still name the file
opened, else it is opened again (never created), and a file gone is refused
(:class:`SandboxFileGone`, answered 503) until it is back. Before, a file deleted or moved away
while the sandbox ran was never noticed: captures were answered 200 into a log beside no
database, and the next start made a new, empty sandbox there, deleting that log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import orjson

from hub import sqlite_file
from hub.logs import get_logger
from hub.sandbox.attributes import EMAIL, MOBILE, PHONE, digits

T = TypeVar("T")


@dataclass(slots=True)
class Lead:
    """A lead: its ProspectID, attributes by schema name (all strings) and timestamps."""

    id: str
    attrs: dict[str, str] = field(default_factory=dict)
    created_on: str = ""
    modified_on: str = ""

    @property
    def email_key(self) -> str | None:
        """The lower-cased email, the key of the unique email index."""
        email = self.attrs.get(EMAIL)
        return email.strip().lower() if email else None

    @property
    def phone_key(self) -> str | None:
        """The digits of Phone, the key of the unique phone index."""
        return digits(self.attrs.get(PHONE)) or None

    @property
    def mobile_key(self) -> str | None:
        """The digits of Mobile (looked up, not unique)."""
        return digits(self.attrs.get(MOBILE)) or None

    def to_api(self) -> dict[str, str]:
        """The lead as the read-back APIs show it."""
        return {
            "ProspectID": self.id,
            **self.attrs,
            "CreatedOn": self.created_on,
            "ModifiedOn": self.modified_on,
        }


@dataclass(frozen=True, slots=True)
class Activity:
    """A Lead Capture activity: the attributes of one call, posted on one lead."""

    id: str
    lead_id: str
    created_on: str
    data: list[tuple[str, str]]
    event: str = "Lead Capture"

    def to_api(self) -> dict[str, Any]:
        """The activity as ``GET /_sandbox/leads/{id}/activities`` shows it."""
        return {
            "Id": self.id,
            "ActivityEvent": self.event,
            "CreatedOn": self.created_on,
            "Data": [{"Attribute": name, "Value": value} for name, value in self.data],
        }


_LEAD_COLUMNS = "id, attrs, created_on, modified_on"


def _lead(row: tuple[Any, ...] | None) -> Lead | None:
    if row is None:
        return None
    return Lead(id=row[0], attrs=orjson.loads(row[1]), created_on=row[2], modified_on=row[3])


class SandboxFileGone(sqlite3.OperationalError):
    """The sandbox's database file cannot be used as it is: a ``-wal`` left beside no
    database at the first open (``leadhub sandbox`` and ``serve`` exit 2 saying so), or the
    file gone from its path since, or another there that cannot be opened (each call
    answered 503, an outage the hub retries)."""


#: How the sandbox's file is named in its errors (:mod:`hub.sqlite_file`'s sentences).
_TITLE = "The sandbox's database"


def _holds_an_event_store(conn: sqlite3.Connection) -> bool:
    """Whether the file ``conn`` opened is the hub's event store: ``LEADHUB_DB`` (serve's store
    URL, set in the container image) is also ``leadhub sandbox --db``, and the sandbox's
    tables would have gone into the hub's queue."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return {"events", "deliveries"} <= tables


def _anothers_tables(conn: sqlite3.Connection) -> str | None:
    """The tables of another application's database in the file ``conn`` opened (up to 5
    named), None when it holds none or one of the sandbox's: a typo'd ``--db`` got the
    sandbox's tables added beside that application's, and its test leads written there."""
    tables = sorted(
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%'"
        )
    )
    if not tables or set(_TABLES) & set(tables):
        return None
    more = f" and {len(tables) - 5} more" if len(tables) > 5 else ""
    return ", ".join(tables[:5]) + more


def _open(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to the sandbox's file at ``path``, its schema made; the file created
    only with ``create`` (:data:`hub.sqlite_file.WRITE_MODES`)."""
    if create:
        sqlite_file.make_private(path)
    uri = sqlite_file.uri(path, sqlite_file.WRITE_MODES[create])
    conn = sqlite3.connect(
        uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30.0
    )
    try:
        if _holds_an_event_store(conn):
            msg = (
                "it holds a leadhub event store (its events and deliveries tables); give the "
                "sandbox a file of its own, e.g. sandbox.db"
            )
            raise sqlite3.DatabaseError(msg)
        if (others := _anothers_tables(conn)) is not None:
            msg = (
                f"it holds another database's tables ({others}) and none of the sandbox's, "
                "so the sandbox writes nothing there; check that --db names the sandbox's "
                "file, or give the sandbox a file of its own, e.g. sandbox.db"
            )
            raise sqlite3.DatabaseError(msg)
        conn.execute("PRAGMA journal_mode=WAL")
        _prepare(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _gone(path: Path, why: str) -> SandboxFileGone:
    """The refusal of a call while no database file is at ``path``, the sandbox's since its
    start: a new, empty one is not made there."""
    return _cannot_open(path, why, sqlite_file.vanished_reason("sandbox", "sandbox"))


def _unusable(path: Path, why: str) -> SandboxFileGone:
    """The refusal of a call while the file at ``path`` is another one than the sandbox's, and
    one it cannot open (not SQLite, the hub's event store, unreadable): as for a file gone, an
    outage (a 503, its line a second), not a fault of the call (a 500 ``MXUnexpectedException``
    made the hub's event dead, and each call logged a traceback)."""
    return _cannot_open(path, why, sqlite_file.unusable_reason("sandbox", "sandbox"))


def _cannot_open(path: Path, why: str, reason: str) -> SandboxFileGone:
    return SandboxFileGone(f"{_TITLE} {str(path)!r} cannot be opened ({why}); {reason}.")


#: SQLite's result codes for a file that could not be made or written where it is (its
#: directory missing or read-only, its disk full or failing): the store's hint says
#: what to check. Other errors (not a database, a ``-wal`` left beside none) say it
#: themselves.
_WHERE_FAILED = {
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
}


def directory_hint(exc: BaseException, *, embedded: bool = False) -> str:
    """What to check when the sandbox's file (``leadhub sandbox --db``, or the embedded one's
    beside the store, in ``serve --db``'s directory) could not be made or opened, or is no
    database (:data:`NOT_A_DATABASE`): "; ..." or
    nothing when ``exc`` says it. A directory that could not be made (a file in its way, a
    parent this user cannot write) ended the command with a traceback, and SQLite's own
    "unable to open database file" said nothing of where to look."""
    from hub.store.sqlite_conn import storage_hint  # (the SQLite store's sentences

    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, OSError) or (code is not None and code & 0xFF in _WHERE_FAILED):
        return f"; {storage_hint(exc)} (the directory of --db)"
    if code is not None and code & 0xFF == sqlite3.SQLITE_NOTADB:  # (a text file, a typo)
        return f"; {NOT_A_DATABASE_EMBEDDED if embedded else NOT_A_DATABASE}"
    return ""


#: What to do about a sandbox file that is no SQLite database: SQLite's "file is not a
#: database" said nothing more.
NOT_A_DATABASE = (
    "the file is no SQLite database, so not the sandbox's: check that --db names the "
    "sandbox's file (one it made), or give a new file's path (the sandbox makes it)"
)
#: The same, for serve's embedded sandbox, whose file's name follows serve's --db.
NOT_A_DATABASE_EMBEDDED = (
    "the file is no SQLite database, so not the sandbox's: move it away (the hub then makes "
    "the sandbox's file anew), or check that serve's --db names the event store"
)


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA foreign_keys=ON")
    schema = resources.files("hub.sandbox").joinpath("schema.sql").read_text("utf-8")
    conn.executescript(schema)


#: The sandbox's tables (``schema.sql``): a file with no row in any holds nothing.
_TABLES = ("leads", "visitors", "accounts", "activities")


def _delete_if_unused(path: Path, opened: tuple[int, int] | None) -> None:
    """Delete the sandbox's file at ``path`` (with its ``-wal`` and ``-shm``) when it is still the
    file ``opened``, holds no row in any of its tables and no other connection has it open.

    All of it is done under an exclusive lock, taken at once or not at all: a connection in
    WAL mode holds a shared lock on the file for as long as it is open, so a file another
    process opened (two hubs started at once on one store) is kept, and no connection can
    read or write it between the check and the unlinking. The check used to read the file
    from a connection of its own and then delete it: a row another process committed in
    between went into the deleted file (its capture answered 200, then lost), and a file
    another sandbox had open but not written yet was deleted under it (every call of that
    sandbox answered 503 until it was restarted)."""
    try:
        conn = sqlite3.connect(
            sqlite_file.uri(path, sqlite_file.WRITE_MODES[False]),
            uri=True,
            isolation_level=None,
            timeout=0,  # (busy: another connection has the file open, so it is kept)
        )
    except sqlite3.Error:
        return
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        if sqlite_file.identity(path) != opened:
            return
        if any(conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in _TABLES):
            return
        for each in (path, sqlite_file.wal_of(path), Path(f"{path}-shm")):
            with contextlib.suppress(OSError):
                each.unlink(missing_ok=True)
    except sqlite3.Error:
        return
    finally:
        conn.close()  # (the lock goes with it; SQLite writes nothing to a file no longer there)


class SandboxDB:
    """Queries over the sandbox's SQLite file (or memory when ``path`` is ``None``)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or ":memory:"
        #: The file, absolute (a later change of working directory cannot move it); None in
        #: memory (SQLite's own name for it too, ``--db :memory:``, not a file of that name).
        self._where = Path(self.path).absolute() if self.path != ":memory:" else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-db")
        self._closed = False
        self._log = get_logger("hub.sandbox")
        #: The file ``_conn`` is open on (device, inode); another one at the path is opened
        #: again before the next call.
        self._identity: tuple[int, int] | None = None
        #: The identity last seen at the path, so each change is logged once.
        self._seen: tuple[int, int] | None = None
        #: The identity of the ``-wal`` beside the file ``_conn`` opened: still at the path
        #: beside another file, it holds the old file's last writes, not the new one's.
        self._wal: tuple[int, int] | None = None
        #: The file ``_conn`` opened (kept once it is closed): the one whose log ``_wal`` is.
        self._opened: tuple[int, int] | None = None
        if self._where is None:
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            _prepare(self._conn)
            return
        orphaned = sqlite_file.orphan_wal(self._where, title=_TITLE, noun="sandbox")
        if orphaned is not None:
            raise SandboxFileGone(orphaned)
        #: Whether this open made the file (nothing was at its path): see :meth:`discard`.
        self._made = sqlite_file.identity(self._where) is None
        self._conn = _open(self._where, create=True)
        self._identity = self._seen = self._opened = sqlite_file.identity(self._where)
        self._wal = sqlite_file.identity(sqlite_file.wal_of(self._where))

    def _check_file(self) -> None:
        """Before a call, on the database thread: the connection is to the file now at the
        path, opened again (never created) when another file is there; a missing file raises
        :class:`SandboxFileGone`. The old connection is kept while the path is empty: the same
        file put back (moved or linked back) goes on with it."""
        where = self._where
        if where is None:
            return
        now = sqlite_file.identity(where)
        if now == self._identity:
            return
        if now != self._seen:
            self._seen = now
            self._log.warning("sandbox_file_changed", path=str(where), missing=now is None)
        if now is None:
            raise _gone(where, "no file at its path")
        if sqlite_file.missing(where):  # (the old connection kept, as for nothing there)
            raise _gone(where, "a directory in its place")
        if now != self._opened:  # (beside its own log, the file opened last may reopen)
            left = sqlite_file.stale_wal(where, self._wal, title=_TITLE, runner="sandbox")
            if left is not None:
                raise SandboxFileGone(left)
        self._conn.close()
        self._identity = None  # (closed: not to be used again, were the same file back)
        try:
            self._conn = _open(where, create=False)
        except (sqlite3.Error, OSError) as exc:
            if sqlite_file.missing(where):
                raise _gone(where, str(exc)) from exc
            raise _unusable(where, str(exc)) from exc
        self._identity = self._opened = sqlite_file.identity(where)
        self._wal = sqlite_file.identity(sqlite_file.wal_of(where))

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self._check_file()
        return fn(self, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(self, *args)`` on the database thread and wait for its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._run, fn, args))

    def close(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)

    def discard(self) -> None:
        """Close, and delete the file (with its ``-wal`` and ``-shm``) when this open made it
        and nothing is in it: for a start refused after the file was made. ``serve`` makes
        the embedded sandbox's file before its store is opened, and a store it then refused
        (a newer schema, not an event store), or a port ``leadhub sandbox`` could not bind,
        left an empty ``<db>.sandbox.sqlite`` (or ``--db`` file) that nothing had asked for.
        A file that was there before, one holding a row, or one another process has open
        (sharing it) is kept (:func:`_delete_if_unused`)."""
        self.close()
        where = self._where
        if where is None or not self._made or sqlite_file.identity(where) != self._opened:
            return
        _delete_if_unused(where, self._opened)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once so that concurrent writers queue up."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # leads

    def lead_by_id(self, lead_id: str) -> Lead | None:
        """The lead whose ProspectID is ``lead_id`` (compared in lower case, spaces around it
        left out: a capture trims its ProspectID, and ``Leads.GetById?id=`` with the id a
        capture matched, padded as a form or a pasted URL pads it, found nothing)."""
        row = self._conn.execute(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE id = ?", (lead_id.strip().lower(),)
        ).fetchone()
        return _lead(row)

    def lead_by_email(self, email: str) -> Lead | None:
        """The lead with this email, compared case-insensitively."""
        row = self._conn.execute(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE email_key = ?", (email.strip().lower(),)
        ).fetchone()
        return _lead(row)

    def lead_by_phone(self, phone: str) -> Lead | None:
        """The lead whose Phone has the same digits as ``phone``."""
        key = digits(phone)
        if not key:
            return None
        row = self._conn.execute(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE phone_key = ?", (key,)
        ).fetchone()
        return _lead(row)

    def leads_by_phone_or_mobile(self, phone: str) -> list[Lead]:
        """Leads whose Phone or Mobile has the digits of ``phone``, latest change first."""
        key = digits(phone)
        if not key:
            return []
        rows = self._conn.execute(
            f"SELECT {_LEAD_COLUMNS} FROM leads WHERE phone_key = ? OR mobile_key = ? "
            "ORDER BY modified_on DESC, seq DESC",
            (key, key),
        ).fetchall()
        return [lead for row in rows if (lead := _lead(row))]

    def all_leads(self) -> list[Lead]:
        """Every lead, oldest first."""
        rows = self._conn.execute(f"SELECT {_LEAD_COLUMNS} FROM leads ORDER BY seq").fetchall()
        return [lead for row in rows if (lead := _lead(row))]

    def insert_lead(self, lead: Lead) -> None:
        """Store a new lead; ``sqlite3.IntegrityError`` when its email or phone is taken."""
        self._conn.execute(
            "INSERT INTO leads (id, email_key, phone_key, mobile_key, attrs, created_on, "
            "modified_on) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                lead.id,
                lead.email_key,
                lead.phone_key,
                lead.mobile_key,
                orjson.dumps(lead.attrs).decode(),
                lead.created_on,
                lead.modified_on,
            ),
        )

    def update_lead(self, lead: Lead) -> None:
        """Store a changed lead; ``sqlite3.IntegrityError`` when its email or phone is taken."""
        self._conn.execute(
            "UPDATE leads SET email_key = ?, phone_key = ?, mobile_key = ?, attrs = ?, "
            "modified_on = ? WHERE id = ?",
            (
                lead.email_key,
                lead.phone_key,
                lead.mobile_key,
                orjson.dumps(lead.attrs).decode(),
                lead.modified_on,
                lead.id,
            ),
        )

    # visitors and accounts

    def add_visitor(self, visitor_id: str) -> None:
        """Register an anonymous visitor (idempotent)."""
        self._conn.execute("INSERT OR IGNORE INTO visitors (id) VALUES (?)", (visitor_id.lower(),))

    def is_visitor(self, visitor_id: str) -> bool:
        """Whether ``visitor_id`` is a registered visitor."""
        row = self._conn.execute(
            "SELECT 1 FROM visitors WHERE id = ?", (visitor_id.lower(),)
        ).fetchone()
        return row is not None

    def add_account(self, account_id: str, name: str) -> bool:
        """Store an account; ``False`` (nothing written) when ``account_id`` is already held."""
        try:
            self._conn.execute(
                "INSERT INTO accounts (id, name) VALUES (?, ?)", (account_id.lower(), name)
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def account_exists(self, account_id: str) -> bool:
        """Whether an account with this id exists (ids compared in lower case)."""
        row = self._conn.execute(
            "SELECT 1 FROM accounts WHERE id = ?", (account_id.strip().lower(),)
        ).fetchone()
        return row is not None

    # activities

    def add_activity(self, activity: Activity) -> None:
        """Post an activity."""
        self._conn.execute(
            "INSERT INTO activities (id, lead_id, event, created_on, data) VALUES (?, ?, ?, ?, ?)",
            (
                activity.id,
                activity.lead_id,
                activity.event,
                activity.created_on,
                orjson.dumps(activity.data).decode(),
            ),
        )

    def activities_of(self, lead_id: str) -> list[Activity]:
        """The activities posted on a lead, oldest first."""
        rows = self._conn.execute(
            "SELECT id, lead_id, created_on, data, event FROM activities WHERE lead_id = ? "
            "ORDER BY seq",
            (lead_id.lower(),),
        ).fetchall()
        return [
            Activity(
                id=row[0],
                lead_id=row[1],
                created_on=row[2],
                data=[(name, value) for name, value in orjson.loads(row[3])],
                event=row[4],
            )
            for row in rows
        ]
