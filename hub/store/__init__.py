"""The durable event store: a queue of received deliveries and their fate.

Open one with :func:`open_store` and ``await store.open()``; code against
:class:`hub.store.base.EventStore`.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse

from hub.clock import SYSTEM_CLOCK, Clock
from hub.store.base import STALL_AFTER, EventStore, LeaseLost, StoreError, StoreUnavailable
from hub.units import UnitError, parse_duration

__all__ = [
    "EventStore",
    "LeaseLost",
    "StoreError",
    "StoreUnavailable",
    "is_postgres",
    "open_store",
    "safe_url",
]


def is_postgres(url: str) -> bool:
    """Whether the store URL ``url`` names a PostgreSQL database (``postgresql://``,
    ``postgres://``); a malformed one names none (:func:`open_store` says what is wrong)."""
    try:
        return urllib.parse.urlsplit(url).scheme.lower() in ("postgresql", "postgres")
    except ValueError:
        return False


def _split(url: str) -> urllib.parse.SplitResult:
    """``url`` split into its parts, or a :class:`StoreError` saying why it cannot be: a host
    in brackets (an IPv6 address) without its closing one or holding what no address does
    (urllib's ValueError, a traceback from every command that took the URL)."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError as exc:
        msg = (
            f"Malformed store URL {_masked(url)!r} ({exc}); use sqlite:///relative.db, "
            "sqlite:////absolute/path.db or postgresql://user@host:5432/dbname (an IPv6 host "
            "in brackets: postgresql://user@[::1]:5432/dbname)."
        )
        raise StoreError(msg) from None


def sqlite_uri_form(text: str, *, as_path: bool, sandbox: bool = False) -> str:
    """What is wrong with a SQLite file given in SQLite's own URI form (``text``:
    ``file:x.db``, ``file:///srv/x.db?mode=ro``), and what to write instead: the hub reads
    no such form. ``as_path``: where it would be taken as a path (a ``sqlite:///`` URL's,
    ``leadhub sandbox --db``), which made a file (or, for ``file:data/x.db``, a directory)
    named ``file:...`` in the working directory, that no command given the same text in
    another directory finds. ``sandbox``: the fix is ``leadhub sandbox --db``'s, a path."""
    try:
        plain = urllib.parse.unquote(urllib.parse.urlsplit(text).path) or "leadhub.db"
    except ValueError:
        plain = "leadhub.db"
    fix = plain if sandbox else f"sqlite:///{plain}"
    made = text.split("?", 1)[0].split("/", 1)[0]
    taken = f" (as a path, it would make {made!r} in the working directory)" if as_path else ""
    return f"in SQLite's URI form (file:...), which the hub does not read{taken}; write {fix!r}"


def open_store(
    url: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
    writer: str = "thread",
    ingest_only: bool = False,
    create: bool = True,
) -> EventStore:
    """The store named by ``url``, not yet opened (``await store.open()`` next).

    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, optionally with
    ``?synchronous=normal`` (default ``full``: durable even on power loss) and
    ``?writer=thread|process`` (where enqueues are written; ``writer`` is the default
    when the URL does not say: ``leadhub serve`` passes ``process`` for a web role) and
    ``?stall_after=30s`` (how long a delivery may wait for the writer process's answer).

    ``postgresql://user@host:5432/dbname`` for several instances on one database, optionally
    with ``?schema=NAME``, ``?pool=N`` and ``?stall_after=30s`` (how long a delivery may wait
    for its commit; see :mod:`hub.store.postgres`; the password from ``PGPASSWORD``);
    ``writer`` does not apply there. ``ingest_only``: the opener only takes deliveries in
    (``leadhub serve --role web``): a PostgreSQL store's start checks the role's privileges
    for that alone. ``create=False`` (a store command): a PostgreSQL store makes no schema
    or tables when they are missing, so a mistyped URL is not a new, empty store (a SQLite
    store's command checks its file first).

    Raises:
        StoreError: the URL is malformed, in memory, or names an unsupported database.
    """
    parsed = _split(url)
    scheme = parsed.scheme.lower()
    if is_postgres(url):
        return _postgres(url, parsed, clock, ingest_only=ingest_only, create=create)
    if scheme == "file":  # (file:x.db, file:///srv/x.db: SQLite's own URI form)
        raise StoreError(f"Store URL {url!r} is {sqlite_uri_form(url, as_path=False)}.")
    if scheme != "sqlite":
        msg = (
            f"Unknown event store URL {safe_url(url)!r}; use sqlite:///relative.db, "
            "sqlite:////absolute/path.db or postgresql://user@host:5432/dbname (the scheme "
            "postgresql:// or postgres://, without a driver's +asyncpg or +psycopg)."
        )
        raise StoreError(msg)
    if parsed.netloc or not parsed.path.startswith("/") or parsed.path == "/":
        msg = (
            f"Malformed SQLite URL {url!r}; write three slashes then the path: "
            "sqlite:///relative.db or sqlite:////absolute/path.db."
        )
        raise StoreError(msg)
    if parsed.fragment or url.endswith("#"):
        msg = (
            f"Store URL {url!r} has a '#', which ends a URL path; "
            "write it as %23 (and '?' in a path as %3F)."
        )
        raise StoreError(msg)
    path = urllib.parse.unquote(parsed.path[1:])
    if path == ":memory:" or path.startswith("file::memory:") or "mode=memory" in parsed.query:
        msg = (
            f"An in-memory event store ({url!r}) would lose every lead on restart; "
            "name a file instead, e.g. sqlite:///leadhub.db."
        )
        raise StoreError(msg)
    if path.endswith(("/", os.sep)):  # (before anything is made: a missing directory was)
        msg = (
            f"Store URL {url!r} ends in '/', so it names a directory, not a database file; "
            f"name a file in it: sqlite:///{path}leadhub.db."
        )
        raise StoreError(msg)
    if path.lower().startswith("file:"):  # a file named so, in the working directory
        said = sqlite_uri_form(path, as_path=True)
        raise StoreError(f"Store URL {url!r} names its file {said}.")
    options = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    synchronous = options.pop("synchronous", "full")
    writer = options.pop("writer", writer)
    stall = options.pop("stall_after", None)
    if options:
        msg = (
            f"Unknown option(s) {', '.join(sorted(options))} in store URL {url!r}; the options "
            "are ?synchronous=full|normal|extra, ?writer=thread|process and ?stall_after=30s."
        )
        raise StoreError(msg)
    from hub.store.sqlite import SQLiteStore

    stall_after = _stall_after(stall, url)
    return SQLiteStore(
        path, clock=clock, synchronous=synchronous, writer=writer, stall_after=stall_after
    )


def _stall_after(text: str | None, shown: str) -> float:
    """A store URL's ``?stall_after=`` (``text``; ``shown``: the URL for the message), or
    :data:`hub.store.base.STALL_AFTER` without one."""
    try:
        stall_after = STALL_AFTER if text is None else parse_duration(text)
    except UnitError as exc:
        raise StoreError(f"?stall_after= in store URL {shown!r}: {exc}") from None
    if not math.isfinite(stall_after) or stall_after <= 0:
        msg = f"?stall_after= in store URL {shown!r} must be a duration above zero, like 30s."
        raise StoreError(msg)
    return stall_after


def _postgres(
    url: str,
    parsed: urllib.parse.SplitResult,
    clock: Clock,
    *,
    ingest_only: bool = False,
    create: bool = True,
) -> EventStore:
    """A :class:`hub.store.postgres.PostgresStore` for a ``postgresql://`` URL."""
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    ours = _own_options(url, pairs)
    if "synchronous" in dict(pairs) or "writer" in dict(pairs):
        msg = (
            f"?synchronous= and ?writer= are SQLite options; a PostgreSQL store URL "
            f"({safe_url(url)!r}) takes ?schema=NAME, ?pool=N and ?stall_after=30s (and "
            "libpq's own options)."
        )
        raise StoreError(msg)
    _check_ports(url, parsed, pairs)
    from hub.store.postgres import POOL_SIZE, PostgresStore

    try:
        pool = int(ours["pool"]) if "pool" in ours else POOL_SIZE
    except ValueError:
        msg = f"?pool= in {safe_url(url)!r} is not a number; give the most connections, e.g. 10."
        raise StoreError(msg) from None
    rest = urllib.parse.urlencode([(k, v) for k, v in pairs if k not in ours])
    dsn = urllib.parse.urlunsplit(parsed._replace(scheme="postgresql", query=rest))
    return PostgresStore(
        dsn,
        clock=clock,
        schema=ours.get("schema"),
        pool_size=pool,
        shown=safe_url(dsn),
        stall_after=_stall_after(ours.get("stall_after"), safe_url(url)),
        ingest_only=ingest_only,
        create=create,
    )


def _own_options(url: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The hub's own options of a PostgreSQL URL (``?schema=``, ``?pool=``, ``?stall_after=``).

    Each at most once, and a ``?schema=`` not empty: an empty one (``?schema=${SCHEMA}``
    with the variable unset) was taken as no schema, and a second one silently won, so an
    instance meant for a hub of its own shared another hub's queue in the default schema,
    its targets sending that hub's leads."""
    ours: dict[str, str] = {}
    for key, value in pairs:
        if key not in ("schema", "pool", "stall_after"):
            continue
        if key in ours:
            msg = (
                f"?{key}= is given twice in {safe_url(url)!r} ({ours[key]!r} and {value!r}); "
                "keep the one meant."
            )
            raise StoreError(msg)
        ours[key] = value
    if ours.get("schema") == "":
        msg = (
            f"?schema= is empty in {safe_url(url)!r} (a variable not set?); give the schema's "
            "name, or leave ?schema= out for the database's default schema."
        )
        raise StoreError(msg)
    return ours


def _check_ports(url: str, parsed: urllib.parse.SplitResult, pairs: list[tuple[str, str]]) -> None:
    """Refuse a port of a PostgreSQL URL that is no TCP port (1 to 65535): each host's
    (``host:port``, ``[::1]:port``, several hosts separated by commas) and ``?port=``'s. The
    driver took 99999 to an OverflowError traceback, and 70000 to port 4464 (the system
    wraps it), a connection to whatever listens there."""
    hosts = parsed.netloc.rpartition("@")[2]
    written = [spec.rpartition("]")[2].partition(":")[2] for spec in hosts.split(",")]
    written += [p for key, value in pairs if key == "port" for p in value.split(",")]
    for text in written:
        digits = text.isascii() and text.isdigit()
        short = digits and len(text.lstrip("0")) <= 5  # (int() refuses 4,301 digits or more)
        if text and not 1 <= (int(text) if short else 0) <= 65535:
            # (a port that is no number is not quoted: it may be a password's end, as in
            # hub:pa/ss@db, where the raw / makes "pa" the port)
            shown = text if len(text) <= 20 else f"{text[:20]}…"
            port = f"Port {shown}" if digits else "A port that is no number"
            msg = (
                f"{port} in store URL {safe_url(url)!r} is no TCP port; give one from 1 "
                "to 65535 (PostgreSQL's own is 5432)."
            )
            raise StoreError(msg)


def _masked(url: str) -> str:
    """``url`` with the password of a ``user:password@`` masked, read without parsing the URL
    (for one that does not parse): all up to the last ``@``, which may mask more than the
    password, never less (a password written with a raw ``/`` or ``@``). Without a scheme
    (``hub:secret@db/leads``, the ``postgresql://`` left out), the ``user:`` is at the start:
    such a URL was refused with its password shown."""
    if "://" not in url:
        return re.sub(r"^([^/@:]*:).*@", r"\1***@", url, count=1)
    return re.sub(r"(://[^/@:]*:).*@", r"\1***@", url, count=1)


#: A ``password=`` (or ``sslpassword=``) setting in a URL's query, which libpq and asyncpg
#: read as the password, or in a ``key=value`` connection string given as a URL.
_QUERY_PASSWORD = re.compile(r"((?:^|[?&\s])(?:ssl)?password=)('[^']*'|[^&#\s]*)", re.IGNORECASE)


def safe_url(url: str) -> str:
    """``url`` without its password (if it has one), for messages and logs.

    A password written with a raw ``/`` (``postgres://hub:pa/ss@db/leads``, common in
    generated ones) ends the URL's host part there, so the URL holds no password as urllib
    reads it: the whole text is masked as :func:`_masked` does (it was shown as written, by
    every message quoting the URL). A password given in the query (``?password=...``, as
    libpq and asyncpg take it) is masked too: it was shown whole in ``store_open_failed``."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return _masked(url)
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
