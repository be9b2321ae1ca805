"""The sliding-window limiter: never more than N calls in any window, full rate with a backlog."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.config.models import MAX_TIMEOUT, Target
from hub.dispatch.ratelimit import (
    SharedWindowLimiter,
    SlidingWindowLimiter,
    Unlimited,
    account_of,
    hold_for,
    limiter_for,
)
from hub.secrets import Secret
from hub.store import open_store
from hub.store.base import SLOT_EPSILON, SLOT_HORIZON
from hub.store.models import SlotAnswer
from hub.store.sqlite import SQLiteStore
from hub.units import RateLimit


def _manual(limit: RateLimit) -> tuple[SlidingWindowLimiter, ManualClock]:
    clock = ManualClock()

    async def sleep(seconds: float) -> None:
        clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    return SlidingWindowLimiter(limit, clock=clock, sleep=sleep), clock


def _max_in_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open window of ``window`` seconds.

    A nanosecond of slack absorbs float rounding of ``start + window``.
    """
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + window - 1e-9))
    return best


async def test_backlog_drains_at_full_rate_and_never_exceeds_the_limit() -> None:
    """100 queued calls at 25/5s go out in four bursts of 25, five seconds apart."""
    limiter, clock = _manual(RateLimit(25, 5.0))
    grants: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        grants.append(clock.monotonic())

    await asyncio.gather(*(call() for _ in range(100)))
    assert len(grants) == 100
    assert _max_in_window(sorted(grants), 5.0) == 25
    assert sorted(set(grants)) == [0.0, 5.0, 10.0, 15.0]


async def test_slot_counts_a_call_until_a_window_after_it_finished() -> None:
    """A call held in flight keeps its slot, and frees it only a full window after it ends."""
    limiter, clock = _manual(RateLimit(1, 2.0))
    order: list[str] = []
    release_first = asyncio.Event()

    async def first() -> None:
        async with limiter.slot():
            order.append(f"first@{clock.monotonic()}")
            await release_first.wait()
            clock.advance(3.0)  # the call itself took 3 s

    async def second() -> None:
        async with limiter.slot():
            order.append(f"second@{clock.monotonic()}")

    task1 = asyncio.create_task(first())
    await asyncio.sleep(0)
    task2 = asyncio.create_task(second())
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["first@0.0"]  # the second waits while the first is in flight
    release_first.set()
    await asyncio.gather(task1, task2)
    assert order == ["first@0.0", "second@5.0"]  # 3 s call + 2 s window


async def test_a_refused_call_fills_the_window_for_a_whole_window() -> None:
    """The account refused a call for its rate limit at 1 s: with 4 calls a window of 2 s
    and one call made before, the next is allowed only at 3 s, a window after the refusal."""
    limiter, clock = _manual(RateLimit(4, 2.0))
    await limiter.acquire()
    clock.advance(1.0)
    async with limiter.slot() as allowed:
        assert allowed
        await limiter.refused()
    async with limiter.slot(within=1.9) as allowed:
        assert allowed is False  # no room comes before 3 s
    await limiter.acquire()
    assert clock.monotonic() == 3.0
    await limiter.acquire()  # room for the rest of the window after that
    await limiter.acquire()
    assert clock.monotonic() == 3.0


