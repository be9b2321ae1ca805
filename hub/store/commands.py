"""Running a CLI command against the store: open it, run, close it, turn errors into exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from hub import logs
from hub.store import open_store
from hub.store.base import EventStore, StoreError, StoreUnavailable
from hub.store.postgres import PostgresStore
from hub.store.sqlite import SQLiteStore

#: Exit codes: 1 the store failed, 2 the command was used wrongly.
EXIT_FAILED = 1
EXIT_USAGE = 2


#: The largest id or count the stores hold: a signed 64-bit integer (SQLite's INTEGER,
#: PostgreSQL's bigint); a larger one given to the driver is an OverflowError.
MAX_INT64 = 2**63 - 1


def id_too_large(command: str, ids: list[int] | None) -> int | None:
    """A usage error (exit 2) for an ``--id`` no store can hold, else None."""
    for event_id in ids or []:
        if event_id > MAX_INT64:
            msg = f"--id {event_id}: no event id is that large (at most {MAX_INT64})."
            return fail(command, msg)
    return None


def fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print ``leadhub COMMAND: message`` to stderr and return ``code``."""
    print(f"leadhub {command}: {message}", file=sys.stderr)
    return code


def run_with_store(command: str, url: str, action: Callable[[EventStore], Awaitable[int]]) -> int:
    """Open the store at ``url`` (which must already exist), run ``action``, close the store.

    A reading command never creates a database: a mistyped ``--db`` would otherwise show
    an empty, brand-new store. Logs go to stderr (warnings and worse), keeping stdout
    for the output scripts read.
    """
    logs.configure(level="warning", stream=sys.stderr)
    try:
        store = open_store(url)
    except StoreError as exc:
        return fail(command, str(exc))
    if isinstance(store, PostgresStore):
        store.create = False  # checked when it opens
    if isinstance(store, SQLiteStore) and (missing := no_sqlite_store(store.path)):
        return fail(command, missing, EXIT_FAILED)

    async def main() -> int:
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreUnavailable as exc:
        return fail(command, str(exc), EXIT_FAILED)
    except StoreError as exc:
        return fail(command, str(exc), EXIT_FAILED)


def no_sqlite_store(path: Path) -> str | None:
    """Why ``path`` holds no event store (with the fix), or None when it does or cannot be
    read here (opening the store then says why).

    Looked at read-only, before the store opens: opening makes the schema, so another
    SQLite database passed by mistake (the sandbox's leads) or an empty file would gain the
    hub's tables and list as an empty store.
    """
    fix = "pass --db (or LEADHUB_DB) with the URL `leadhub serve` uses."
    where = str(path.absolute())
    if not path.exists():
        return f"no event store at {where!r}; {fix}"
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            found = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone()[0]
    except sqlite3.Error:
        return None
    return None if found else f"no event store in {where!r} (it has no events table); {fix}"


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
