"""Enqueue many deliveries in a few statements: the writer's fast path for group commit.

Each ``sqlite3`` call releases the GIL, and the writer thread then waits for the event
loop to hand it back (up to the 5 ms switch interval while the loop is busy). Inserting
a batch row by row therefore crawls under load. Here a whole batch of deliveries is one
multi-row ``INSERT`` per table (in power-of-two chunks, so a few statements are ever
prepared): about four calls per batch instead of five per delivery.

Row ids: without an explicit id SQLite gives a new row the largest id + 1, so a multi-row
insert's ids run up to ``lastrowid`` without gaps. Any conflict (a delivery id already
stored, or repeated within the batch) raises; the writer then starts the transaction over
on the per-delivery path, which reports duplicates one by one.

Bodies are compressed (:func:`pack`, raw deflate) before they reach the writer thread, by
the caller's thread: a compressor that releases the GIL would, in the writer thread, then
wait for the busy event loop to hand it back. The writer process (``sqlite_process``) has
no event loop to wait for and compresses them itself.
"""

from __future__ import annotations

import functools
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Any

from isal import isal_zlib

from hub.store.models import EnqueueResult
from hub.store.sqlite_conn import Q

#: ``deliveries.body_format``: the body as received, or a raw-deflate segment of it.
BODY_RAW = 0
BODY_DEFLATE = 1
#: Bodies shorter than this are stored as they are (nothing worth saving).
COMPRESS_MIN = 512
#: ISA-L's fastest level (0 to 3).
COMPRESS_LEVEL = 0
#: Most rows in one INSERT (SQLite allows 32,766 bound values; 6 per row here).
CHUNK = 256


@dataclass(slots=True)
class Pending:
    """One delivery ready to insert: its row values and its events' (delivery id, document)."""

    endpoint: str
    received_at: float
    content_type: str
    headers: bytes
    #: The body as stored (see ``body_format``).
    body: bytes
    body_format: int
    events: list[tuple[str, bytes | None]]
    now: float


def pack(body: bytes) -> tuple[bytes, int]:
    """``(stored bytes, body_format)`` for ``body``; compressed only when it shrinks.

    ISA-L's fastest level (``isal``): about 3.5 µs for a 3.2 KB Typeform body, to 45% of
    its size, where zlib's level 1 took 11.5 µs for 38%. Its output is plain raw deflate,
    so the standard library's zlib reads it back (and reads bodies stored by earlier
    versions, which used zlib itself).
    """
    if len(body) < COMPRESS_MIN:
        return body, BODY_RAW
    packed = isal_zlib.compress(body, COMPRESS_LEVEL, wbits=-15)
    if len(packed) >= len(body):
        return body, BODY_RAW
    return packed, BODY_DEFLATE


def unpack_body(stored: bytes, body_format: int | None) -> bytes:
    """The body as received from its stored bytes and ``body_format``."""
    if not body_format:
        return stored
    if body_format == BODY_DEFLATE:
        try:  # ISA-L inflates in about 60% of zlib's time
            return isal_zlib.decompress(stored, wbits=-15)
        except Exception:  # a segment ended by a full flush (earlier versions): zlib reads it
            return zlib.decompressobj(-15).decompress(stored)
    msg = f"unknown body_format {body_format!r} in the store; upgrade leadhub to read it"
    raise ValueError(msg)


def _chunks(n: int) -> list[int]:
    """``n`` as chunk sizes: CHUNKs, then powers of two (few distinct statements)."""
    sizes = [CHUNK] * (n // CHUNK)
    rest = n % CHUNK
    bit = CHUNK
    while rest:
        if rest & bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


@functools.cache
def _insert_deliveries(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return (
        "INSERT INTO deliveries (endpoint, received_at, content_type, headers, body, "
        f"body_format) VALUES {values}"
    )


@functools.cache
def _insert_events(rows: int) -> str:
    values = ",".join(["(?,?,?,?,'queued',0,?,?)"] * rows)
    return (
        "INSERT INTO events (delivery, endpoint, delivery_id, document, state, attempts, "
        f"next_attempt_at, updated_at) VALUES {values}"
    )


def _insert(conn: sqlite3.Connection, sql: Any, rows: list[tuple[Any, ...]]) -> list[int]:
    """Insert ``rows`` in chunks; the new row ids, in order."""
    ids: list[int] = []
    at = 0
    for size in _chunks(len(rows)):
        chunk = rows[at : at + size]
        at += size
        cur = conn.execute(sql(size), [v for row in chunk for v in row])
        last = int(cur.lastrowid or 0)
        if cur.rowcount != size or last < size:
            msg = f"a bulk insert stored {cur.rowcount} of {size} rows"
            raise sqlite3.IntegrityError(msg)
        ids.extend(range(last - size + 1, last + 1))
    return ids


def insert(conn: sqlite3.Connection, items: list[Pending]) -> list[list[EnqueueResult]]:
    """Insert every delivery of ``items`` and its events; per item, its results in order.

    Raises:
        sqlite3.IntegrityError: an event is already stored (or twice in the batch).
    """
    deliveries = [
        (p.endpoint, p.received_at, p.content_type, p.headers, p.body, p.body_format) for p in items
    ]
    delivery_ids = _insert(conn, _insert_deliveries, deliveries)
    events: list[tuple[Any, ...]] = []
    shape: list[list[int]] = []  # per item: index into the new events, per event
    names: list[str] = []  # the delivery id of each new event
    for p, row in zip(items, delivery_ids, strict=True):
        seen: dict[str, int] = {}
        slots: list[int] = []
        for delivery_id, document in p.events:
            slot = seen.get(delivery_id)
            if slot is None:
                slot = seen[delivery_id] = len(events)
                events.append((row, p.endpoint, delivery_id, document, p.now, p.now))
                names.append(delivery_id)
                slots.append(slot)
            else:
                slots.append(-1 - slot)  # a repeat inside the delivery: a duplicate
        shape.append(slots)
    event_ids = _insert(conn, _insert_events, events)
    return [
        [
            EnqueueResult(event_ids[s], False, names[s])
            if s >= 0
            else EnqueueResult(event_ids[-1 - s], True, names[-1 - s])
            for s in slots
        ]
        for slots in shape
    ]


def insert_one(conn: sqlite3.Connection, p: Pending) -> list[EnqueueResult]:
    """Insert one delivery row by row, reporting each event already stored as a duplicate."""
    results: list[EnqueueResult] = []
    seen: dict[str, int] = {}
    delivery_row: int | None = None
    for delivery_id, doc in p.events:
        if delivery_id in seen:
            results.append(EnqueueResult(seen[delivery_id], True, delivery_id))
            continue
        key = {"endpoint": p.endpoint, "delivery_id": delivery_id}
        found = conn.execute(Q["find_event"], key).fetchone()
        if found is not None:
            seen[delivery_id] = found[0]
            results.append(EnqueueResult(found[0], True, delivery_id))
            continue
        if delivery_row is None:
            cur = conn.execute(
                Q["insert_delivery"],
                {
                    "endpoint": p.endpoint,
                    "received_at": p.received_at,
                    "content_type": p.content_type,
                    "headers": p.headers,
                    "body": p.body,
                    "body_format": p.body_format,
                },
            )
            delivery_row = cur.lastrowid
        cur = conn.execute(
            Q["insert_event"],
            {**key, "delivery": delivery_row, "document": doc, "now": p.now},
        )
        event_id = int(cur.lastrowid or 0)
        seen[delivery_id] = event_id
        results.append(EnqueueResult(event_id, False, delivery_id))
    return results
