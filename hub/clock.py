"""Clocks, passed in rather than read from globals, so tests can freeze or advance time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

#: How a part waits (``asyncio.sleep``), passed in as its clock is, so tests need not wait.
Sleep = Callable[[float], Awaitable[None]]


class Clock(Protocol):
    """Wall time (unix seconds) and a monotonic reading (seconds)."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to: for tests and replays of a timeline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``."""
        if seconds < 0:
            msg = f"A clock cannot go back; got advance({seconds!r})."
            raise ValueError(msg)
        self._now += seconds
        self._mono += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (either way); the monotonic reading stays, as
        it does when NTP or an operator sets a machine's clock."""
        self._now += seconds

    def set(self, unix_time: float) -> None:
        """Jump the wall clock to ``unix_time``; the monotonic reading moves by the same amount."""
        self.advance(max(0.0, unix_time - self._now))
        self._now = unix_time


SYSTEM_CLOCK = SystemClock()


class ServerTime:
    """A machine's clock set to a server's: ``base`` plus the offset last measured against
    the server (:meth:`measure`).

    Instances on several machines that share a database compare times each of them wrote
    (a shared rate window, leases); read from the database's clock, they agree within a
    round trip even when the machines' own clocks do not. The monotonic reading stays the
    machine's own.

    Once measured, the time runs on from the server's reading by this machine's monotonic
    clock, not its wall clock: a step of this machine's wall clock (NTP, an operator) does
    not move it. A step of the server's clock is followed at the next measurement.
    """

    def __init__(self, base: Clock = SYSTEM_CLOCK, *, every: float = 60.0) -> None:
        self.base = base
        #: The server's clock minus this machine's wall clock, as last measured (shown in
        #: logs; the time itself is kept by :attr:`_anchor`).
        self.offset = 0.0
        #: Seconds between measurements (:meth:`due`).
        self.every = every
        self._measured_at: float | None = None
        #: The server's time minus this machine's monotonic reading (None: not measured).
        self._anchor: float | None = None

    def time(self) -> float:
        if self._anchor is None:
            return self.base.time() + self.offset
        return self.base.monotonic() + self._anchor

    def monotonic(self) -> float:
        return self.base.monotonic()

    def due(self) -> bool:
        """Whether the offset was never measured, or was last measured ``every`` ago."""
        at = self._measured_at
        return at is None or self.base.monotonic() - at >= self.every

    async def measure(self, read: Callable[[], Awaitable[float]], *, samples: int = 3) -> float:
        """Set and return the offset: ``read()`` is the server's wall time, read ``samples``
        times; the quickest round trip wins, its reading taken as made halfway through.
        Not :meth:`due` again until ``every`` has passed, even if this fails (the offset
        stays as it was)."""
        base = self.base
        self._measured_at = base.monotonic()
        best: tuple[float, float, float] | None = None
        for _ in range(samples):
            sent, wall_sent = base.monotonic(), base.time()
            server = await read()
            back, wall_back = base.monotonic(), base.time()
            if best is None or back - sent < best[0]:
                best = (
                    back - sent,
                    server - (sent + back) / 2,
                    server - (wall_sent + wall_back) / 2,
                )
        assert best is not None
        _, self._anchor, self.offset = best
        return self.offset
