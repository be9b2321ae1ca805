"""Clocks, passed in rather than read from globals, so tests can freeze or advance time."""

from __future__ import annotations

import time
from typing import Protocol


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

    def set(self, unix_time: float) -> None:
        """Jump the wall clock to ``unix_time``; the monotonic reading moves by the same amount."""
        self.advance(max(0.0, unix_time - self._now))
        self._now = unix_time


SYSTEM_CLOCK = SystemClock()
