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

Several processes: :class:`SharedWindowLimiter` keeps the window in the event store
(:meth:`hub.store.base.EventStore.take_slots`), counted per LeadSquared account, so every
hub process on one database together stays within the account's limit, and two targets
naming the same account share it. The dispatcher uses it for every rate-limited target;
:class:`SlidingWindowLimiter` is the same rule for one process alone, in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import structlog

from hub.clock import SYSTEM_CLOCK, Clock, Sleep
from hub.config.models import Target
from hub.dispatch.lease import call_bound
from hub.store.models import SlotAnswer
from hub.units import RateLimit

_EPSILON = 1e-9  # seconds

_log = structlog.get_logger()


class RateLimiter(Protocol):
    """What the dispatcher waits on before each call to a target."""

    async def acquire(self) -> None:
        """Wait until a call is allowed, and count it as made now."""
        ...

    def slot(self, within: float | None = None) -> contextlib.AbstractAsyncContextManager[bool]:
        """Wait until a call is allowed; the call counts until ``window`` after the block ends.

        Yields True once allowed. With ``within``, waits at most that many seconds: yields
        False if no room comes by then, and the block must not make the call (nothing counts).
        """
        ...

    async def refused(self) -> None:
        """The account refused a call for its rate limit (another caller shares it, or its
        plan allows fewer calls than ``rate_limit`` says): count the window full from now, so
        no call goes to it for a whole window. LeadSquared stops taking calls for a while once
        its limit is passed; calls sent meanwhile would only be refused too."""
        ...


