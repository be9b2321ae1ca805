"""When to try a failed send again: exponential backoff with full jitter, per target.

The n-th retry waits a uniformly random time in ``[0, min(max_interval,
initial * multiplier ** (n - 1))]`` ("full jitter": many events failing together
spread out instead of coming back in a herd). Once ``give_up_after`` has passed
since the event joined the queue (when it was received, or when ``leadhub replay``
put it back: ``Event.queued_since``), the policy gives up and the event is dead; the
last try is scheduled no later than that deadline, so an event always gets one
attempt at the end of its window. Time the target was paused, or the endpoint's lead reads
were held, is added to the window by the caller (:func:`time_in` of ``Lane.pause_spans`` and
``Dispatcher.read_hold_spans``): it was no time to try in.

A store write under an event's lease that met a store outage (its release, its delivery) is
tried again by :class:`Rewrites` until the store takes it or the lease ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import random as _random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog

from hub.clock import Clock
from hub.config.models import RetrySchedule
from hub.store.base import CLOCK_STEP_FORWARD, StoreUnavailable
from hub.store.models import Event

_log = structlog.get_logger()

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
        try:
            grown = s.initial * s.multiplier**exponent
        except OverflowError:  # a multiplier over about 65,000 (the config takes any >= 1)
            return float(s.max_interval)
        return float(min(s.max_interval, grown))

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


def time_in(spans: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Seconds between ``start`` and ``end`` that ``spans`` (began, ended) cover, a time
    two of them share counted once (a target paused while its leads' reads were held)."""
    total, reached = 0.0, start
    for began, ended in sorted(spans):
        began, ended = max(began, reached), min(ended, end)
        if ended > began:
            total += ended - began
            reached = ended
    return total