async def test_a_refusal_counts_for_every_process_and_gives_back_the_spare_slots(
    tmp_path: Path,
) -> None:
    """Four callers in one process wait for a window another process filled: the take when it
    frees gets a slot each (three kept for the others). The first call is refused for the
    rate limit: the three spare slots go back, and neither those callers nor another
    process's get a slot until a window after the refusal (by the store's clock, the
    machine's)."""
    limit = RateLimit(4, 1.0)
    async with _processes(tmp_path, 2) as (one, two):
        book = _Counted(one)
        limiter = SharedWindowLimiter(limit, book, "acct", hold=40.0)
        other = SharedWindowLimiter(limit, two, "acct", hold=40.0)
        await asyncio.gather(*(other.acquire() for _ in range(4)))  # full for a second
        # ended at one time (they ended one write apart, tens of ms on a loaded machine): all
        # four slots come free together, so the take then has room for every caller
        with sqlite3.connect(tmp_path / "hub.db") as conn:
            conn.execute("UPDATE rate_slots SET ends_at = (SELECT max(ends_at) FROM rate_slots)")
        refusing: list[float] = []
        granted: list[float] = []

        async def call(n: int) -> None:
            async with limiter.slot():
                if n == 0:
                    refusing.append(time.time())
                    await limiter.refused()
                else:
                    granted.append(time.time())

        calls = [asyncio.create_task(call(n)) for n in range(4)]
        await asyncio.gather(*calls)
        async with other.slot():
            granted.append(time.time())
    assert 4 in book.takes  # one take for all four callers
    assert len(granted) == 4
    # (a window after the store's reading of the time, which came after refusing[0])
    assert min(granted) >= refusing[0] + limit.window - SLOT_EPSILON, (granted, refusing)
    ends = _slot_ends(tmp_path / "hub.db")
    assert max(ends) < time.time() + 1  # no slot left counting until its 40 s hold


