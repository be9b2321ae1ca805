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
from collections.abc import AsyncIterator, Sequence
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

    async def close(self) -> None:
        """No more calls through this limiter (its lane stops): what it still has to write
        is written (the ends of its calls), and what it holds unused is given back."""
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

    async def close(self) -> None:
        return None


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

    async def close(self) -> None:
        return None  # (all in memory)

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

    async def end_slots(self, account: str, ends: Sequence[tuple[int, float]]) -> None: ...

    async def give_back_slots(self, account: str, slots: Sequence[int]) -> None: ...

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
    slot was taken until its end is written: a process killed mid-call keeps its slots only
    that long. Within a process, waiters are served in order: one asks the store at a time,
    for as many slots as there are waiters (one transaction for a burst, not one each), and
    keeps the others' for them. With no room, it sleeps until the next call stops counting,
    waking early when one of this process's calls ends, and asks again at most every
    ``poll`` seconds while the call it waits for is another process's, still in flight.

    No store write stands between one call and the next. A call's end is written behind
    the calls that follow (with the time it ended, several in one write). And as a call
    ends while others are in flight, slots are taken ahead, one for each of those calls
    and the one that ended, while they run: a sender coming back for its next call finds
    one waiting. (Each take asked only for the callers waiting at that moment before, and
    the senders took turns between their calls and the store's answer: a backlog drained
    at 500/5s sent 330-450 leads a second against 650-900 at ``off``.) Slots taken ahead
    that no call comes for (the backlog ran out) are given back: they stop counting at once.

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
        #: Calls in flight on this limiter's slots.
        self._busy = 0
        #: Slots taken for the callers queued behind the one that asked, or ahead for the
        #: calls in flight: (slot, monotonic time taken).
        self._spare: deque[tuple[int, float]] = deque()
        #: Calls ended whose ends are not written yet: (slot, unix time it ended).
        self._unwritten: list[tuple[int, float]] = []
        #: The task writing them, and the task taking slots ahead, while one runs.
        self._writer: asyncio.Task[None] | None = None
        self._ahead: asyncio.Task[None] | None = None
        #: This limiter's name in the store's queue of the account's waiters.
        self.waiter = secrets.token_hex(8)
        #: Whether the store holds this limiter in the account's queue (it asked for more
        #: slots than it got).
        self._queued = False

    def _idle(self) -> bool:
        """No call in flight and no caller waiting: slots held now would go unused."""
        return not self._waiting and not self._busy

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
            if self._idle():  # whoever was still waiting gave up (or was cancelled)
                await self._let_go()

    async def _let_go(self) -> None:
        """Nothing waits and nothing is in flight: the spare slots go back, and this
        process's place in the account's queue with the room kept for it."""
        if self._spare:
            await self._give_back_spares()
        if self._queued:
            await self._stop_waiting()

    async def _ask(self, want: int) -> SlotAnswer:
        answer = await self._book.take_slots(
            self.account,
            calls=self.limit.calls,
            window=self.limit.window,
            hold=self._hold,
            want=want,
            waiter=self.waiter,
        )
        # The store keeps this process in the account's queue while it wants more.
        self._queued = len(answer.slots) < want
        return answer

    async def _take_locked(self, deadline: float | None) -> int | None:
        while True:
            fresh, stale = None, []
            while self._spare and fresh is None:
                slot, taken = self._spare.popleft()
                if self._clock.monotonic() - taken < self._hold / 2:
                    fresh = slot
                else:  # kept too long to trust its hold: no call is made with it
                    stale.append(slot)
            await self._give_back(stale)
            if fresh is not None:
                return fresh
            self._ended.clear()
            answer = await self._ask(self._waiting)
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

    def _take_ahead(self) -> None:
        """A call ended while others are in flight or callers wait: take, while they run,
        a slot for each (the ended call's sender included) that has no spare one yet.

        Not while the store is being asked already (the lock held): the callers queued
        behind that ask are served by their own, and a take ahead queued there too only
        added a transaction: the first 500 calls of a backlog at 500/5s took 1.03-1.08 s
        against 0.84-0.86 s without (two runs each)."""
        if self._ahead is None and not self._lock.locked() and self._ahead_wanted() > 0:
            self._ahead = asyncio.create_task(self._take_ahead_now(), name="rate-take-ahead")

    def _ahead_wanted(self) -> int:
        """Slots to take ahead: one for each call in flight, each caller waiting and the
        call that just ended, less those spare (none once nothing is in flight or waits)."""
        if self._idle():
            return 0
        return min(self._busy + self._waiting + 1 - len(self._spare), self.limit.calls)

    async def _take_ahead_now(self) -> None:
        try:
            async with self._lock:  # (behind the callers already waiting for it)
                want = self._ahead_wanted()
                if want <= 0:
                    return
                answer = await self._ask(want)
                now = self._clock.monotonic()
                self._spare.extend((slot, now) for slot in answer.slots)
        except Exception as exc:  # the callers ask for themselves when they come
            _log.warning("rate_take_ahead_failed", error=type(exc).__name__)
        finally:
            self._ahead = None
        if self._idle():  # the calls it was for did not come
            await self._let_go()

    async def _stop_waiting(self) -> None:
        self._queued = False
        try:
            await self._book.stop_waiting(self.account, self.waiter)
        except Exception as exc:  # its place then lapses by itself (WAITER_GRACE)
            _log.warning("rate_waiter_not_removed", error=type(exc).__name__)

    async def _give_back_spares(self) -> None:
        # all taken from the callers at once: one woken meanwhile takes none
        spares = [slot for slot, _ in self._spare]
        self._spare.clear()
        await self._give_back(spares)

    async def _give_back(self, slots: list[int]) -> None:
        """Slots no call was made with stop counting (at once: they never reached the account)."""
        if not slots:
            return
        try:
            await self._book.give_back_slots(self.account, slots)
        except Exception as exc:  # they count until their hold instead
            _log.warning(
                "rate_slots_not_given_back",
                slots=len(slots),
                error=type(exc).__name__,
                hold=self._hold,
            )
        self._ended.set()

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

    def _ended_now(self, slots: list[int]) -> None:
        """Note that ``slots`` end now (their calls ended); written behind, with the next."""
        now = self._clock.time()
        self._unwritten.extend((slot, now) for slot in slots)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_ends(), name="rate-slot-ends")

    async def _write_ends(self) -> None:
        try:
            while self._unwritten:
                ends, self._unwritten = self._unwritten, []
                try:
                    await self._book.end_slots(self.account, ends)
                except Exception as exc:  # the calls' outcomes stand; their slots free at hold
                    for slot, _ in ends:
                        _log.warning(
                            "rate_slot_not_ended",
                            slot=slot,
                            error=type(exc).__name__,
                            hold=self._hold,
                        )
                self._ended.set()
        finally:
            self._writer = None

    async def refused(self) -> None:
        # The slots this process holds for its queued callers are taken from them first
        # (before any of them runs: those calls would be refused too) and end now: counted
        # until the window is filled, whenever their ends are written. (Given back, they
        # would leave room that a caller could take before the window is filled.)
        spares = [slot for slot, _ in self._spare]
        self._spare.clear()
        self._ended_now(spares)
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
        self._busy += 1
        try:
            yield True
        finally:
            self._busy -= 1
            self._ended_now([taken])
            if self._idle():  # the last call for now: nothing to go on to, all written first
                await self._let_go()
                await self._written()
            else:
                self._take_ahead()

    async def _written(self) -> None:
        """Once the ends noted so far are written."""
        writer = self._writer
        if writer is not None:
            await asyncio.gather(asyncio.shield(writer), return_exceptions=True)

    async def close(self) -> None:
        ahead = self._ahead
        if ahead is not None:
            await asyncio.gather(ahead, return_exceptions=True)
        await self._let_go()
        await self._written()


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
