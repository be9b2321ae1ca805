"""An event whose release or delivery could not be written because the store was down goes
back (or is recorded) as soon as the store is back, not a whole lease later.

A real PostgreSQL server is stopped (``pg_ctl stop -m fast``) while a lane's calls are in
flight, so the outcome of each call, then the release that gives the event back, meet the
outage; it is started again a moment later. The lease is 60 s: each test waits well less
than that for the event to be claimed again (or recorded), which the old code only did once
the lease ran out (the audit: a 10 s outage, events claimed again 50 s after it ended)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from hub.clock import Clock, ManualClock
from hub.dispatch.retry import Rewrites
from hub.dispatch.worker import Dispatcher
from hub.store import EventStore, open_store
from hub.store.models import Event, State
from tests.dispatch.support import (
    CAPTURE,
    all_in,
    enqueue,
    flat_endpoint_yaml,
    leads,
    running,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.dispatch.test_clock_step import HOUR, SteppedClock
from tests.pg_server import PostgresServer, find_bindir
from tests.support.server import serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed"),
]

LEASE = 60.0
#: What the test waits at most for what the store's return should bring: well within the
#: lease, which the old code waited out.
BACK_WITHIN = 30.0
EVENTS = 4


class HeldTarget:
    """A LeadSquared whose first calls wait until :attr:`answer` is set, then get ``first``
    (500: a failed attempt, or 200: delivered); later calls are delivered at once."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.answer = threading.Event()
        self.calls: list[str] = []

    async def capture(self, request: Request) -> Response:
        email = {a["Attribute"]: a["Value"] for a in await request.json()}["EmailAddress"]
        self.calls.append(email)
        if not self.answer.is_set():
            while not self.answer.is_set():
                await asyncio.sleep(0.02)
            if self.first == 500:
                return JSONResponse({"ExceptionMessage": "try later"}, status_code=500)
        message = {"Id": "a", "RelatedId": f"lead-{email}", "IsCreated": True}
        return JSONResponse({"Status": "Success", "Message": message})


@contextlib.contextmanager
def held_target(first: int) -> Iterator[tuple[str, HeldTarget]]:
    fake = HeldTarget(first)
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    try:
        with serve_in_thread(app) as url:
            yield url, fake
    finally:
        fake.answer.set()


@dataclass
class Outage:
    """What :func:`calls_meet_an_outage` runs: the stopped server, the store, the target, the
    log, the events' ids and the running dispatcher (stopping it early is allowed)."""

    server: PostgresServer
    store: EventStore
    fake: HeldTarget
    logs: list[MutableMapping[str, Any]]
    ids: list[int]
    dispatcher: Dispatcher


@contextlib.asynccontextmanager
async def calls_meet_an_outage(
    tmp_path: Path,
    first: int,
    name: str,
    rate_limit: str = "off",
    clock: Clock | None = None,
) -> AsyncIterator[Outage]:
    """Run the dispatcher on a real PostgreSQL; stop the server while ``EVENTS`` calls are
    held, answer them (``first``), and yield once every outcome has met the outage (each
    waits in the dispatcher's rewrites), the dispatcher still running and the server still
    stopped. With ``clock`` (a
    :class:`SteppedClock`), the store and the dispatcher run on it, and its wall reading is
    stepped an hour forward between two claims of the store first: the store applies the
    step (its clock shift is then -1 h)."""
    server = PostgresServer()
    server.start()
    try:
        store = open_store(server.dsn) if clock is None else open_store(server.dsn, clock=clock)
        await store.open()
        options: dict[str, Any] = {}
        try:
            if isinstance(clock, SteppedClock):
                options["clock"] = clock
                await store.claim(limit=1, lease=LEASE)
                clock.step(HOUR)
                with capture_logs() as stepped:
                    await store.claim(limit=1, lease=LEASE)
                assert [e["event"] for e in stepped] == ["clock_stepped_forward"], stepped
            with held_target(first) as (url, fake), capture_logs() as logs:
                config = write_config(
                    tmp_path / "cfg",
                    target_yaml("default", url, rate_limit=rate_limit),
                    flat_endpoint_yaml("forms", "default"),
                )
                ids = await enqueue(store, "forms", leads(name, EVENTS))
                async with running(config, store, lease=LEASE, **options) as dispatcher:
                    await wait_for(lambda: len(fake.calls) == EVENTS, what="calls in flight")
                    await asyncio.to_thread(server.pause)
                    fake.answer.set()
                    # every call's outcome, not just the first: the answers are read one by
                    # one, and one read after the server's return was written at once (no
                    # store_write_resumed for it; a 500's retry counted as an attempt)
                    await wait_for(
                        lambda: len(dispatcher.rewrites) == EVENTS,
                        what="every outcome refused by the outage, waiting to be written",
                    )
                    yield Outage(server, store, fake, logs, ids, dispatcher)
        finally:
            await store.close()
    finally:
        server.stop()


