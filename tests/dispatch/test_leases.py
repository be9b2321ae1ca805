"""A worker whose lease ran out mid-call writes nothing over the worker that took over."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    forms_config,
    leads,
    opened_store,
    running,
    wait_for,
)
from tests.support.server import serve_in_thread

CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"


class _SlowFirst:
    """A LeadSquared whose first call answers 500 after 1.5 s; the others succeed at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_arrived = threading.Event()

    async def capture(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        if self.calls == 1:
            self.first_arrived.set()
            await asyncio.sleep(1.5)
            return PlainTextResponse("Internal Server Error", status_code=500)
        return JSONResponse({"Status": "Success", "Message": {"Id": "a", "RelatedId": "lead-b"}})


@pytest.fixture
def slow_first() -> Iterator[tuple[str, _SlowFirst]]:
    fake = _SlowFirst()
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield url, fake


async def test_a_late_failure_does_not_undo_the_delivery_of_the_worker_that_took_over(
    tmp_path: Path, slow_first: tuple[str, _SlowFirst]
) -> None:
    """Worker A sends; its 1 s lease runs out while the call waits for its answer (1.5 s,
    within the 3 s timeout); worker B claims the event and delivers it; then A's call fails.
    A's outcome (put the event back) is written under its lost lease: it writes nothing, and
    says so. The event stays delivered, by B, sent twice and not a third time."""
    url, fake = slow_first
    config = forms_config(tmp_path, url, timeout="3s")
    async with opened_store(tmp_path / "hub.db") as store:
        (eid,) = await enqueue(store, "forms", leads("late", 1))
        with capture_logs() as logs:
            async with running(config, store, lease=1.0, concurrency=1) as a:
                await asyncio.to_thread(fake.first_arrived.wait, 10)
                a.drain()  # A claims no more: the event can only go to B once A's lease ends
                async with running(config, store, lease=1.0, concurrency=1):
                    await wait_for(all_in(State.DELIVERED, store, [eid]), what="B's delivery")
            # both stopped: A's stop waited for its call to end and for its outcome
        event = await store.get(eid)
    assert event is not None
    assert (event.state, event.lead_id, event.attempts) == (State.DELIVERED, "lead-b", 2)
    lost = [e for e in logs if e["event"] == "event_lease_lost"]
    assert [(e["event_id"], e["log_level"]) for e in lost] == [(eid, "warning")]
    assert fake.calls == 2
