"""``leadhub serve``: the webhook endpoints, the dispatcher and the embedded sandbox on uvicorn.

Steps: configure logging, load the config directory (errors: exit 2, every one
listed), name the store (a bad ``--db``: exit 2), mount the sandbox when the
``default`` target is the embedded one (its data in ``<db>.sandbox.sqlite`` next to
the hub's database, so sandbox leads survive restarts; a file that cannot be used, such as a
``-wal`` left beside none: exit 2; one this start made is deleted when the start fails,
its store refused, say; the target's URL becomes
``http://{host}:{port}/sandbox``), build the app (``hub.web.app.create_app``) with
its lifespan hooks (:func:`lifespan_hooks_for`: the store is opened first and
closed last), and serve until SIGINT/SIGTERM, which uvicorn turns into a graceful
shutdown. One ``hub_ready`` line is logged once the socket listens, ``hub_stopping``
(with the ``signal``) as soon as a stop signal arrives, and ``hub_stopped`` once every hook
has shut down.

A store that cannot be reached at start (PostgreSQL not up yet) is tried again for
``--store-wait`` (:func:`open_waiting`; 30 s for PostgreSQL, none for SQLite by default),
one ``store_waiting`` line per failed attempt. The socket is bound but not listening
meanwhile: connections are refused until the store is open and the hub is ready. An attempt
whose commits wait is told as such after :data:`OPEN_LOOK_AFTER` s (:func:`_tell_open_wait`):
``store_commit_waiting`` for a synchronous standby that is gone, ``store_lock_waiting`` for a
lock another session holds (an expected wait when that session is another instance's start).

``LEADHUB_METRICS_TOKEN``, when set, is the bearer token ``GET /metrics`` requires (every
role; ``hub.secrets.metrics_token``): read once at start (a reload keeps it), a value no
scraper could send refused (exit 2), and ``hub_ready`` says ``metrics_auth: bearer``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import signal
import socket
import sqlite3
import sys
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from hub import logs
from hub.addresses import sandbox_exposed
from hub.cli import Looked, given_as, unknown_variables, variable_of
from hub.clock import SYSTEM_CLOCK, Clock
from hub.commands.protocol import HubHttpProtocol
from hub.commands.server import Server
from hub.config import ConfigError, load
from hub.config.models import Config, Target
from hub.hangups import take_early
from hub.orphans import reaping_orphans
from hub.runtime import tune_for_serving
from hub.secrets import Secret, SettingError, metrics_token
from hub.sqlite_file import warn_of_place
from hub.store import StoreError, is_postgres, open_store, safe_url
from hub.store.base import (
    CommitWait,
    EventStore,
    StoreUnavailable,
    UnavailableForGood,
)
from hub.store.retention import parse_purge_after, retention_lifespan
from hub.store.sqlite import SQLiteStore
from hub.units import UnitError, parse_lease
from hub.web.app import LifespanHook, create_app
from hub.web.reload import Hangups, reload_on_hangup

_log = structlog.get_logger()


def sandbox_db_path(db_url: str) -> str | None:
    """``<db>.sandbox.sqlite`` beside the hub's SQLite database, or None for other stores."""
    parsed = urllib.parse.urlsplit(db_url)
    if parsed.scheme.lower() != "sqlite" or not parsed.path.startswith("/"):
        return None
    return urllib.parse.unquote(parsed.path[1:]) + ".sandbox.sqlite"


def public_base(host: str, port: int) -> str:
    """A URL this process can reach itself at (wildcard addresses become loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` as uvicorn binds one (``SO_REUSEADDR``), before
    anything else starts: the address everything else is told (the ready line, the embedded
    sandbox's target) is then the real one, also for ``--port 0``, and a port in use stops
    ``serve`` before it opens the store. uvicorn listens on it.

    Raises:
        OSError: the address cannot be bound (in use, not ours).
        OverflowError: the port is outside 0-65535.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def with_sandbox_url(config: Config, url: str) -> Config:
    """``config`` with the embedded sandbox target pointed at ``url``."""
    targets: dict[str, Target] = dict(config.targets)
    targets["default"] = dataclasses.replace(targets["default"], url=url)
    return dataclasses.replace(config, targets=targets)


#: ``--store-wait`` when not given, for a PostgreSQL URL (SQLite does not wait: its failures
#: are local, a permission or a full disk, and do not pass by themselves).
POSTGRES_STORE_WAIT = 30.0
#: The pause after the first failed attempt to open the store; it doubles up to the longest.
FIRST_PAUSE = 0.5
LONGEST_PAUSE = 5.0
#: How often a wait (or an attempt) looks whether a stop signal came.
_STOP_POLL = 0.1
#: Seconds an attempt to open the store goes on before serve asks it what it waits for (a
#: PostgreSQL commit waiting for a synchronous standby: ``commit_wait``), and asks again
#: while it finds nothing; once found, seconds before it says so again (the attempt goes on).
OPEN_LOOK_AFTER = 5.0
OPEN_TOLD_EVERY = 60.0


class Stopping:
    """Set from the stop signal's handler (a plain flag: safe there); ends a wait for the store."""

    def __init__(self) -> None:
        self.stopped = False

    def set(self) -> None:
        self.stopped = True


