"""The per-access-key sliding-window rate limit of the sandbox's ``/v2`` API.

A call is allowed when fewer than ``calls`` allowed calls of the same key fall
inside the last ``window`` seconds (a call made exactly ``window`` seconds ago
has left the window). Refused calls are not recorded, so a client that keeps
retrying too fast does not extend its own lock-out. Time comes from the injected
clock's monotonic reading.
"""

from __future__ import annotations

from collections import deque

from hub.clock import Clock
from hub.units import RateLimit, seconds_text


class SlidingWindowLimiter:
    """Counts allowed calls per key over a sliding window."""

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def try_acquire(self, key: str) -> bool:
        """Record a call for ``key`` and return ``True``, or ``False`` when over the limit."""
        now = self._clock.monotonic()
        calls = self._calls.setdefault(key, deque())
        while calls and now - calls[0] >= self.limit.window:
            calls.popleft()
        if len(calls) >= self.limit.calls:
            return False
        calls.append(now)
        return True

    def release(self, key: str) -> None:
        """Forget the latest call of ``key`` (it was refused after all, with a 429)."""
        calls = self._calls.get(key)
        if calls:
            calls.pop()

    def message(self) -> str:
        """The text LeadSquared sends with its 429."""
        return (
            f"API calls exceeded the limit of {self.limit.calls} in "
            f"{seconds_text(self.limit.window)} second(s)"
        )
