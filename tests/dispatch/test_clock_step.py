"""A step of the wall clock (NTP, an operator, a resumed VM) while the hub runs.

A real store (a SQLite file, or a PostgreSQL schema: there the clock stands for the
database server's) and the dispatcher, sending over HTTP on loopback, share a clock that
follows real time but whose wall reading the test steps (its monotonic reading does not
move: that is what a step of the system clock does)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from hub.dispatch.ratelimit import account_of
from hub.store import open_store
from hub.store.base import EventStore
from hub.store.models import State
from tests.dispatch.support import (
    CAPTURE,
    all_in,
    enqueue,
    forms_config,
    leads,
    running,
    sandbox_get,
    sandbox_post,
    sandbox_server,
    states,
    wait_for,
)
from tests.support.server import serve_in_thread

HOUR = 3600.0


class SteppedClock:
    """Real time, its wall reading moved by :meth:`step` (either way), monotonic untouched."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def step(self, seconds: float) -> None:
        self.offset += seconds


class FailsUntilOpen:
    """A LeadSquared that answers ``status`` (503: busy; 401: keys refused, which pauses the
    target) to every call until :attr:`open`, then creates the lead."""

    def __init__(self, status: int = 503) -> None:
        self.status = status
        self.open = False
        self.created: list[str] = []

    async def capture(self, request: Request) -> Response:
        email = {a["Attribute"]: a["Value"] for a in await request.json()}["EmailAddress"]
        if not self.open:
            body = {"Status": "Error", "ExceptionMessage": "refused"}
            return JSONResponse(body, status_code=self.status)
        self.created.append(email)
        message = {"Id": "a", "RelatedId": f"lead-{email}", "IsCreated": True}
        return JSONResponse({"Status": "Success", "Message": message})


async def test_a_step_back_does_not_add_itself_to_a_retry_wait(
    tmp_path: Path, hub_db_url: str
) -> None:
    """Events waiting for their retry (due at most 5 s after their last failure) when the
    clock is set back an hour are sent within those 5 s, not an hour and 5 s later."""
    clock = SteppedClock()
    fake = FailsUntilOpen()
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    store = open_store(hub_db_url, clock=clock)
    await store.open()
    try:
        with serve_in_thread(app) as url:
            retry = "{initial: 5s, max_interval: 5s, give_up_after: 1h}"
            config = forms_config(tmp_path, url, retry=retry)
            async with running(config, store, clock=clock):
                ids = await enqueue(store, "forms", leads("back", 3))

                async def all_waiting() -> bool:  # (each retry waits a jittered 0-5 s)
                    events = (await states(store, ids)).values()
                    return all(e.state is State.RETRYING for e in events)

                await wait_for(all_waiting, timeout=30, what="all three waiting for a retry")
                clock.step(-HOUR)
                fake.open = True
                # (a hang guard: before, they were due an hour later)
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=30, what="delivered")
        assert sorted(fake.created) == [f"back{n}@example.com" for n in range(3)]
    finally:
        await store.close()


async def test_a_step_back_does_not_lengthen_a_targets_pause(tmp_path: Path) -> None:
    """A target whose keys were refused (401) is paused for at most a second (its retry's
    max_interval); the clock goes back an hour meanwhile and the keys are fixed: its events
    are sent within seconds, not once the hour has passed again (the pause's end was a wall
    time, an hour further off after the step). ``target_resumed`` tells how long the pauses
    lasted (it told the wall clock's difference: -3,600 s and some)."""
    clock = SteppedClock()
    fake = FailsUntilOpen(status=401)
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock)
    await store.open()
    try:
        with serve_in_thread(app) as url, capture_logs() as logs:
            retry = "{initial: 1s, max_interval: 1s, give_up_after: 1h}"
            config = forms_config(tmp_path, url, retry=retry)
            started = time.monotonic()
            async with running(config, store, clock=clock) as dispatcher:
                ids = await enqueue(store, "forms", leads("paused", 2))
                lane = dispatcher.lanes["default"]
                await wait_for(lambda: lane.pause_level >= 1, timeout=30, what="the pause")
                clock.step(-HOUR)
                fake.open = True
                # (a hang guard: before, the pause lasted the hour again)
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=30, what="delivered")
            lasted = time.monotonic() - started
        assert sorted(fake.created) == [f"paused{n}@example.com" for n in range(2)]
        [resumed] = [e for e in logs if e["event"] == "target_resumed"]
        assert 0 < resumed["seconds"] <= lasted
    finally:
        await store.close()


