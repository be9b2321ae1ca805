"""The EventStore contract: every backend must pass this suite unchanged."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from hub.clock import ManualClock
from hub.sources import capped
from hub.store import EventStore, LeaseLost, StoreError
from hub.store.base import (
    ENDPOINT_ABSENT,
    PURGE_WINDOW,
    ROUTING_GRACE,
    SPANS_KEPT,
    BatchedStore,
    BodyNotSkimmed,
    Submits,
)
from hub.store.models import (
    PAUSE_HELD,
    Ack,
    EnqueueResult,
    EventIn,
    IncomingDelivery,
    Listed,
    Purged,
    Route,
    SkimId,
    SlotAnswer,
    State,
)

from .helpers import delivery, table_rows

START = 1_700_000_000.0  # ManualClock's default start
DAY = 86400.0


async def ids_of(store: EventStore, n: int, endpoint: str = "typeform") -> list[int]:
    """Enqueue ``n`` single-event deliveries; return their event ids in order."""
    out = []
    for i in range(n):
        (res,) = await store.enqueue(delivery(f"{endpoint}-{i}", endpoint=endpoint))
        out.append(res.id)
    return out


async def _claims_without_late(store: EventStore, clock: ManualClock) -> int:
    """One claim by an instance whose configuration lacks endpoint ``late`` (it has
    ``forms``), each event it takes put back as its dispatcher does (``_leave``): due now,
    with the :data:`ENDPOINT_ABSENT` mark as its last error. How many it took."""
    taken = await store.claim(limit=10, lease=30, known_endpoints={"forms"})
    for event in taken:
        reason = f"{ENDPOINT_ABSENT}{event.endpoint!r} is not in this hub's configuration"
        await store.release(event.id, at=clock.time(), reason=reason, lease=event.lease)
    return len(taken)


class TestEnqueue:
    async def test_stores_every_field(self, store: EventStore) -> None:
        """An enqueued event reads back with its body, headers, document and a queued state."""
        d = delivery("d1", body=b'{"id": "d1", "x": 1}', documents=[{"id": "d1", "x": 1}])
        (res,) = await store.enqueue(d)
        assert res == EnqueueResult(id=res.id, duplicate=False, delivery_id="d1")
        event = await store.get(res.id)
        assert event is not None
        assert (event.endpoint, event.delivery_id) == ("typeform", "d1")
        assert event.body == b'{"id": "d1", "x": 1}'
        assert event.content_type == "application/json"
        assert dict(event.headers) == {"user-agent": "tests"}
        assert event.document == {"id": "d1", "x": 1}
        assert event.received_at == START
        assert event.state is State.QUEUED
        assert event.attempts == 0
        assert event.next_attempt_at == START
        assert (event.target, event.mapping, event.lead_keys, event.enrichment) == (
            None,
            None,
            (),
            None,
        )

    async def test_document_other_than_body_is_kept(self, store: EventStore) -> None:
        """A form-encoded body keeps its raw bytes and the parsed document separately."""
        d = delivery(
            "f1",
            body=b"email=a%40example.com&n=1",
            content_type="application/x-www-form-urlencoded",
            documents=[{"email": "a@example.com", "n": "1"}],
        )
        (res,) = await store.enqueue(d)
        event = await store.get(res.id)
        assert event is not None
        assert event.body == b"email=a%40example.com&n=1"
        assert event.document == {"email": "a@example.com", "n": "1"}

    async def test_json_body_with_different_document(self, store: EventStore) -> None:
        """A JSON body whose document differs from it (an unwrapped envelope) reads back right."""
        d = delivery("w1", body=b'{"data": {"a": 1.0}}', documents=[{"a": 1.0}])
        (res,) = await store.enqueue(d)
        event = await store.get(res.id)
        assert event is not None
        assert event.document == {"a": 1.0}
        assert isinstance(event.document["a"], float)

    async def test_duplicate_returns_existing_id_and_stores_nothing(
        self, store: EventStore
    ) -> None:
        """A repeated (endpoint, delivery id) is reported as a duplicate of the first event."""
        (first,) = await store.enqueue(delivery("dup"))
        (again,) = await store.enqueue(delivery("dup", body=b'{"other": 1}'))
        assert again == EnqueueResult(id=first.id, duplicate=True, delivery_id="dup")
        assert len(await store.list()) == 1
        event = await store.get(first.id)
        assert event is not None and event.body != b'{"other": 1}'

    async def test_a_sender_id_holding_a_nul_is_stored_and_deduped(self, store: EventStore) -> None:
        """An id read from a body may hold a NUL (JSON's \\u0000), which PostgreSQL's text
        cannot: ``capped`` hashes it, so every backend stores the event and knows it again."""
        delivery_id = capped("evt\x00one")
        assert delivery_id.startswith("sha256:") and capped("evt\x00one") == delivery_id
        (first,) = await store.enqueue(delivery(delivery_id))
        (again,) = await store.enqueue(delivery(delivery_id))
        assert (first.duplicate, again.duplicate, again.id) == (False, True, first.id)

    async def test_same_id_on_another_endpoint_is_new(self, store: EventStore) -> None:
        """Dedupe is per endpoint: the same delivery id on two endpoints makes two events."""
        (a,) = await store.enqueue(delivery("same", endpoint="one"))
        (b,) = await store.enqueue(delivery("same", endpoint="two"))
        assert not a.duplicate and not b.duplicate and a.id != b.id

    async def test_batch_stores_each_event_with_the_shared_body(self, store: EventStore) -> None:
        """A delivery of N leads becomes N events in order, each seeing the one raw body."""
        body = b'{"entry": ["l1", "l2", "l3"]}'
        d = delivery("l1", "l2", "l3", body=body, documents=[{"n": 1}, {"n": 2}, {"n": 3}])
        results = await store.enqueue(d)
        assert [r.duplicate for r in results] == [False, False, False]
        assert [r.id for r in results] == sorted(r.id for r in results)
        events = [await store.get(r.id) for r in results]
        assert [e.document for e in events if e] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert {e.body for e in events if e} == {body}

    async def test_batch_repeating_an_id_counts_it_once(self, store: EventStore) -> None:
        """Within one delivery a repeated delivery id is stored once and reported a duplicate."""
        results = await store.enqueue(delivery("x", "y", "x"))
        assert results[2] == EnqueueResult(id=results[0].id, duplicate=True, delivery_id="x")
        assert [r.delivery_id for r in results] == ["x", "y", "x"]
        assert len(await store.list()) == 2

    async def test_batch_partly_duplicate(self, store: EventStore) -> None:
        """A batch mixing old and new ids stores only the new ones."""
        (old,) = await store.enqueue(delivery("a"))
        results = await store.enqueue(delivery("a", "b"))
        assert results[0] == EnqueueResult(id=old.id, duplicate=True, delivery_id="a")
        assert not results[1].duplicate
        assert (await store.counts())[State.QUEUED] == 2

    async def test_empty_delivery_stores_nothing(self, store: EventStore) -> None:
        """A delivery without events returns no results and adds no event."""
        assert await store.enqueue(delivery()) == []
        assert await store.list() == []

    async def test_unserialisable_document_is_a_clear_error(self, store: EventStore) -> None:
        """A document JSON cannot hold raises StoreError and stores nothing."""
        with pytest.raises(StoreError, match="cannot be stored as JSON"):
            await store.enqueue(delivery("bad", body=b"{}", documents=[{"when": object()}]))
        assert await store.list() == []


def skim_delivery(
    body: bytes, key: str | None = "event_id", content_type: str = "application/json"
) -> IncomingDelivery:
    """A single-lead delivery whose id the store reads from the body at ``key``."""
    return IncomingDelivery(
        endpoint="typeform",
        received_at=START,
        body=body,
        content_type=content_type,
        headers={"user-agent": "tests"},
        events=(),
        skim=SkimId(key),
    )


async def submitted(store: EventStore, d: IncomingDelivery) -> Any:
    """What ``store.submit`` tells for ``d`` (results, or the exception that failed it)."""
    assert isinstance(store, Submits)
    told: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    store.submit(d, lambda outcome: None if told.done() else told.set_result(outcome))
    return await asyncio.wait_for(told, 10)


class TestSubmit:
    async def test_submit_tells_what_enqueue_returns(self, store: EventStore) -> None:
        """``submit`` (ingest's way in: no coroutine of the caller's) tells what ``enqueue``
        returns: a new event, its duplicate, a skimmed id, BodyNotSkimmed for a body the skim
        cannot vouch for (nothing stored), a delivery of several leads, and nothing at all."""
        (first,) = await submitted(store, delivery("s1"))
        assert first == EnqueueResult(id=first.id, duplicate=False, delivery_id="s1")
        assert await submitted(store, delivery("s1")) == [
            EnqueueResult(id=first.id, duplicate=True, delivery_id="s1")
        ]
        (skimmed,) = await submitted(store, skim_delivery(b'{"event_id": "ev-9"}'))
        assert (skimmed.delivery_id, skimmed.duplicate) == ("ev-9", False)
        refused = await submitted(store, skim_delivery(b'{"event_id": "x", '))
        assert isinstance(refused, BodyNotSkimmed)
        two = await submitted(store, delivery("b1", "b2"))
        assert [(r.delivery_id, r.duplicate) for r in two] == [("b1", False), ("b2", False)]
        nothing = IncomingDelivery("typeform", START, b"[]", "application/json", {}, ())
        assert await submitted(store, nothing) == []
        stored = sorted(e.delivery_id for e in await store.list())
        assert stored == ["b1", "b2", "ev-9", "s1"]

    async def test_concurrent_submits_are_each_told_once(self, store: EventStore) -> None:
        """Fifty submits in one loop iteration (as a burst of webhooks is read): each is told
        its own result, once."""
        told: list[tuple[str, Any]] = []
        assert isinstance(store, Submits)

        def teller(name: str) -> Callable[[Any], None]:
            return lambda outcome: told.append((name, outcome))

        for i in range(50):
            store.submit(delivery(f"c{i}"), teller(f"c{i}"))
        for _ in range(1000):
            if len(told) >= 50:
                break
            await asyncio.sleep(0.01)
        assert sorted(name for name, _ in told) == sorted(f"c{i}" for i in range(50))
        assert all([r.delivery_id for r in outcome] == [name] for name, outcome in told)


class TestSkimmedEnqueue:
    async def test_the_store_reads_the_id_and_keeps_the_body_as_the_document(
        self, store: EventStore
    ) -> None:
        """A skim delivery becomes one event named by the body's key; its document is the body."""
        body = b'{"event_id": "ev-1", "form_response": {"answers": [1, 2]}}'
        (res,) = await store.enqueue(skim_delivery(body))
        assert res == EnqueueResult(id=res.id, duplicate=False, delivery_id="ev-1")
        event = await store.get(res.id)
        assert event is not None and event.delivery_id == "ev-1"
        assert event.document == orjson.loads(body) and event.body == body
        (again,) = await store.enqueue(skim_delivery(b'{"event_id": "ev-1", "other": true}'))
        assert again == EnqueueResult(id=res.id, duplicate=True, delivery_id="ev-1")

    async def test_ids_follow_the_full_parse_rules(self, store: EventStore) -> None:
        """No key or no value: the body's hash; a number: its text; a huge id: its hash."""
        body = b'{"name": "no id here"}'
        (hashed,) = await store.enqueue(skim_delivery(body, key=None))
        assert hashed.delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()
        (missing,) = await store.enqueue(skim_delivery(b'{"x": 1}'))
        assert missing.delivery_id == "sha256:" + hashlib.sha256(b'{"x": 1}').hexdigest()
        (number,) = await store.enqueue(skim_delivery(b'{"event_id": 42}'))
        assert number.delivery_id == "42"
        long_id = "x" * 500
        (capped,) = await store.enqueue(skim_delivery(b'{"event_id": "%s"}' % long_id.encode()))
        assert capped.delivery_id == "sha256:" + hashlib.sha256(long_id.encode()).hexdigest()
        assert len(await store.list()) == 4

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b'{"event_id": "x", ', "application/json"),  # invalid JSON
            (b'["event_id"]', "application/json"),  # not an object
            (b'{"event_id": "x"}', "application/x-www-form-urlencoded"),
            (b'{"event_id": "x", "n": 12345678901234567890}', "application/json"),  # 20 digits
            (b'{"event_id": "x", "name": "\xff"}', "application/json"),  # not UTF-8
        ],
    )
    async def test_bodies_for_the_full_parser_store_nothing(
        self, store: EventStore, body: bytes, content_type: str
    ) -> None:
        """A body the skim cannot vouch for raises BodyNotSkimmed; nothing is stored."""
        with pytest.raises(BodyNotSkimmed):
            await store.enqueue(skim_delivery(body, content_type=content_type))
        assert await store.list() == []

    async def test_one_refused_body_does_not_hold_up_its_batch(self, store: EventStore) -> None:
        """Concurrent skim deliveries: the refused one raises, the others are stored."""
        bodies = [b'{"event_id": "a"}', b"not json", b'{"event_id": "b"}']
        results = await asyncio.gather(
            *(store.enqueue(skim_delivery(b)) for b in bodies), return_exceptions=True
        )
        assert isinstance(results[1], BodyNotSkimmed)
        assert [r[0].delivery_id for r in (results[0], results[2])] == ["a", "b"]  # type: ignore[index]
        assert len(await store.list()) == 2


