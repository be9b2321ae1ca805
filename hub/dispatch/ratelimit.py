"""Per-target sliding-window rate limiting: never more than ``calls`` in ANY ``window``.

LeadSquared counts calls per account in a sliding window (25 in any 5 seconds on
most plans) and answers 429 beyond it. The dispatcher waits on one limiter per
target before every ``Lead.Capture`` call, so it never causes a 429 in steady
state and still drains a backlog at the full allowed rate.

A call occupies its slot from :meth:`SlidingWindowLimiter.slot` entry until
``window`` seconds after it *finished*: the server counts a call when it
arrives, which is somewhere between our send and its answer, so counting from
the answer is the only bound that holds whatever the network latency.
:meth:`SlidingWindowLimiter.acquire` is the simpler form that records the call
at the moment the slot is granted.

Time comes from an injected :class:`hub.clock.Clock` (its monotonic reading)
and waiting from an injected ``sleep``, so tests drive a limiter with a
:class:`hub.clock.ManualClock` and no real sleeps.

Several instances: the dispatcher only depends on the :class:`RateLimiter`
protocol. A PostgreSQL-backed limiter shared by several hub instances would keep
the same per-target window in a table (one row per granted call, or a
``(target, slot_index, ends_at)`` ring of ``calls`` rows taken with
``SELECT ... FOR UPDATE SKIP LOCKED`` where ``ends_at <= now()``), so that N
instances together still make at most ``calls`` calls per window per account.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from hub.clock import SYSTEM_CLOCK, Clock
from hub.units import RateLimit

_EPSILON = 1e-9  # seconds

Sleep = Callable[[float], Awaitable[None]]


class RateLimiter(Protocol):
    """What the dispatcher waits on before each call to a target."""

    async def acquire(self) -> None:
        """Wait until a call is allowed, and count it as made now."""
        ...

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait until a call is allowed; the call counts until ``window`` after the block ends."""
        ...


class Unlimited:
    """A limiter that never waits: for targets with ``rate_limit: off``."""

    async def acquire(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        yield


class SlidingWindowLimiter:
    """At most ``limit.calls`` calls in any sliding window of ``limit.window`` seconds.

    Waiters are served first come, first served (an :class:`asyncio.Lock` is fair),
    so a backlog drains in order at the full rate.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._ends: deque[float] = deque()  # monotonic end times of finished calls, oldest first
        self._in_flight = 0  # calls granted by slot() that have not finished yet
        self._lock = asyncio.Lock()
        self._finished = asyncio.Event()

    def _expire(self, now: float) -> None:
        # The epsilon absorbs float rounding: a sleep of exactly (end + window - now) must free
        # the slot, or a waiter would spin on ever smaller sleeps.
        while self._ends and self._ends[0] <= now - self.limit.window + _EPSILON:
            self._ends.popleft()

    @property
    def used(self) -> int:
        """How many calls count against the window right now (in flight included)."""
        self._expire(self._clock.monotonic())
        return len(self._ends) + self._in_flight

    async def _wait_for_room(self) -> None:
        """Return (holding the lock) once fewer than ``calls`` calls count against the window."""
        while True:
            now = self._clock.monotonic()
            self._expire(now)
            if len(self._ends) + self._in_flight < self.limit.calls:
                return
            if self._ends:
                # An in-flight call, once finished, expires later than any finished one:
                # the oldest finished call is the next to make room.
                await self._sleep(self._ends[0] + self.limit.window - now)
            else:
                self._finished.clear()
                await self._finished.wait()

    async def acquire(self) -> None:
        async with self._lock:
            await self._wait_for_room()
            self._ends.append(self._clock.monotonic())

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._lock:
            await self._wait_for_room()
            self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._ends.append(self._clock.monotonic())
            self._finished.set()


def limiter_for(
    limit: RateLimit | None, *, clock: Clock = SYSTEM_CLOCK, sleep: Sleep = asyncio.sleep
) -> RateLimiter:
    """The limiter for a target's ``rate_limit`` (``None`` means off)."""
    if limit is None:
        return Unlimited()
    return SlidingWindowLimiter(limit, clock=clock, sleep=sleep)
