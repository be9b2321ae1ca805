"""``leadhub events`` shows when a waiting event is tried next and whether a sending one's
lease has run out, through hub.cli.main against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from hub.cli import main
from hub.clock import ManualClock
from hub.store import open_store
from hub.store.commands import iso, utc

from .helpers import delivery

Cap = pytest.CaptureFixture[str]

#: How far from the listing's time each event's next try or lease end is put: an hour, so
#: the listing sees each one on its side of "now" however slow the machine is.
HOUR = 3600.0


def make_events(url: str, now: float) -> dict[str, tuple[int, float]]:
    """One event of each kind NEXT (UTC) tells apart, by name: ``(id, next_attempt_at)``.

    They are claimed by a store whose clock is set for each: a claim takes the oldest due
    events, so each is made when no other is due (the expired lease first, two hours back,
    then routed to a target the later claims leave out: set back, the store's clock would
    be a step back, which moves the waiting events' due times back as much)."""
    clock = ManualClock(now - 2 * HOUR)

    async def go() -> dict[str, tuple[int, float]]:
        store = open_store(url, clock=clock)
        await store.open()
        made: dict[str, tuple[int, float]] = {}

        async def claimed(name: str, lease: float) -> int:
            (res,) = await store.enqueue(delivery(name, received_at=clock.time()))
            (event,) = await store.claim(limit=1, lease=lease, exclude_targets=["other"])
            assert event.id == res.id
            made[name] = (event.id, event.next_attempt_at)
            return event.id

        try:
            expired = await claimed("expired_lease", 60)  # a worker that claimed it and crashed
            await store.set_route(expired, target="other", mapping="m", lead_keys=[])
            clock.set(now)
            delivered = await claimed("delivered", 60)
            await store.set_route(delivered, target="default", mapping="m", lead_keys=[])
            await store.ack(delivered, lead_id="lead-0001", created=True)
            later = await claimed("retry_later", 60)
            await store.retry(later, at=now + HOUR, error="HTTP 503 from LeadSquared")
            made["retry_later"] = (later, now + HOUR)
            await claimed("live_lease", HOUR)
            due = await claimed("retry_due", 60)
            await store.retry(due, at=now - 60, error="HTTP 429 from LeadSquared")
            made["retry_due"] = (due, now - 60)
            return made
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture
def made(hub_db_url: str) -> tuple[str, dict[str, tuple[int, float]]]:
    """A database holding the events of :func:`make_events`, timed around the real now."""
    return hub_db_url, make_events(hub_db_url, time.time())


def test_the_table_shows_when_each_event_is_tried_next(
    made: tuple[str, dict[str, tuple[int, float]]], capsys: Cap
) -> None:
    """NEXT (UTC) follows STATE: a future retry's time, "due" for one whose time has
    passed, a live lease's end, "lease expired" for a crashed worker's event, and nothing
    for a delivered one."""
    url, events = made
    capsys.readouterr()  # the store's log lines
    assert main(["events", "--db", url], environ={}) == 0
    out = capsys.readouterr().out.splitlines()
    header = out[0]
    assert header.index("STATE") < header.index("NEXT (UTC)") < header.index("ATTEMPTS")
    column = slice(header.index("NEXT (UTC)"), header.index("ATTEMPTS"))
    rows = {int(line.split()[0]): line for line in out[1:]}
    shown = {name: rows[i][column].strip() for name, (i, _) in events.items()}
    assert shown == {
        "delivered": "",
        "retry_later": utc(events["retry_later"][1]),
        "retry_due": "due",
        "live_lease": f"lease ends {utc(events['live_lease'][1])}",
        "expired_lease": "lease expired",
    }
    state = slice(header.index("STATE"), column.start)
    assert rows[events["live_lease"][0]][state].strip() == "sending"  # STATE stays one word


def test_json_says_whether_due_and_whether_the_lease_ran_out(
    made: tuple[str, dict[str, tuple[int, float]]], capsys: Cap
) -> None:
    """--json keeps next_attempt_at where it means something (null for a delivered event,
    whose leftover lease end read as a try to come) and adds ``due`` (queued, retrying) and
    ``lease_expired`` (sending), each null in the states it does not apply to."""
    url, events = made
    capsys.readouterr()  # the store's log lines
    assert main(["events", "--db", url, "--json"], environ={}) == 0
    listed = {o["id"]: o for o in map(orjson.loads, capsys.readouterr().out.splitlines())}
    facts = {
        name: (
            listed[i]["state"],
            listed[i]["next_attempt_at"],
            listed[i]["due"],
            listed[i]["lease_expired"],
        )
        for name, (i, _) in events.items()
    }
    at = {name: iso(when) for name, (_, when) in events.items()}
    assert facts == {
        "delivered": ("delivered", None, None, None),
        "retry_later": ("retrying", at["retry_later"], False, None),
        "retry_due": ("retrying", at["retry_due"], True, None),
        "live_lease": ("sending", at["live_lease"], None, False),
        "expired_lease": ("sending", at["expired_lease"], None, True),
    }


def test_a_queued_event_is_due_from_its_arrival(hub_db_url: str, capsys: Cap) -> None:
    """A queued event never tried is due (its next try is when it arrived), in the table
    and in --json."""

    async def go() -> int:
        store = open_store(hub_db_url)
        await store.open()
        try:
            (res,) = await store.enqueue(delivery("fresh"))
            return res.id
        finally:
            await store.close()

    queued = asyncio.run(go())
    capsys.readouterr()  # the store's log lines
    assert main(["events", "--db", hub_db_url], environ={}) == 0
    (header, row) = capsys.readouterr().out.splitlines()
    assert row[header.index("NEXT (UTC)") : header.index("ATTEMPTS")].strip() == "due"
    assert main(["events", "--db", hub_db_url, "--json"], environ={}) == 0
    (line,) = capsys.readouterr().out.splitlines()
    listed = orjson.loads(line)
    assert (listed["id"], listed["state"], listed["due"], listed["lease_expired"]) == (
        queued,
        "queued",
        True,
        None,
    )


#: A Graph lead as Facebook's enrichment stores it (hub.dispatch.graph).
GRAPH_LEAD = {
    "id": "444444444",
    "created_time": "2026-11-30T10:00:00+0000",
    "field_data": [{"name": "email", "values": ["ana@example.com"]}],
}


def test_json_shows_the_replay_time_and_the_enrichment(hub_db_url: str, capsys: Cap) -> None:
    """--json shows what the hub read for an event (Facebook's Graph lead, which its mapping
    saw) and when ``leadhub replay`` last requeued it; both null for an event with neither,
    and a finished event's next_attempt_at is null, whatever lease its last try left."""

    async def go() -> tuple[int, int]:
        store = open_store(hub_db_url)
        await store.open()
        try:
            (fb,) = await store.enqueue(delivery("leadgen-1", endpoint="facebook"))
            (plain,) = await store.enqueue(delivery("plain-1"))
            (claimed, _) = await store.claim(limit=2, lease=60)
            assert claimed.id == fb.id
            await store.set_enrichment(fb.id, GRAPH_LEAD)
            await store.dead(fb.id, error="MXInvalidEmailException")
            await store.dead(plain.id, error="MXInvalidEmailException")
            return fb.id, plain.id
        finally:
            await store.close()

    fb, plain = asyncio.run(go())
    capsys.readouterr()  # the store's log lines
    before = time.time()
    assert main(["replay", "--db", hub_db_url, "--id", str(fb)], environ={}) == 0
    after = time.time()
    capsys.readouterr()
    assert main(["events", "--db", hub_db_url, "--json"], environ={}) == 0
    listed = {o["id"]: o for o in map(orjson.loads, capsys.readouterr().out.splitlines())}
    assert listed[fb]["state"] == "queued"
    assert listed[fb]["enrichment"] == GRAPH_LEAD  # kept by the replay: not read again
    assert iso(before - 1) <= listed[fb]["requeued_at"] <= iso(after + 1)
    # --id reads the event whole (store.get), not a page: the same fields
    assert main(["events", "--db", hub_db_url, "--json", "--id", str(fb)], environ={}) == 0
    assert orjson.loads(capsys.readouterr().out) == listed[fb]
    assert (listed[plain]["state"], listed[plain]["next_attempt_at"]) == ("dead", None)
    assert (listed[plain]["enrichment"], listed[plain]["requeued_at"]) == (None, None)
    # the names scripts read are all still there, the new ones beside them
    assert list(listed[plain]) == [
        "id",
        "received_at",
        "endpoint",
        "delivery_id",
        "state",
        "attempts",
        "next_attempt_at",
        "due",
        "lease_expired",
        "target",
        "mapping",
        "lead_id",
        "lead_created",
        "last_error",
        "updated_at",
        "requeued_at",
        "document",
        "enrichment",
    ]


def test_replay_of_an_event_past_its_lease_or_due_says_so(
    made: tuple[str, dict[str, tuple[int, float]]], capsys: Cap
) -> None:
    """``replay --id`` of a pending event says it needs no replay in the terms the listing
    uses: an event whose worker's lease ran out (it crashed) was "being sent now (claimed
    by a worker until <a time long past> at the latest)", and one due for its retry had
    "its next try at <a time past>"; a live lease and a retry to come are told as before."""
    url, events = made
    capsys.readouterr()  # the store's log lines
    notes = {}
    for name in ("expired_lease", "live_lease", "retry_due", "retry_later"):
        event_id, _ = events[name]
        assert main(["replay", "--db", url, "--id", str(event_id)], environ={}) == 0
        out, err = capsys.readouterr()
        assert out == "Requeued 0 events.\n"
        (note,) = err.splitlines()
        notes[name] = note.split(", so there is nothing to replay")[0]
        retry = name == "retry_later"  # (one due is tried without it)
        hint = f"; to try it now: leadhub replay --status retrying --id {event_id}" * retry
        assert note.endswith(f"follow it with leadhub events --id {event_id}{hint}."), note
    ids = {name: i for name, (i, _) in events.items()}
    at = {name: utc(when) for name, (_, when) in events.items()}
    assert notes == {
        "expired_lease": f"leadhub replay: note: event {ids['expired_lease']} was claimed by a "
        f"worker whose lease ended at {at['expired_lease']} UTC (the worker stopped or crashed: "
        "the next hub to claim it sends it)",
        "live_lease": f"leadhub replay: note: event {ids['live_lease']} is being sent now "
        f"(claimed by a worker until {at['live_lease']} UTC at the latest)",
        "retry_due": f"leadhub replay: note: event {ids['retry_due']} is retrying: still in the "
        f"queue, its next try due since {at['retry_due']} UTC",
        "retry_later": f"leadhub replay: note: event {ids['retry_later']} is retrying: still in "
        f"the queue, its next try at {at['retry_later']} UTC",
    }