class HeldCalls:
    """A LeadSquared that holds every call until :attr:`gate` is set, then creates the lead;
    :attr:`calls` lists the emails sent, one per call."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[str] = []

    async def capture(self, request: Request) -> Response:
        email = {a["Attribute"]: a["Value"] for a in await request.json()}["EmailAddress"]
        self.calls.append(email)
        await asyncio.to_thread(self.gate.wait, 30.0)
        message = {"Id": "a", "RelatedId": f"lead-{email}", "IsCreated": True}
        return JSONResponse({"Status": "Success", "Message": message})


async def test_a_step_forward_does_not_send_a_lead_in_flight_again(
    tmp_path: Path, hub_db_url: str
) -> None:
    """Two instances (dispatchers on their own store objects, one database); one has a lead's
    call in flight when the clock is stepped forward two leases. The other does not claim
    the event and send the lead again (before: it did at its next claim, and the first
    outcome was lost); the call's outcome is written once the target answers."""
    clock = SteppedClock()
    fake = HeldCalls()
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    one, two = open_store(hub_db_url, clock=clock), open_store(hub_db_url, clock=clock)
    await one.open()
    await two.open()
    try:
        with serve_in_thread(app) as url, capture_logs() as logs:
            config = forms_config(tmp_path, url)
            async with (
                running(config, one, clock=clock) as first,
                running(config, two, clock=clock),
            ):
                ids = await enqueue(one, "forms", leads("held", 1))
                await wait_for(lambda: len(fake.calls) == 1, timeout=30, what="the call")
                clock.step(2 * first.lease)

                def stepped_or_sent_again() -> bool:
                    forward = [e for e in logs if e["event"] == "clock_stepped_forward"]
                    return bool(forward) or len(fake.calls) > 1

                await wait_for(stepped_or_sent_again, timeout=30, what="the step seen")
                fake.gate.set()
                await wait_for(all_in(State.DELIVERED, one, ids), timeout=30, what="delivered")
        assert fake.calls == ["held0@example.com"]
        assert not [e for e in logs if e["event"] == "event_lease_lost"]
    finally:
        fake.gate.set()
        await one.close()
        await two.close()


async def test_a_step_back_does_not_stop_rate_limited_sending(
    tmp_path: Path, hub_db_url: str
) -> None:
    """A backlog sent at the target's rate limit (2 calls per 10 s), the lane full of events
    waiting for the window, which the first two calls, ended, fill; the clock goes back a
    minute. The next calls go out once their window has passed (before, the rate slots kept
    the step too and counted the two calls a minute longer; and while the lane stayed full
    nothing was claimed to undo the step, until its events' leases ran out, 45 s later)."""
    clock = SteppedClock()
    fake = FailsUntilOpen()
    fake.open = True
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    store = open_store(hub_db_url, clock=clock)
    await store.open()
    try:
        with serve_in_thread(app) as url, capture_logs() as logs:
            config = forms_config(tmp_path, url, rate_limit="2/10s")
            async with running(config, store, clock=clock) as dispatcher:
                await enqueue(store, "forms", leads("rated", 12))
                lane = dispatcher.lanes["default"]
                await wait_for(lambda: len(fake.created) == 2, timeout=30, what="2 sent")
                await wait_for(lambda: lane.full, timeout=30, what="the lane full")
                account = account_of(lane.target)

                async def both_ended() -> bool:  # (each call's slot ends after its ack)
                    # asked for no slot, with room for one: whether the later call ended too
                    later = await store.take_slots(account, calls=1, window=10, hold=1, want=0)
                    return not later.slots and not later.in_flight

                await wait_for(both_ended, timeout=30, what="both calls' slots ended")
                clock.step(-60.0)
                # (a hang guard: the window ends 10 s after the two calls; before, 45 or 70 s)
                await wait_for(lambda: len(fake.created) > 2, timeout=30, what="the 3rd call")
        [stepped] = [e for e in logs if e["event"] == "clock_stepped_back"]
        assert stepped["slots"] == 2
    finally:
        await store.close()


