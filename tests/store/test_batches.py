"""The store's batch methods (set_routes, ack_many, blockers) agree with the one-event ones."""

from __future__ import annotations

import orjson

from hub.clock import ManualClock
from hub.store import EventStore
from hub.store.models import Ack, EventIn, IncomingDelivery, Route, State

from .helpers import delivery
from .test_contract import ids_of


async def test_set_routes_records_every_route_and_names_the_missing(store: EventStore) -> None:
    """set_routes records each route and its lead keys, replaces old keys, returns unknown ids."""
    a, b = await ids_of(store, 2)
    await store.set_route(a, target="t", mapping="m", lead_keys=["old"])
    missing = await store.set_routes(
        [
            Route(a, "t1", "m1", ("e:a", "p:1")),
            Route(b, "t2", "m2", ("e:b",)),
            Route(999_999, "t", "m", ("e:ghost",)),
        ]
    )
    assert missing == [999_999]
    ea, eb = await store.get(a), await store.get(b)
    assert ea is not None and eb is not None
    assert (ea.target, ea.mapping, set(ea.lead_keys)) == ("t1", "m1", {"e:a", "p:1"})
    assert (eb.target, eb.mapping, eb.lead_keys) == ("t2", "m2", ("e:b",))
    # the unknown id left no lead key behind: nothing is blocked by it
    assert await store.blocker(1_000_000, ["e:ghost"]) is None


async def test_ack_many_delivers_each_and_names_the_missing(store: EventStore) -> None:
    """ack_many marks each event delivered with its lead id, and returns unknown ids."""
    a, b = await ids_of(store, 2)
    await store.claim(limit=10, lease=60)
    missing = await store.ack_many(
        [Ack(a, "L-a", True), Ack(b, None, None), Ack(424_242, "x", False)]
    )
    assert missing == [424_242]
    ea, eb = await store.get(a), await store.get(b)
    assert ea is not None and eb is not None
    assert (ea.state, ea.lead_id, ea.lead_created) == (State.DELIVERED, "L-a", True)
    assert (eb.state, eb.lead_id, eb.lead_created) == (State.DELIVERED, None, None)


async def test_blockers_match_blocker_for_every_event(store: EventStore) -> None:
    """blockers gives, for each blocked event, what blocker gives; unblocked ones are absent."""
    a, b, c, d = await ids_of(store, 4)
    await store.set_routes(
        [
            Route(a, "t", "m", ("e:x",)),
            Route(b, "t", "m", ("p:1",)),
            Route(c, "t", "m", ("e:x", "p:1")),
            Route(d, "t", "m", ("e:other",)),
        ]
    )
    await store.ack(a, lead_id="L", created=True)
    found = await store.blockers([(a, ["e:x"]), (c, ["e:x", "p:1"]), (d, ["e:other"]), (b, [])])
    assert {k: v.id for k, v in found.items()} == {c: b}
    one = await store.blocker(c, ["e:x", "p:1"])
    assert one is not None and found[c].state is one.state is State.QUEUED
    assert await store.blockers([]) == {}


async def test_blockers_of_a_batch_with_shared_and_chained_blockers(store: EventStore) -> None:
    """One read answers a whole batch: events blocked by the same earlier event each get it,
    a blocker that is itself blocked still blocks, and every answer is blocker's own."""
    a, b, c, d, e, f = await ids_of(store, 6)
    keys = {a: ("e:x",), b: ("e:x", "p:2"), c: ("p:2",), d: ("e:y",), e: ("e:x",), f: ("e:y",)}
    await store.set_routes([Route(i, "t", "m", k) for i, k in keys.items()])
    checks = [(i, list(k)) for i, k in keys.items() if i != a]
    found = await store.blockers(checks)
    assert {k: v.id for k, v in found.items()} == {b: a, c: b, e: a, f: d}
    for event_id, event_keys in checks:
        one = await store.blocker(event_id, event_keys)
        assert (one.id if one else None) == (found[event_id].id if event_id in found else None)
    assert found[b] == found[e] and found[f].lead_keys == ("e:y",)


async def test_events_read_back_exactly(store: EventStore, clock: ManualClock) -> None:
    """Reads fetch rows packed into one value; every field must come back as it was written.

    Covered: bodies stored raw and compressed, a document kept apart from its body, one
    that is the body, non-ASCII text, enrichment, lead keys, and times with every digit.
    """
    clock.set(1_764_340_123.456789)
    big = orjson.dumps({"name": "Zoë 山田", "notes": "x" * 3000, "n": 1})
    await store.enqueue(
        delivery("raw-and-apart", received_at=1_764_340_000.123457, documents=[{"a": "ü"}])
    )
    await store.enqueue(
        IncomingDelivery(
            endpoint="typeform",
            received_at=1_764_340_001.000001,
            body=big,
            content_type="application/json; charset=utf-8",
            headers={"user-agent": "tests", "x-note": "é"},
            events=(EventIn("packed-body", orjson.loads(big), document_is_body=True),),
        )
    )
    first, second = [e.id for e in await store.list(limit=10)][::-1]
    await store.set_enrichment(first, {"graph": [1, 2.5, None, "é"]})
    await store.set_routes([Route(first, "t", "m", ("e:a@x.com", "p:15555550100"))])
    claimed = await store.claim(limit=10, lease=30)
    assert [e.id for e in claimed] == [first, second]
    for event in claimed:
        assert event == await store.get(event.id)
    assert sorted(await store.list(limit=10), key=lambda e: e.id) == claimed
    assert claimed[0].lead_keys == ("e:a@x.com", "p:15555550100")
    assert (claimed[0].target, claimed[0].mapping) == ("t", "m")
    assert claimed[0].document == {"a": "ü"} and claimed[0].body == b'{"a":"\xc3\xbc"}'
    assert claimed[1].headers == {"user-agent": "tests", "x-note": "é"}
    assert claimed[1].content_type == "application/json; charset=utf-8"
    assert [(e.state, e.attempts) for e in claimed] == [(State.SENDING, 1)] * 2
    assert claimed[1].body == big and claimed[1].document["name"] == "Zoë 山田"
    assert claimed[0].received_at == 1_764_340_000.123457
    assert claimed[0].next_attempt_at == 1_764_340_123.456789 + 30
    assert claimed[0].enrichment == {"graph": [1, 2.5, None, "é"]}