class ClockSkips:
    """The wall time a step forward of the clock skipped, as this process saw it: no time
    to try in, so it does not count toward an event's ``give_up_after`` (as a target's pause
    does not, see :func:`time_in`).

    A step forward (NTP setting a slow clock right, an operator, a VM resumed from sleep:
    the monotonic clock does not run while it sleeps) moved every event's give-up clock on
    by the step: set two hours forward, events that had failed for two seconds were dead at
    their next failure, "gave up after 3 attempt(s) over 1h". Told by the wall clock's
    reading going further than the monotonic one between two looks (:meth:`note`, at each
    claim and each retry), by more than :data:`~hub.store.base.CLOCK_STEP_FORWARD`; placed
    at the earlier look (the step came between the two). A restart forgets the skips (not
    the pauses: the store keeps those)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: tuple[float, float] | None = None  # (wall, monotonic) at the last look
        self._spans: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)

    def note(self) -> None:
        """Look at the clock: a step forward since the last look is kept as a span."""
        wall, mono = self._clock.time(), self._clock.monotonic()
        last, self._last = self._last, (wall, mono)
        if last is None:
            return
        ahead = (wall - last[0]) - (mono - last[1])
        if ahead > CLOCK_STEP_FORWARD:
            self._spans.append((last[0], last[0] + ahead))

    def spans(self) -> list[tuple[float, float]]:
        """The wall time skipped (unix times: from, to), the clock looked at now."""
        self.note()
        return list(self._spans)


#: Seconds before a write the store could not take is tried again, doubling up to
#: :data:`REWRITE_PAUSE_MAX` while it still cannot: a store back from an outage is found
#: within a couple of seconds, and a store still down is asked once per pause, not once per
#: waiting write.
REWRITE_PAUSE = 0.25
REWRITE_PAUSE_MAX = 2.0
#: Writes waiting for the store at once, at most; past that, an event's lease end puts it
#: back (as before there was any waiting). Claims hold far fewer events than this.
REWRITES_MAX = 10_000
#: Seconds a stopping dispatcher gives the writes still waiting for one last try, at least
#: (the stop's own deadline, when later, wins): a store back a moment before the stop
#: records them instead of leaving them to their leases' ends.
REWRITE_LAST_TRY = 2.0


#: Why a write still waiting at stop is given up, by what it writes.
_STOPPED_BEFORE = {
    "ack": "the hub stopped before the store could record this delivery; the lead was sent, "
    "and is sent again once the event's lease ends",
    "release": "the hub stopped before the store could take the event back; it is claimed "
    "again once its lease ends",
}


@dataclass(slots=True)
class _Rewrite:
    event: Event
    write: Callable[[], Awaitable[None]]
    what: str
    since: float  # monotonic time of the first failure
    until: float  # monotonic time the event's lease ends


#: Seconds a lease's token read as a wall time may differ from the claim's own reckoning of
#: its end beyond the claim's duration, clock readings being what they are (see
#: :meth:`Rewrites.claimed`).
LEASE_SLACK = 0.5


class Rewrites:
    """Writes under an event's lease that met a store outage, tried again until the store
    takes them or the lease ends.

    An event whose release (give it back to the queue) or delivery could not be written stays
    ``sending`` in the store until its lease ends (60 s by default), however soon the store
    comes back: the audit saw 75 events sent again a lease after a 10 s PostgreSQL outage.
    Here, one task for the whole dispatcher asks the store again with the oldest write every
    :data:`REWRITE_PAUSE` s (doubling up to :data:`REWRITE_PAUSE_MAX`), and once the store
    takes it, writes all the others too. No sender waits for it. A write whose lease has
    ended is given up (``store_write_given_up``): the lease's expiry takes over, as it would
    have without this; so is one the store refuses otherwise (``store_rewrite_failed``, with
    its traceback: a bug; named apart from the store writers' ``store_write_failed``). The
    rate limiter's slot ends are not written again: a slot that could not be ended frees
    itself ``hold`` seconds after it was taken, and ended late it would count longer, not
    shorter.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: dict[int, _Rewrite] = {}  # by event id, oldest first
        self._task: asyncio.Task[None] | None = None
        #: Set by :meth:`close`: the task stops at once if waiting out a pause, else once the
        #: writes it is making are done (see there).
        self._stop = asyncio.Event()
        #: When each lease claimed lately ends by the monotonic clock, by (event id, token).
        #: A lease's token is not its end in the wall clock's time once the store applied a
        #: step of its clock (its clock shift, see ``hub.store.base.with_clock_shift``): after
        #: a step forward every token is before the wall clock's now, and each write was
        #: given up at once (a delivery the outage kept from the store was sent again once
        #: its lease ended); after a step back undone, each was tried on for the step after
        #: its lease ended.
        self._ends: dict[tuple[int, float], float] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def claimed(self, events: Iterable[Event], asked_at: float, lease: float) -> None:
        """Note the leases of ``events``, claimed under ``lease`` seconds by a claim asked
        for at ``asked_at`` (monotonic: the lease counts from then), whose tokens read as wall
        times do not tell their end (a step of the store's clock), and forget those ended
        (the oldest first: they were noted in the order they end).

        A token the claim's own reckoning agrees with is not noted: read as a wall time it
        ends between the claim's start and its answer, a lease later (:data:`LEASE_SLACK`
        more allowed). Noted every one, a worker claiming a backlog that it then put back (a
        paused target) held one entry per lease claimed in the last lease's length: 11 to 15
        MB more at the peak of ``bench.backlog``'s 500,000 to 1,000,000 events."""
        now, wall = self._clock.monotonic(), self._clock.time()
        while self._ends and (oldest := next(iter(self._ends.items())))[1] <= now:
            del self._ends[oldest[0]]
        end = asked_at + lease
        for event in events:
            if event.lease is None:
                continue
            told = now + (event.lease - wall)  # (as _lease_end reads a token not noted)
            if not end - LEASE_SLACK <= told <= now + lease + LEASE_SLACK:
                self._ends[event.id, event.lease] = end

    def _lease_end(self, event: Event) -> float | None:
        """When ``event``'s lease ends, by the monotonic clock (None: it has none): as
        :meth:`claimed` noted it, else its token read as a wall time."""
        if event.lease is None:
            return None
        end = self._ends.get((event.id, event.lease))
        if end is not None:
            return end
        return self._clock.monotonic() + (event.lease - self._clock.time())

    def add(self, event: Event, write: Callable[[], Awaitable[None]], what: str) -> None:
        """Try ``write`` (``what``: its name in the log) again until the store takes it or
        ``event``'s lease ends; without a lease there is nothing to wait for."""
        until = self._lease_end(event)
        if until is None or self._clock.monotonic() >= until:
            return
        if len(self._pending) >= REWRITES_MAX and event.id not in self._pending:
            return
        self._pending[event.id] = _Rewrite(event, write, what, self._clock.monotonic(), until)
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()  # (made in the loop the task runs in)
            # A fresh context: the task outlives the step that started it, whose bound ids
            # (event_id, target, mapping) would otherwise be on every line it logs.
            self._task = asyncio.create_task(
                self._run(), name="dispatch-rewrites", context=contextvars.Context()
            )

    async def close(self, deadline: float | None = None) -> None:
        """Stop trying in the background; give each write still waiting one last try
        together, until ``deadline`` (monotonic) or for :data:`REWRITE_LAST_TRY` s, whichever
        is later. What the store still does not take is left to its lease's end, each
        logged (``store_write_given_up``): an unrecorded delivery means its lead is sent
        again then."""
        now = self._clock.monotonic()
        budget = max(REWRITE_LAST_TRY, (deadline if deadline is not None else now) - now)
        until = now + budget
        task, self._task = self._task, None
        if task is not None:
            # A write in flight is let finish: cancelled once the store had taken it but
            # before its answer came, it was tried again below, as a lost lease
            # (``event_lease_lost``, and no ``lead_sent`` for a lead sent and recorded).
            self._stop.set()
            await asyncio.wait({task}, timeout=budget)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._give_up_ended()
        if self._pending:
            budget = max(until - self._clock.monotonic(), 0.0)
            last = [self._try(rewrite) for rewrite in list(self._pending.values())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*last), budget)
        for rewrite in self._pending.values():
            _log.warning(
                "store_write_given_up",
                what=rewrite.what,
                reason=_STOPPED_BEFORE.get(rewrite.what, _STOPPED_BEFORE["release"]),
                **rewrite.event.log_fields(),
            )
        self._pending.clear()

    async def _run(self) -> None:
        pause = REWRITE_PAUSE
        while self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)
            self._give_up_ended()
            if not self._pending or self._stop.is_set():
                return
            oldest = next(iter(self._pending.values()))
            taken = await self._try(oldest)
            if taken:  # the store takes writes again: the others now, together
                await asyncio.gather(*(self._try(w) for w in list(self._pending.values())))
            pause = REWRITE_PAUSE if taken else min(pause * 2, REWRITE_PAUSE_MAX)

    def _give_up_ended(self) -> None:
        now = self._clock.monotonic()
        for rewrite in list(self._pending.values()):
            if now >= rewrite.until:
                del self._pending[rewrite.event.id]
                _log.warning(
                    "store_write_given_up",
                    what=rewrite.what,
                    reason="the store did not take it before the event's lease ended; the "
                    "event is claimed again now",
                    **rewrite.event.log_fields(),
                )

    async def _try(self, rewrite: _Rewrite) -> bool:
        """Write ``rewrite``; False while the store is still unavailable."""
        try:
            await rewrite.write()
        except StoreUnavailable:
            return False
        except Exception as exc:  # a bug, or a refusal that would repeat: the lease decides
            _log.error(
                "store_rewrite_failed",
                what=rewrite.what,
                error=str(exc)[:300],
                exc_info=exc,
                **rewrite.event.log_fields(),
            )
        else:
            _log.info(
                "store_write_resumed",
                what=rewrite.what,
                waited=round(self._clock.monotonic() - rewrite.since, 3),
                **rewrite.event.log_fields(),
            )
        if self._pending.get(rewrite.event.id) is rewrite:
            del self._pending[rewrite.event.id]
        return True
