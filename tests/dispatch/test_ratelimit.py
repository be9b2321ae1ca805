"""The sliding-window limiter: never more than N calls in any window, full rate with a backlog."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.clock import ManualClock
from hub.dispatch.ratelimit import SlidingWindowLimiter, Unlimited, limiter_for
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