async def _outage_during_calls(
    tmp_path: Path, first: int, rate_limit: str = "off", clock: Clock | None = None
) -> tuple[HeldTarget, list[MutableMapping[str, Any]]]:
    """:func:`calls_meet_an_outage`, then start the server again and wait (less than the
    lease) until every event is delivered. A delivery is recorded as of its call's end,
    which was before the server came back."""
    async with calls_meet_an_outage(tmp_path, first, "outage", rate_limit, clock) as outage:
        await asyncio.sleep(1.5)  # the releases, tried once, failed too
        back = time.time()
        await asyncio.to_thread(outage.server.resume)
        await wait_for(
            all_in(State.DELIVERED, outage.store, outage.ids),
            timeout=BACK_WITHIN,
            what="every event delivered once the store is back",
        )
        events = await states(outage.store, outage.ids)
    assert all(e.attempts == 1 for e in events.values()), [e.attempts for e in events.values()]
    if first == 200 and clock is None:  # (a stepped clock's times are an hour ahead)
        late = [e.updated_at - back for e in events.values() if e.updated_at >= back]
        assert not late, late
    return outage.fake, outage.logs


async def test_an_event_whose_outcome_the_outage_refused_goes_back_once_the_store_is_back(
    tmp_path: Path,
) -> None:
    """A call fails (500) while PostgreSQL is stopped: its retry cannot be written, nor the
    release that gives the event back. Once the server is back the release is written, and
    the event is claimed again and delivered, well before its 60 s lease ends; the attempt
    the outage spoilt is not counted."""
    fake, logs = await _outage_during_calls(tmp_path, first=500)
    assert len(fake.calls) == 2 * EVENTS  # each event's call again, after the store's return
    resumed = [e for e in logs if e["event"] == "store_write_resumed"]
    assert resumed and {e["what"] for e in resumed} == {"release"}, resumed
    assert not [e for e in logs if e["event"] == "store_write_given_up"]


@pytest.mark.parametrize("rate_limit", ["off", "100/1s"])
async def test_a_delivery_the_outage_kept_from_the_store_is_recorded_once_it_is_back(
    tmp_path: Path, rate_limit: str
) -> None:
    """Calls delivered while PostgreSQL is stopped: their deliveries cannot be written. Once
    the server is back they are, well before the lease ends, and no lead is sent twice (a
    release would have sent it again). Without a rate limit, the lane's ack writer records
    deliveries; with one, each send does."""
    fake, logs = await _outage_during_calls(tmp_path, first=200, rate_limit=rate_limit)
    assert sorted(fake.calls) == sorted(lead["email"] for lead in leads("outage", EVENTS))
    resumed = [e for e in logs if e["event"] == "store_write_resumed"]
    assert {e["what"] for e in resumed} == {"ack"}, resumed
    assert len([e for e in logs if e["event"] == "lead_sent"]) == EVENTS
    traced = [e for e in logs if e.get("exc_info")]
    assert not traced, traced[:2]