class StoppedWaiting(Exception):
    """A stop signal came while serve was waiting for the store: nothing was opened."""


class _QuietStoppedStart(logging.Filter):
    """Drops uvicorn's "Application startup failed" when the start was a wait for the store
    that a stop signal ended: serve stops as asked (``hub_stopped``, exit 0); nothing failed."""

    def __init__(self, stopping: Stopping) -> None:
        super().__init__()
        self.stopping = stopping

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.stopping.stopped and record.getMessage().startswith("Application startup"))


def store_wait_for(db_url: str, given: float | None) -> float:
    """Seconds to wait for an unreachable store: ``given`` (``--store-wait``) when set, else
    :data:`POSTGRES_STORE_WAIT` for a PostgreSQL URL and 0 for SQLite."""
    if given is not None:
        return given
    return POSTGRES_STORE_WAIT if is_postgres(db_url) else 0.0


async def _unless_stopped(work: Awaitable[None], stopping: Stopping | None) -> None:
    """Await ``work``; a stop signal meanwhile cancels it and raises :class:`StoppedWaiting`."""
    task = asyncio.ensure_future(work)
    while True:
        if stopping is not None and stopping.stopped:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise StoppedWaiting
        done, _ = await asyncio.wait({task}, timeout=_STOP_POLL)
        if done:
            return task.result()


async def open_waiting(
    store: EventStore, *, wait: float, db_url: str, stopping: Stopping | None = None
) -> None:
    """Open ``store``, trying again while it is unavailable (not reached, starting up) until
    ``wait`` seconds have passed since the first attempt failed, after pauses from
    :data:`FIRST_PAUSE` doubling to :data:`LONGEST_PAUSE`; one ``store_waiting`` line per
    failed attempt followed by a pause.

    The wait is counted from the first failure, not from the first attempt: an attempt may
    itself last longer than the wait (a host that drops packets: the connect timeout, 10 s;
    a loaded machine), and counted from before it, such a start gave up after that one
    attempt, never trying again nor saying it waited, however long ``--store-wait`` said.

    Raises:
        StoreError: opening failed in a way waiting cannot fix (a wrong password, no such
            database, a newer schema or one whose version is no number, a SQLite path naming a
            directory), or it was still unavailable after ``wait``.
        StoppedWaiting: ``stopping`` was set (SIGTERM, SIGINT) before the store opened.
    """
    loop = asyncio.get_running_loop()
    started: float | None = None  # when the first attempt failed
    pause = FIRST_PAUSE
    attempt = 0
    while True:
        attempt += 1
        try:
            await _unless_stopped(_opening(store, db_url), stopping)
            return
        except UnavailableForGood:
            raise
        except StoreUnavailable as exc:
            if started is None:
                started = loop.time()
            waited = loop.time() - started
            left = wait - waited
            if left <= 0:
                raise
            delay = min(pause, left)
            _log.warning(
                "store_waiting",
                db=safe_url(db_url),
                attempt=attempt,
                waited=round(waited, 1),
                retry_in=round(delay, 2),
                store_wait=wait,
                error=str(exc),
            )
            await _unless_stopped(asyncio.sleep(delay), stopping)
            pause = min(pause * 2, LONGEST_PAUSE)


async def _opening(store: EventStore, db_url: str) -> None:
    """``store.open()``, saying meanwhile what it waits for when that takes long and the
    store can tell (:func:`_tell_open_wait`)."""
    if isinstance(store, SQLiteStore):  # (no such wait: its commit_wait is always None)
        await store.open()
        return
    telling = asyncio.ensure_future(_tell_open_wait(store.commit_wait, db_url))
    try:
        await store.open()
    finally:
        telling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await telling


