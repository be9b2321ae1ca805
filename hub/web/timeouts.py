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
from typing import Any, TypeVar

T = TypeVar("T")


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