async def test_a_delivery_the_outage_kept_is_recorded_after_a_step_forward_was_applied(
    tmp_path: Path,
) -> None:
    """As above, on a store that once applied a step forward of its clock (an hour): each
    lease's token is then an hour before the wall clock's now. The deliveries the outage
    kept from the store are still recorded once it is back, and no lead is sent twice
    (before, each was given up at once, its token read as a lease end already past: the
    events stayed 'sending' until their leases ended, then were sent again)."""
    fake, logs = await _outage_during_calls(tmp_path, first=200, clock=SteppedClock())
    assert sorted(fake.calls) == sorted(lead["email"] for lead in leads("outage", EVENTS))
    resumed = [e for e in logs if e["event"] == "store_write_resumed"]
    assert {e["what"] for e in resumed} == {"ack"}, resumed
    assert not [e for e in logs if e["event"] == "store_write_given_up"]


async def _stop_after_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, back_before_stop: bool
) -> tuple[dict[int, Any], list[MutableMapping[str, Any]]]:
    """:func:`calls_meet_an_outage` with every call delivered, so that the deliveries wait
    to be written, then stop the dispatcher: with the server started again just before the
    stop (``back_before_stop``), or still stopped. The background retries are put off past
    the test, so only the stop's last try can write them. Returns the events' rows as the
    store then has them, and the log."""
    monkeypatch.setattr("hub.dispatch.retry.REWRITE_PAUSE", 3600.0)
    monkeypatch.setattr("hub.dispatch.retry.REWRITE_PAUSE_MAX", 3600.0)
    async with calls_meet_an_outage(tmp_path, 200, "stop") as outage:
        if back_before_stop:
            await asyncio.to_thread(outage.server.resume)
        await outage.dispatcher.stop(timeout=5.0)
        if not back_before_stop:
            await asyncio.to_thread(outage.server.resume)
        events = await states(outage.store, outage.ids)
    assert sorted(outage.fake.calls) == sorted(lead["email"] for lead in leads("stop", EVENTS))
    return events, outage.logs


async def test_deliveries_unrecorded_at_stop_are_recorded_when_the_store_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store comes back just before the dispatcher stops, while deliveries still wait to
    be written: the stop writes them, so no lead is sent again a lease later (the old stop
    dropped them: the events stayed 'sending' until their leases ended)."""
    events, logs = await _stop_after_outage(tmp_path, monkeypatch, back_before_stop=True)
    assert {e.state for e in events.values()} == {State.DELIVERED}, events
    resumed = [e for e in logs if e["event"] == "store_write_resumed"]
    assert {e["event_id"] for e in resumed} == set(events), resumed
    assert not [e for e in logs if e["event"] == "store_write_given_up"]


async def test_deliveries_the_store_still_refuses_at_stop_are_each_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is still down when the dispatcher stops: each delivery it could not record
    is logged as given up, saying the lead was sent and will be sent again once the lease
    ends (the old stop dropped them without a word); the events stay 'sending' under it."""
    events, logs = await _stop_after_outage(tmp_path, monkeypatch, back_before_stop=False)
    assert {e.state for e in events.values()} == {State.SENDING}, events
    given_up = [e for e in logs if e["event"] == "store_write_given_up"]
    assert {e["event_id"] for e in given_up} == set(events), given_up
    assert {e["what"] for e in given_up} == {"ack"}
    assert all("the lead was sent" in e["reason"] for e in given_up), given_up
    assert not [e for e in logs if e["event"] == "store_write_resumed"]


async def test_a_rewrite_the_store_refuses_for_another_reason_is_logged_apart() -> None:
    """A held write that fails otherwise than by the store being away (a bug) is given up
    with its traceback as ``store_rewrite_failed``, named apart from the store writers'
    ``store_write_failed`` (a full disk, say): an alert on the one is not set off by the
    other."""
    clock = ManualClock()
    event = Event(
        id=7, endpoint="forms", delivery_id="d-7", received_at=clock.time(), body=b"{}",
        content_type="application/json", headers={}, document={}, state=State.SENDING,
        attempts=1, next_attempt_at=clock.time() + 60,
    )  # fmt: skip

    async def write() -> None:
        raise ValueError("a bug")

    rewrites = Rewrites(clock)
    with capture_logs() as logs:
        rewrites.add(event, write, "ack")
        await rewrites.close()
    failed = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["what"], e["error"]) for e in failed] == [
        ("store_rewrite_failed", "ack", "a bug")
    ]
    assert len(rewrites) == 0
