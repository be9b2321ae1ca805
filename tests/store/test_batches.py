"""The store's batch methods (set_routes, ack_many, blockers) agree with the one-event ones."""

from __future__ import annotations

from hub.store import EventStore
from hub.store.models import Ack, Route, State

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
