"""Running a CLI command against the store: open it, run, close it, turn errors into exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import sqlite3
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from hub import EXIT_INTERRUPTED, logs, sqlite_file
from hub.store import open_store
from hub.store.base import EventStore, StoreError, StoreUnavailable
from hub.store.sqlite import READ_ONLY, SQLiteStore
from hub.store.sqlite_conn import foreign_wal

#: Exit codes: 1 the store failed, 2 the command was used wrongly, 130 stopped by Ctrl-C
#: (SIGINT), as a shell reports it (``hub.EXIT_INTERRUPTED``, every command's).
EXIT_FAILED = 1
EXIT_USAGE = 2


#: The largest id or count the stores hold: a signed 64-bit integer (SQLite's INTEGER,
#: PostgreSQL's bigint); a larger one given to the driver is an OverflowError.
def fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print ``leadhub COMMAND: message`` to stderr and return ``code``."""
    print(f"leadhub {command}: {message}", file=sys.stderr)
    return code


def stopped_by_store(
    command: str,
    exc: BaseException,
    *,
    did: str,
    done: str | None,
    stay: str,
    again: str,
    where: str = "",
    rest: str = "the rest",
) -> int:
    """A replay or purge the store stopped part way (a full disk, say): its error, then a last
    line saying what the steps before it ``did`` (``done``: ``N events``, None for nothing),
    which stays so (``stay``), and that the same command ``again`` does ``rest`` once the
    store can be written. The error alone left the operator of a full disk to guess whether
    anything went (only the ``replay_stopped`` / ``purge_stopped`` log line above it said,
    among the store's others). ``where``: the selection, as `` (...)``."""
    logs.flush()  # the store's lines (store_write_failed, *_stopped) before these
    fail(command, str(exc), EXIT_FAILED)
    later = f"the same command again, once the store can be written, {again}"
    if done is None:
        return fail(command, f"stopped: {did} nothing{where}; {later} them.", EXIT_FAILED)
    return fail(
        command,
        f"stopped part way: {did} {done} before the error{where}; they {stay}, and {later} {rest}.",
        EXIT_FAILED,
    )


def run_with_store(
    command: str,
    url: str,
    action: Callable[[EventStore], Awaitable[int]],
    *,
    reads_only: bool = False,
    variable: str | None = None,
    interrupted: Callable[[], str] | None = None,
) -> int:
    """Open the store at ``url`` (which must already exist), run ``action``, close the store.

    ``interrupted``: what the command says when stopped by Ctrl-C, asked then (replay and
    purge work in steps of their own transactions: the steps done stay done, and they say
    how many and that running the command again does the rest); else "stopped.".

    ``variable``: the ``LEADHUB_DB`` that ``url`` came from, if it did, named in the message
    when the URL names no store (a usage error, exit 2, as a bad flag's value is).

    A reading command never creates a database: a mistyped ``--db`` would otherwise show
    an empty, brand-new store. Logs go to stderr (warnings and worse), keeping stdout
    for the output scripts read.

    With ``reads_only`` (an ``action`` that only reads), a SQLite store that cannot be
    opened for writing here (a backup on a read-only mount, a file or directory of another
    user) is opened read-only instead, with a note on stderr (:func:`open_read_only`).
    """
    logs.configure(level="warning", stream=sys.stderr)
    try:
        store = open_store(url, create=False)  # (a PostgreSQL store: checked when it opens)
    except StoreError as exc:
        return fail(command, f"{variable}: {exc}" if variable else str(exc))
    if isinstance(store, SQLiteStore):
        # (before anything opens it: SQLite reads a log beside the file into it; and the
        # header read closes a descriptor, which would drop SQLite's locks of this process)
        if (foreign := foreign_wal(store.path)) is not None:
            return fail(command, str(foreign), EXIT_FAILED)
        if missing := no_sqlite_store(store.path):
            return fail(command, missing, EXIT_FAILED)

    async def main() -> int:
        opened: EventStore = store
        try:
            await store.open()
        except StoreUnavailable as exc:
            if not (reads_only and isinstance(store, SQLiteStore) and cannot_write(exc)):
                raise
            opened = await open_read_only(command, store.path, exc)
        try:
            return await action(opened)
        finally:
            await opened.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        said = interrupted() if interrupted else "stopped."
        return fail(command, said, EXIT_INTERRUPTED)
    except StoreUnavailable as exc:
        return fail(command, str(exc), EXIT_FAILED)
    except StoreError as exc:
        return fail(command, str(exc), EXIT_FAILED)


#: SQLite's (primary) result codes and the errnos of a file that cannot be written here.
_READ_ONLY_CODES = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)
_READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def cannot_write(exc: StoreUnavailable) -> bool:
    """Whether ``exc`` (a failed open) says the file, or its directory, cannot be written
    here: a read-only open may still read it. (A newer schema, a full disk, a lock held
    too long are not that.)"""
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _READ_ONLY_CODES
    return isinstance(cause, OSError) and cause.errno in _READ_ONLY_ERRNOS


