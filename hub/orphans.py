"""Orphaned processes reaped while ``leadhub serve`` is PID 1, as the image runs it.

In a container the entry point is PID 1 of its own PID namespace, and every process of the
container whose parent dies is handed to it (the kernel's "reaper"). What exits then stays
a zombie until PID 1 waits for it: the ``HEALTHCHECK``'s ``python`` left behind when Docker
kills its shell at the time-out, anything a ``docker exec`` shell started in the background.
The hub waited only for its own child (the store's writer), so those zombies piled up for
the container's life, each holding a PID (``--pids-limit``: at the limit, the writer could no
longer be restarted). Here, while the hub is PID 1, a sweep every :data:`SWEEP_EVERY` reaps
the zombies among its children that it did not start itself (:data:`OWN`: their owner waits
for them and reads their exit code, which a wait here would take from it), one
``orphan_reaped`` line each.
Outside a container (any other PID) nothing changes: an orphan goes to the real init. (A sweep,
not a SIGCHLD handler: uvloop keeps SIGCHLD for itself.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

_log = structlog.get_logger("hub.orphans")

#: Seconds between two sweeps for zombies: one lives that long at most, holding only its PID.
SWEEP_EVERY = 5.0

#: The PIDs of the children the hub started and waits for itself (the store's writer):
#: never reaped here. Added right after the start, on the thread that started it, and
#: dropped once its owner has seen it exit.
OWN: set[int] = set()


def _zombie_children(proc: Path = Path("/proc")) -> list[int]:
    """The PIDs of this process's children that have exited and not been waited for, read
    from ``/proc`` (the PID namespace's own when it is mounted for it, as in a container)."""
    me = os.getpid()
    found: list[int] = []
    try:
        entries = list(proc.iterdir())
    except OSError:  # (no /proc: nothing to find)
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # (gone meanwhile)
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
        if state == "Z" and int(ppid) == me:
            found.append(int(entry.name))
    return found


def reap() -> list[int]:
    """Wait for every zombie child not in :data:`OWN`; the PIDs reaped."""
    reaped = []
    for pid in _zombie_children():
        if pid in OWN:
            continue
        try:
            waited, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # (waited for meanwhile by someone else)
            continue
        if waited == pid:
            reaped.append(pid)
            _log.info("orphan_reaped", pid=pid, exit_code=os.waitstatus_to_exitcode(status))
    return reaped


async def _sweep() -> None:
    while True:
        reap()
        await asyncio.sleep(SWEEP_EVERY)


@contextlib.asynccontextmanager
async def reaping_orphans(_app: Any) -> AsyncIterator[None]:
    """A lifespan hook: while the hub is PID 1, reap orphans every :data:`SWEEP_EVERY`
    seconds (the first sweep at the start, for those handed over before it), until every
    hook inside it has stopped; otherwise nothing."""
    if os.getpid() != 1:
        yield
        return
    sweeping = asyncio.create_task(_sweep())
    try:
        yield
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