async def _tell_open_wait(look: Callable[[], Awaitable[CommitWait | None]], db_url: str) -> None:
    """After :data:`OPEN_LOOK_AFTER` s of an open, say so when ``look`` finds the store's
    commits waiting, again every :data:`OPEN_TOLD_EVERY` s while it lasts:

    * ``store_commit_waiting`` (a warning) for a synchronous standby that is gone: the first
      commit of the open waits for it, and serve waited there without a line, then was told
      the server could not be reached;
    * ``store_lock_waiting`` for a lock another session holds (``holders``: their pids, with
      application and state where seen; ``relation``: the table, or the store's schema
      lock), a warning telling to end the holder's transaction; or, when the holder is
      another leadhub instance opening the store (it holds the schema lock while it makes or
      migrates the tables: instances started together), an info line with ``expected``
      true, saying so. (Both were ``store_commit_waiting``, the other instance's start told
      as a session whose transaction to end.)

    The open goes on: such a commit is on the server's disk already, and completes once the
    standby confirms it or is no longer waited for (a lock's wait, once the lock is let go)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    pause = OPEN_LOOK_AFTER
    while True:
        await asyncio.sleep(pause)
        wait = await look()
        if wait is None:
            pause = OPEN_LOOK_AFTER
            continue
        waited = round(loop.time() - started, 1)
        if wait.cause == "lock":
            tell = _log.info if wait.starting else _log.warning
            tell(
                "store_lock_waiting",
                db=safe_url(db_url),
                waited=waited,
                holders=wait.holders,
                relation=wait.relation,
                expected=wait.starting,
                cause=wait.text,
            )
        else:
            _log.warning(
                "store_commit_waiting", db=safe_url(db_url), waited=waited, cause=wait.text
            )
        pause = OPEN_TOLD_EVERY


def _store_hook(
    store: EventStore, db_url: str, *, wait: float = 0.0, stopping: Stopping | None = None
) -> LifespanHook:
    """Opens the store (waiting up to ``wait`` seconds for it: :func:`open_waiting`) at
    start, closes it at the end; a failure is logged as ``store_open_failed``."""

    @contextlib.asynccontextmanager
    async def hook(app: Starlette) -> AsyncIterator[None]:
        try:
            await open_waiting(store, wait=wait, db_url=db_url, stopping=stopping)
        except StoreError as exc:
            _log.error("store_open_failed", db=safe_url(db_url), error=str(exc))
            app.state.startup_failure = "store_open_failed"  # logged: no traceback (HubApp)
            raise
        except StoppedWaiting:
            app.state.startup_failure = "stopped"  # serve says so and exits 0
            raise
        if isinstance(store, SQLiteStore):
            warn_of_place(store.path)
        if off := getattr(store, "not_crash_safe", None):  # (PostgreSQL's settings)
            _log.warning(
                "store_not_crash_safe",
                db=safe_url(db_url),
                off=off,
                detail="a crash of the database's machine can lose or corrupt deliveries "
                f"answered 200; turn {' and '.join(off)} on in postgresql.conf (a managed "
                "service that turns them off must keep its data safe by other means: ask it)",
            )
        try:
            yield
        finally:
            await store.close()

    return hook


def _closing(app: ASGIApp) -> LifespanHook:
    @contextlib.asynccontextmanager
    async def hook(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app.state.sandbox.close()  # type: ignore[attr-defined]

    return hook


@contextlib.asynccontextmanager
async def _announce_stop(_app: Starlette) -> AsyncIterator[None]:
    """Outermost hook: says when everything inside it has shut down."""
    yield
    _log.info("hub_stopped")


def lifespan_hooks_for(
    *,
    config: Config,
    store: EventStore,
    clock: Clock,
    role: str,
    db_url: str,
    lease: float = 60.0,
    keep: float | None = None,
    store_wait: float = 0.0,
    stopping: Stopping | None = None,
) -> list[LifespanHook]:
    """The app's lifespan hooks for ``role``, in start order (the store first, waited for
    up to ``store_wait`` seconds unless ``stopping`` is set meanwhile).

    Roles ``all`` and ``worker`` are where the dispatcher's hook belongs, after the store's,
    and with ``keep`` (``--purge-after``, seconds) the automatic purge's after it.
    """
    hooks = [_store_hook(store, db_url, wait=store_wait, stopping=stopping)]
    if role in ("all", "worker"):
        from hub.dispatch.worker import dispatcher_lifespan

        hooks.append(dispatcher_lifespan(config=config, store=store, clock=clock, lease=lease))
        if keep is not None:
            hooks.append(retention_lifespan(store=store, clock=clock, keep=keep))
    return hooks


def _lease_given(args: argparse.Namespace) -> str:
    """How ``--lease`` was given: ``--lease 60s``, or ``LEADHUB_LEASE=60s``."""
    name = given_as(args, "lease", "--lease")
    lease = getattr(args, "lease", "60s")
    return f"{name} {lease}" if name.startswith("--") else f"{name}={lease}"


def _lease_holds(
    adjust: Callable[[Config], Config], lease: float, given: str
) -> Callable[[Config], Config]:
    """``adjust``, then a reload's check that this hub's lease (``lease`` seconds, given as
    ``given``) holds the new configuration's calls and lead reads, as the start checks it
    (exit 2 there). A target's ``timeout`` (or an endpoint's ``read_timeout``) raised past
    the lease by a reload was taken, and every event of that target then went back to the
    queue untried, a lease later, again and again: nothing was sent to it until a restart,
    and the reload said ``config_reloaded``. Refused, the reload changes nothing and says
    where, with the fix."""
    from hub.dispatch.lease import lease_shortfalls_where

    def check(config: Config) -> Config:
        config = adjust(config)
        problems = []
        for origin, problem in lease_shortfalls_where(config, lease):
            where = f"{origin}: " if origin is not None else ""
            said = f"{given} (this hub's) is too short: {problem} (a new --lease needs a restart)"
            problems.append(where + said)
        if problems:
            raise ConfigError(problems)
        return config

    return check


def _sandbox_address(sandbox: bool, base: str) -> Callable[[Config], Config]:
    """What a configuration needs before use, at start and at each reload: the embedded
    sandbox's address for a ``default`` target that is the sandbox, which must then be
    running (``sandbox``)."""

    def adjust(config: Config) -> Config:
        default = config.targets.get("default")
        if default is None or not default.sandbox:
            return config
        if not sandbox:
            where = f"{default.origin}: " if default.origin else ""
            msg = (
                f"{where}the default target is now the embedded sandbox, which this hub did "
                "not start with; restart `leadhub serve` to use it"
            )
            raise ConfigError([msg])
        return with_sandbox_url(config, f"{base}/sandbox")

    return adjust


def _drain(app: ASGIApp) -> None:
    """Stop the dispatcher claiming at once, before uvicorn closes the embedded sandbox."""
    dispatcher = getattr(getattr(app, "state", None), "dispatcher", None)
    if dispatcher is not None:
        dispatcher.drain()


def _on_signal(stopping: Stopping, app: ASGIApp, sandbox_app: ASGIApp | None) -> None:
    """A stop signal: end a wait for the store, stop the dispatcher claiming, and let go of
    the embedded sandbox's calls a ``timeout`` fault holds (uvicorn's graceful stop would
    wait for them, 30 s by default, as long as the fault says)."""
    stopping.set()
    _drain(app)
    if sandbox_app is not None:
        from hub.sandbox import sandbox_of  # (loaded already: the sandbox app was made)

        sandbox_of(sandbox_app).stopping()


def _stopping(signal_name: str) -> None:
    """The first line of a stop: which signal asked for it (a crash logs no such line), so
    that the time to ``hub_stopped`` is how long the stop took."""
    _log.info("hub_stopping", signal=signal_name)


def _default_keys(target: Target | None) -> bool:
    """Whether the embedded sandbox's ``target`` has the default keys, ``sandbox`` / ``sandbox``."""
    return (
        target is not None
        and target.access_key.matches("sandbox")
        and target.secret_key.matches("sandbox")
    )


