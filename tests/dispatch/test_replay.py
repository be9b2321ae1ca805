"""Dead events come back: a fixed mapping plus ``leadhub replay --status dead`` delivers them,
with their whole retry schedule however old they are. Delivered ones too, when named: after a
mapping that sent a wrong field is fixed, ``leadhub replay --status delivered`` sends their
leads again, which updates them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog.testing
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


def _replay(db: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``leadhub replay FLAGS`` (default ``--status dead``) on the store at ``db``, as a
    command of its own."""
    argv = [sys.executable, "-m", "hub", "replay", *(flags or ("--status", "dead"))]
    return subprocess.run(
        [*argv, "--db", f"sqlite:///{db}"],
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
            requeued = {e.requeued_at for e in (await states(store, ids)).values()}
            with structlog.testing.capture_logs() as logs:
                async with running(fixed, store):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered on replay")
        # the hub's log says each event it claims was replayed, and when (the command ran
        # apart from it)
        claimed = [line for line in logs if line["event"] == "event_claimed"]
        assert sorted(line["event_id"] for line in claimed) == sorted(ids)
        assert {line.get("requeued_at") for line in claimed} == requeued != {None}
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


def _first_name_from(field: str) -> str:
    """The ``forms`` endpoint and a mapping sending ``$.<field>`` as the lead's FirstName."""
    return f"""kind: endpoint
name: forms
source: none
---
kind: mapping
name: forms-map
endpoint: forms
target: default
fields:
  EmailAddress: {{ path: $.email, required: true }}
  FirstName: $.{field}
"""


async def test_replay_status_delivered_sends_delivered_leads_again(tmp_path: Path) -> None:
    """A mapping sent the nickname as FirstName; three events of two leads were delivered
    with it, and one more four days ago. After the fix, `leadhub replay --status delivered
    --since 1h` requeues the three (its dry run counts them), a real dispatcher sends them
    again to the sandbox and they end delivered again: the same leads are updated (none is
    created; each has one more Lead Capture activity), the later event of a lead still goes
    after the earlier one, and the old event is neither requeued nor sent."""
    db = tmp_path / "hub.db"
    with sandbox_server() as (url, _):
        wrong = write_config(tmp_path / "a", target_yaml("default", url), _first_name_from("nick"))
        async with opened_store(db) as store:
            old = await _received_days_ago(
                store, 4, {"email": "old@example.com", "first_name": "Olga", "nick": "Oli"}
            )
            docs = [
                {"email": "ann@example.com", "first_name": "Ann", "nick": "Annie"},
                {"email": "bob@example.com", "first_name": "Bob", "nick": "Bobby"},
                {"email": "ann@example.com", "first_name": "Anna", "nick": "Nan"},
            ]
            ids = await enqueue(store, "forms", docs)
            async with running(wrong, store):
                await wait_for(all_in(State.DELIVERED, store, [old, *ids]), what="delivered")
            first = await states(store, [old, *ids])
            leads = {lead["EmailAddress"]: lead for lead in sandbox_get(url, "/_sandbox/leads")}
            assert {email: lead["FirstName"] for email, lead in leads.items()} == {
                "old@example.com": "Oli",
                "ann@example.com": "Nan",
                "bob@example.com": "Bobby",
            }
            lead_ids = {email: lead["ProspectID"] for email, lead in leads.items()}
            assert [first[i].lead_id for i in ids] == [lead_ids[doc["email"]] for doc in docs]

            dry = await asyncio.to_thread(
                _replay, db, "--status", "delivered", "--since", "1h", "--dry-run"
            )
            assert dry.returncode == 0, dry.stderr
            assert dry.stdout.strip() == "Would requeue 3 events."
            assert await states(store, [old, *ids]) == first
            bare = await asyncio.to_thread(_replay, db, "--id", str(ids[0]))
            assert bare.returncode == 0, bare.stderr
            assert bare.stdout.strip() == "Requeued 0 events."
            assert "--status delivered" in bare.stderr
            replay = await asyncio.to_thread(_replay, db, "--status", "delivered", "--since", "1h")
            assert replay.returncode == 0, replay.stderr
            assert replay.stdout.strip() == "Requeued 3 events."
            requeued = await states(store, [old, *ids])
            assert requeued[old] == first[old]
            assert {requeued[i].state for i in ids} == {State.QUEUED}

            fixed = write_config(
                tmp_path / "b", target_yaml("default", url), _first_name_from("first_name")
            )
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered again")
            again = await states(store, [old, *ids])
        leads = {lead["EmailAddress"]: lead for lead in sandbox_get(url, "/_sandbox/leads")}
        assert {email: lead["FirstName"] for email, lead in leads.items()} == {
            "old@example.com": "Oli",
            "ann@example.com": "Anna",
            "bob@example.com": "Bob",
        }
        assert {email: lead["ProspectID"] for email, lead in leads.items()} == lead_ids
        captures = {
            email: len(sandbox_get(url, f"/_sandbox/leads/{lead_id}/activities"))
            for email, lead_id in lead_ids.items()
        }
        assert captures == {"old@example.com": 1, "ann@example.com": 4, "bob@example.com": 2}
    assert again[old] == first[old]
    for event_id, doc in zip(ids, docs, strict=True):
        event = again[event_id]
        assert (event.state, event.attempts, event.lead_id, event.lead_created) == (
            State.DELIVERED,
            1,
            lead_ids[doc["email"]],
            False,
        ), event.last_error
        assert event.requeued_at is not None
