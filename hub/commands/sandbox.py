"""``leadhub sandbox``: serve the Lead.Capture sandbox on its own.

Its keys and rate limit come from the flag, else ``LEADHUB_<FLAG>``, else the variable
``serve``'s embedded sandbox reads (``LEADHUB_SANDBOX_ACCESS_KEY``, ``_SECRET_KEY``,
``_RATE_LIMIT``), else the defaults (``sandbox`` / ``sandbox``, ``25/5s``).

Logs one ``sandbox_ready`` line (URL, rate limit, storage, where the keys came from; never
the keys) when it listens, serves until SIGTERM or SIGINT (uvicorn's handlers; calls held by a
``timeout`` fault are let go at once, closed unanswered; a SIGHUP, serve's reload, is logged
and changes nothing), then closes its
database and exits 0. The missing directories of ``--db`` are made, as ``serve`` makes its
store's. A bad ``--rate-limit`` or an unusable ``--db`` (one that is not a SQLite file: a
PostgreSQL URL, say; a directory that cannot be made; a ``sqlite:///`` URL with options or a
``#``, whose escapes are otherwise decoded as serve decodes its store's) exits 2 with a
message saying what to check; a port that cannot be bound exits 1 (the ``--db`` file made
for that start deleted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import sys
import urllib.parse
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from hub.addresses import DEFAULT_SANDBOX_KEY, sandbox_exposed
from hub.cli import given_as
from hub.commands.server import Server
from hub.hangups import take_early
from hub.logs import configure, get_logger
from hub.sandbox import create_app, sandbox_of
from hub.sandbox.db import directory_hint
from hub.sqlite_file import SANDBOX, warn_of_place
from hub.store import safe_url, sqlite_uri_form
from hub.store.sqlite_conn import a_directory
from hub.units import UnitError, parse_rate_limit

_UVICORN_LEVELS = ("warning", "error", "critical")


#: A URL's scheme: a ``--db`` starting so, but for ``sqlite:///``, is no SQLite file.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _db_path(value: str | None) -> str | None:
    """The file ``--db`` names: a path as written, or a ``sqlite:///`` URL's path with its
    escapes decoded (``%20`` a space), as ``serve`` reads its store's URL and names its
    embedded sandbox's file after it; None for memory. ``sqlite:///my%20leads.db`` made a
    file named ``my%20leads.db``."""
    if not value:
        return None
    if not value.startswith("sqlite:///"):
        return value
    return urllib.parse.unquote(urllib.parse.urlsplit(value).path[1:])


def _url_options(shown: str, value: str | None) -> str | None:
    """Why a ``sqlite:///`` ``--db`` (``shown``: as whom) holding a query or a fragment is
    refused: the sandbox's file takes no URL options, and ``sqlite:///x.db?synchronous=normal``
    (written as serve's store URL is, or the image's ``LEADHUB_DB``) made a file named
    ``x.db?synchronous=normal``."""
    if not value or not value.startswith("sqlite:///") or not ("?" in value or "#" in value):
        return None
    parsed = urllib.parse.urlsplit(value)
    if "?" not in value.split("#", 1)[0]:  # a '#' in the file's name, ending the URL's path
        named = urllib.parse.quote(f"{parsed.path[1:]}#{parsed.fragment}")
        return (
            f"leadhub sandbox: {shown} has a '#', which ends a URL's path; write it %23 "
            f"(and a '?' %3F), like 'sqlite:///{named}', or give --db the path itself"
        )
    return (
        f"leadhub sandbox: {shown} has URL options after its path; the sandbox's file takes "
        "none (?synchronous=, ?writer= and ?stall_after= are options of serve's store): "
        f"give --db the file alone, like 'sqlite:///{parsed.path[1:]}'"
    )


def _uri_form(shown: str, value: str | None) -> str | None:
    """Why a ``--db`` in SQLite's URI form (``file:x.db``, or so after ``sqlite:///``) is
    refused: the sandbox made a file named ``file:x.db`` in the working directory."""
    path = _db_path(value)
    if path is None or not path.lower().startswith("file:"):
        return None
    return f"leadhub sandbox: {shown} is {sqlite_uri_form(path, as_path=True, sandbox=True)}"


def _directory_named(shown: str, value: str | None) -> str | None:
    """Why a ``--db`` ending in '/' is refused: it names a directory, and the sandbox made a
    file of that name (``--db data/`` a database file ``data``), or said only SQLite's
    "unable to open database file" when the directory was there."""
    path = _db_path(value)
    if path is None or not path.endswith(("/", os.sep)):
        return None
    return (
        f"leadhub sandbox: {shown} ends in '/', so it names a directory, not a SQLite file; "
        f"name a file in it: {path}sandbox.db"
    )


def _not_sqlite(shown: str, value: str | None) -> str | None:
    """Why ``value``, the ``--db`` given (``shown``: as whom, the URL's password masked),
    is refused when it is the URL of another database (PostgreSQL's, as serve's
    ``LEADHUB_DB`` may be): SQLite answered "unable to open database file"."""
    if not value or not _SCHEME.match(value) or value.startswith("sqlite:///"):
        return None
    return (
        f"leadhub sandbox: {shown} is not a SQLite file: the sandbox keeps its leads in a "
        "SQLite file only (a path, or sqlite:///path.db); give --db one, or leave it out to "
        "keep them in memory"
    )


def _make_directory(db_path: str | None) -> None:
    """Make the missing directories of the ``--db`` file, as ``serve`` does for its store and
    its embedded sandbox's file (a fresh volume): ``--db data/sandbox.db`` in a new checkout
    exited 2 with SQLite's bare "unable to open database file", where ``serve --db
    sqlite:///data/hub.db`` made ``data/``.

    Raises:
        OSError: a directory could not be made (a file in its way, no permission).
    """
    if db_path and db_path != ":memory:":
        Path(db_path).absolute().parent.mkdir(parents=True, exist_ok=True)


def _told(log: Any) -> None:
    log.warning(
        "sandbox_hangup_ignored",
        reason="the sandbox has nothing to reload; its keys, rate limit and --db take a "
        "restart (SIGTERM or SIGINT stop it)",
    )


def _ignore_hangups(log: Any) -> None:
    """Log a SIGHUP and serve on, from now on (main thread only).

    ``serve`` reloads on SIGHUP; the sandbox has nothing to reload (its keys, limit and file
    take a restart). Without a handler the signal's default action ended it at once, without
    a line (exit 129), its calls in flight cut and its leads, when in memory, gone: a reload
    sent to every leadhub process (a config-map watcher, ``docker kill -s HUP``) killed it.
    The line is written from the event loop, not the handler (which may interrupt the log
    writer holding its lock); a SIGHUP before the loop runs or after it stops is left at that.
    One that came while the sandbox loaded its modules and opened its database, remembered
    by the handler ``leadhub`` installed first (:func:`hub.hangups.remember_early`; its
    default action ended the sandbox there, exit 129), is logged here, once.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(_told, log)

    signal.signal(signal.SIGHUP, handler)
    early = take_early()  # (installed by ``leadhub`` before it loaded this module)
    if early is not None and early.pending:  # one came while the sandbox loaded and started
        _told(log)


def _keys_from(args: argparse.Namespace) -> str:
    """Where the keys came from, for the ready line (never the keys): so that keys set under a
    name this command does not read are not silently the defaults."""
    given = []
    for dest, flag in (("access_key", "--access-key"), ("secret_key", "--secret-key")):
        source = given_as(args, dest, flag)
        if source == flag and getattr(args, dest) == "sandbox":
            source = "the default, sandbox"
        given.append(source)
    return " / ".join(given)


def _exposed(args: argparse.Namespace) -> dict[str, str] | None:
    """The ``sandbox_exposed`` warning's fields when this sandbox answers beyond this machine
    to the default keys (:func:`hub.addresses.sandbox_exposed`), else None: ``--host
    0.0.0.0`` with them said nothing, where serve's embedded sandbox is warned of."""
    default_keys = args.access_key == DEFAULT_SANDBOX_KEY and args.secret_key == DEFAULT_SANDBOX_KEY
    fix = (
        "give --access-key and --secret-key (or LEADHUB_SANDBOX_ACCESS_KEY and "
        "LEADHUB_SANDBOX_SECRET_KEY) keys of your own, or listen on --host 127.0.0.1"
    )
    return sandbox_exposed(args.host, default_keys, fix)


def _ready(log: Any, url: str, fields: dict[str, str], exposed: dict[str, str] | None) -> None:
    """Once listening: say so, and warn of a sandbox anyone may read (``exposed``)."""
    log.info("sandbox_ready", url=url, **fields)
    if exposed is not None:
        log.warning("sandbox_exposed", url=url, **exposed)


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox until a signal; returns the exit code."""
    configure(level=args.log_level)
    log = get_logger("hub.sandbox")
    try:
        rate_limit = parse_rate_limit(args.rate_limit)
    except UnitError as exc:
        given = given_as(args, "rate_limit", "--rate-limit")
        print(f"leadhub sandbox: {given}: {exc}", file=sys.stderr)
        return 2
    given = given_as(args, "db", "--db")
    url = safe_url(args.db) if args.db and _SCHEME.match(args.db) else args.db
    shown = f"{given} {url!r}" if given.startswith("--") else f"{given}={url!r}"
    for refused in (_uri_form, _not_sqlite, _url_options, _directory_named):
        if (refusal := refused(shown, args.db)) is not None:
            print(refusal, file=sys.stderr)
            return 2
    db_path = _db_path(args.db)
    try:
        _make_directory(db_path)
        app = create_app(
            access_key=args.access_key,
            secret_key=args.secret_key,
            db_path=db_path,
            rate_limit=rate_limit,
        )
    except (sqlite3.Error, OSError) as exc:
        folder = a_directory(db_path, str(Path(db_path) / "sandbox.db")) if db_path else None
        hint = f"; {folder}" if folder else directory_hint(exc)
        print(f"leadhub sandbox: {shown} cannot be used: {exc}{hint}", file=sys.stderr)
        return 2
    if db_path and db_path != ":memory:":  # (on NFS, a tmpfs, a container's layer: as serve)
        warn_of_place(Path(db_path), holder=SANDBOX)
    level = args.log_level.lower()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=level if level in _UVICORN_LEVELS else "warning",
        access_log=False,
        log_config=None,  # its records go through hub.logs (JSON lines), not its own format
        lifespan="off",
        timeout_keep_alive=args.keep_alive,  # seconds (hub.cli.KEEP_ALIVE)
    )
    fields = {
        "rate_limit": str(rate_limit) if rate_limit else "off",
        # (absolute: a relative --db is the working directory's, which the log does not say)
        "db": str(Path(db_path).absolute()) if db_path else "memory",
        "keys": _keys_from(args),
    }
    exposed = _exposed(args)
    server = Server(
        config,
        on_ready=lambda url: _ready(log, url, fields, exposed),
        on_signal=sandbox_of(app).stopping,
    )
    _ignore_hangups(log)
    try:
        server.run()
    finally:
        if server.started:
            sandbox_of(app).close()
        else:  # (its --db file, when this start made it, is not left behind)
            sandbox_of(app).discard()
    if not server.started:  # it could not bind (uvicorn logged why)
        log.error("sandbox_failed", host=args.host, port=args.port)
        return 1
    log.info("sandbox_stopped")
    return 0