def _sandbox_keys(target: Target | None) -> str:
    """Where the embedded sandbox's keys come from; the keys themselves only when defaults."""
    if _default_keys(target):
        return "sandbox / sandbox (the defaults; set LEADHUB_SANDBOX_ACCESS_KEY and _SECRET_KEY)"
    return "from LEADHUB_SANDBOX_ACCESS_KEY and LEADHUB_SANDBOX_SECRET_KEY"


def _sandbox_exposed(host: str, target: Target | None) -> dict[str, str] | None:
    """The ``sandbox_exposed`` warning's fields when the embedded sandbox answers beyond this
    machine to the keys everyone knows (:func:`hub.addresses.sandbox_exposed`): at
    ``/sandbox/_sandbox/leads``; else None."""
    return sandbox_exposed(
        host,
        _default_keys(target),
        fix=(
            "set LEADHUB_SANDBOX_ACCESS_KEY and LEADHUB_SANDBOX_SECRET_KEY to keys of your "
            "own, define a 'default' target (a LeadSquared account), or serve on --host "
            "127.0.0.1"
        ),
    )


def _ready(ready: dict[str, Any], exposed: dict[str, str] | None = None) -> None:
    """Once listening: settle the interpreter for serving (start-up is over), then say so,
    and warn of a sandbox anyone may read (``exposed``: :func:`_sandbox_exposed`)."""
    tune_for_serving()
    _log.info("hub_ready", **ready)
    if exposed is not None:
        _log.warning("sandbox_exposed", sandbox=ready["sandbox"], **exposed)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped; 0 after a clean shutdown, 1 if startup failed, 2 for bad input.

    SIGHUP asks for a reload from the start on (:class:`hub.web.reload.Hangups`): its
    default action would end the process while it starts or stops."""
    hangups = take_early()  # (installed by ``leadhub`` before it loaded this module)
    if hangups is None:
        hangups = Hangups()
        hangups.previous = hangups.install()
    previous = hangups.previous
    try:
        return _run(args, hangups)
    finally:
        if previous is not None:  # (None: set outside Python, cannot be put back)
            signal.signal(signal.SIGHUP, previous)


def _more_open_files() -> int:
    """The process's limit of open files, its soft limit first raised to its hard one.

    Each connection is a file descriptor, and a process out of them has every new connection
    accepted and closed at once (libuv's way), senders and the dispatcher's calls alike,
    without a line in the log. The usual soft limit is 1,024 (systemd's default, kept low for
    programs that use ``select()``; the hard one is 524,288): 1,000 connections that each send
    a byte of a request every 29 s (within the read wait) took a hub's every free descriptor.
    The event loop uses epoll, which has no such ceiling, so the hub takes what it may (as Go
    programs and nginx's ``worker_rlimit_nofile`` do). A limit it cannot raise stays."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _run(args: argparse.Namespace, hangups: Hangups) -> int:
    logs.configure(json=True if args.log_json else None, level=args.log_level)
    open_files = _more_open_files()  # (before the store's writer process starts: it inherits)
    try:
        config = load(args.config_dir, looked := Looked(os.environ))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        for _, why in unknown_variables(os.environ, looked.names):  # (an unset ${VAR}'s typo)
            print(f"warning: {why}", file=sys.stderr)
        print(f"leadhub serve: {len(exc.issues)} error(s) in {args.config_dir}", file=sys.stderr)
        return 2
    for warning in config.warnings:
        _log.warning("config_warning", message=warning)
    for name, why in unknown_variables(os.environ, looked.names):
        _log.warning("variable_unknown", variable=name, message=why)
    # Bad input is refused before the port is taken: refused after, with the port in use (a
    # hub already serving on it), it said only "cannot listen" (exit 1).
    try:
        # a web role writes enqueues from a child process: off the event loop's GIL
        writer = "thread" if args.role == "worker" else "process"
        store = open_store(
            args.db, clock=SYSTEM_CLOCK, writer=writer, ingest_only=args.role == "web"
        )
    except StoreError as exc:
        variable = variable_of(args, "db")
        print(f"leadhub serve: {f'{variable}: ' if variable else ''}{exc}", file=sys.stderr)
        return 2
    checked = _check_flags(args, config)
    if isinstance(checked, int):
        return checked
    try:
        listening = listen(args.host, args.port)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = public_base(args.host, args.port)
        if args.host in ("0.0.0.0", "::"):  # (not only the loopback address the URL names)
            name = given_as(args, "host", "--host")
            given = f"{name} {args.host}" if name.startswith("--") else f"{name}={args.host}"
            where += f" ({given}: every interface)"
        print(f"leadhub serve: startup failed: cannot listen on {where}: {reason}", file=sys.stderr)
        return 1
    _warn_port_beside_variable(args)
    with listening:
        return _serve(args, config, listening, hangups, store, checked, open_files)


def _warn_port_beside_variable(args: argparse.Namespace) -> None:
    """Say so when ``--port`` overrides a different ``LEADHUB_PORT``: the image sets the
    variable, and its ``HEALTHCHECK`` asks ``/healthz`` on the port the variable names, so a
    ``docker run leadhub serve --port 9000`` served on 9000 and was reported unhealthy (and
    restarted by an orchestrator that acts on it) with no line saying why."""
    variable = os.environ.get("LEADHUB_PORT")
    if variable is None or variable_of(args, "port") is not None:
        return  # (no variable, or the port came from it)
    with contextlib.suppress(ValueError):
        if int(variable) == args.port:
            return
    _log.warning(
        "port_flag_over_variable",
        port=args.port,
        LEADHUB_PORT=variable,
        message=(
            f"--port {args.port} is served, not LEADHUB_PORT={variable}: a health check "
            "that reads LEADHUB_PORT (the image's HEALTHCHECK) asks the wrong port; set "
            f"LEADHUB_PORT={args.port} instead of giving --port"
        ),
    )


@dataclasses.dataclass(frozen=True)
class _Checked:
    """``serve``'s flags and proxy variables, checked (:func:`_check_flags`)."""

    lease: float  # seconds
    keep: float | None  # --purge-after, seconds; None: off
    proxies: dict[str, str] | None  # scheme to proxy, without credentials (the ready line)
    metrics_token: Secret | None  # LEADHUB_METRICS_TOKEN; None: /metrics open


def _check_flags(args: argparse.Namespace, config: Config) -> _Checked | int:
    """``--lease`` (also against ``config``'s targets), the proxy variables,
    ``--purge-after`` and ``LEADHUB_METRICS_TOKEN``; an exit code (2, said on stderr) when
    one is refused. Runs before the store's directory or the embedded sandbox's database are
    made: a start refused for a flag leaves nothing on disk (a mistyped ``--db`` directory
    included)."""
    try:
        lease = parse_lease(getattr(args, "lease", "60s"))
    except UnitError as exc:
        print(f"leadhub serve: {given_as(args, 'lease', '--lease')}: {exc}", file=sys.stderr)
        return 2
    if args.role in ("all", "worker"):
        # A lease shorter than a call (or a lead read) would send nothing: refuse it now.
        from hub.dispatch.lease import lease_shortfalls

        shortfalls = lease_shortfalls(config, lease)
        given = _lease_given(args)
        for problem in shortfalls:
            print(f"leadhub serve: {given} is too short: {problem}", file=sys.stderr)
        if shortfalls:
            return 2
    proxies: dict[str, str] | None = None
    if args.role in ("all", "worker"):
        # The dispatcher sends through the proxies the standard variables name: checked now.
        from hub.dispatch.proxies import Proxies, ProxySettingError, ca_file_problem

        try:
            proxies = Proxies().describe() or None
        except ProxySettingError as exc:
            print(f"leadhub serve: {exc}", file=sys.stderr)
            return 2
        if (unread := ca_file_problem()) is not None:  # ignored by OpenSSL, said by nothing
            print(f"leadhub serve: {unread}", file=sys.stderr)
            return 2
    purge_after = str(getattr(args, "purge_after", "off"))
    try:
        keep = parse_purge_after(purge_after)
    except UnitError as exc:
        name = given_as(args, "purge_after", "--purge-after")
        print(f"leadhub serve: {name}: {exc}", file=sys.stderr)
        return 2
    try:  # (read once: a reload keeps it, as it keeps every variable)
        token = metrics_token(os.environ)
    except SettingError as exc:
        print(f"leadhub serve: {exc}", file=sys.stderr)
        return 2
    return _Checked(lease, keep, proxies, token)


def _serve(
    args: argparse.Namespace,
    config: Config,
    listening: socket.socket,
    hangups: Hangups,
    store: EventStore,
    checked: _Checked,
    open_files: int,
) -> int:
    # The store's: on PostgreSQL, the database server's time, which every instance shares.
    clock: Clock = store.clock
    lease, keep, proxies = checked.lease, checked.keep, checked.proxies
    purge_after = str(getattr(args, "purge_after", "off"))

    base = public_base(args.host, listening.getsockname()[1])  # the real port, also for 0
    sandbox_app: ASGIApp | None = None
    default = config.targets.get("default")
    if default is not None and default.sandbox:
        from hub.sandbox import create_app as create_sandbox
        from hub.sandbox.db import directory_hint

        db_path = sandbox_db_path(args.db)
        try:
            if db_path is not None:  # (the store's directory: a fresh volume)
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            sandbox_app = create_sandbox(
                access_key=default.access_key.reveal(),
                secret_key=default.secret_key.reveal(),
                db_path=db_path,
                rate_limit=default.rate_limit,
                clock=clock,
            )
        except (sqlite3.Error, OSError) as exc:  # not a database, a -wal left beside none...
            shown = f"embedded sandbox's database {db_path!r}"
            hint = directory_hint(exc, embedded=True)
            said = f"leadhub serve: the {shown} cannot be used: {exc}{hint}"
            print(said, file=sys.stderr)
            return 2
    adjust = _sandbox_address(sandbox_app is not None, base)
    config = adjust(config)
    if keep is not None and args.role == "web":
        _log.warning(
            "purge_not_run",
            reason="--purge-after is done by the processes that run the dispatcher "
            "(role all or worker), not by a web role",
        )
    stopping = Stopping()
    hooks = lifespan_hooks_for(
        config=config,
        store=store,
        clock=clock,
        role=args.role,
        db_url=args.db,
        lease=lease,
        keep=keep,
        store_wait=store_wait_for(args.db, getattr(args, "store_wait", None)),
        stopping=stopping,
    )
    if sandbox_app is not None:
        hooks.insert(0, _closing(sandbox_app))  # closed last, after the dispatcher stops
    if args.role in ("all", "worker"):  # (the dispatcher's lease holds what a reload gives)
        adjust = _lease_holds(adjust, lease, _lease_given(args))
    hooks.append(reload_on_hangup(args.config_dir, adjust, hangups))
    hooks.insert(0, reaping_orphans)  # (PID 1 in a container: until everything else stops)
    hooks.insert(0, _announce_stop)

    app = create_app(
        config=config,
        store=store,
        clock=clock,
        role=args.role,
        sandbox_app=sandbox_app,
        lifespan_hooks=hooks,
        metrics_token=checked.metrics_token,
    )
    ready = {
        "url": base,
        "role": args.role,
        "endpoints": sorted(config.endpoints) if args.role != "worker" else [],
        "targets": sorted(config.targets),
        "sandbox": f"{base}/sandbox" if sandbox_app is not None else None,
        "sandbox_keys": _sandbox_keys(default) if sandbox_app is not None else None,
        "config_dir": str(args.config_dir),
        "pid": os.getpid(),  # for `kill -HUP` (reload the configuration)
        "purge_after": None if keep is None or args.role == "web" else purge_after,
        "proxies": proxies,  # scheme to proxy (HTTPS_PROXY, ...), never its credentials
        "open_files": open_files,  # (each connection takes one: see _more_open_files)
        # whether GET /metrics asks for LEADHUB_METRICS_TOKEN (a variable set in the wrong
        # place leaves it open: said here)
        "metrics_auth": "bearer" if checked.metrics_token else None,
    }
    exposed = _sandbox_exposed(args.host, default) if sandbox_app is not None else None
    server = Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            lifespan="on",
            access_log=False,
            log_level="warning",
            log_config=None,  # its records go through hub.logs (JSON lines), not its own format
            server_header=False,
            # Nothing reads the client address: skip uvicorn's X-Forwarded-* rewrite per request.
            proxy_headers=False,
            http=HubHttpProtocol,  # one write per response
            timeout_keep_alive=args.keep_alive,  # seconds (hub.cli.KEEP_ALIVE)
        ),
        on_ready=lambda _url: _ready(ready, exposed),
        on_signal=lambda: _on_signal(stopping, app, sandbox_app),
        on_stopping=_stopping,
    )
    quiet = _QuietStoppedStart(stopping)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        server.run(sockets=[listening])  # on SIGTERM/SIGINT: a graceful shutdown, then exit 0
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
        if not server.started and sandbox_app is not None:
            from hub.sandbox import sandbox_of  # (loaded already: the sandbox app was made)

            sandbox_of(sandbox_app).discard()  # its file, made for a start that did not happen
    if not server.started and getattr(app.state, "startup_failure", None) == "stopped":
        _log.info("hub_stopped", reason="stopped while waiting for the event store")
        return 0
    if not server.started:
        print("leadhub serve: startup failed (see the log above)", file=sys.stderr)
        return 1
    return 0
