"""The SQLite store's fast paths keep their promises: marked bodies, bulk inserts, claims."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import zlib
from pathlib import Path

import orjson

from hub.clock import ManualClock
from hub.store import StoreError
from hub.store.bulk import BODY_DEFLATE, BODY_RAW, pack, unpack_body
from hub.store.models import EventIn, IncomingDelivery, State

from .conftest import FIXTURES
from .helpers import delivery
from .test_sqlite import opened, raw

STORES = Path(__file__).parents[1] / "fixtures" / "stores"


def marked(delivery_id: str, body: bytes, document: object) -> IncomingDelivery:
    """A one-event delivery whose event says its document is exactly the parsed body."""
    return IncomingDelivery(
        endpoint="typeform",
        received_at=1_700_000_000.0,
        body=body,
        content_type="application/json",
        headers={},
        events=(EventIn(delivery_id, document, document_is_body=True),),
    )


async def test_marked_document_is_read_back_from_the_body(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A document marked as the body is not stored twice and reads back as the parsed body."""
    body = b'{"form_response":{"token":"t1","answers":[{"n":1.5},{"b":true}]}}'
    store = await opened(tmp_path, clock)
    try:
        [result] = await store.enqueue(marked("t1", body, orjson.loads(body)))
        event = await store.get(result.id)
    finally:
        await store.close()
    assert event is not None
    assert event.body == body
    assert event.document == orjson.loads(body)
    assert raw(tmp_path / "events.db", "SELECT document FROM events") == [(None,)]