def each_retried(store: EventStore, ids: list[int], attempts: int) -> Callable[[], Awaitable[bool]]:
    """A check: every event of ``ids`` is ``retrying`` after at least ``attempts`` attempts."""

    async def check() -> bool:
        events = (await states(store, ids)).values()
        return all(e.state is State.RETRYING and e.attempts >= attempts for e in events)

    return check


async def test_a_step_forward_does_not_use_up_give_up_after(tmp_path: Path) -> None:
    """Leads the sandbox refuses (its 500 fault on every call) while the clock is set two
    hours forward, past their give_up_after of an hour: they go on being retried, and once
    the faults stop each is delivered, one lead each in the sandbox (before: each was dead
    at its next failure, "gave up after 4 attempt(s) over 1h", after seconds of trying)."""
    clock = SteppedClock()
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock)
    await store.open()
    try:
        with sandbox_server() as (url, _), capture_logs() as logs:
            sandbox_post(url, "/_sandbox/faults", {"every": 1, "kinds": ["500"]})
            retry = "{initial: 200ms, max_interval: 500ms, give_up_after: 1h}"
            config = forms_config(tmp_path, url, retry=retry)
            async with running(config, store, clock=clock):
                ids = await enqueue(store, "forms", leads("ahead", 3))
                await wait_for(each_retried(store, ids, 2), timeout=30, what="two failures each")
                clock.step(2 * HOUR)
                more, dead = each_retried(store, ids, 6), all_in(State.DEAD, store, ids[:1])

                async def retried_more_or_dead() -> bool:
                    return await more() or await dead()

                await wait_for(retried_more_or_dead, timeout=30, what="four more failures")
                assert not [e for e in logs if e["event"] == "event_dead"]
                sandbox_post(url, "/_sandbox/faults", {"rate": 0})
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=30, what="delivered")
            emails = sorted(lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads"))
        assert emails == [f"ahead{n}@example.com" for n in range(3)]
        assert not [e for e in logs if e["event"] == "event_dead"]
    finally:
        await store.close()


async def test_after_a_step_forward_give_up_after_still_ends_the_retries(tmp_path: Path) -> None:
    """The time a step forward skipped does not count toward give_up_after, the time after
    it does: leads the sandbox refuses for good are dead once their 3 s have passed, the
    step of an hour in between (the skip is not taken for an hour more to try in)."""
    clock = SteppedClock()
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", clock=clock)
    await store.open()
    try:
        with sandbox_server() as (url, _):
            sandbox_post(url, "/_sandbox/faults", {"every": 1, "kinds": ["500"]})
            retry = "{initial: 200ms, max_interval: 500ms, give_up_after: 3s}"
            config = forms_config(tmp_path, url, retry=retry)
            async with running(config, store, clock=clock):
                ids = await enqueue(store, "forms", leads("ended", 2))
                await wait_for(each_retried(store, ids, 1), timeout=30, what="a failure each")
                clock.step(HOUR)
                await wait_for(all_in(State.DEAD, store, ids), timeout=30, what="dead")
            assert sandbox_get(url, "/_sandbox/leads") == []
        for event in (await states(store, ids)).values():
            assert event.last_error is not None and "gave up after" in event.last_error
    finally:
        await store.close()