class TestClaim:
    async def test_oldest_first_up_to_limit(self, store: EventStore, clock: ManualClock) -> None:
        """claim takes due events in id order, marks them sending and counts the attempt."""
        ids = await ids_of(store, 5)
        first = await store.claim(limit=2, lease=30)
        assert [e.id for e in first] == ids[:2]
        assert all(e.state is State.SENDING and e.attempts == 1 for e in first)
        assert all(e.next_attempt_at == START + 30 for e in first)
        stored = await store.get(ids[0])
        assert stored is not None and stored.state is State.SENDING
        second = await store.claim(limit=10, lease=30)
        assert [e.id for e in second] == ids[2:]
        assert await store.claim(limit=10, lease=30) == []

    async def test_claimed_event_carries_its_data(self, store: EventStore) -> None:
        """A claimed event has its document and body, ready to map."""
        await store.enqueue(delivery("c1"))
        (event,) = await store.claim(limit=1, lease=30)
        assert event.document == {"id": "c1"}
        assert event.body == b'{"id":"c1"}'

    async def test_not_before_due(self, store: EventStore, clock: ManualClock) -> None:
        """A retrying event is claimed only once the clock reaches its next attempt time."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        await store.retry(eid, at=START + 60, error="timeout")
        clock.advance(59)
        assert await store.claim(limit=1, lease=30) == []
        clock.advance(1)
        (event,) = await store.claim(limit=1, lease=30)
        assert (event.id, event.attempts) == (eid, 2)

    async def test_unexpired_lease_is_not_claimed_again(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """An event being sent under a live lease is invisible to other claimers."""
        await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        clock.advance(29.5)
        assert await store.claim(limit=1, lease=30) == []

    async def test_expired_lease_is_claimed_again(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A crashed worker's event (lease expired) is claimed again with one more attempt."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        clock.advance(30)
        (event,) = await store.claim(limit=1, lease=10)
        assert (event.id, event.attempts, event.next_attempt_at) == (eid, 2, START + 40)

    async def test_exclude_targets(self, store: EventStore) -> None:
        """Events routed to a paused target stay put; unrouted and other targets are claimed."""
        a, b, c = await ids_of(store, 3)
        await store.set_route(a, target="paused", mapping="m", lead_keys=[])
        await store.set_route(b, target="ok", mapping="m", lead_keys=[])
        claimed = await store.claim(limit=10, lease=30, exclude_targets={"paused"})
        assert [e.id for e in claimed] == [b, c]
        (later,) = await store.claim(limit=10, lease=30)
        assert later.id == a

    async def test_exclude_unrouted_leaves_an_endpoint_s_unrouted_events(
        self, store: EventStore
    ) -> None:
        """Unrouted events of an endpoint named in exclude_unrouted stay put; its routed ones
        (their lead already read) and other endpoints' are claimed."""
        read, routed = await ids_of(store, 2, endpoint="facebook")
        (other,) = await ids_of(store, 1)
        await store.set_route(routed, target="t", mapping="m", lead_keys=["e:x"])
        claimed = await store.claim(limit=10, lease=30, exclude_unrouted={"facebook"})
        assert [e.id for e in claimed] == [routed, other]
        (later,) = await store.claim(limit=10, lease=30)
        assert later.id == read

    async def test_known_endpoints_leave_what_an_instance_without_it_left(
        self, store: EventStore
    ) -> None:
        """Given known_endpoints, an event of another endpoint that an instance without it
        left (its last error begins with ENDPOINT_ABSENT) stays put: the claimer cannot send
        it either. One of a known endpoint so marked, and another endpoint's event without
        the mark, are claimed; and without known_endpoints every one is."""
        (left,) = await ids_of(store, 1, endpoint="late")
        (known,) = await ids_of(store, 1, endpoint="forms")
        (fresh,) = await ids_of(store, 1, endpoint="new")
        for taken in await store.claim(limit=2, lease=30):
            reason = f"{ENDPOINT_ABSENT}{taken.endpoint!r} is not in this hub's configuration"
            await store.release(taken.id, at=START, reason=reason, lease=taken.lease)
        claimed = await store.claim(limit=10, lease=30, known_endpoints={"forms"})
        assert [e.id for e in claimed] == [known, fresh]
        assert await store.claim(limit=10, lease=30, known_endpoints=["forms", "other"]) == []
        (later,) = await store.claim(limit=10, lease=30, known_endpoints={"late"})
        assert (later.id, later.attempts) == (left, 1)

    async def test_known_endpoints_leave_it_after_an_instance_with_it_routed_it(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """An instance without endpoint ``late`` claims its event once, however often an
        instance with ``late`` then writes a last error of its own: an ordering wait (an
        earlier event of the same lead in flight) twice, then a failed send; nor once that
        instance's lease on it ran out. The event keeps that instance's last error (what an
        operator should read), and the instance with ``late`` claims it every time. (It was
        claimed again after each of them: the mark, the last error, had been overwritten.)"""
        keys = ["email:same@example.com"]
        (first,) = await ids_of(store, 1, endpoint="forms")
        (left,) = await ids_of(store, 1, endpoint="late")
        without, having = {"forms"}, {"forms", "late"}
        in_flight = await store.claim(limit=1, lease=30, known_endpoints=having)
        assert [e.id for e in in_flight] == [first]
        await store.set_route(first, target="t", mapping="m", lead_keys=keys)
        wait = f"waiting for event {first} (same lead) to be sent first"
        claims_without = 0

        async def claim_without() -> None:  # (what the dispatcher does with each: _leave)
            nonlocal claims_without
            for taken in await store.claim(limit=10, lease=30, known_endpoints=without):
                claims_without += 1
                reason = f"{ENDPOINT_ABSENT}{taken.endpoint!r} is not in this hub's configuration"
                await store.release(taken.id, at=clock.time(), reason=reason, lease=taken.lease)

        for outcome in ("ordering", "ordering", "send failed"):
            await claim_without()
            (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
            assert event.id == left
            await store.set_route(left, target="t", mapping="m", lead_keys=keys)
            if outcome == "ordering":
                blocker = await store.blocker(left, keys)
                assert blocker is not None and blocker.id == first
                await store.release(left, at=clock.time() + 0.1, reason=wait, lease=event.lease)
            else:
                await store.retry(left, at=clock.time() + 0.1, error="HTTP 503", lease=event.lease)
            clock.advance(0.1)
        await claim_without()
        assert claims_without == 1
        waiting = await store.get(left)
        assert waiting is not None
        assert (waiting.state, waiting.last_error) == (State.RETRYING, "HTTP 503")
        await store.ack(first, lead_id="lead-1", created=True)
        (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
        assert (event.id, event.attempts) == (left, 2)
        clock.advance(30)  # the instance with late died sending it: its lease ran out
        await claim_without()
        assert claims_without == 1
        (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
        assert (event.id, event.attempts) == (left, 3)

    async def test_known_endpoints_leave_it_once_an_instance_with_it_failed_before_routing(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """An instance without endpoint ``late`` claims its event once, however an instance
        with ``late`` then fails before routing it, each failure's last error replacing the
        mark: a failed preparation (retried), a target its configuration lacks (put back),
        then, its lead's read started, a lease too short for the read (put back) and a
        failed read (retried); nor once that instance died mid-read (its lease ran out). The
        event keeps that instance's last error, and that instance claims it every time. (It
        was claimed again after each of the four failures: 5 claims, not 1.)"""
        (left,) = await ids_of(store, 1, endpoint="late")
        having = {"forms", "late"}
        claimed = await _claims_without_late(store, clock)
        failures = {
            "prepare": "preparing the event failed (KeyError: 'email')",
            "target": "target 'eu' is not in this hub's configuration; waiting for an instance",
            "lease": "a lead read (up to 20 s, twice the endpoint's read_timeout) and 5 s to "
            "spare do not fit in the lease (10 s)",
            "read": "Facebook lead fetch failed: HTTP 500",
        }
        for failure, error in failures.items():
            (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
            assert event.id == left
            if failure in ("lease", "read"):  # (the dispatcher marks it with the claim's routes)
                assert await store.set_routes([], reading=[left]) == []
            if failure in ("prepare", "read"):
                await store.retry(left, at=clock.time() + 0.1, error=error, lease=event.lease)
            else:
                await store.release(left, at=clock.time() + 0.1, reason=error, lease=event.lease)
            clock.advance(0.1)
            claimed += await _claims_without_late(store, clock)
        assert claimed == 1
        failed = await store.get(left)
        assert failed is not None
        assert (failed.state, failed.last_error) == (State.RETRYING, failures["read"])
        (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
        assert await store.set_routes([], reading=[left]) == []
        clock.advance(30)  # the instance with late died reading its lead: its lease ran out
        claimed += await _claims_without_late(store, clock)
        assert claimed == 1
        (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
        assert (event.id, event.attempts) == (left, 4)

    async def test_known_endpoints_leave_an_event_whose_read_an_instance_with_it_started(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """An instance with endpoint ``late`` claimed an event first and started its lead's
        read, then put it back without a last error (no read slot in time, a stop) or died
        mid-read: an instance without ``late`` leaves it alone all the same (it claimed it
        both times). Another ``late`` event, which no instance took up, it claims once, and
        that one's mark keeps it from claiming it again."""
        read, fresh = await ids_of(store, 2, endpoint="late")
        having = {"forms", "late"}
        (event,) = await store.claim(limit=1, lease=30, known_endpoints=having)
        assert event.id == read
        assert await store.set_routes([], reading=[read]) == []
        await store.release(read, at=clock.time(), reason=None, lease=event.lease)
        assert await _claims_without_late(store, clock) == 1  # fresh, only
        (event,) = await store.claim(limit=1, lease=30, known_endpoints=having)
        assert await store.set_routes([], reading=[read]) == []
        clock.advance(30)  # it died reading
        assert await _claims_without_late(store, clock) == 0
        put_back = await store.get(read)
        assert put_back is not None
        assert (put_back.state, put_back.last_error) == (State.SENDING, None)
        marked = await store.get(fresh)
        assert marked is not None and (marked.last_error or "").startswith(ENDPOINT_ABSENT)

    async def test_known_endpoints_claim_a_replayed_event_once_again(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A replay starts an event over: its last error, kept as history, does not keep an
        instance without its endpoint from claiming it once (so that its last error says the
        endpoint is missing, not why it died before), and that claim's mark, or a failure of
        an instance with its endpoint, keeps it from claiming it again."""
        (left,) = await ids_of(store, 1, endpoint="late")
        having = {"forms", "late"}
        (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
        await store.dead(left, error="Facebook lead fetch failed: HTTP 404", lease=event.lease)
        clock.advance(60)
        assert await store.replay(ids=[left]) == 1
        clock.advance(1)
        assert await _claims_without_late(store, clock) == 1
        assert await _claims_without_late(store, clock) == 0
        (event,) = await store.claim(limit=10, lease=30, known_endpoints=having)
        error = "Facebook lead fetch failed: HTTP 500"
        await store.retry(left, at=clock.time(), error=error, lease=event.lease)
        assert await _claims_without_late(store, clock) == 0

    async def test_zero_limit(self, store: EventStore) -> None:
        """A claim for nothing takes nothing."""
        await ids_of(store, 1)
        assert await store.claim(limit=0, lease=30) == []
        assert (await store.counts())[State.QUEUED] == 1


class TestOutcomes:
    async def test_ack(self, store: EventStore) -> None:
        """ack marks delivered with the lead id and created flag, and clears the last error."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        await store.retry(eid, at=START, error="503")
        await store.claim(limit=1, lease=30)
        await store.ack(eid, lead_id="lead-1", created=True)
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.lead_id, event.lead_created) == (State.DELIVERED, "lead-1", True)
        assert event.last_error is None and event.attempts == 2
        assert await store.claim(limit=1, lease=30) == []

    async def test_ack_updated_lead(self, store: EventStore) -> None:
        """An update (not a creation) is recorded as created=False."""
        (eid,) = await ids_of(store, 1)
        await store.ack(eid, lead_id="lead-2", created=False)
        event = await store.get(eid)
        assert event is not None and event.lead_created is False

    async def test_retry(self, store: EventStore) -> None:
        """retry records the error and the next attempt time."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        await store.retry(eid, at=START + 5, error="429 Too Many Requests")
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.next_attempt_at, event.last_error) == (
            State.RETRYING,
            START + 5,
            "429 Too Many Requests",
        )

    async def test_release_gives_the_attempt_back(self, store: EventStore) -> None:
        """release after a first claim returns the event to queued with zero attempts."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        await store.release(eid, at=START + 7, reason="target 'default' paused")
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.attempts, event.next_attempt_at) == (State.QUEUED, 0, START + 7)

    async def test_resume_held_makes_due_what_a_pause_of_those_targets_put_back(
        self, store: EventStore
    ) -> None:
        """resume_held makes due now the waiting events of the targets named whose last error
        is a pause's (PAUSE_HELD), their state and attempts kept; another target's, another
        reason's and a due one are left as they were."""
        held, failed, other, due = await ids_of(store, 4)
        await store.claim(limit=4, lease=30)
        routes = [Route(held, "a", "m", ()), Route(failed, "a", "m", ())]
        routes += [Route(other, "b", "m", ()), Route(due, "a", "m", ())]
        await store.set_routes(routes)
        later = START + 600
        await store.release(held, at=later, reason=f"{PAUSE_HELD}HTTP 401: keys refused")
        await store.retry(failed, at=later, error="HTTP 500: Internal Server Error")
        await store.release(other, at=later, reason=f"{PAUSE_HELD}HTTP 401: keys refused")
        await store.release(due, at=START, reason=f"{PAUSE_HELD}HTTP 401: keys refused")
        assert await store.resume_held(["a"]) == 1
        found = {i: await store.get(i) for i in (held, failed, other, due)}
        assert all(e is not None for e in found.values())
        shown = {i: (e.state, e.attempts, e.next_attempt_at) for i, e in found.items() if e}
        assert shown == {
            held: (State.QUEUED, 0, START),
            failed: (State.RETRYING, 1, later),
            other: (State.QUEUED, 0, later),
            due: (State.QUEUED, 0, START),
        }
        assert await store.resume_held([]) == 0
        assert [e.id for e in await store.claim(limit=4, lease=30)] == [held, due]

    async def test_spans_are_kept_by_kind_and_name_each_with_its_latest_end(
        self, store: EventStore
    ) -> None:
        """keep_spans keeps the spans of each kind and name (a span kept again, by its start,
        gets its new end); kept_spans gives them back per name asked for, of that kind only,
        oldest first, and nothing for a name without any. Only the SPANS_KEPT latest of a kind
        and name stay."""
        assert await store.kept_spans("target", ["a"]) == {}
        await store.keep_spans("target", "a", [(START + 10, START + 70)])
        await store.keep_spans(
            "target", "a", [(START + 10, START + 40), (START + 100, START + 160)]
        )
        await store.keep_spans("target", "b", [(START + 5, START + 6)])
        await store.keep_spans("reads", "a", [(START + 1, START + 2)])
        assert await store.kept_spans("target", ["a", "b", "c"]) == {
            "a": [(START + 10, START + 40), (START + 100, START + 160)],
            "b": [(START + 5, START + 6)],
        }
        assert await store.kept_spans("reads", ["a", "b"]) == {"a": [(START + 1, START + 2)]}
        many = [(START + 1000 + n, START + 1000.5 + n) for n in range(SPANS_KEPT + 3)]
        await store.keep_spans("target", "a", many[:10])
        await store.keep_spans("target", "a", many[10:])
        assert await store.kept_spans("target", ["a"]) == {"a": many[-SPANS_KEPT:]}
        assert await store.kept_spans("target", ["b"]) == {"b": [(START + 5, START + 6)]}
        assert await store.kept_spans("reads", ["a"]) == {"a": [(START + 1, START + 2)]}

    async def test_resume_reads_makes_due_the_failed_reads_of_those_endpoints(
        self, store: EventStore
    ) -> None:
        """resume_reads makes due now the retrying events of the endpoints named that have no
        lead stored (their read failed), their attempts kept, and the queued ones put back
        untried with such an error (a proxy refusing the endpoint's reads held them); one
        whose lead was read (its send failed), one with no lead to read whose send failed (a
        LinkedIn notice of a deleted lead), another endpoint's and a due one are left as they
        were."""
        unread, read = await ids_of(store, 2, endpoint="fb")
        (other,) = await ids_of(store, 1, endpoint="li")
        (due,) = await ids_of(store, 1, endpoint="fb2")
        (deleted,) = await ids_of(store, 1, endpoint="li2")
        (enqueued,) = await store.enqueue(delivery("fb-held", endpoint="fb"))
        held = enqueued.id
        claimed = {e.id: e for e in await store.claim(limit=6, lease=30)}
        await store.set_enrichment(read, {"id": "1"})
        later = START + 600
        # put back untried while a proxy refused the endpoint's reads: queued, the read's error
        proxy = "held, a proxy refusing them, for 10m more: Facebook lead fetch failed: 407"
        await store.release(held, at=later, reason=proxy, lease=claimed[held].lease)
        for eid in (unread, read, other):
            await store.retry(eid, at=later, error="Facebook lead fetch failed: Graph error 190")
        await store.retry(due, at=START, error="Facebook lead fetch failed: Graph error 190")
        await store.retry(deleted, at=later, error="HTTP 503: Service Unavailable")
        assert await store.resume_reads(["fb", "fb2", "li2"]) == 2
        found = {i: await store.get(i) for i in (unread, read, other, due, deleted, held)}
        shown = {i: (e.state, e.attempts, e.next_attempt_at) for i, e in found.items() if e}
        assert shown == {
            unread: (State.RETRYING, 1, START),
            read: (State.RETRYING, 1, later),
            other: (State.RETRYING, 1, later),
            due: (State.RETRYING, 1, START),
            deleted: (State.RETRYING, 1, later),
            held: (State.QUEUED, 0, START),
        }
        assert await store.resume_reads([]) == 0

    async def test_release_after_failed_attempts_is_retrying(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """release of an event that failed before keeps it retrying with the earlier attempts."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        await store.retry(eid, at=START, error="503")
        await store.claim(limit=1, lease=30)
        await store.release(eid, at=START + 1)
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.attempts, event.last_error) == (State.RETRYING, 1, "503")

    async def test_release_of_unclaimed_event_keeps_attempts(self, store: EventStore) -> None:
        """release of an event that is not being sent gives back no attempt it never took."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        await store.retry(eid, at=START + 5, error="503")
        await store.release(eid, at=START + 9)
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.attempts, event.next_attempt_at) == (
            State.RETRYING,
            1,
            START + 9,
        )

    @pytest.mark.parametrize(
        ("method", "state"),
        [("dead", State.DEAD), ("unmatched", State.UNMATCHED), ("skipped", State.SKIPPED)],
    )
    async def test_final_states(self, store: EventStore, method: str, state: State) -> None:
        """dead, unmatched and skipped record the reason and take the event off the queue."""
        (eid,) = await ids_of(store, 1)
        await store.claim(limit=1, lease=30)
        if method == "dead":
            await store.dead(eid, error="MXDuplicateEntryException")
        elif method == "unmatched":
            await store.unmatched(eid, reason="MXDuplicateEntryException")
        else:
            await store.skipped(eid, reason="MXDuplicateEntryException")
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.last_error) == (state, "MXDuplicateEntryException")
        assert await store.claim(limit=1, lease=30) == []
        assert await store.next_due() is None

    async def test_unknown_id_is_an_error(self, store: EventStore) -> None:
        """Changing an event that does not exist raises StoreError naming the id."""
        with pytest.raises(StoreError, match="4242"):
            await store.ack(4242, lead_id=None, created=None)
        with pytest.raises(StoreError, match="4242"):
            await store.set_route(4242, target="t", mapping="m", lead_keys=["k"])
        assert await store.get(4242) is None

    async def test_failed_change_does_not_spoil_others(self, store: EventStore) -> None:
        """One failing write in a concurrent group leaves the other writes committed."""
        (eid,) = await ids_of(store, 1)
        results = await asyncio.gather(
            store.dead(999, error="x"),
            store.dead(eid, error="real"),
            store.enqueue(delivery("after")),
            return_exceptions=True,
        )
        assert isinstance(results[0], StoreError)
        event = await store.get(eid)
        assert event is not None and event.state is State.DEAD
        assert len(await store.list()) == 2


class TestLeases:
    """An outcome written under the lease its event was claimed under applies only while the
    event is still claimed under that lease: a worker whose lease ran out writes nothing."""

    async def test_the_event_s_lease_is_its_lease_end_while_sending(
        self, store: EventStore
    ) -> None:
        """claim returns events whose ``lease`` is their lease's end; others have none."""
        (eid,) = await ids_of(store, 1)
        queued = await store.get(eid)
        assert queued is not None and queued.lease is None
        (claimed,) = await store.claim(limit=1, lease=30)
        assert claimed.lease == START + 30

    async def test_every_outcome_under_a_lost_lease_writes_nothing(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Claimed, the lease runs out, another worker claims it: the first one's outcomes all
        raise LeaseLost and leave the event as the second one has it."""
        (eid,) = await ids_of(store, 1)
        (first,) = await store.claim(limit=1, lease=30)
        clock.advance(31)
        (second,) = await store.claim(limit=1, lease=30)
        assert second.lease == START + 61
        stale = first.lease
        writes = [
            store.ack(eid, lead_id="L", created=True, lease=stale),
            store.retry(eid, at=START + 100, error="500", lease=stale),
            store.release(eid, at=START, reason="paused", lease=stale),
            store.dead(eid, error="x", lease=stale),
            store.unmatched(eid, reason="x", lease=stale),
            store.skipped(eid, reason="x", lease=stale),
        ]
        for write in writes:
            with pytest.raises(LeaseLost, match=f"Event {eid} is no longer under the lease"):
                await write
        assert await store.ack_many([Ack(eid, "L", True, stale)]) == [eid]
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.attempts, event.lead_id) == (State.SENDING, 2, None)
        assert event.lease == second.lease
        # the current owner's outcome applies
        await store.ack(eid, lead_id="L2", created=False, lease=second.lease)
        event = await store.get(eid)
        assert event is not None and (event.state, event.lead_id) == (State.DELIVERED, "L2")

    async def test_a_batch_ack_under_a_lost_lease_is_told_even_at_the_winner_s_instant(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """The lease ran out and another worker claimed the event and delivered it; the first
        worker's batch of acks, written at the very same clock reading, names it as not
        written (its lead id is not kept): its ``event_lease_lost`` line depends on it."""
        (eid,) = await ids_of(store, 1)
        (first,) = await store.claim(limit=1, lease=30)
        clock.advance(31)
        (second,) = await store.claim(limit=1, lease=30)
        assert await store.ack_many([Ack(eid, "L2", False, second.lease)]) == []
        assert await store.ack_many([Ack(eid, "L1", True, first.lease)]) == [eid]
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.lead_id, event.lead_created) == (State.DELIVERED, "L2", False)

    async def test_a_batch_ack_keeps_each_call_s_time_never_a_later_one(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Deliveries written behind later sends keep the time their call ended, each its
        own, not the time of the write; one without it is delivered as of the write, and a
        time later than the write's is taken as the write's (the store's record of when
        leads went out never runs ahead of it)."""
        ids = await ids_of(store, 3)
        claimed = await store.claim(limit=3, lease=30)
        lease = claimed[0].lease
        clock.advance(2)
        acks = [
            Ack(ids[0], "L0", True, lease, at=START + 0.25),
            Ack(ids[1], "L1", True, lease, at=START + 1.5),
            Ack(ids[2], "L2", True, lease),
        ]
        assert await store.ack_many(acks) == []
        times = []
        for eid in ids:
            event = await store.get(eid)
            assert event is not None and event.state == State.DELIVERED
            times.append(event.updated_at)
        assert times == [START + 0.25, START + 1.5, START + 2]
        (late,) = await ids_of(store, 1, endpoint="late")
        (again,) = await store.claim(limit=1, lease=30)
        assert await store.ack_many([Ack(late, "L3", True, again.lease, at=START + 60)]) == []
        event = await store.get(late)
        assert event is not None and event.updated_at == START + 2

    async def test_a_finished_event_takes_no_outcome_under_its_old_lease(
        self, store: EventStore
    ) -> None:
        """Once delivered, a late retry under the same lease (a duplicate outcome) is refused;
        without a lease (the CLI), writes apply as before."""
        (eid,) = await ids_of(store, 1)
        (claimed,) = await store.claim(limit=1, lease=30)
        assert await store.ack_many([Ack(eid, "L", True, claimed.lease)]) == []
        with pytest.raises(LeaseLost):
            await store.retry(eid, at=START + 5, error="late", lease=claimed.lease)
        await store.dead(eid, error="by hand")
        event = await store.get(eid)
        assert event is not None and event.state == State.DEAD

    async def test_an_unknown_event_is_still_not_found(self, store: EventStore) -> None:
        """With a lease, a missing event is reported as missing, not as a lost lease."""
        with pytest.raises(StoreError, match="No event with id 999") as caught:
            await store.ack(999, lead_id=None, created=None, lease=START + 30)
        assert not isinstance(caught.value, LeaseLost)


class TestRouteAndOrdering:
    async def test_set_route_and_enrichment(self, store: EventStore) -> None:
        """The route, lead keys and enrichment read back as recorded."""
        (eid,) = await ids_of(store, 1)
        await store.set_route(eid, target="default", mapping="tf-demo", lead_keys=["e:a", "p:1"])
        await store.set_enrichment(eid, {"field_data": [{"name": "email", "values": ["a"]}]})
        event = await store.get(eid)
        assert event is not None
        assert (event.target, event.mapping) == ("default", "tf-demo")
        assert set(event.lead_keys) == {"e:a", "p:1"}
        assert event.enrichment == {"field_data": [{"name": "email", "values": ["a"]}]}

    async def test_set_route_replaces_keys(self, store: EventStore) -> None:
        """Routing again replaces the lead keys instead of adding to them."""
        (eid,) = await ids_of(store, 1)
        await store.set_route(eid, target="t", mapping="m", lead_keys=["old"])
        await store.set_route(eid, target="t", mapping="m", lead_keys=["new"])
        event = await store.get(eid)
        assert event is not None and event.lead_keys == ("new",)

    async def test_blocker_is_earliest_pending_sharer(self, store: EventStore) -> None:
        """A later event for the same lead is blocked by the earliest pending one sharing a key."""
        a, b, c, d = await ids_of(store, 4)
        await store.set_route(a, target="t", mapping="m", lead_keys=["e:x"])
        await store.set_route(b, target="t", mapping="m", lead_keys=["p:1"])
        await store.set_route(c, target="t", mapping="m", lead_keys=["e:x", "p:1"])
        await store.set_route(d, target="t", mapping="m", lead_keys=["e:other"])
        blocking = await store.blocker(c, ["e:x", "p:1"])
        assert blocking is not None and blocking.id == a
        assert await store.blocker(a, ["e:x"]) is None  # later events never block earlier ones
        assert await store.blocker(d, ["e:other"]) is None
        assert await store.blocker(c, []) is None

    async def test_finished_events_do_not_block(self, store: EventStore) -> None:
        """Delivered or dead earlier events no longer hold back a later one."""
        a, b, c = await ids_of(store, 3)
        for eid in (a, b, c):
            await store.set_route(eid, target="t", mapping="m", lead_keys=["e:x"])
        await store.ack(a, lead_id="L", created=True)
        blocking = await store.blocker(c, ["e:x"])
        assert blocking is not None and blocking.id == b
        await store.dead(b, error="bad")
        assert await store.blocker(c, ["e:x"]) is None

    async def test_sending_and_retrying_events_block(self, store: EventStore) -> None:
        """An earlier event that is being sent or waiting to retry still blocks."""
        a, b = await ids_of(store, 2)
        for eid in (a, b):
            await store.set_route(eid, target="t", mapping="m", lead_keys=["e:x"])
        await store.claim(limit=1, lease=30)
        blocking = await store.blocker(b, ["e:x"])
        assert blocking is not None and blocking.state is State.SENDING
        await store.retry(a, at=START + 100, error="503")
        blocking = await store.blocker(b, ["e:x"])
        assert blocking is not None and blocking.state is State.RETRYING

    async def test_a_claimed_event_not_yet_routed_holds_every_later_one_back(
        self, store: EventStore, other_process: EventStore
    ) -> None:
        """Between a claim and its routes an event's lead is unknown: a later event of any
        lead, checked by another process, is held back by it until its route is recorded."""
        a, b, c = await ids_of(store, 3)
        (claimed,) = await store.claim(limit=1, lease=30)
        assert claimed.id == a
        await other_process.set_routes([Route(b, "t", "m", ("e:b",)), Route(c, "t", "m", ())])
        blocking = await other_process.blocker(b, ["e:b"])
        assert blocking is not None and blocking.id == a
        assert (blocking.state, blocking.target, blocking.lead_keys) == (State.SENDING, None, ())
        assert await other_process.blocker(c, []) is None  # no key: nothing to wait for
        await store.set_routes([Route(a, "t", "m", ("e:a",))])
        assert await other_process.blocker(b, ["e:b"]) is None

    async def test_a_claim_left_unrouted_past_the_grace_holds_none_back(
        self, store: EventStore, other_process: EventStore, clock: ManualClock
    ) -> None:
        """A process killed between its claim and its routes leaves an unrouted event
        'sending' until its lease ends. Its lead is unknown, so for a while it holds back a
        later event of any lead (the routes may be on their way); past ROUTING_GRACE it no
        longer does, and the others (or the hub restarted after the kill) send theirs
        instead of waiting out the whole lease."""
        first, later = await ids_of(store, 2)
        assert [e.id for e in await store.claim(limit=1, lease=60)] == [first]
        await other_process.set_routes([Route(later, "t", "m", ("e:later",))])
        held = await other_process.blocker(later, ["e:later"])
        assert held is not None and held.id == first
        clock.advance(ROUTING_GRACE + 1)
        assert await other_process.blocker(later, ["e:later"]) is None
        found = await other_process.get(first)
        assert found is not None and found.state is State.SENDING  # its lease still runs

    async def test_a_keyed_blocker_earlier_than_the_unrouted_one_is_the_answer(
        self, store: EventStore
    ) -> None:
        """The blocker is the earliest of the two kinds: here the same lead's pending event."""
        a, b, c = await ids_of(store, 3)
        await store.set_routes([Route(a, "t", "m", ("e:x",))])
        await store.claim(limit=2, lease=30)  # a (routed) and b (not yet)
        found = await store.blockers([(c, ["e:x"]), (c + 1, ["e:y"])])
        assert {k: v.id for k, v in found.items()} == {c: a, c + 1: b}

    async def test_unrouted_events_block_only_while_claimed(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """An unrouted event waiting in the queue (never claimed, or put back before it was
        routed) holds nothing back: only a claim makes its lead about to be decided."""
        a, b = await ids_of(store, 2)
        await store.set_routes([Route(b, "t", "m", ("e:b",))])
        assert await store.blocker(b, ["e:b"]) is None
        (claimed,) = await store.claim(limit=1, lease=30)
        assert (await store.blocker(b, ["e:b"])) == await store.get(a)
        await store.release(a, at=START + 5, lease=claimed.lease)
        assert await store.blocker(b, ["e:b"]) is None

    async def test_an_event_awaiting_its_api_read_holds_none_back(
        self, store: EventStore, other_process: EventStore
    ) -> None:
        """Marked as awaiting an API read (its routes written meanwhile with the others of its
        batch), a claimed event holds back no later one: not while read, not while its read
        is retried, not when claimed again. Once routed, it blocks by its own keys."""
        a, b = await ids_of(store, 2)
        (claimed,) = await store.claim(limit=1, lease=30)
        assert await store.set_routes([], reading=[a]) == []
        await other_process.set_routes([Route(b, "t", "m", ("e:x",))])
        assert await other_process.blocker(b, ["e:x"]) is None
        await store.retry(a, at=START, error="Graph timed out", lease=claimed.lease)
        assert await other_process.blocker(b, ["e:x"]) is None
        (again,) = await store.claim(limit=1, lease=30)
        assert again.id == a
        assert await other_process.blocker(b, ["e:x"]) is None
        await store.set_routes([Route(a, "t", "m", ("e:x",))])
        blocking = await other_process.blocker(b, ["e:x"])
        assert blocking is not None and blocking.id == a

    async def test_routes_and_read_marks_in_one_write(self, store: EventStore) -> None:
        """set_routes records routes and marks reads together; unknown ids are named."""
        a, b, c = await ids_of(store, 3)
        await store.claim(limit=3, lease=30)
        missing = await store.set_routes(
            [Route(a, "t", "m", ("e:a",)), Route(999, "t", "m", ())], reading=[b]
        )
        assert missing == [999]
        blocking = await store.blocker(c + 1, ["e:a"])
        assert blocking is not None and blocking.id == a
        blocking = await store.blocker(c + 1, ["e:z"])
        assert blocking is not None and blocking.id == c  # b awaits its read; c is unknown


class TestReplay:
    async def finished(self, store: EventStore) -> dict[str, int]:
        """One event in each state, by name."""
        names = ["queued", "delivered", "dead", "unmatched", "skipped", "dead2"]
        ids = dict(zip(names, await ids_of(store, len(names)), strict=True))
        await store.ack(ids["delivered"], lead_id="L", created=True)
        await store.dead(ids["dead"], error="MX boom")
        await store.dead(ids["dead2"], error="MX boom 2")
        await store.unmatched(ids["unmatched"], reason="no mapping")
        await store.skipped(ids["skipped"], reason="test lead")
        return ids

    async def test_replays_only_replayable_states(self, store: EventStore) -> None:
        """With no selector, every dead/unmatched/skipped event is requeued and nothing else."""
        ids = await self.finished(store)
        assert await store.replay() == 4
        counts = await store.counts()
        assert counts[State.QUEUED] == 5 and counts[State.DELIVERED] == 1
        delivered = await store.get(ids["delivered"])
        assert delivered is not None and delivered.lead_id == "L"

    async def test_counts_of_named_states_agree_with_the_whole_count(
        self, store: EventStore
    ) -> None:
        """counts(states) counts those states only (each through its index), as counts() does;
        a state without events is 0."""
        await self.finished(store)
        await store.claim(limit=1, lease=30)  # the queued one: sending
        every = await store.counts()
        assert every == {
            **dict.fromkeys(State, 0),
            State.SENDING: 1,
            State.DELIVERED: 1,
            State.DEAD: 2,
            State.UNMATCHED: 1,
            State.SKIPPED: 1,
        }
        some = [State.DEAD, State.QUEUED, State.SENDING]
        assert await store.counts(some) == {state: every[state] for state in some}
        assert await store.counts([State.DELIVERED]) == {State.DELIVERED: 1}
        assert await store.counts([]) == {}

    async def test_by_state(self, store: EventStore) -> None:
        """replay(state=dead) requeues only dead events."""
        ids = await self.finished(store)
        assert await store.replay(state=State.DEAD) == 2
        unmatched = await store.get(ids["unmatched"])
        assert unmatched is not None and unmatched.state is State.UNMATCHED

    async def test_by_ids(self, store: EventStore) -> None:
        """replay(ids=...) requeues the named events that are replayable, ignoring the rest."""
        ids = await self.finished(store)
        chosen = [ids["dead"], ids["skipped"], ids["delivered"], 9999]
        assert await store.replay(ids=chosen) == 2
        assert await store.replay(ids=[]) == 0

    async def test_by_endpoint_and_state_together(self, store: EventStore) -> None:
        """Selectors combine: only events matching all of them are requeued."""
        await self.finished(store)
        (other,) = await ids_of(store, 1, endpoint="google")
        await store.dead(other, error="x")
        assert await store.replay(endpoint="google", state=State.UNMATCHED) == 0
        assert await store.replay(endpoint="google") == 1
        event = await store.get(other)
        assert event is not None and event.state is State.QUEUED

    async def test_resets_attempts_and_route_keeps_enrichment(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A replayed event starts over (due now, no attempts, no route), keeping its enrichment."""
        (eid,) = await ids_of(store, 1)
        await store.set_enrichment(eid, {"id": "graph-lead"})
        await store.claim(limit=1, lease=30)
        await store.set_route(eid, target="t", mapping="m", lead_keys=["e:x"])
        await store.dead(eid, error="MXInvalidEmail")
        clock.advance(3600)
        assert await store.replay(ids=[eid]) == 1
        event = await store.get(eid)
        assert event is not None
        assert (event.state, event.attempts, event.next_attempt_at) == (
            State.QUEUED,
            0,
            START + 3600,
        )
        assert (event.target, event.mapping, event.lead_keys) == (None, None, ())
        assert event.enrichment == {"id": "graph-lead"}
        assert event.last_error == "MXInvalidEmail"  # kept as history until the next outcome
        (claimed,) = await store.claim(limit=1, lease=30)
        assert claimed.id == eid

    async def test_the_give_up_clock_starts_again_at_the_replay(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A replayed event is queued since the replay (requeued_at), not since receipt: its
        retry schedule's give_up_after counts from there. Never replayed, from receipt."""
        a, b = await ids_of(store, 2)
        await store.dead(a, error="gave up")
        clock.advance(5 * DAY)
        assert await store.replay(ids=[a]) == 1
        clock.advance(60)
        claimed = {e.id: e for e in await store.claim(limit=2, lease=30)}
        assert (claimed[a].received_at, claimed[a].requeued_at) == (START, START + 5 * DAY)
        assert claimed[a].queued_since == START + 5 * DAY
        assert (claimed[b].requeued_at, claimed[b].queued_since) == (None, START)
        assert await store.get(a) == claimed[a]

    async def test_a_replayed_event_awaiting_a_read_is_marked_again_by_its_next_claim(
        self, store: EventStore
    ) -> None:
        """Replay clears the read mark with the route: claimed again, the event holds later
        ones back until the dispatcher routes it or marks it again."""
        a, b = await ids_of(store, 2)
        await store.claim(limit=1, lease=30)
        await store.set_routes([], reading=[a])
        await store.dead(a, error="Graph: no such lead")
        await store.replay(ids=[a])
        await store.set_routes([Route(b, "t", "m", ("e:b",))])
        await store.claim(limit=1, lease=30)
        blocking = await store.blocker(b, ["e:b"])
        assert blocking is not None and blocking.id == a

    async def test_rejects_non_replayable_state(self, store: EventStore) -> None:
        """Asking to replay queued or sending events is an error, not a silent no-op."""
        for state in (State.QUEUED, State.SENDING):
            with pytest.raises(StoreError, match=state.value):
                await store.replay(state=state)
            with pytest.raises(StoreError, match=state.value):
                await store.replay(state=state, dry_run=True)

    async def test_retrying_events_only_when_named_and_then_due_now(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A retrying event is left to its schedule by a replay that does not name its state;
        ``state=retrying`` makes it due now with its schedule started over (no attempts, the
        give-up clock from the replay), and takes neither a queued nor a sending event."""
        a, b, c = await ids_of(store, 3)
        await store.claim(limit=1, lease=30)
        await store.retry(a, at=START + 3600, error="HTTP 503: busy")
        (sending,) = await store.claim(limit=1, lease=30)
        assert sending.id == b  # c stays queued
        selectors: list[dict[str, Any]] = [{}, {"ids": [a]}, {"endpoint": "typeform"}]
        for selector in [*selectors, {"since": START}]:
            assert await store.replay(**selector) == 0, selector
        clock.advance(60)
        assert await store.replay(state=State.RETRYING, dry_run=True) == 1
        assert await store.replay(state=State.RETRYING, ids=[a, b, c]) == 1
        event = await store.get(a)
        assert event is not None
        assert (event.state, event.attempts, event.next_attempt_at, event.requeued_at) == (
            State.QUEUED,
            0,
            START + 60,
            START + 60,
        )
        assert [e.state for e in [await store.get(b), await store.get(c)] if e] == [
            State.SENDING,
            State.QUEUED,
        ]
        (claimed,) = await store.claim(limit=1, lease=30)  # due now, not in an hour
        assert (claimed.id, claimed.attempts) == (a, 1)

    async def test_delivered_events_only_when_named(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A delivered event is never taken by a replay that does not name its state (no
        selector, its id, its endpoint, a dry run); named, it is requeued as a dead one is:
        due now, no attempts, route, lead id or lead keys, its give-up clock from the replay."""
        a, b = await ids_of(store, 2)
        (claimed,) = await store.claim(limit=1, lease=30)
        await store.set_routes([Route(a, "t", "m", ("e:x",))])
        await store.ack(a, lead_id="L", created=True, lease=claimed.lease)
        delivered = await store.get(a)
        assert delivered is not None and delivered.lead_keys == ("e:x",)
        selectors: list[dict[str, Any]] = [{}, {"ids": [a]}, {"endpoint": "typeform"}]
        for selector in [*selectors, {"since": START}]:
            assert await store.replay(**selector, dry_run=True) == 0, selector
            assert await store.replay(**selector) == 0, selector
        assert await store.get(a) == delivered
        clock.advance(5 * DAY)
        assert await store.replay(state=State.DELIVERED, dry_run=True) == 1
        assert await store.get(a) == delivered
        assert await store.replay(state=State.DELIVERED, ids=[a, b]) == 1
        event = await store.get(a)
        assert event is not None
        assert (event.state, event.attempts, event.next_attempt_at) == (
            State.QUEUED,
            0,
            START + 5 * DAY,
        )
        assert (event.requeued_at, event.queued_since) == (START + 5 * DAY, START + 5 * DAY)
        assert (event.target, event.mapping, event.lead_keys) == (None, None, ())
        assert (event.lead_id, event.lead_created, event.last_error) == (None, None, None)
        assert await store.replay(state=State.DELIVERED) == 0  # queued now: not again

    async def test_a_resent_delivered_event_goes_through_ordering_and_is_delivered_again(
        self, store: EventStore
    ) -> None:
        """Requeued, a delivered event is claimed again in id order, holds a later event of
        its lead back once routed (and while claimed unrouted), as any pending event does,
        and its new outcome is written under its new lease."""
        a, b = await ids_of(store, 2)
        (first,) = await store.claim(limit=1, lease=30)
        await store.set_routes([Route(a, "t", "m", ("e:x",))])
        await store.ack(a, lead_id="L", created=True, lease=first.lease)
        assert await store.blocker(b, ["e:x"]) is None  # delivered: holds nothing back
        assert await store.replay(state=State.DELIVERED) == 1
        assert await store.blocker(b, ["e:x"]) is None  # queued, unrouted, unclaimed
        (again,) = await store.claim(limit=1, lease=30)
        assert (again.id, again.attempts) == (a, 1)
        blocking = await store.blocker(b, ["e:x"])
        assert blocking is not None and blocking.id == a  # claimed, lead not known yet
        await store.set_routes([Route(a, "t", "m2", ("e:x",))])
        blocking = await store.blocker(b, ["e:x"])
        assert blocking is not None and blocking.id == a  # the same lead, pending
        await store.ack(a, lead_id="L", created=False, lease=again.lease)
        assert await store.blocker(b, ["e:x"]) is None
        event = await store.get(a)
        assert event is not None
        assert (event.state, event.mapping, event.lead_id, event.lead_created) == (
            State.DELIVERED,
            "m2",
            "L",
            False,
        )

    async def test_since_takes_events_received_then_or_later(self, store: EventStore) -> None:
        """since= keeps every selection to events received at that time or later (the
        bound included), delivered ones too when named."""
        old = await self.finished(store)  # all received at START
        recent = {}
        for name in ("dead", "delivered", "skipped", "queued"):
            (res,) = await store.enqueue(delivery(f"new-{name}", received_at=START + DAY))
            recent[name] = res.id
        await store.dead(recent["dead"], error="x")
        await store.ack(recent["delivered"], lead_id="L2", created=True)
        await store.skipped(recent["skipped"], reason="test lead")
        since = START + DAY
        assert await store.replay(since=since, ids=[old["dead"], recent["queued"]]) == 0
        assert await store.replay(since=since, state=State.DELIVERED, ids=[old["delivered"]]) == 0
        assert await store.replay(since=since, endpoint="google") == 0
        assert await store.replay(since=since, state=State.DELIVERED) == 1
        assert await store.replay(since=since) == 2
        after = {e.id: e.state for e in await store.list(limit=100)}
        assert [i for i, state in after.items() if state is not State.QUEUED] == sorted(
            (old[n] for n in ("delivered", "dead", "unmatched", "skipped", "dead2")),
            reverse=True,
        )
        assert await store.replay(since=START, state=State.DEAD) == 2

    async def test_a_dry_run_counts_what_replay_then_requeues(self, store: EventStore) -> None:
        """For each selection (state, ids, endpoint, since, each alone and together), the
        dry run's count is what the replay right after it requeues."""
        old = await self.finished(store)
        (google,) = await ids_of(store, 1, endpoint="google")
        await store.ack(google, lead_id="G", created=True)
        recent = []
        for name in ("dead", "delivered", "unmatched"):
            (res,) = await store.enqueue(delivery(f"new-{name}", received_at=START + DAY))
            recent.append(res.id)
        await store.dead(recent[0], error="x")
        await store.ack(recent[1], lead_id="L2", created=True)
        await store.unmatched(recent[2], reason="no mapping")
        selections: list[dict[str, Any]] = [
            {"since": START + DAY, "ids": [recent[0], recent[1], old["dead"]]},
            {"state": State.DELIVERED, "endpoint": "typeform", "since": START + DAY},
            {"state": State.UNMATCHED},
            {"ids": [old["delivered"], old["skipped"]]},
            {"state": State.DELIVERED},
            {},
        ]
        expected = [1, 1, 2, 1, 2, 2]
        for selection, count in zip(selections, expected, strict=True):
            assert await store.replay(**selection, dry_run=True) == count, selection
            assert await store.replay(**selection) == count, selection
        assert await store.replay(state=State.DELIVERED, dry_run=True) == 0


class TestPurge:
    async def finished(self, store: EventStore) -> dict[str, int]:
        """One event in each state, by name, all last changed at START."""
        return await TestReplay().finished(store)

    async def test_deletes_finished_events_last_changed_before_the_cutoff(
        self, store: EventStore, clock: ManualClock, store_url: str
    ) -> None:
        """By default delivered and skipped events older than the cut-off go, with their
        delivery rows; dead, unmatched, pending and newer events stay."""
        ids = await self.finished(store)
        clock.advance(10 * DAY)
        (recent,) = await ids_of(store, 1, endpoint="later")
        await store.ack(recent, lead_id="L2", created=False)
        purged = await store.purge(before=clock.time() - DAY)
        assert purged == Purged(events=2, deliveries=2)
        assert await store.get(ids["delivered"]) is None
        assert await store.get(ids["skipped"]) is None
        for name in ("queued", "dead", "dead2", "unmatched"):
            kept = await store.get(ids[name])
            assert kept is not None and kept.body  # its delivery row is still there
        assert await store.get(recent) is not None
        assert await table_rows(store_url) == {"deliveries": 5, "events": 5, "lead_keys": 0}

    async def test_named_states_only(self, store: EventStore, clock: ManualClock) -> None:
        """Dead and unmatched events go when named, and then only they do."""
        ids = await self.finished(store)
        clock.advance(DAY)
        purged = await store.purge(before=clock.time(), states=[State.DEAD, State.UNMATCHED])
        assert purged == Purged(events=3, deliveries=3)
        counts = await store.counts()
        assert (counts[State.DEAD], counts[State.UNMATCHED]) == (0, 0)
        assert (counts[State.DELIVERED], counts[State.SKIPPED], counts[State.QUEUED]) == (1, 1, 1)
        assert await store.get(ids["delivered"]) is not None

    async def test_pending_states_are_refused(self, store: EventStore, clock: ManualClock) -> None:
        """Naming a pending state is an error, and nothing is deleted."""
        await self.finished(store)
        clock.advance(DAY)
        for state in (State.QUEUED, State.SENDING, State.RETRYING):
            with pytest.raises(StoreError, match=f"not '{state.value}'"):
                await store.purge(before=clock.time(), states=[State.DELIVERED, state])
        with pytest.raises(StoreError, match="at least one state"):
            await store.purge(before=clock.time(), states=[])
        assert sum((await store.counts()).values()) == 6

    async def test_cutoff_is_the_last_change(self, store: EventStore, clock: ManualClock) -> None:
        """An event received long ago but delivered recently is kept: its age counts from
        its last change, not from its arrival."""
        old, late = await ids_of(store, 2)
        await store.ack(old, lead_id="L1", created=True)
        clock.advance(10 * DAY)
        await store.ack(late, lead_id="L2", created=True)
        assert await store.purge(before=clock.time() - DAY) == Purged(events=1, deliveries=1)
        assert await store.get(old) is None
        assert await store.get(late) is not None

    async def test_by_endpoint(self, store: EventStore, clock: ManualClock) -> None:
        """With an endpoint, only that endpoint's events go."""
        (tf,) = await ids_of(store, 1, endpoint="typeform")
        (gg,) = await ids_of(store, 1, endpoint="google")
        for eid in (tf, gg):
            await store.ack(eid, lead_id="L", created=True)
        clock.advance(DAY)
        purged = await store.purge(before=clock.time(), endpoint="google")
        assert purged == Purged(events=1, deliveries=1)
        assert await store.get(gg) is None
        assert await store.get(tf) is not None

    async def test_a_delivery_stays_while_any_of_its_events_does(
        self, store: EventStore, clock: ManualClock, store_url: str
    ) -> None:
        """A delivery of several leads keeps its row (the raw body) until its last event
        goes, and the lead keys go with their events."""
        body = b'{"entry": ["a", "b", "c"]}'
        a, b, c = (r.id for r in await store.enqueue(delivery("a", "b", "c", body=body)))
        for eid, key in ((a, "e:a"), (b, "e:b"), (c, "e:c")):
            await store.set_route(eid, target="t", mapping="m", lead_keys=[key, "p:1"])
        await store.ack(a, lead_id="LA", created=True)
        await store.ack(b, lead_id="LB", created=True)
        await store.dead(c, error="MXDuplicateEntry")
        clock.advance(DAY)
        assert await store.purge(before=clock.time()) == Purged(events=2, deliveries=0)
        left = await store.get(c)
        assert left is not None and left.body == body and set(left.lead_keys) == {"e:c", "p:1"}
        assert await table_rows(store_url) == {"deliveries": 1, "events": 1, "lead_keys": 2}
        purged = await store.purge(before=clock.time(), states=[State.DEAD])
        assert purged == Purged(events=1, deliveries=1)
        assert await table_rows(store_url) == {"deliveries": 0, "events": 0, "lead_keys": 0}

    async def test_dry_run_counts_and_deletes_nothing(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A dry run answers how many events would go, and leaves every one in place."""
        ids = await self.finished(store)
        clock.advance(DAY)
        assert await store.purge(before=clock.time(), dry_run=True) == Purged(2, 0)
        assert await store.get(ids["delivered"]) is not None
        assert sum((await store.counts()).values()) == 6
        assert await store.purge(before=clock.time()) == Purged(2, 2)

    async def test_walks_the_whole_table_in_steps(
        self, store: EventStore, clock: ManualClock, store_url: str
    ) -> None:
        """More events than one step of the walk (PURGE_WINDOW) all go, the pending ones
        among them stay, and so does every event received after the cut-off."""
        leads = [f"lead-{i}" for i in range(50)]
        ids: list[int] = []
        for n in range(50):  # 2,500 events in 50 deliveries of 50 leads
            results = await store.enqueue(delivery(*(f"{n}-{x}" for x in leads)))
            ids.extend(r.id for r in results)
        assert len(ids) > 2 * PURGE_WINDOW
        keep = set(ids[1234::250])  # a pending event in some deliveries
        await store.ack_many([Ack(eid, "L", False) for eid in ids if eid not in keep])
        clock.advance(DAY)
        later = delivery("after", received_at=clock.time())
        (after,) = await store.enqueue(later)
        await store.ack(after.id, lead_id="L", created=False)
        cutoff = clock.time() + 1  # the newest event too was last changed before it
        purged = await store.purge(before=cutoff)
        assert purged.events == len(ids) - len(keep) + 1
        assert purged.deliveries == 50 - len(keep) + 1
        assert {e.id for e in await store.list(limit=100)} == keep
        rows = await table_rows(store_url)
        assert rows == {"deliveries": len(keep), "events": len(keep), "lead_keys": 0}

    async def test_events_after_a_clock_set_back_from_far_ahead_are_purged_in_time(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """The clock was a year ahead while more than a step's worth of events came (received
        and delivered "next year"), then set right. The walk in id order meets those events'
        steps after the old ones, each received after the cut-off: it stopped there, and the
        events that came after the clock was set right were not purged for a year. Now it goes
        on when the newest event was received before such a step (the clock went back after
        it): those events go in time; the ones stamped next year stay until then."""
        (old,) = await store.enqueue(delivery("old", received_at=clock.time()))
        await store.ack(old.id, lead_id="L", created=False)
        clock.step(365 * DAY)
        leads = [f"lead-{i}" for i in range(50)]
        ahead: list[int] = []
        for n in range(50):  # 2,500 events: a step of the walk holds only events of theirs
            batch = delivery(*(f"{n}-{x}" for x in leads), received_at=clock.time())
            ahead.extend(r.id for r in await store.enqueue(batch))
        assert len(ahead) > 2 * PURGE_WINDOW
        await store.ack_many([Ack(eid, "L", False) for eid in ahead])
        clock.step(-365 * DAY + DAY)  # set right, a day after the old event
        (after,) = await store.enqueue(delivery("after", received_at=clock.time()))
        await store.ack(after.id, lead_id="L", created=False)
        clock.advance(DAY)
        purged = await store.purge(before=clock.time())
        assert purged == Purged(events=2, deliveries=2)
        assert await store.get(after.id) is None
        assert len(await store.list(limit=3000)) == len(ahead)

    async def test_the_walk_ends_at_the_first_step_received_after_the_cut_off(
        self, store: EventStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Events received in the order of their ids (the clock never went back): the walk
        reads no step past the first one received after the cut-off (an hourly purge of a
        store holding a month of events reads only the part old enough to go)."""
        leads = [f"lead-{i}" for i in range(50)]
        for n in range(60):  # 3,000 events, a delivery a minute
            batch = delivery(*(f"{n}-{x}" for x in leads), received_at=clock.time())
            ids = [r.id for r in await store.enqueue(batch)]
            await store.ack_many([Ack(eid, "L", False) for eid in ids])
            clock.advance(60)
        assert isinstance(store, BatchedStore)
        steps: list[int] = []
        window = store._purge_window

        async def counted(after: int) -> tuple[int, float] | None:
            steps.append(after)
            return await window(after)

        monkeypatch.setattr(store, "_purge_window", counted)
        purged = await store.purge(before=START + 10 * 60)  # the first 10 deliveries
        assert purged == Purged(events=500, deliveries=10)
        assert len(steps) == 2  # the step holding them, then the next (received after)

    async def test_a_purged_delivery_id_is_new_again(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Once purged, a delivery id is forgotten: the same delivery is stored as new."""
        (first,) = await store.enqueue(delivery("again"))
        await store.ack(first.id, lead_id="L", created=True)
        clock.advance(DAY)
        await store.purge(before=clock.time())
        (second,) = await store.enqueue(delivery("again"))
        assert not second.duplicate
        event = await store.get(second.id)
        assert event is not None and event.state is State.QUEUED

    async def test_an_id_is_never_handed_out_again_after_a_purge(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A purge of the newest events does not free their ids: an id in an old answer or
        log line never names another lead (SQLite gave the largest id left + 1, so a store
        purged empty answered the next webhook with id 1 again)."""
        old = [r.id for r in await store.enqueue(delivery("a"))]
        old += [
            r.id
            for batch in await asyncio.gather(*(store.enqueue(delivery(f"b{n}")) for n in range(5)))
            for r in batch
        ]
        for event_id in old:
            await store.ack(event_id, lead_id="L", created=True)
        clock.advance(DAY)
        assert (await store.purge(before=clock.time())).events == len(old)
        new = [r.id for r in await store.enqueue(delivery("c"))]
        new += [
            r.id
            for batch in await asyncio.gather(*(store.enqueue(delivery(f"d{n}")) for n in range(5)))
            for r in batch
        ]
        assert min(new) > max(old), (old, new)


class TestReads:
    async def test_counts_every_state(self, store: EventStore) -> None:
        """counts has every state, zero included."""
        assert await store.counts() == dict.fromkeys(State, 0)
        a, _b = await ids_of(store, 2)
        await store.dead(a, error="x")
        counts = await store.counts()
        assert counts[State.DEAD] == 1 and counts[State.QUEUED] == 1
        assert sum(counts.values()) == 2

    async def test_list_newest_first_with_filters(self, store: EventStore) -> None:
        """list is newest first and filters by state, endpoint and limit."""
        tf = await ids_of(store, 3, endpoint="typeform")
        gg = await ids_of(store, 2, endpoint="google")
        await store.dead(tf[0], error="x")
        assert [e.id for e in await store.list()] == (tf + gg)[::-1]
        assert [e.id for e in await store.list(limit=2)] == gg[::-1]
        assert [e.id for e in await store.list(endpoint="typeform")] == tf[::-1]
        assert [e.id for e in await store.list(state=State.DEAD)] == [tf[0]]
        assert await store.list(state=State.DEAD, endpoint="google") == []

    async def test_list_page_is_what_list_shows(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """list_page gives each event of list as Listed.of has it, newest first: documents
        stored apart from the body, documents that are the body (raw and compressed), and
        every field a delivered or dead event has; without documents, no document."""
        big = {"id": "big", "text": "lorem ipsum " * 200}  # compressed (bulk.COMPRESS_MIN)
        await store.enqueue(
            IncomingDelivery(
                endpoint="typeform",
                received_at=START,
                body=orjson.dumps(big),
                content_type="application/json",
                headers={"user-agent": "tests"},
                events=(EventIn("big", big, document_is_body=True),),
            )
        )
        form = delivery(
            "form",
            body=b"email=a%40example.com",
            content_type="application/x-www-form-urlencoded",
            documents=[{"email": "a@example.com"}],
        )
        await store.enqueue(form)
        await store.enqueue(delivery("two-a", "two-b"))
        clock.advance(5)
        done, dead = await ids_of(store, 2, endpoint="google")
        await store.set_route(done, target="default", mapping="m", lead_keys=["a@example.com"])
        await store.ack(done, lead_id="lead-1", created=False)
        await store.dead(dead, error="MXInvalidEmailException")
        events = await store.list(limit=100)
        assert len(events) == 6
        assert await store.list_page(documents=True) == [Listed.of(e) for e in events]
        assert [e.document for e in await store.list_page()] == [None] * 6
        assert await store.list_page() == [Listed.of(e, documents=False) for e in events]
        assert events[-1].document == big and events[-1].body == orjson.dumps(big)

    async def test_list_page_pages_by_id(self, store: EventStore) -> None:
        """Pages below ``before`` (keyset): walked a page at a time, with or without
        filters, they are list's events in list's order; past the oldest, nothing."""
        tf = await ids_of(store, 5, endpoint="typeform")
        later = [delivery(f"g{i}", endpoint="google", received_at=START + 60) for i in range(4)]
        gg = [(await store.enqueue(d))[0].id for d in later]
        await store.dead(tf[1], error="x")
        await store.dead(gg[2], error="y")
        selections: list[dict[str, Any]] = [
            {},
            {"endpoint": "typeform"},
            {"state": State.DEAD},
            {"state": State.QUEUED, "endpoint": "google"},
            {"since": START + 60},
            {"since": START + 60, "state": State.QUEUED},
        ]
        for chosen in selections:
            whole = [Listed.of(e) for e in await store.list(limit=100, **chosen)]
            assert whole, chosen
            assert await store.list_page(documents=True, **chosen) == whole
            for size in (1, 2, 3):
                walked: list[Listed] = []
                before = None
                while page := await store.list_page(
                    before=before, limit=size, documents=True, **chosen
                ):
                    assert len(page) <= size
                    walked += page
                    before = page[-1].id
                assert walked == whole, (chosen, size)
        assert [e.id for e in await store.list_page(before=gg[0])] == tf[::-1]
        assert await store.list_page(before=tf[0]) == []
        assert await store.list_page(limit=0) == []

    async def test_next_due(self, store: EventStore, clock: ManualClock) -> None:
        """next_due is the earliest time any pending event (a lease end included) comes due."""
        assert await store.next_due() is None
        a, b = await ids_of(store, 2)
        assert await store.next_due() == START
        await store.claim(limit=2, lease=30)
        assert await store.next_due() == START + 30
        await store.retry(a, at=START + 10, error="x")
        assert await store.next_due() == START + 10
        await store.ack(a, lead_id="L", created=True)
        await store.ack(b, lead_id="L", created=True)
        assert await store.next_due() is None

    async def test_ping(self, store: EventStore) -> None:
        """ping succeeds on a healthy store."""
        await store.ping()


class TestRateSlots:
    """The rate limit's window, kept in the store for every process on it."""

    async def test_grants_up_to_the_limit_then_says_when_room_comes(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Two calls fit in 2/5s; the third waits a window from the first call's end."""
        first = await store.take_slots("acct", calls=2, window=5.0, hold=30.0)
        second = await store.take_slots("acct", calls=2, window=5.0, hold=30.0)
        assert len(first.slots) == len(second.slots) == 1
        assert first.slots != second.slots
        # Both in flight: the earliest is taken to end `hold` after its slot was taken.
        assert await store.take_slots("acct", calls=2, window=5.0, hold=30.0) == SlotAnswer(
            (), 35.0, in_flight=True
        )
        clock.advance(1.0)
        await store.end_slots("acct", [(first.slots[0], store.clock.time())])
        clock.advance(2.0)
        # It ended at +1: it counts until +6, three seconds from now, exactly.
        assert await store.take_slots("acct", calls=2, window=5.0, hold=30.0) == SlotAnswer(
            (), 3.0, in_flight=False
        )
        clock.advance(3.0)
        assert len((await store.take_slots("acct", calls=2, window=5.0, hold=30.0)).slots) == 1

    async def test_calls_ended_earlier_and_written_together_count_from_their_own_ends(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Ends written in one batch after the calls: each slot counts a window from its own
        end, not from the write; an end said to come after the write is taken as the write's."""
        taken = (await store.take_slots("acct", calls=3, window=5.0, hold=30.0, want=3)).slots
        assert len(taken) == 3
        clock.advance(2.0)
        ends = [(taken[0], START + 0.5), (taken[1], START + 1.0), (taken[2], START + 9.0)]
        await store.end_slots("acct", ends)
        # the first counts until +5.5: 3.5 s from now, as no call is in flight any more
        assert await store.take_slots("acct", calls=3, window=5.0, hold=30.0) == SlotAnswer(
            (), 3.5, in_flight=False
        )
        clock.advance(3.5)
        assert len((await store.take_slots("acct", calls=3, window=5.0, hold=30.0)).slots) == 1
        clock.advance(0.5)  # the second's window is over (+6)
        assert len((await store.take_slots("acct", calls=3, window=5.0, hold=30.0)).slots) == 1
        # the third was said to end at +9, after the write at +2: it counts until +7
        assert await store.take_slots("acct", calls=3, window=5.0, hold=30.0) == SlotAnswer(
            (), 1.0, in_flight=False
        )
        await store.end_slots("acct", [])

    async def test_slots_given_back_unused_stop_counting_at_once(
        self, store: EventStore, other_process: EventStore
    ) -> None:
        """Slots taken ahead and never used for a call leave the window at once, for every
        process; the others still count."""
        mine = (await store.take_slots("acct", calls=4, window=5.0, hold=30.0, want=4)).slots
        assert len(mine) == 4
        assert not (await other_process.take_slots("acct", calls=4, window=5.0, hold=30.0)).slots
        await store.give_back_slots("acct", mine[1:])
        await store.give_back_slots("acct", [])
        again = await other_process.take_slots("acct", calls=4, window=5.0, hold=30.0, want=4)
        assert len(again.slots) == 3
        assert not (await store.take_slots("acct", calls=4, window=5.0, hold=30.0)).slots

    async def test_several_slots_in_one_take_as_many_as_there_is_room(
        self, store: EventStore
    ) -> None:
        """Asking for 4 with room for 3 gives 3; then none."""
        await store.take_slots("acct", calls=5, window=5.0, hold=10.0, want=2)
        answer = await store.take_slots("acct", calls=5, window=5.0, hold=10.0, want=4)
        assert len(answer.slots) == len(set(answer.slots)) == 3
        assert (await store.take_slots("acct", calls=5, window=5.0, hold=10.0)).slots == ()

    async def test_accounts_are_counted_apart(self, store: EventStore) -> None:
        """A full window for one account leaves another's untouched."""
        assert (await store.take_slots("a", calls=1, window=5.0, hold=10.0)).slots
        assert not (await store.take_slots("a", calls=1, window=5.0, hold=10.0)).slots
        assert (await store.take_slots("b", calls=1, window=5.0, hold=10.0)).slots

    async def test_every_process_on_the_database_shares_the_window(
        self, store: EventStore, other_process: EventStore
    ) -> None:
        """Calls granted to one process count against another's (one atomic take each)."""
        takes = [
            s.take_slots("acct", calls=5, window=5.0, hold=10.0, want=2)
            for s in (store, other_process)
            for _ in range(6)
        ]
        answers = await asyncio.gather(*takes)
        taken = [slot for a in answers for slot in a.slots]
        assert len(taken) == len(set(taken)) == 5

    async def test_a_call_never_ended_frees_its_slot_after_hold(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A process killed mid-call never ends its slot: it counts until hold + window."""
        assert (await store.take_slots("acct", calls=1, window=5.0, hold=10.0)).slots
        clock.advance(14.9)
        assert not (await store.take_slots("acct", calls=1, window=5.0, hold=10.0)).slots
        clock.advance(0.1)
        assert (await store.take_slots("acct", calls=1, window=5.0, hold=10.0)).slots

    async def test_a_call_that_ends_at_once_counts_for_one_window(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A slot ended as soon as it is taken counts from then for one window."""
        (slot,) = (await store.take_slots("acct", calls=1, window=2.0, hold=30.0)).slots
        await store.end_slots("acct", [(slot, store.clock.time())])
        answer = await store.take_slots("acct", calls=1, window=2.0, hold=30.0)
        assert answer == SlotAnswer((), 2.0, in_flight=False)
        clock.advance(2.0)
        assert (await store.take_slots("acct", calls=1, window=2.0, hold=30.0)).slots

    async def test_slots_from_before_the_clock_was_set_back_stop_counting(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A slot said to end far beyond any call's hold predates a clock set back."""
        assert (await store.take_slots("acct", calls=1, window=5.0, hold=10.0)).slots
        clock.set(START - 3600)
        assert (await store.take_slots("acct", calls=1, window=5.0, hold=10.0)).slots
        # ... while a slot taken a moment ago still counts after a small step back
        clock.set(START - 3601)
        assert not (await store.take_slots("acct", calls=1, window=5.0, hold=10.0)).slots


def _take(store: EventStore, waiter: str, want: int, *, calls: int = 4, hold: float = 30.0) -> Any:
    return store.take_slots("acct", calls=calls, window=5.0, hold=hold, want=want, waiter=waiter)


class TestRateTurns:
    """Processes sharing an account's window take turns (``hub.store.turns``)."""

    async def _full(self, store: EventStore, waiter: str) -> None:
        """A window of 4 filled by ``waiter``'s calls, all ended now: they count 5 s more."""
        for slot in (await _take(store, waiter, 4)).slots:
            await store.end_slots("acct", [(slot, store.clock.time())])

    async def test_room_that_frees_is_dealt_between_the_waiters(
        self, store: EventStore, other_process: EventStore, clock: ManualClock
    ) -> None:
        """A waits with no room; when four slots free, B's take gets two and sets two aside
        for A, which A gets at its next ask without taking any more."""
        await self._full(store, "c")
        first = await _take(store, "a", 8)
        assert first.slots == () and first.wait == 5.0
        clock.advance(5.0)  # the four calls stop counting
        b = await _take(other_process, "b", 8)
        assert len(b.slots) == 2
        # A's two count already: nobody else gets them
        assert (await _take(other_process, "c", 1)).slots == ()
        a = await _take(store, "a", 8)
        assert len(a.slots) == 2
        assert set(a.slots).isdisjoint(b.slots)
        assert (await _take(store, "a", 8)).slots == ()  # and no more than the window

    async def test_a_waiter_served_goes_behind_one_that_was_not(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """One slot at a time goes to A, then B, then A: whoever got the last waits its turn."""
        (only,) = (await _take(store, "x", 1, calls=1)).slots
        await store.end_slots("acct", [(only, store.clock.time())])
        for waiter in ("a", "b"):  # both wait, A first
            assert (await _take(store, waiter, 3, calls=1)).slots == ()
        order = []
        for _ in range(3):
            clock.advance(5.0)  # the last call stops counting: room for one
            b = await _take(store, "b", 3, calls=1)  # B asks first every time
            a = await _take(store, "a", 3, calls=1)
            (slot,) = a.slots or b.slots
            order.append("a" if a.slots else "b")
            await store.end_slots("acct", [(slot, store.clock.time())])
        assert order == ["a", "b", "a"]

    async def test_a_waiter_alone_gets_what_it_wants(self, store: EventStore) -> None:
        """No other waiter: a take gets all the room it asks for, as without turns."""
        assert len((await _take(store, "a", 3)).slots) == 3
        assert len((await _take(store, "a", 3)).slots) == 1

    async def test_a_waiter_gone_silent_stops_holding_room(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Slots set aside for a waiter that never asks again stop counting once it is a grace
        second past when it was due: the room goes to the others."""
        await self._full(store, "c")
        assert (await _take(store, "a", 4)).slots == ()  # due again in 5 s
        clock.advance(5.0)
        assert len((await _take(store, "b", 4)).slots) == 2  # two set aside for A
        clock.advance(0.9)  # A is due at +5 s, and kept a second past it
        assert (await _take(store, "b", 2)).slots == ()
        clock.advance(0.2)
        assert len((await _take(store, "b", 2)).slots) == 2  # A's two, never used

    async def test_a_waiter_that_stops_waiting_gives_its_room_back_at_once(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        await self._full(store, "c")
        assert (await _take(store, "a", 4)).slots == ()
        clock.advance(5.0)
        assert len((await _take(store, "b", 4)).slots) == 2
        await store.stop_waiting("acct", "a")
        assert len((await _take(store, "b", 2)).slots) == 2

    async def test_set_aside_slots_count_from_when_they_are_handed_over(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A slot set aside for A is A's call from A's ask: never ended (A killed mid-call),
        it counts until ``hold`` after that ask, and a window more."""
        await self._full(store, "c")
        assert (await _take(store, "a", 2, hold=10.0)).slots == ()
        clock.advance(5.0)
        assert len((await _take(store, "b", 2, hold=10.0)).slots) == 2  # A's two set aside
        clock.advance(1.0)
        assert len((await _take(store, "a", 2, hold=10.0)).slots) == 2  # handed over at +6
        clock.advance(14.9)  # +20.9: B's (taken at +5) no longer count, A's still do
        assert len((await _take(store, "d", 4, hold=10.0)).slots) == 2
        clock.advance(0.1)
        assert len((await _take(store, "d", 4, hold=10.0)).slots) == 2

    async def test_set_aside_slots_beyond_what_a_waiter_still_wants_stop_counting(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """A asked for 2 and now wants 1 (a caller gave up): the other slot goes."""
        await self._full(store, "c")
        assert (await _take(store, "a", 2)).slots == ()
        clock.advance(5.0)
        assert len((await _take(store, "b", 2)).slots) == 2
        assert len((await _take(store, "a", 1)).slots) == 1
        assert len((await _take(store, "d", 4)).slots) == 1


class TestFillWindow:
    """``fill_window``: the account refused a call for its rate limit, so its window counts
    full from then on for a whole window, in every process on the store."""

    async def test_no_slot_for_a_whole_window_from_the_refusal(
        self, store: EventStore, other_process: EventStore, clock: ManualClock
    ) -> None:
        await store.fill_window("acct", calls=4)
        for asker in (store, other_process):
            answer = await _take(asker, "a", 1)
            assert answer.slots == () and answer.wait == 5.0
        clock.advance(4.9)
        assert (await _take(other_process, "a", 1)).slots == ()
        clock.advance(0.2)
        assert len((await _take(other_process, "a", 4)).slots) == 4

    async def test_calls_that_stop_counting_sooner_do_not_fill_it(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        """Four calls that ended 4 s before the refusal count 1 s more: the window is filled
        with calls ended at the refusal all the same."""
        for slot in (await _take(store, "a", 4)).slots:
            await store.end_slots("acct", [(slot, store.clock.time())])
        clock.advance(4.0)
        await store.fill_window("acct", calls=4)
        clock.advance(1.1)
        assert (await _take(store, "a", 1)).slots == ()
        clock.advance(3.9)  # 5 s after the refusal
        assert len((await _take(store, "a", 4)).slots) == 4
