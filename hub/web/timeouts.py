"""Awaiting a store call for at most a while, without waiting for its cancellation.

``asyncio.wait_for`` cancels an awaitable that runs late and then waits for the cancellation
to finish. A PostgreSQL store that hangs (a stuck host, a stalled disk) makes that wait as
long as the hang: asyncpg cancels a query by connecting to the server to send a cancel
request, which hangs too. ``/readyz`` and ``/metrics`` must answer all the same, so they use
:func:`within`, which asks for the cancellation and returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from hub.store.base import LockTimedOut

if TYPE_CHECKING:
    from hub.store.base import CommitWait, EventStore

T = TypeVar("T")

#: Seconds a ping that ran out of time may then take to learn what the store's commits wait
#: for (:func:`failed_ping`; on a server that answers reads, milliseconds).
LOOK_WITHIN = 1.0


async def within(work: Awaitable[T], seconds: float) -> T:
    """``work``'s result, or :class:`TimeoutError` after ``seconds`` (``work`` is cancelled,
    and left to end in the background, its outcome dropped).

    Raises:
        TimeoutError: ``work`` did not finish in time.
        Exception: whatever ``work`` raised.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(drop_outcome)
    msg = f"no answer within {seconds:g}s"
    raise TimeoutError(msg)


def drop_outcome(task: asyncio.Future[Any]) -> None:
    """Retrieve a late task's exception, so that asyncio does not log it as never retrieved."""
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()


async def failed_ping(
    store: EventStore, seconds: float
) -> tuple[Exception, CommitWait | None] | None:
    """None when ``store`` takes its ping (a write) within ``seconds``; else what failed and,
    when the store can tell what a ping that ran out of time (or that a ``lock_timeout``
    cancelled) waits for (PostgreSQL's ``commit_wait``: a synchronous standby that does not
    confirm its commits, a lock another session holds) within :data:`LOOK_WITHIN`, that
    cause (else None).

    Asked while the ping still waits: its own session tells what for. (A PostgreSQL store's
    concurrent pings share one, which goes on when this stops awaiting it.) ``/readyz`` and
    ``/metrics`` both ping: the one named the cause and the other said "no answer within 3s"
    of the same wait."""
    ping: asyncio.Future[None] | None = None
    try:
        ping = asyncio.ensure_future(store.ping())
        await within(asyncio.shield(ping), seconds)
    except Exception as exc:
        cause = await _hang_cause(store, exc)
        if ping is not None:
            ping.cancel()
            ping.add_done_callback(drop_outcome)
        return exc, cause
    return None


async def _hang_cause(store: EventStore, exc: Exception) -> CommitWait | None:
    """What a store's ping that ran out of time, or that a ``lock_timeout`` cancelled
    (``exc``), waits for, when the store can tell within :data:`LOOK_WITHIN`, else None.

    Every commit of such a store waits, the server answering reads all along: /readyz said
    "store unavailable" and its ``readiness_failed`` line "no answer within 3s", and the
    operator looked for a stopped server or a network. With a ``lock_timeout`` on the role or
    the database, it failed at once with no cause at all."""
    if not isinstance(exc, (TimeoutError, LockTimedOut)):
        return None
    try:
        return await within(store.commit_wait(), LOOK_WITHIN)
    except Exception:  # (not known: the answer goes without it)
        return None