class Unlimited:
    """A limiter that never waits: for targets with ``rate_limit: off``."""

    async def acquire(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def slot(self, within: float | None = None) -> AsyncIterator[bool]:
        yield True

    async def refused(self) -> None:
        return None  # `rate_limit: off`: the target's calls are not paced


async def _lock_by(lock: asyncio.Lock, deadline: float | None, clock: Clock) -> bool:
    """Take ``lock`` (waiters in arrival order), giving up at ``deadline`` (monotonic)."""
    if deadline is None:
        await lock.acquire()
        return True
    try:
        async with asyncio.timeout(deadline - clock.monotonic()):
            await lock.acquire()
    except TimeoutError:
        return False
    return True


def _deadline(within: float | None, clock: Clock) -> float | None:
    return None if within is None else clock.monotonic() + within


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

    async def _wait_for_room(self, deadline: float | None = None) -> bool:
        """True (holding the lock) once fewer than ``calls`` calls count against the window;
        False as soon as room cannot come by ``deadline``."""
        while True:
            now = self._clock.monotonic()
            self._expire(now)
            if len(self._ends) + self._in_flight < self.limit.calls:
                return True
            if self._ends:
                # An in-flight call, once finished, expires later than any finished one:
                # the oldest finished call is the next to make room.
                free_at = self._ends[0] + self.limit.window
                if deadline is not None and free_at > deadline:
                    return False
                await self._sleep(free_at - now)
            else:
                self._finished.clear()
                if deadline is None:
                    await self._finished.wait()
                    continue
                try:
                    async with asyncio.timeout(deadline - now):
                        await self._finished.wait()
                except TimeoutError:
                    return False

    async def acquire(self) -> None:
        async with self._lock:
            await self._wait_for_room()
            self._ends.append(self._clock.monotonic())

    async def refused(self) -> None:
        # As many calls ended now as make the window full for a whole window: those in
        # flight or ended now count that long already, earlier ones stop counting sooner.
        now = self._clock.monotonic()
        counted = self._in_flight + sum(1 for end in self._ends if end >= now)
        self._ends.extend([now] * max(0, self.limit.calls - counted))

    @contextlib.asynccontextmanager
    async def slot(self, within: float | None = None) -> AsyncIterator[bool]:
        deadline = _deadline(within, self._clock)
        if (within is not None and within <= 0) or not await _lock_by(
            self._lock, deadline, self._clock
        ):
            yield False
            return
        try:
            granted = await self._wait_for_room(deadline)
            if granted:
                self._in_flight += 1
        finally:
            self._lock.release()
        if not granted:
            yield False
            return
        try:
            yield True
        finally:
            self._in_flight -= 1
            self._ends.append(self._clock.monotonic())
            self._finished.set()


class SlotBook(Protocol):
    """Where a shared window is kept: the event store (see ``EventStore.take_slots``)."""

    async def take_slots(
        self,
        account: str,
        *,
        calls: int,
        window: float,
        hold: float,
        want: int = 1,
        waiter: str | None = None,
    ) -> SlotAnswer: ...

    async def end_slot(self, slot: int) -> None: ...

    async def stop_waiting(self, account: str, waiter: str) -> None: ...

    async def fill_window(self, account: str, *, calls: int) -> None: ...


def account_of(target: Target) -> str:
    """What a target's calls are counted under: a digest of its account's identity (its
    ``account:`` name, or else its URL and access key: :meth:`Target.account_identity`).

    LeadSquared limits an account, not a target definition: two targets with the same host
    and key, or naming one account, share one window. The key itself never reaches the store.
    """
    first, second = target.account_identity()
    return hashlib.sha256(f"{first}\n{second}".encode()).hexdigest()[:32]


class SharedWindowLimiter:
    """:class:`SlidingWindowLimiter`'s rule, with the window kept in the store for every process.

    Each take is one write transaction in the store (count, then take slots), so N
    processes on one database never make more than ``limit.calls`` calls to the account in
    any window between them. A call in flight counts as ending ``hold`` seconds after its
    slot was taken until :meth:`slot` records its real end: a process killed mid-call keeps
    its slots only that long. Within a process, waiters are served in order: one asks the
    store at a time, for as many slots as there are waiters (one transaction for a burst,
    not one each), and keeps the others' for them. With no room, it sleeps until the next
    call stops counting, waking early when one of this process's calls ends, and asks again
    at most every ``poll`` seconds while the call it waits for is another process's, still
    in flight.

    Between processes, waiters take turns: each limiter asks under a name of its own
    (``waiter``), and the store leaves the room a waiter queued earlier waits for to it. So
    a process does not take every slot that frees because it learns of its own calls' ends
    first while another finds out by asking every ``poll`` seconds (two workers sharing an
    account on SQLite sent 23 to 25 of 32 leads from one of them before).
    """

    def __init__(
        self,
        limit: RateLimit,
        book: SlotBook,
        account: str,
        *,
        hold: float,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        poll: float | None = None,
    ) -> None:
        self.limit = limit
        self.account = account
        self._book = book
        self._hold = hold
        self._clock = clock
        self._sleep = sleep
        self._poll = poll if poll is not None else max(limit.window / limit.calls, 0.05)
        self._lock = asyncio.Lock()
        self._ended = asyncio.Event()
        #: Callers waiting in :meth:`_take` (the one asking the store included).
        self._waiting = 0
        #: Slots taken for the callers queued behind the one that asked: (slot, monotonic).
        self._spare: deque[tuple[int, float]] = deque()
        #: This limiter's name in the store's queue of the account's waiters.
        self.waiter = secrets.token_hex(8)
        #: Whether the store holds this limiter in the account's queue (it asked for more
        #: slots than it got).
        self._queued = False

    async def _take(self, deadline: float | None) -> int | None:
        """A slot; None as soon as one cannot come by ``deadline`` (monotonic)."""
        if deadline is not None and deadline <= self._clock.monotonic():
            return None
        self._waiting += 1
        try:
            if not await _lock_by(self._lock, deadline, self._clock):
                return None
            try:
                return await self._take_locked(deadline)
            finally:
                self._lock.release()
        finally:
            self._waiting -= 1
            if not self._waiting:  # whoever was still waiting gave up (or was cancelled)
                if self._spare:
                    await self._give_back_spares()
                if self._queued:  # its place, and the room kept for it, go to the others
                    await self._stop_waiting()

    async def _take_locked(self, deadline: float | None) -> int | None:
        while True:
            while self._spare:
                slot, taken = self._spare.popleft()
                if self._clock.monotonic() - taken < self._hold / 2:
                    return slot
                await self._end(slot)  # kept too long to trust its hold: it ends now
            self._ended.clear()
            answer = await self._book.take_slots(
                self.account,
                calls=self.limit.calls,
                window=self.limit.window,
                hold=self._hold,
                want=self._waiting,
                waiter=self.waiter,
            )
            # The store keeps this process in the account's queue while it wants more.
            self._queued = len(answer.slots) < self._waiting
            if answer.slots:
                now = self._clock.monotonic()
                self._spare.extend((slot, now) for slot in answer.slots[1:])
                return answer.slots[0]
            nap = min(answer.wait, self._poll) if answer.in_flight else answer.wait
            if deadline is not None:
                left = deadline - self._clock.monotonic()
                if (answer.wait > left and not answer.in_flight) or left <= 0:
                    return None  # the room that comes first comes too late
                nap = min(nap, left)
            await self._nap(nap)

    async def _stop_waiting(self) -> None:
        self._queued = False
        try:
            await self._book.stop_waiting(self.account, self.waiter)
        except Exception as exc:  # its place then lapses by itself (WAITER_GRACE)
            _log.warning("rate_waiter_not_removed", error=type(exc).__name__)

    async def _give_back_spares(self) -> None:
        # all taken from the callers at once: one woken while a slot is being ended takes none
        spares = [slot for slot, _ in self._spare]
        self._spare.clear()
        for slot in spares:
            await self._end(slot)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if one of this process's calls ends meanwhile."""
        nap = asyncio.ensure_future(self._sleep(seconds))
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((nap, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            ended.cancel()
            await asyncio.gather(nap, ended, return_exceptions=True)

    async def _end(self, slot: int) -> None:
        try:
            await self._book.end_slot(slot)
        except Exception as exc:  # the call's outcome matters more; its slot frees at `hold`
            _log.warning(
                "rate_slot_not_ended", slot=slot, error=type(exc).__name__, hold=self._hold
            )
        self._ended.set()

    async def refused(self) -> None:
        # The slots this process holds for its queued callers go back first (before any of
        # them runs): those calls would be refused too.
        await self._give_back_spares()
        try:
            await self._book.fill_window(self.account, calls=self.limit.calls)
        except Exception as exc:  # the calls that follow are refused and retried instead
            _log.warning("rate_window_not_filled", error=type(exc).__name__)

    async def acquire(self) -> None:
        async with self.slot():
            pass

    @contextlib.asynccontextmanager
    async def slot(self, within: float | None = None) -> AsyncIterator[bool]:
        taken = await self._take(_deadline(within, self._clock))
        if taken is None:
            yield False
            return
        try:
            yield True
        finally:
            await self._end(taken)


def hold_for(target: Target) -> float:
    """How long a call to ``target`` is taken to last until it ends: the longest a call
    lasts (:func:`hub.dispatch.lease.call_bound`), and a second for the event loop."""
    return call_bound(target) + 1.0


def limiter_for(
    limit: RateLimit | None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    sleep: Sleep = asyncio.sleep,
    shared: tuple[SlotBook, Target] | None = None,
) -> RateLimiter:
    """The limiter for a target's ``rate_limit`` (``None`` means off).

    With ``shared`` (the store and the target), the window is kept in the store for every
    process on it (:class:`SharedWindowLimiter`); without, in this process alone.
    """
    if limit is None:
        return Unlimited()
    if shared is not None:
        book, target = shared
        return SharedWindowLimiter(
            limit, book, account_of(target), hold=hold_for(target), clock=clock, sleep=sleep
        )
    return SlidingWindowLimiter(limit, clock=clock, sleep=sleep)
