"""Leases and calls: a call starts only if it can end within the lease, and a worker whose
lease ran out mid-call anyway (its clock and another worker's disagree) writes nothing over
the worker that took over."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from hub.store import open_store
from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    forms_config,
    leads,
    opened_store,
    running,
    states,
    wait_for,
)
from tests.support.clocks import Ahead
from tests.support.server import serve_in_thread

CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"


class _SlowFirst:
    """A LeadSquared whose first call answers 500 once the test lets it (:attr:`release`, 60 s
    at most); the others succeed at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_arrived = threading.Event()
        self.release = threading.Event()

    async def capture(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        if self.calls == 1:
            self.first_arrived.set()
            deadline = time.monotonic() + 60
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return PlainTextResponse("Internal Server Error", status_code=500)
        return JSONResponse({"Status": "Success", "Message": {"Id": "a", "RelatedId": "lead-b"}})


@pytest.fixture
def slow_first() -> Iterator[tuple[str, _SlowFirst]]:
    fake = _SlowFirst()
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        try:
            yield url, fake
        finally:
            fake.release.set()  # (a failed test's held call ends with it)


async def test_a_late_failure_does_not_undo_the_delivery_of_the_worker_that_took_over(
    tmp_path: Path, slow_first: tuple[str, _SlowFirst]
) -> None:
    """Worker A sends under a 66 s lease (its call fits: 60 s at most, 5 s to spare); worker
    B, on a machine whose clock runs 65.5 s ahead, sees that lease end while A's call waits
    for its answer (held until B has delivered), claims the event and delivers it; then A's
    call fails. A's outcome (a retry) is written under its lost lease: it writes nothing, and
    says so. The event stays delivered, by B, sent twice and not a third time.

    (A's call is held until B's delivery, not for a fixed time: answered after 1.5 s, as it
    was, B had that long to start and claim, and on a loaded machine A's retry would have
    been written first, under a lease still A's. The 30 s timeout keeps it from ending
    first.)"""
    url, fake = slow_first
    config = forms_config(tmp_path, url, timeout="30s")
    async with opened_store(tmp_path / "hub.db") as store:
        (eid,) = await enqueue(store, "forms", leads("late", 1))
        ahead = open_store(f"sqlite:///{tmp_path / 'hub.db'}", clock=Ahead(65.5))
        await ahead.open()
        try:
            with capture_logs() as logs:
                async with running(config, store, lease=66.0, concurrency=1) as a:
                    await asyncio.to_thread(fake.first_arrived.wait, 10)
                    a.drain()  # A claims no more: the event can only go to B
                    async with running(config, ahead, lease=66.0, concurrency=1):
                        await wait_for(all_in(State.DELIVERED, store, [eid]), what="B's delivery")
                    fake.release.set()  # now A's call fails
                # both stopped: A's stop waited for its call to end and for its outcome
        finally:
            await ahead.close()
        event = await store.get(eid)
    assert event is not None
    assert (event.state, event.lead_id, event.attempts) == (State.DELIVERED, "lead-b", 2)
    lost = [e for e in logs if e["event"] == "event_lease_lost"]
    assert [(e["event_id"], e["log_level"]) for e in lost] == [(eid, "warning")]
    assert fake.calls == 2


async def test_a_call_that_cannot_end_within_the_lease_is_never_started(
    tmp_path: Path, slow_first: tuple[str, _SlowFirst]
) -> None:
    """A 1 s lease and a target whose calls may last 6 s (timeout 3 s): no call is made (one
    would outlast the lease, and another worker would send the event again: 14 calls for 8
    events, once). Each event goes back untried, its last error naming the lease to give,
    due again a lease later; the error is logged once."""
    url, fake = slow_first
    config = forms_config(tmp_path, url, timeout="3s")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("short", 8))

        async def put_back() -> bool:
            events = await states(store, ids)
            return all(e.last_error and e.state is State.QUEUED for e in events.values())

        with capture_logs() as logs:
            async with running(config, store, lease=1.0):
                await wait_for(put_back, what="every event put back")
                await asyncio.sleep(0.5)  # not claimed again meanwhile
            events = await states(store, ids)
    assert fake.calls == 0
    assert all(e.attempts == 0 for e in events.values())
    assert all(e.next_attempt_at > time.time() for e in events.values())
    assert "--lease of at least 12s" in (events[ids[0]].last_error or "")
    told = [e for e in logs if e["event"] == "lease_too_short"]
    assert len(told) == 1 and told[0]["log_level"] == "error"


async def test_a_call_starts_only_while_it_fits_in_what_is_left_of_the_lease(
    tmp_path: Path, slow_first: tuple[str, _SlowFirst]
) -> None:
    """With a 12 s lease and 6 s calls, a call may start until 1 s after the claim: events
    that wait longer for the rate limit (1 call per 2 s) go back to the queue, untried,
    instead of being sent when another worker may own them; every event is sent once."""
    url, fake = slow_first
    fake.calls = 1  # every call answers at once
    config = forms_config(tmp_path, url, timeout="3s", rate_limit="1/2s")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("wait", 3))
        async with running(config, store, lease=12.0) as dispatcher:
            await wait_for(all_in(State.DELIVERED, store, ids), what="all sent")
            released = dispatcher.metrics.events.labels("released")._value.get()
        events = await states(store, ids)
    assert released >= 1
    assert fake.calls == 1 + 3
    assert all(e.attempts == 1 for e in events.values())


async def test_an_event_put_back_for_the_rate_limit_is_not_claimed_again_at_once(
    tmp_path: Path, slow_first: tuple[str, _SlowFirst]
) -> None:
    """The backlog a store outage leaves (or any backlog over the rate limit) with a lease
    that leaves 1 s to start a call in: an event that cannot get a slot in time goes back
    due when the limit should have room, not at once. Put back due at once, it was claimed
    again at once, refused by the limiter at once and put back again: thousands of claims,
    releases and log lines a second (`event_lease_expiring`), every one a store write."""
    url, fake = slow_first
    fake.calls = 1  # every call answers at once
    config = forms_config(tmp_path, url, timeout="3s", rate_limit="3/2s")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("backlog", 9))
        with capture_logs() as logs:
            async with running(config, store, lease=12.0) as dispatcher:
                await wait_for(all_in(State.DELIVERED, store, ids), what="all sent")
                released = dispatcher.metrics.events.labels("released")._value.get()
        events = await states(store, ids)
    assert fake.calls == 1 + 9
    assert all(e.attempts == 1 for e in events.values())
    # a few put-backs per event at most (it was thousands within the same few seconds)
    expiring = [e for e in logs if e["event"] == "event_lease_expiring"]
    assert released <= 9 * 5, released
    assert len(expiring) <= 9 * 5, len(expiring)