async def test_waiters_are_served_in_arrival_order() -> None:
    """Callers queued behind a full window are granted first come, first served."""
    limiter, _ = _manual(RateLimit(2, 1.0))
    served: list[int] = []

    async def call(n: int) -> None:
        await limiter.acquire()
        served.append(n)

    tasks = []
    for n in range(10):
        tasks.append(asyncio.create_task(call(n)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert served == list(range(10))


async def test_off_never_waits() -> None:
    """``rate_limit: off`` gives a limiter that grants every call at once."""
    limiter = limiter_for(None)
    assert isinstance(limiter, Unlimited)
    for _ in range(1000):
        await limiter.acquire()
        async with limiter.slot():
            pass


@settings(max_examples=60, deadline=None)
@given(
    calls=st.integers(min_value=1, max_value=8),
    window=st.sampled_from([0.5, 1.0, 5.0]),
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=40),
    durations=st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), max_size=40),
)
def test_no_window_ever_holds_more_than_the_limit(
    calls: int, window: float, gaps: list[float], durations: list[float]
) -> None:
    """Whatever the arrival pattern and call durations, no window sees more than ``calls``."""

    async def scenario() -> tuple[list[float], list[float]]:
        limiter, clock = _manual(RateLimit(calls, window))
        starts: list[float] = []
        ends: list[float] = []

        async def call(i: int) -> None:
            async with limiter.slot():
                starts.append(clock.monotonic())
                if durations:
                    clock.advance(durations[i % len(durations)])
                ends.append(clock.monotonic())

        tasks = []
        for i, gap in enumerate(gaps):
            clock.advance(gap)
            tasks.append(asyncio.create_task(call(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return starts, ends

    starts, ends = asyncio.run(scenario())
    assert len(starts) == len(gaps)
    # The server may count a call anywhere between its start and end; the bound holds for both.
    assert _max_in_window(sorted(starts), window) <= calls
    assert _max_in_window(sorted(ends), window) <= calls


async def test_a_slot_that_cannot_come_in_time_is_refused_at_once() -> None:
    """``slot(within=...)`` yields False without waiting when room comes too late, and counts
    nothing; with time enough it waits for the room as usual."""
    limiter, clock = _manual(RateLimit(1, 5.0))
    await limiter.acquire()
    async with limiter.slot(within=2.0) as allowed:
        assert allowed is False
    assert clock.monotonic() == 0.0
    assert limiter.used == 1
    async with limiter.slot(within=10.0) as allowed:
        assert allowed is True
        assert clock.monotonic() == 5.0


async def test_no_time_left_means_no_slot_even_with_room() -> None:
    """``within`` of zero or less: the caller's time is up, whatever room there is."""
    limiter, _ = _manual(RateLimit(5, 1.0))
    for within in (0.0, -1.0):
        async with limiter.slot(within=within) as allowed:
            assert allowed is False
    assert limiter.used == 0


async def test_a_slot_with_every_call_in_flight_gives_up_at_its_deadline() -> None:
    """No finished call to wait for: the waiter gives up when ``within`` runs out."""
    limiter = SlidingWindowLimiter(RateLimit(1, 5.0))
    async with limiter.slot() as first:
        assert first is True
        async with limiter.slot(within=0.05) as second:
            assert second is False
    assert limiter.used == 1  # the first, in its window; the refused one never counted


# --- the window kept in the store, shared by every process on it ------------------------------


@contextlib.asynccontextmanager
async def _processes(tmp_path: Path, n: int) -> AsyncIterator[list[SQLiteStore]]:
    """``n`` stores on one database file, each with its own connections: n hub processes."""
    stores = [SQLiteStore(tmp_path / "hub.db") for _ in range(n)]
    for store in stores:
        await store.open()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_processes_sharing_a_store_together_stay_within_the_limit(tmp_path: Path) -> None:
    """Two processes at 4 calls / 0.4 s: between them, never more than 4 calls in any window.

    Each alone would allow 4 (an in-memory limiter per process let them make 8 together).
    A call's time is read inside its slot, between its grant and its end, which is where
    the server counts it.
    """
    limit = RateLimit(4, 0.4)
    seen: list[tuple[int, float]] = []
    async with _processes(tmp_path, 2) as stores:
        limiters = [SharedWindowLimiter(limit, s, "acct", hold=10.0) for s in stores]

        async def call(n: int, limiter: SharedWindowLimiter) -> None:
            async with limiter.slot():
                seen.append((n, time.time()))
                await asyncio.sleep(0.01)

        await asyncio.gather(*(call(n, lim) for n, lim in enumerate(limiters) for _ in range(12)))
    assert sorted(n for n, _ in seen) == [0] * 12 + [1] * 12
    # never more than the limit, and the limit reached (the window is used, not wasted)
    assert _max_in_window(sorted(t for _, t in seen), limit.window) == limit.calls


async def test_processes_sharing_an_account_take_turns_in_every_window(tmp_path: Path) -> None:
    """Two processes with 16 callers each at 8 calls / 0.6 s: every window's room is shared.

    Before turns, whoever asked first when room freed took all of it (each learns at once
    when its own calls end, the other only at its next ask): whole windows went to one
    process while the other's callers waited. Now each window after the first, when both
    wait, gives each process some of its slots. (One window may go unshared: a process held
    up past its grace second by a loaded machine loses its turn, not the rule.)
    """
    limit = RateLimit(8, 0.6)
    grants: list[tuple[float, int]] = []
    async with _processes(tmp_path, 2) as stores:
        limiters = [SharedWindowLimiter(limit, s, "acct", hold=10.0) for s in stores]

        enough = asyncio.Event()

        async def caller(n: int) -> None:
            while True:
                async with limiters[n].slot() as allowed:
                    assert allowed
                    grants.append((time.monotonic(), n))
                    if len(grants) >= 48:
                        enough.set()
                    await asyncio.sleep(0.01)

        callers = [asyncio.create_task(caller(n)) for n in (0, 1) for _ in range(16)]
        await asyncio.wait_for(enough.wait(), timeout=120)
        for task in callers:
            task.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
    assert _max_in_window(sorted(t for t, _ in grants), limit.window) == limit.calls
    bursts: list[list[int]] = []  # grants a window apart are separate bursts
    last = -1.0
    for at, n in sorted(grants):
        if at - last > limit.window / 2:
            bursts.append([])
        bursts[-1].append(n)
        last = at
    shared = [min(b.count(0), b.count(1)) >= 2 for b in bursts[1:] if len(b) == limit.calls]
    assert len(shared) >= 4, bursts
    assert shared.count(False) <= 1, bursts


def _waiting_rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT waiter FROM rate_waiters")]


async def test_a_process_whose_callers_stop_waiting_leaves_the_queue(tmp_path: Path) -> None:
    """Callers that give up (no room by their deadline) or are cancelled (a lane closed by a
    reload) take the process out of the account's queue: nothing is kept for it."""
    async with _processes(tmp_path, 2) as (one, two):
        limit = RateLimit(2, 1.0)
        theirs = SharedWindowLimiter(limit, one, "acct", hold=60.0)
        held = [await theirs._take(None) for _ in range(2)]  # two calls in flight
        ours = SharedWindowLimiter(limit, two, "acct", hold=60.0, poll=0.05)
        async with ours.slot(within=0.2) as allowed:
            assert allowed is False
        assert _waiting_rows(tmp_path / "hub.db") == []
        waiting = asyncio.create_task(ours.acquire())
        while _waiting_rows(tmp_path / "hub.db") != [ours.waiter]:
            await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert _waiting_rows(tmp_path / "hub.db") == []
        for slot in held:
            assert slot is not None
            await one.end_slots("acct", [(slot, one.clock.time())])


async def test_a_waiter_wakes_when_this_process_s_call_ends(tmp_path: Path) -> None:
    """A call in flight holds its slot until a window after it ends, not for all of ``hold``."""
    async with _processes(tmp_path, 1) as (store,):
        limiter = SharedWindowLimiter(RateLimit(1, 0.3), store, "acct", hold=60.0, poll=60.0)
        ended = asyncio.Event()
        times: dict[str, float] = {}

        async def first() -> None:
            async with limiter.slot():
                await asyncio.sleep(0.1)
                times["first ended"] = time.time()
            ended.set()

        async def second() -> None:
            async with limiter.slot():
                times["second started"] = time.time()

        await asyncio.wait_for(asyncio.gather(first(), second()), timeout=20)
    assert times["second started"] >= times["first ended"] + 0.3 - 1e-6


async def test_a_waiter_asks_again_while_another_process_s_call_is_in_flight(
    tmp_path: Path,
) -> None:
    """Another process's call ends without telling us: we find out by asking every ``poll``."""
    async with _processes(tmp_path, 2) as (one, two):
        limit = RateLimit(1, 0.2)
        theirs = SharedWindowLimiter(limit, one, "acct", hold=60.0)
        ours = SharedWindowLimiter(limit, two, "acct", hold=60.0, poll=0.05)
        times: dict[str, float] = {}
        started = asyncio.Event()

        async def their_call() -> None:
            async with theirs.slot():
                started.set()
                await asyncio.sleep(0.2)
                times["theirs ended"] = time.time()

        async def our_call() -> None:
            await started.wait()
            async with ours.slot():
                times["ours started"] = time.time()

        await asyncio.wait_for(asyncio.gather(their_call(), our_call()), timeout=20)
    assert times["ours started"] >= times["theirs ended"] + 0.2 - 1e-6


async def test_a_slot_the_store_cannot_end_is_logged_and_the_call_stands(tmp_path: Path) -> None:
    """If the store fails as a call ends, the call's result still counts; a warning says so."""
    store = SQLiteStore(tmp_path / "hub.db")
    await store.open()
    limiter = SharedWindowLimiter(RateLimit(2, 1.0), store, "acct", hold=40.0)
    with capture_logs() as logs:
        async with limiter.slot():
            await store.close()  # the store goes away mid-call
            result = "sent"
    assert result == "sent"
    assert [e for e in logs if e["event"] == "rate_slot_not_ended"] == [
        {
            "event": "rate_slot_not_ended",
            "log_level": "warning",
            "slot": 1,
            "error": "StoreError",
            "hold": 40.0,
        }
    ]


def _target(url: str, key: str) -> Target:
    return Target("t", url, Secret(key), Secret("secret"), rate_limit=RateLimit(25, 5.0))


async def test_the_dispatcher_s_limiter_is_the_shared_one_keyed_by_account(tmp_path: Path) -> None:
    """The dispatcher's limiter is the shared one, keyed by host and access key, never the key."""
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    target = _target("https://api-in21.leadsquared.com", "u$r-access-key")
    limiter = limiter_for(target.rate_limit, shared=(store, target))
    assert isinstance(limiter, SharedWindowLimiter)
    assert limiter.account == account_of(target)
    assert "u$r-access-key" not in limiter.account
    same = _target("https://API-in21.leadsquared.com/", "u$r-access-key")
    assert account_of(same) == account_of(target)  # one account, whatever the spelling
    assert account_of(_target("https://api-in21.leadsquared.com", "other")) != limiter.account
    assert account_of(_target("https://api.leadsquared.com", "u$r-access-key")) != limiter.account


def test_targets_naming_one_account_share_its_window_whatever_their_keys() -> None:
    """Two users' keys of one account, each target saying ``account: acme``, are one window
    (LeadSquared limits the account); a name of its own is another window, whatever the key."""
    url = "https://api-in21.leadsquared.com"
    first = dataclasses.replace(_target(url, "u$r-first"), account="acme")
    second = dataclasses.replace(_target(url, "u$r-second"), account="acme")
    other = dataclasses.replace(_target(url, "u$r-first"), account="globex")
    assert account_of(dataclasses.replace(first, account="Acme")) == account_of(first)
    assert account_of(first) == account_of(second) != account_of(_target(url, "u$r-first"))
    assert account_of(other) != account_of(first)
    assert "acme" not in account_of(first)


async def test_a_call_of_the_slowest_target_counts_for_every_process(tmp_path: Path) -> None:
    """Two targets on one account, the longest timeout a target may have and a short one: the
    slow one's call in flight counts for the fast one's process too. (A slot said to end past
    the asker's hold and SLOT_HORIZON is taken for one stamped before the wall clock was set
    back; with no bound on ``timeout``, a process with a short one deleted a longer target's
    call in flight and made a second call in its window.)"""
    slow = dataclasses.replace(_target("https://api.leadsquared.com", "k"), timeout=MAX_TIMEOUT)
    fast = dataclasses.replace(slow, timeout=0.5)
    assert hold_for(slow) < SLOT_HORIZON
    async with _processes(tmp_path, 2) as (one, two):
        taken = await one.take_slots("acct", calls=1, window=2.0, hold=hold_for(slow))
        assert taken.slots
        answer = await two.take_slots("acct", calls=1, window=2.0, hold=hold_for(fast))
        assert answer.slots == () and answer.in_flight


async def test_a_shared_slot_that_cannot_come_in_time_is_refused(tmp_path: Path) -> None:
    """Past ``within``, the shared limiter yields False and takes no slot in the store: at
    once when the call it waits for has ended, at the deadline when it is still in flight."""
    async with _processes(tmp_path, 2) as (one, two):
        limit = RateLimit(1, 60.0)
        await SharedWindowLimiter(limit, one, "ended", hold=60.0).acquire()
        ours = SharedWindowLimiter(limit, two, "ended", hold=60.0)
        async with ours.slot(within=0.5) as allowed:
            assert allowed is False
        theirs = SharedWindowLimiter(limit, one, "in flight", hold=60.0)
        ours = SharedWindowLimiter(limit, two, "in flight", hold=60.0, poll=0.02)
        async with theirs.slot() as first:
            assert first is True
            async with ours.slot(within=0.1) as allowed:
                assert allowed is False
        for account in ("ended", "in flight"):
            # one call counted each: room for exactly one more at two calls per window
            assert (await one.take_slots(account, calls=2, window=60.0, hold=1.0)).slots
            assert not (await one.take_slots(account, calls=2, window=60.0, hold=1.0)).slots


class _Counted:
    """The real store, counting its take transactions (and, on request, acting mid-take)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.takes: list[int] = []  # slots granted by each take
        self.after_take: Callable[[], None] | None = None
        self.end_delay = 0.0  # seconds each write of ends takes (a slow store)
        self.ends: list[list[int]] = []  # the slots of each write of ends

    async def take_slots(
        self,
        account: str,
        *,
        calls: int,
        window: float,
        hold: float,
        want: int = 1,
        waiter: str | None = None,
    ) -> SlotAnswer:
        answer = await self.store.take_slots(
            account, calls=calls, window=window, hold=hold, want=want, waiter=waiter
        )
        self.takes.append(len(answer.slots))
        if self.after_take is not None:
            self.after_take()
        return answer

    async def end_slots(self, account: str, ends: Sequence[tuple[int, float]]) -> None:
        if self.end_delay:
            await asyncio.sleep(self.end_delay)
        await self.store.end_slots(account, ends)
        self.ends.append([slot for slot, _ in ends])

    async def give_back_slots(self, account: str, slots: Sequence[int]) -> None:
        await self.store.give_back_slots(account, slots)

    async def stop_waiting(self, account: str, waiter: str) -> None:
        await self.store.stop_waiting(account, waiter)

    async def fill_window(self, account: str, *, calls: int) -> None:
        await self.store.fill_window(account, calls=calls)


def _slot_ends(path: Path) -> list[float]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT ends_at FROM rate_slots ORDER BY id")]


async def test_a_burst_of_waiters_is_served_by_few_store_transactions(tmp_path: Path) -> None:
    """20 callers at once: the first asks for itself, the next for the 19 queued behind it."""
    async with _processes(tmp_path, 1) as (store,):
        book = _Counted(store)
        limiter = SharedWindowLimiter(RateLimit(25, 5.0), book, "acct", hold=40.0)

        async def call() -> None:
            async with limiter.slot() as allowed:
                assert allowed

        await asyncio.gather(*(call() for _ in range(20)))
        assert book.takes == [1, 19]
    ends = _slot_ends(tmp_path / "hub.db")
    assert len(ends) == 20
    assert max(ends) < time.time() + 1  # every one ended (none left at its 40 s hold)


async def test_slots_taken_for_callers_that_went_away_are_given_back(tmp_path: Path) -> None:
    """Slots taken for queued callers that are gone by then end at once, not at ``hold``."""
    limit = RateLimit(4, 1.0)
    async with _processes(tmp_path, 2) as (one, two):
        theirs = SharedWindowLimiter(limit, one, "acct", hold=40.0)
        await asyncio.gather(*(theirs.acquire() for _ in range(4)))  # the window is full
        # Their four calls ended one write apart (tens of ms on a loaded machine): ended at
        # one time, all four slots come free together, so the next take has room for four.
        with sqlite3.connect(tmp_path / "hub.db") as conn:
            conn.execute("UPDATE rate_slots SET ends_at = (SELECT max(ends_at) FROM rate_slots)")
        book = _Counted(two)
        limiter = SharedWindowLimiter(limit, book, "acct", hold=40.0)
        first = asyncio.create_task(limiter.acquire())  # waits up to 1 s for the other's calls
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(limiter.acquire()) for _ in range(3)]

        def leave() -> None:  # they go away just as the first one's take has their slots
            if len(book.takes) == 2:
                for task in queued:
                    task.cancel()

        book.after_take = leave
        await first
        await asyncio.gather(*queued, return_exceptions=True)
        assert book.takes == [0, 4]  # no room; then room for all four: one used, three spare
    ends = _slot_ends(tmp_path / "hub.db")
    assert max(ends) < time.time() + 1  # none left counting until its 40 s hold


async def test_no_time_left_means_no_shared_slot_even_with_room(tmp_path: Path) -> None:
    """The shared limiter refuses a caller with no time left without asking the store."""
    async with _processes(tmp_path, 1) as (store,):
        book = _Counted(store)
        limiter = SharedWindowLimiter(RateLimit(5, 1.0), book, "acct", hold=10.0)
        async with limiter.slot(within=0.0) as allowed:
            assert allowed is False
        assert book.takes == []


async def test_a_sender_coming_back_finds_a_slot_taken_ahead_while_its_call_ran(
    tmp_path: Path,
) -> None:
    """Two calls in flight; as the first ends, slots are taken ahead while the second runs
    (one for each), and the first's sender's next call starts without a store transaction."""
    async with _processes(tmp_path, 1) as (store,):
        book = _Counted(store)
        limiter = SharedWindowLimiter(RateLimit(25, 5.0), book, "acct", hold=40.0)
        async with _one_ended_one_running(limiter):
            await _until(lambda: len(book.takes) == 3)  # each call's own, then ahead
            assert book.takes[-1] == 2  # for the call still running and the one that ended
            async with limiter.slot() as allowed:
                assert allowed
                assert len(book.takes) == 3  # its slot was waiting for it
        await limiter.close()
    # the spare one no call came for was given back: only the three calls count
    assert len(_slot_ends(tmp_path / "hub.db")) == 3


async def test_slots_taken_ahead_for_calls_that_never_came_stop_counting_at_once(
    tmp_path: Path,
) -> None:
    """At 4 calls a minute, two overlapping calls take two slots ahead as the first ends;
    no more calls come. Those two are given back: another process gets the two the calls
    left (ended, they would have kept it waiting a minute)."""
    limit = RateLimit(4, 60.0)
    async with _processes(tmp_path, 2) as (one, two):
        book = _Counted(one)
        limiter = SharedWindowLimiter(limit, book, "acct", hold=40.0)
        other = SharedWindowLimiter(limit, two, "acct", hold=40.0)
        first_ended = asyncio.Event()

        async def second() -> None:
            async with limiter.slot():
                await first_ended.wait()
                await _until(lambda: len(book.takes) == 3)  # each call's own, then ahead

        async with limiter.slot():
            running = asyncio.create_task(second())
            await _until(lambda: limiter._busy == 2)
        first_ended.set()
        await running
        assert book.takes == [1, 1, 2]
        got = []
        for _ in range(3):
            async with other.slot(within=0.5) as allowed:
                got.append(allowed)
    assert got == [True, True, False]


async def test_a_call_s_end_is_written_behind_with_the_time_it_ended(tmp_path: Path) -> None:
    """A store slow to write ends (0.3 s) holds up no call: the next caller's call starts
    while the first's end is still being written, and the end written is when it ended."""
    async with _processes(tmp_path, 1) as (store,):
        book = _Counted(store)
        book.end_delay = 0.3
        limiter = SharedWindowLimiter(RateLimit(25, 5.0), book, "acct", hold=40.0)
        times: dict[str, float] = {}
        async with _one_ended_one_running(limiter):
            times["first ended"] = time.time()
            async with limiter.slot():
                times["third started"] = time.time()
                assert book.ends == []  # the first one's end is not written yet
        await limiter.close()
        assert sorted(slot for write in book.ends for slot in write) == [1, 2, 3]
    assert times["third started"] - times["first ended"] < 0.3
    first_end = _slot_ends(tmp_path / "hub.db")[0]
    assert times["first ended"] - 0.1 <= first_end <= times["first ended"]


async def test_closing_writes_the_ends_still_unwritten(tmp_path: Path) -> None:
    """A call ends while a caller waits for a full window; the lane closes (the caller is
    cancelled): closing the limiter returns once that call's end is written."""
    async with _processes(tmp_path, 1) as (store,):
        book = _Counted(store)
        book.end_delay = 0.2
        limiter = SharedWindowLimiter(RateLimit(1, 60.0), book, "acct", hold=40.0)
        waiting: list[asyncio.Task[None]] = []
        async with limiter.slot():
            waiting.append(asyncio.create_task(limiter.acquire()))
            await _until(lambda: limiter._waiting == 1)
        ended = time.time()
        waiting[0].cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await limiter.close()
        (end,) = _slot_ends(tmp_path / "hub.db")
        assert ended - 0.1 <= end <= ended  # not its hold, 40 s on


@contextlib.asynccontextmanager
async def _one_ended_one_running(limiter: SharedWindowLimiter) -> AsyncIterator[None]:
    """Two calls in flight at once, the first's slot taken first; the first ends, and the
    second runs on until the block ends."""
    second_may_end = asyncio.Event()

    async def second() -> None:
        async with limiter.slot():
            await second_may_end.wait()

    async with limiter.slot():
        running = asyncio.create_task(second())
        await _until(lambda: limiter._busy == 2)
    try:
        yield
    finally:
        second_may_end.set()
        await running


async def _until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.001)


async def test_a_spare_slot_kept_past_half_its_hold_is_given_back_not_used(
    tmp_path: Path,
) -> None:
    """Slots taken ahead and kept longer than half their hold are not trusted for a call
    (it could outlast the hold the store counts it by): the next caller gives them back and
    takes a fresh one."""
    async with _processes(tmp_path, 1) as (store,):
        book = _Counted(store)
        limiter = SharedWindowLimiter(RateLimit(25, 5.0), book, "acct", hold=0.2)
        async with _one_ended_one_running(limiter):
            await _until(lambda: len(book.takes) == 3)  # each call's own, then two ahead
            assert len(limiter._spare) == 2
            await asyncio.sleep(0.15)  # past half the hold
            async with limiter.slot():
                assert len(book.takes) == 4  # a fresh take
                # the stale ones given back: the first call's, the second's and this one's left
                assert len(_slot_ends(tmp_path / "hub.db")) == 3
        await limiter.close()
