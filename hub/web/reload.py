"""Reloading the configuration directory without a restart: ``kill -HUP <pid>``.

On SIGHUP the running hub reads its configuration directory again, exactly as at start
(``leadhub check`` gives the same verdict). If any file has an error, nothing changes: the
hub logs ``config_reload_failed`` with every ``file:line: message`` and goes on with the
configuration it has (``serve`` also refuses, so, a target ``timeout`` or an endpoint
``read_timeout`` its running ``--lease`` cannot hold, as its start does). Otherwise it logs
``config_reloaded`` and, from then on (either way
``leadhub_config_reloads_total{outcome="ok"|"failed"}`` counts it):

* ``/hooks/{name}`` serves the new endpoints (a new one answers, a removed one is 404);
* the dispatcher maps every event it sends with the new mappings (those its lanes held,
  mapped when claimed, go back to the queue to be claimed again when an endpoint or a
  mapping changed; only calls already started finish as they were); a target that is new
  gets a lane, and one that changed or went away has its lane closed, its queued events put
  back in the queue to be claimed again (:meth:`hub.dispatch.worker.Dispatcher.reload`); its
  new lane is not paused, so the events a pause of it held back are due at once.

A file being written when the signal comes is waited for: the reload reads the directory once
no file in it has changed for :data:`SETTLE` seconds (at most :data:`SETTLE_MAX`), and reads
it again if a file changed while it was read. An editor or a config-map watcher that signals
as soon as a file changes, while it is still empty or cut short, no longer removes that file's
endpoints until the next reload (an empty file is valid). A writer that stalls longer than
that mid-file is not told apart: write each file whole (to a temporary name, then rename it).

Stored events are otherwise untouched: what was accepted stays accepted, and is mapped when it
is sent. Variables (``${VAR}``) are read from the hub's environment, which a running process
cannot be given anew: a changed secret needs a restart, as do the embedded sandbox's own
settings and the flags of ``leadhub serve``. With the roles split over processes, signal the
workers before the web processes: a worker that does not know a new endpoint yet leaves its
events queued, each put back once with the last error ``endpoint not configured``, until a
worker that has it (or this one, once reloaded) sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import structlog
from prometheus_client import Counter
from starlette.applications import Starlette

from hub.clock import SYSTEM_CLOCK, Clock, Sleep
from hub.config import ConfigError, load
from hub.config.loader import config_files
from hub.config.models import Config
from hub.hangups import Hangups
from hub.web.ingest import Prepared
from hub.web.metrics import app_registry

__all__ = ["Hangups", "Reloads", "read_config", "reload_config", "reload_on_hangup", "settled"]

_log = structlog.get_logger()

#: What a hook gets for each configuration it loaded, before the hub uses it (the embedded
#: sandbox's address filled in, for ``serve``).
Adjust = Callable[[Config], Config]

#: Seconds no configuration file may have changed before a reload reads the directory.
SETTLE = 0.5
#: The longest a reload waits for files that keep changing; it reads them as they are then.
SETTLE_MAX = 5.0
#: Reads of the directory a reload makes at most while files change as it reads them.
READS = 3

#: What a file looks like from outside: (modified, size, inode), following a symbolic link.
Snapshot = dict[str, tuple[int, int, int]]


def snapshot(directory: Path) -> Snapshot:
    """The configuration files of ``directory`` as :func:`os.stat` sees them now."""
    seen: Snapshot = {}
    for path in config_files(directory):
        try:
            stat = path.stat()
        except OSError:  # gone, or a link to nothing: loading it says so
            continue
        seen[str(path)] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return seen


async def settled(
    directory: Path, clock: Clock = SYSTEM_CLOCK, sleep: Sleep = asyncio.sleep
) -> tuple[Snapshot, float]:
    """Wait until no file of ``directory`` has changed for :data:`SETTLE` seconds (at most
    :data:`SETTLE_MAX` in all); the files as they are then, and the seconds waited.

    A file's modification time is compared with the wall clock; one in the future (a clock
    set back, a file given a date by hand) is not waited for.
    """
    waited = 0.0
    while True:
        files = await asyncio.to_thread(snapshot, directory)
        newest = max((modified for modified, _, _ in files.values()), default=0) / 1e9
        quiet = clock.time() - newest
        if not 0 <= quiet < SETTLE or waited >= SETTLE_MAX:
            return files, waited
        nap = min(SETTLE - quiet, SETTLE_MAX - waited)
        await sleep(nap)
        waited += nap


async def read_config(
    directory: Path, clock: Clock = SYSTEM_CLOCK, sleep: Sleep = asyncio.sleep
) -> tuple[Config, float]:
    """Load ``directory`` once its files have settled (:func:`settled`), again if one changed
    while it was read (up to :data:`READS` reads); the configuration and the seconds waited.

    Raises:
        ConfigError: as :func:`hub.config.load`.
    """
    waited = 0.0
    for _ in range(READS):
        before, slept = await settled(directory, clock, sleep)
        waited += slept
        config = await asyncio.to_thread(load, directory, os.environ)
        if await asyncio.to_thread(snapshot, directory) == before:
            break
    return config, waited


async def reload_config(
    app: Starlette,
    directory: str | Path,
    adjust: Adjust,
    *,
    clock: Clock = SYSTEM_CLOCK,
    sleep: Sleep = asyncio.sleep,
) -> bool:
    """Load ``directory`` (:func:`read_config`) and use it in ``app`` (its ingest and
    dispatcher); False, changing nothing, when the directory has an error."""
    try:
        loaded, waited = await read_config(Path(directory), clock, sleep)
        config = adjust(loaded)
    except ConfigError as exc:
        _log.error("config_reload_failed", errors=list(exc.issues), config_dir=str(directory))
        return False
    # What may fail of using it, before anything is changed: the ingest's routes (an
    # endpoint's source built from a value the loader took, such as a variable holding bytes
    # that are not UTF-8). Built after the dispatcher had reloaded, the reload failed half
    # applied: the dispatcher mapping with the new configuration, /hooks on the old one.
    ingest = getattr(app.state, "ingest", None)
    prepared = None if ingest is None else ingest.prepare(config.endpoints)
    # Once begun, the new configuration is used whole: a stop (SIGTERM) that comes meanwhile
    # waits for it (the lanes it closes finish their sends and put their events back, as a
    # stop's own do), then goes on. Cancelled halfway, a closing lane's events were left
    # claimed until their lease ended, and its in-flight calls cut unrecorded.
    using = asyncio.ensure_future(_use(app, config, prepared, directory, waited))
    try:
        await asyncio.shield(using)
    except asyncio.CancelledError:
        await using
        raise
    return True


async def _use(
    app: Starlette,
    config: Config,
    prepared: Prepared | None,
    directory: str | Path,
    waited: float,
) -> None:
    """Use ``config`` in ``app``: its dispatcher, then its ingest (``prepared``: its
    endpoints, built); say so."""
    old: Config = app.state.config
    # The dispatcher first: the events of a new endpoint can only come after it knows it.
    dispatcher = getattr(app.state, "dispatcher", None)
    if dispatcher is not None:
        await dispatcher.reload(config)
    ingest = getattr(app.state, "ingest", None)
    if ingest is not None and prepared is not None:
        ingest.use(prepared)
    app.state.config = config
    for warning in config.warnings:
        _log.warning("config_warning", message=warning)
    _log.info(
        "config_reloaded",
        config_dir=str(directory),
        endpoints=sorted(config.endpoints),
        endpoints_added=sorted(set(config.endpoints) - set(old.endpoints)),
        endpoints_removed=sorted(set(old.endpoints) - set(config.endpoints)),
        mappings=len(config.mappings),
        targets=sorted(config.targets),
        waited=round(waited, 3),
    )


class Reloads:
    """The reloads SIGHUPs ask for in a running app: one at a time, in order.

    :meth:`ask` starts a reload, or none when one already waits for its turn (a reload runs
    meanwhile): that one reads the files after this signal too. A storm of signals while a
    reload waits for files to settle (a watcher signalling at every change) is then one more
    reload, not one for each signal, each waiting its turn and the files again.
    """

    def __init__(self, app: Starlette, reload: Callable[[], Awaitable[bool]]) -> None:
        """``reload``: one reload of ``app`` (:func:`reload_config` with its arguments given),
        True when it took the files."""
        self.reload = reload
        self.counts = Counter(
            "leadhub_config_reloads",
            "Configuration reloads (SIGHUP), by outcome: ok, or failed (nothing changed).",
            ["outcome"],
            registry=app_registry(app),
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self._turn = asyncio.Lock()
        self._waiting = False  # a reload asked for has not started reading yet

    def ask(self) -> None:
        """A reload, unless one already waits for its turn (it reads the files after now)."""
        if self._waiting:
            return
        self._waiting = True
        task = asyncio.get_running_loop().create_task(self._one(), name="leadhub-reload")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self) -> None:
        async with self._turn:
            self._waiting = False
            try:
                done = await self.reload()
            except Exception as exc:  # a bug: say so, and keep serving
                _log.exception("config_reload_failed", error=str(exc)[:300])
                done = False
            self.counts.labels("ok" if done else "failed").inc()

    async def close(self) -> None:
        """Cancel the reloads under way or waiting."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def reload_on_hangup(
    directory: str | Path,
    adjust: Adjust = lambda config: config,
    hangups: Hangups | None = None,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A ``hub.web.app`` lifespan hook: SIGHUP reloads ``directory`` while the app runs
    (:class:`Reloads`: one reload at a time, signals merged while one waits). List it last.

    With ``hangups`` (installed before the app starts), a SIGHUP that came before this hook
    ran is one reload as soon as it runs, and once it has ended SIGHUPs are remembered by
    ``hangups`` again rather than ending the process while the app stops.
    """

    @contextlib.asynccontextmanager
    async def hook(app: Starlette) -> AsyncIterator[None]:
        reloads = Reloads(app, functools.partial(reload_config, app, directory, adjust))
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloads.ask)
        if hangups is not None and hangups.pending:
            hangups.pending = False
            reloads.ask()  # asked for while starting: the files may have changed since read
        try:
            yield
        finally:
            # (restores the default action)
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if hangups is not None:
                hangups.install()
            await reloads.close()

    return hook