async def open_read_only(command: str, path: Path, failed: StoreUnavailable) -> SQLiteStore:
    """The SQLite store at ``path`` opened read-only, after ``failed`` (its writable open):
    SQLite's read-only mode, which reads the WAL (its index made beside the file, or read
    there), else as immutable, the file alone, where not even that index can be made (a
    read-only directory without one). A note on stderr says which; when neither opens,
    ``failed`` is raised (it says what to make writable)."""
    for mode in READ_ONLY:
        if mode == "ro" and sqlite_file.index_left_behind(path):
            continue
        store = SQLiteStore(path, read_only=mode)
        try:
            await store.open()
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, sqlite3.Error | OSError):
                raise  # a schema this leadhub cannot read: that, not the writable open's
            continue
        print(read_only_note(command, path, mode), file=sys.stderr)
        return store
    raise failed


def read_only_note(command: str, path: Path, mode: str) -> str:
    """What ``command`` tells on stderr of a store it opened read-only (``mode``)."""
    where = str(path.absolute())
    note = (
        f"leadhub {command}: note: the event store {where!r} cannot be written here (it or "
        "its directory is read-only); opened read-only"
    )
    if mode == "ro":
        return note + "."
    wal = Path(f"{where}-wal")
    try:
        unread = wal.stat().st_size
    except FileNotFoundError:
        unread = 0
    except OSError:
        unread = -1  # there, but not to be looked at: it may hold writes
    note += (
        " as immutable, the database file alone: its WAL index cannot be made beside it, so "
        "its WAL is not read"
    )
    if unread:
        size = f"{unread} bytes, " if unread > 0 else ""
        return note + (
            f" and what is shown may miss the latest writes, the ones still in {str(wal)!r} "
            f"({size}not yet checkpointed into the database)."
        )
    return note + f" (there is no {str(wal)!r} with writes to miss)."


def no_sqlite_store(path: Path) -> str | None:
    """Why ``path`` holds no event store (with the fix), or None when it does or cannot be
    read here (opening the store then says why).

    Looked at read-only, before the store opens: opening makes the schema, so another
    SQLite database passed by mistake (the sandbox's leads) or an empty file would gain the
    hub's tables and list as an empty store.
    """
    if (nothing := no_file_at(path)) is not None:
        return nothing
    file = f"file:{urllib.parse.quote(str(path.resolve()))}"
    # immutable: in a read-only directory without the WAL index (a backup on read-only media)
    for uri in (f"{file}?mode=ro", f"{file}?mode=ro&immutable=1"):
        if uri.endswith("mode=ro") and sqlite_file.index_left_behind(path):
            continue
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                found = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
                ).fetchone()[0]
        except sqlite3.Error:
            continue
        return None if found else no_events_table(path)
    return None


#: What to do about a ``--db`` that names no event store.
_PASS_DB = "pass --db (or LEADHUB_DB) with the URL `leadhub serve` uses."


def no_file_at(path: Path) -> str | None:
    """Why ``path`` holds no event store when nothing is there (with the fix), else None."""
    if path.exists():
        return None
    return f"no event store at {str(path.absolute())!r}; {_PASS_DB}"


def no_events_table(path: Path) -> str:
    """Why the SQLite database at ``path`` is no event store (with the fix)."""
    return f"no event store in {str(path.absolute())!r} (it has no events table); {_PASS_DB}"


async def endpoint_unknown(command: str, store: EventStore, endpoint: str | None) -> None:
    """A note on stderr when ``endpoint`` (given) has no stored event at all: a mistyped
    ``--endpoint`` otherwise reads as "nothing to do there"."""
    if endpoint is not None and not await store.list(endpoint=endpoint, limit=1):
        print(
            f"leadhub {command}: note: no event of endpoint {endpoint!r} is stored.",
            file=sys.stderr,
        )


def utc(ts: float | None) -> str:
    """Unix seconds as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for None)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2024-05-01T12:00:00Z``), for JSON output."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plural(count: int, one: str, many: str | None = None) -> str:
    """``one`` or ``many`` (default ``one`` + "s") to go with ``count``."""
    return one if count == 1 else (many or f"{one}s")


def listing(words: Iterable[str]) -> str:
    """``words`` as a sentence lists them, each once: ``"dead, unmatched and skipped"``."""
    unique = list(dict.fromkeys(words))
    if len(unique) < 2:
        return "".join(unique)
    return ", ".join(unique[:-1]) + " and " + unique[-1]


#: Characters that drive a terminal rather than show: C0 and C1 controls, DEL, and the
#: bidirectional overrides and isolates (which reorder the text after them).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each terminal control character escaped (``\\x1b``, ``\\u202e``).

    Delivery ids come from senders and errors may quote their values: printed raw to a
    terminal, an escape sequence in one could clear the screen, hide lines or retitle the
    window of the operator reading ``leadhub events``.
    """
    return _CONTROLS.sub(lambda m: m[0].encode("unicode_escape").decode(), text)


def shorten(text: str | None, width: int) -> str:
    """One printable line of at most ``width`` characters, ending in an ellipsis when cut."""
    if not text:
        return ""
    line = printable(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"
