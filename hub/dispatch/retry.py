"""When to try a failed send again: exponential backoff with full jitter, per target.

The n-th retry waits a uniformly random time in ``[0, min(max_interval,
initial * multiplier ** (n - 1))]`` ("full jitter": many events failing together
spread out instead of coming back in a herd). Once ``give_up_after`` has passed
since the event joined the queue (when it was received, or when ``leadhub replay``
put it back: ``Event.queued_since``), the policy gives up and the event is dead; the
last try is scheduled no later than that deadline, so an event always gets one
attempt at the end of its window. Time the target was paused is added to the window by
the caller (``Lane.paused_during``): it was no time to try in.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from hub.config.models import RetrySchedule

_MAX_EXPONENT = 64  # beyond this the cap is max_interval anyway; avoids float overflow


class RetryPolicy:
    """A target's :class:`RetrySchedule` plus a source of randomness (injectable for tests)."""

    def __init__(
        self, schedule: RetrySchedule, *, random: Callable[[], float] = _random.random
    ) -> None:
        self.schedule = schedule
        self._random = random

    def ceiling(self, attempts: int) -> float:
        """The longest wait after the ``attempts``-th failed try (1 for the first)."""
        s = self.schedule
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        return float(min(s.max_interval, s.initial * s.multiplier**exponent))

    def delay(self, attempts: int) -> float:
        """A jittered wait after the ``attempts``-th failed try."""
        return self._random() * self.ceiling(attempts)

    def next_attempt(
        self, attempts: int, queued_since: float, now: float, *, give_up: bool = True
    ) -> float | None:
        """When to try again after ``attempts`` tries, or ``None`` to give up (dead).

        Args:
            attempts: tries made so far, the failed one included (1 after the first).
            queued_since: when the event joined the queue: received, or replayed since
                (unix seconds; ``Event.queued_since``). The give-up clock starts there.
            now: the current time (unix seconds).
            give_up: False for a failure that must never make the event dead (the
                account's rate limit): past the deadline it is tried again all the same,
                after the usual wait.
        """
        if not give_up:
            return now + self.delay(attempts)
        deadline = queued_since + self.schedule.give_up_after
        if now >= deadline:
            return None
        return min(now + self.delay(attempts), deadline)
