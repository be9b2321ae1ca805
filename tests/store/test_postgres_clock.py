"""The PostgreSQL store reads the time from the database server: instances on machines whose
clocks disagree still agree on what they share (an account's rate window, leases, due
times), and what they write is in the server's time."""

from __future__ import annotations

import asyncio
import bisect
import time

from structlog.testing import capture_logs

from hub.clock import ManualClock, ServerTime
from hub.store.postgres import PostgresStore
from tests.store.helpers import delivery
from tests.support.clocks import Ahead

#: The limit the two instances share, as LeadSquared's default: 25 calls in any 5 s.
CALLS, WINDOW = 25, 5.0
#: Seconds the calls of a second window may take: a hang guard, not a measure.
HANG = 60.0


async def test_a_machine_whose_clock_is_ahead_writes_the_database_servers_time(
    postgres_schema: tuple[str, str],
) -> None:
    """A store on a machine 30 s ahead measures the offset at open (logged, with a warning
    that names NTP) and stamps an event with the server's time, not its own. (The server
    runs on this machine, so its time is this machine's real one.)"""
    dsn, schema = postgres_schema
    store = PostgresStore(dsn, schema=schema, clock=Ahead(30.0))
    with capture_logs() as logs:
        opening = time.time()
        await store.open()
        # How far the measured offset may be off: the server's reading was taken between
        # the two readings of ours it is compared with (ServerTime.measure), both within
        # open(). A bound on the measurement's round trip, whatever the machine's speed
        # (it was 0.5 s: a loaded machine's round trip could exceed it).
        off_by = time.time() - opening
    try:
        assert abs(store.clock.time() - time.time()) <= off_by
        before = time.time()
        (result,) = await store.enqueue(delivery("e1"))
        event = await store.get(result.id)
        after = time.time()
        assert event is not None
        assert before - off_by <= event.updated_at <= after + off_by, (before, event, after)
    finally:
        await store.close()
    [opened] = [e for e in logs if e["event"] == "store_opened"]
    assert abs(opened["clock_offset"] + 30.0) <= off_by + 0.001  # (rounded to ms in the log)
    [differs] = [e for e in logs if e["event"] == "clock_differs"]
    assert differs["log_level"] == "warning" and "NTP" in differs["note"]


async def test_a_test_clock_is_used_as_given(postgres_schema: tuple[str, str]) -> None:
    """A ManualClock is not set to the server's: tests keep their frozen time."""
    dsn, schema = postgres_schema
    clock = ManualClock(start=1_000.0)
    store = PostgresStore(dsn, schema=schema, clock=clock)
    await store.open()
    try:
        assert store.clock is clock
        (result,) = await store.enqueue(delivery("e1"))
        event = await store.get(result.id)
        assert event is not None and event.updated_at == 1_000.0
    finally:
        await store.close()


async def test_two_instances_whose_clocks_disagree_keep_an_accounts_limit_together(
    postgres_schema: tuple[str, str],
) -> None:
    """Two instances, one on a machine 2 s ahead, take an account's calls for 7 s (and until
    a second window is used) as fast as it lets them: no 5 s window holds more than 25
    calls. (On their own clocks, the one ahead saw the other's calls end 2 s early and made
    38 in 5 s.)"""
    dsn, schema = postgres_schema
    stores = [PostgresStore(dsn, schema=schema), PostgresStore(dsn, schema=schema, clock=Ahead(2))]
    for store in stores:
        await store.open()
    calls: list[float] = []  # when each call was made (this machine's monotonic clock)

    async def caller(store: PostgresStore, until: float) -> None:
        # 7 s, and on until a second window is used: 25 calls, then 25 more once the first
        # ones' window has passed, within 7 s only if the calls of one window take < 2 s.
        while time.monotonic() < until or len(calls) < 2 * CALLS:
            assert time.monotonic() < until + HANG, f"{len(calls)} calls in {HANG:g} s more"
            answer = await store.take_slots("acct", calls=CALLS, window=WINDOW, hold=30.0)
            if not answer.slots:
                await asyncio.sleep(min(answer.wait, 0.05))
                continue
            for slot in answer.slots:
                calls.append(time.monotonic())  # before the call ends: early, never late
                await store.end_slots("acct", [(slot, store.clock.time())])

    try:
        until = time.monotonic() + 7.0
        await asyncio.gather(*(caller(store, until) for store in stores for _ in range(2)))
    finally:
        for store in stores:
            await store.close()
    calls.sort()
    # A slot counts from its call's end (after it was noted) until WINDOW later, and a new
    # one is noted after it is taken: noted times of calls in one window are < WINDOW apart.
    most = max(bisect.bisect_left(calls, t + WINDOW * 0.99) - i for i, t in enumerate(calls))
    assert most <= CALLS, f"{most} calls in a {WINDOW:g} s window"
    assert len(calls) >= 2 * CALLS  # the window moved on: a second one was used (the loop's end)


async def test_the_offset_is_the_quickest_round_trips_and_measured_again_when_due() -> None:
    """``ServerTime.measure`` keeps the reading of the quickest of its round trips, taken as
    made halfway; it is due again only ``every`` seconds later."""
    base = ManualClock(start=100.0)
    clock = ServerTime(base, every=60.0)
    trips = iter([(0.4, 150.0), (0.1, 160.0), (0.3, 170.0)])  # (round trip, server's time)

    async def read() -> float:
        took, server = next(trips)
        base.advance(took)
        return server

    assert clock.due()
    # the second trip: sent at 100.4, back at 100.5; the server said 160 at about 100.45
    assert abs(await clock.measure(read) - 59.55) < 1e-9
    assert abs(clock.time() - (base.time() + 59.55)) < 1e-9
    assert clock.monotonic() == base.monotonic()
    base.advance(59.0)
    assert not clock.due()
    base.advance(1.0)
    assert clock.due()


class _Stepped:
    """A clock whose wall reading can be stepped apart from its monotonic one (as NTP does)."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.step = 0.0

    def time(self) -> float:
        return 1_700_000_000.0 + self.mono + self.step

    def monotonic(self) -> float:
        return self.mono


async def test_a_step_of_this_machine_s_wall_clock_does_not_move_the_server_s_time() -> None:
    """Measured once, the time runs on from the server's reading by this machine's monotonic
    clock: a step of this machine's wall clock an hour back (or forward) leaves it where the
    server's clock is; the offset shown is this machine's wall clock against the server's."""
    base = _Stepped()
    clock = ServerTime(base, every=60.0)

    async def read() -> float:  # the server's clock: 5 s ahead of this machine's, unstepped
        return 1_700_000_000.0 + base.mono + 5.0

    assert await clock.measure(read) == 5.0
    before = clock.time()
    base.mono += 10.0
    assert clock.time() == before + 10.0
    for step in (-3600.0, 3600.0):
        base.step = step
        assert clock.time() == before + 10.0
    base.step = -3600.0  # measured again: the offset says so, the time does not move
    assert await clock.measure(read) == 3605.0
    assert clock.time() == before + 10.0
