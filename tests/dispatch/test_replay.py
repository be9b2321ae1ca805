"""Dead events come back: a fixed mapping plus ``leadhub replay --status dead`` delivers them,
with their whole retry schedule however old they are."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hub.store.base import EventStore
from hub.store.models import EventIn, IncomingDelivery, State
from tests.dispatch.support import (
    all_in,
    enqueue,
    flat_endpoint_yaml,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread

CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"
DAY = 86400.0


def _replay(db: Path) -> subprocess.CompletedProcess[str]:
    """``leadhub replay --status dead`` on the store at ``db``, as a command of its own."""
    return subprocess.run(
        [sys.executable, "-m", "hub", "replay", "--status", "dead", "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_fixed_mapping_and_replay_deliver_dead_events(tmp_path: Path) -> None:
    """Events dead on a missing required field are delivered after the fix and `leadhub replay`."""
    db = tmp_path / "hub.db"
    with sandbox_server() as (url, _):
        broken = write_config(
            tmp_path / "a", target_yaml("default", url), flat_endpoint_yaml("forms", "default")
        )
        async with opened_store(db) as store:
            docs = [{"mail": f"late{n}@example.com", "first_name": f"L{n}"} for n in range(5)]
            ids = await enqueue(store, "forms", docs)
            async with running(broken, store):
                await wait_for(all_in(State.DEAD, store, ids), what="dead on required field")
            for event in (await states(store, ids)).values():
                assert "EmailAddress" in (event.last_error or "")

            replay = await asyncio.to_thread(_replay, db)
            assert replay.returncode == 0, replay.stderr
            assert "Requeued 5 events" in replay.stdout
            assert {e.state for e in (await states(store, ids)).values()} == {State.QUEUED}

            fixed = write_config(
                tmp_path / "b",
                target_yaml("default", url),
                flat_endpoint_yaml("forms", "default", required="mail"),
            )
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered on replay")
        leads = sandbox_get(url, "/_sandbox/leads")
        assert sorted(lead["EmailAddress"] for lead in leads) == [
            f"late{n}@example.com" for n in range(5)
        ]


class _BusyThenFine:
    """A LeadSquared answering 503 to the first ``busy`` calls, then creating the lead."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    async def capture(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        if self.calls <= self.busy:
            return PlainTextResponse("Service Unavailable", status_code=503)
        return JSONResponse({"Status": "Success", "Message": {"Id": "a", "RelatedId": "lead-o"}})


@pytest.fixture
def busy_then_fine() -> Iterator[tuple[str, _BusyThenFine]]:
    fake = _BusyThenFine(busy=2)
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield url, fake


async def _received_days_ago(store: EventStore, days: float, document: object) -> int:
    """One event whose delivery came in ``days`` days ago."""
    (result,) = await store.enqueue(
        IncomingDelivery(
            endpoint="forms",
            received_at=time.time() - days * DAY,
            body=orjson.dumps(document),
            content_type="application/json",
            headers={},
            events=(EventIn(delivery_id="old-0", document=document),),
        )
    )
    return result.id


async def test_a_replayed_event_older_than_give_up_after_gets_its_whole_schedule(
    tmp_path: Path, busy_then_fine: tuple[str, _BusyThenFine]
) -> None:
    """An event received 4 days ago (give_up_after: the default 72 h) died on a mapping
    mistake; after the fix and `leadhub replay`, two 503s are retried and the third call
    delivers it: the give-up clock starts at the replay, not at receipt (it used to die on
    the first 503, "gave up after 1 attempt(s)")."""
    url, fake = busy_then_fine
    db = tmp_path / "hub.db"
    retry = "{initial: 50ms, max_interval: 100ms}"  # give_up_after: the default, 72h
    async with opened_store(db) as store:
        eid = await _received_days_ago(store, 4, {"mail": "old@example.com"})
        broken = write_config(
            tmp_path / "a",
            target_yaml("default", url, retry=retry),
            flat_endpoint_yaml("forms", "default"),
        )
        async with running(broken, store):
            await wait_for(all_in(State.DEAD, store, [eid]), what="dead on its mapping")
        assert fake.calls == 0

        replay = await asyncio.to_thread(_replay, db)
        assert replay.returncode == 0, replay.stderr
        assert "Requeued 1 event" in replay.stdout
        event = await store.get(eid)
        assert event is not None and event.requeued_at is not None
        assert time.time() - 60 < event.queued_since <= time.time()

        fixed = write_config(
            tmp_path / "b",
            target_yaml("default", url, retry=retry),
            flat_endpoint_yaml("forms", "default", required="mail"),
        )

        async def settled() -> bool:
            found = await store.get(eid)
            return found is not None and found.state in (State.DELIVERED, State.DEAD)

        async with running(fixed, store):
            await wait_for(settled, what="delivered or dead")
        event = await store.get(eid)
    assert event is not None
    assert (event.state, event.attempts, event.lead_id) == (State.DELIVERED, 3, "lead-o"), (
        event.last_error
    )
    assert fake.calls == 3