async def test_compressed_bodies_round_trip_byte_exact(tmp_path: Path, clock: ManualClock) -> None:
    """Bodies of every size and kind come back byte for byte; big JSON ones are compressed."""
    rng = random.Random(7)
    typeform = (FIXTURES / "typeform_form_response_full.json").read_bytes()
    bodies = [
        typeform,
        b"{}",
        bytes(rng.randrange(256) for _ in range(4000)),  # incompressible: kept as it is
        b'{"a":"' + "é€😀".encode() * 400 + b'"}',
        typeform.replace(b"a", b"b"),
        typeform,
    ]
    store = await opened(tmp_path, clock)
    try:
        results = await asyncio.gather(
            *(
                store.enqueue(delivery(f"c{i}", body=body, documents=[{"i": i}]))
                for i, body in enumerate(bodies)
            )
        )
        events = [await store.get(r.id) for [r] in results]
    finally:
        await store.close()
    assert [e.body for e in events if e is not None] == bodies
    formats = raw(tmp_path / "events.db", "SELECT length(body), body_format FROM deliveries")
    by_size = dict(formats)
    assert by_size[4000] == BODY_RAW and by_size[2] == BODY_RAW
    assert sum(1 for _, fmt in formats if fmt == BODY_DEFLATE) == 4
    assert all(size < len(typeform) // 2 for size, fmt in formats if fmt == BODY_DEFLATE)


def test_packed_bodies_read_back() -> None:
    """Each packed body inflates on its own, in any order; small or incompressible stay raw."""
    bodies = [orjson.dumps({"n": i, "text": "lead " * (100 + i)}) for i in range(50)]
    packed = [pack(b) for b in bodies]
    assert {fmt for _, fmt in packed} == {BODY_DEFLATE}
    for i in random.Random(3).sample(range(50), 50):
        assert unpack_body(*packed[i]) == bodies[i]
    noise = random.Random(4).randbytes(4000)
    assert pack(noise) == (noise, BODY_RAW)
    assert pack(b"{}") == (b"{}", BODY_RAW)


def test_bodies_packed_by_zlib_still_read_back() -> None:
    """Bodies stored by earlier versions (zlib's raw-deflate stream, full flushes) still read."""
    stream = zlib.compressobj(1, zlib.DEFLATED, -15)
    bodies = [orjson.dumps({"n": i, "text": "lead " * (100 + i)}) for i in range(5)]
    segments = [stream.compress(b) + stream.flush(zlib.Z_FULL_FLUSH) for b in bodies]
    assert [unpack_body(seg, BODY_DEFLATE) for seg in reversed(segments)] == bodies[::-1]


async def test_one_bad_delivery_does_not_fail_its_batch(tmp_path: Path, clock: ManualClock) -> None:
    """A delivery the database rejects fails alone; the others in its batch are stored."""
    bad = delivery("ok")
    bad = IncomingDelivery(
        endpoint=bad.endpoint,
        received_at=bad.received_at,
        body=bad.body,
        content_type=bad.content_type,
        headers={},
        events=(EventIn(object(), {}),),  # type: ignore[arg-type]
    )
    store = await opened(tmp_path, clock)
    try:
        jobs = [store.enqueue(delivery(f"b{i}")) for i in range(30)]
        jobs.insert(15, store.enqueue(bad))
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        counts = await store.counts()
    finally:
        await store.close()
    assert isinstance(outcomes[15], StoreError)
    assert all(isinstance(o, list) for i, o in enumerate(outcomes) if i != 15)
    assert counts[State.QUEUED] == 30
    assert raw(tmp_path / "events.db", "SELECT count(*) FROM deliveries") == [(30,)]


async def test_duplicates_within_one_batch_and_delivery(tmp_path: Path, clock: ManualClock) -> None:
    """A delivery id repeated in one delivery and across a batch is stored once, id shared."""
    store = await opened(tmp_path, clock)
    try:
        twice = delivery("r1", "r2", "r1", documents=[{"n": 1}, {"n": 2}, {"n": 3}])
        results = await asyncio.gather(
            store.enqueue(twice), store.enqueue(delivery("r2")), store.enqueue(delivery("r3"))
        )
    finally:
        await store.close()
    first, again, third = results
    assert [r.duplicate for r in first] == [False, False, True]
    assert first[2].id == first[0].id
    assert again[0].duplicate and again[0].id == first[1].id
    assert not third[0].duplicate
    assert raw(tmp_path / "events.db", "SELECT count(*) FROM events") == [(3,)]
    assert raw(tmp_path / "events.db", "SELECT count(*) FROM deliveries") == [(2,)]


async def test_claim_takes_expired_leases_in_id_order(tmp_path: Path, clock: ManualClock) -> None:
    """Expired leases and waiting events are claimed together, oldest id first."""
    store = await opened(tmp_path, clock)
    try:
        ids = [(await store.enqueue(delivery(f"l{i}")))[0].id for i in range(6)]
        leased = await store.claim(limit=3, lease=30)
        assert [e.id for e in leased] == ids[:3]
        clock.advance(10)
        assert [e.id for e in await store.claim(limit=2, lease=30)] == ids[3:5]
        clock.advance(25)  # the first three leases ran out; the next two have not
        again = await store.claim(limit=10, lease=30)
    finally:
        await store.close()
    assert [e.id for e in again] == [*ids[:3], ids[5]]
    assert [e.attempts for e in again] == [2, 2, 2, 1]


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE deliveries (id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL,
    received_at REAL NOT NULL, content_type TEXT NOT NULL, headers BLOB NOT NULL,
    body BLOB NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, delivery INTEGER NOT NULL REFERENCES deliveries (id),
    endpoint TEXT NOT NULL, delivery_id TEXT NOT NULL, document BLOB, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
    enrichment BLOB, target TEXT, mapping TEXT, lead_id TEXT, lead_created INTEGER,
    updated_at REAL NOT NULL);
CREATE UNIQUE INDEX events_dedupe ON events (endpoint, delivery_id);
CREATE INDEX events_due ON events (state, next_attempt_at);
CREATE INDEX events_pending ON events (id) WHERE state IN ('queued', 'retrying', 'sending');
CREATE INDEX events_delivery ON events (delivery);
CREATE TABLE lead_keys (key TEXT NOT NULL, event INTEGER NOT NULL, PRIMARY KEY (key, event))
    WITHOUT ROWID;
CREATE INDEX lead_keys_event ON lead_keys (event);
CREATE VIEW event_rows AS SELECT e.id, e.endpoint, e.delivery_id, d.received_at, d.body,
    d.content_type, d.headers, e.document, e.state, e.attempts, e.next_attempt_at,
    e.last_error, e.enrichment, e.target, e.mapping, NULL AS lead_keys, e.lead_id,
    e.lead_created, e.updated_at
FROM events AS e JOIN deliveries AS d ON d.id = e.delivery;
INSERT INTO deliveries VALUES (1, 'typeform', 1.0, 'application/json', CAST('{}' AS BLOB),
    CAST('{"old":true}' AS BLOB));
INSERT INTO events (id, delivery, endpoint, delivery_id, state, next_attempt_at, updated_at)
VALUES (1, 1, 'typeform', 'old-1', 'queued', 0, 0);
"""


async def test_version_1_database_is_migrated(tmp_path: Path, clock: ManualClock) -> None:
    """A database from schema version 1 opens at version 4, keeps its events, takes
    compressed bodies, and records a replay's time (version 2 to 3)."""
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.executescript(V1_SCHEMA)
    big = (FIXTURES / "typeform_form_response_full.json").read_bytes()
    store = await opened(tmp_path, clock)
    try:
        old = await store.get(1)
        [new] = await store.enqueue(delivery("new-1", body=big, documents=[{}]))
        claimed = await store.claim(limit=10, lease=30)
        await store.dead(1, error="boom")
        clock.advance(100)
        assert await store.replay(ids=[1]) == 1
        replayed = await store.get(1)
    finally:
        await store.close()
    assert old is not None and old.body == b'{"old":true}' and old.document == {"old": True}
    assert old.requeued_at is None and old.queued_since == 1.0
    assert [e.id for e in claimed] == [1, new.id]
    assert claimed[1].body == big
    assert replayed is not None and replayed.requeued_at == clock.time()
    db = tmp_path / "events.db"
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]
    indexes = {r[0] for r in raw(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"events_ready", "events_unrouted"} <= indexes and "events_pending" not in indexes


async def test_a_version_3_store_hands_out_no_purged_id_again(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Version 3 to 4 (the events table made again with AUTOINCREMENT, ids kept), on a store
    966a566 really wrote (tests/fixtures/stores): once its newest events are purged, the next
    one gets a new id, not the largest left + 1."""
    db = tmp_path / "events.db"
    db.write_bytes((STORES / "sqlite-schema3-966a566.store").read_bytes())
    clock.advance(10 * 365 * 86400)  # past the old store's times (and its ten-year lease)
    store = await opened(tmp_path, clock)
    try:
        before = {e.id: e.state for e in await store.list(limit=100)}
        for newest in (16, 17):  # queued: marked sent, so that the purge takes them
            await store.ack(newest, lead_id="L", created=False)
        purged = await store.purge(before=clock.time() + 1)
        [new] = await store.enqueue(delivery("after-purge"))
        kept = await store.get(10)
    finally:
        await store.close()
    assert sorted(before) == list(range(1, 18))
    assert purged.events == 8 + 1 + 2  # delivered, skipped, and the two marked sent
    assert new.id == 18
    assert kept is not None and kept.state is State.DEAD and kept.id == 10
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]
    assert raw(db, "SELECT seq FROM sqlite_sequence WHERE name = 'events'") == [(18,)]
    indexes = {r[0] for r in raw(db, "SELECT name FROM sqlite_master WHERE tbl_name = 'events'")}
    assert {"events_dedupe", "events_due", "events_ready", "events_delivery"} <= indexes


async def test_an_index_an_older_leadhub_made_again_is_dropped(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A leadhub of before the refusal of newer files, run on a current one, made version 1's
    ``events_pending`` again (the upgrade audit saw 5147873 do it), and the file still counted
    as current, so the index stayed, written at every enqueue: the next open drops it."""
    store = await opened(tmp_path, clock)
    await store.close()
    db = tmp_path / "events.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE INDEX events_pending ON events (id) WHERE state = 'queued'")
    store = await opened(tmp_path, clock)
    try:
        [stored] = await store.enqueue(delivery("after"))
    finally:
        await store.close()
    assert stored.id == 1
    indexes = {r[0] for r in raw(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "events_pending" not in indexes and "events_ready" in indexes


async def test_close_right_after_submitting_answers_every_write(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Enqueues still gathered in the loop iteration when close starts are stored and answered."""
    store = await opened(tmp_path, clock)
    tasks = [asyncio.create_task(store.enqueue(delivery(f"z{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # every task has submitted; the hand-over to the writer is pending
    await store.close()
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    assert all(not r[0].duplicate for r in results)
    assert raw(tmp_path / "events.db", "SELECT count(*) FROM events") == [(20,)]


async def test_writes_submitted_in_one_loop_iteration_share_one_commit(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Writes submitted within one event loop iteration reach the writer together."""
    store = await opened(tmp_path, clock)
    try:
        before = store.stats.commits
        await asyncio.gather(*(store.enqueue(delivery(f"w{i}")) for i in range(100)))
        commits = store.stats.commits - before
    finally:
        await store.close()
    assert commits == 1
