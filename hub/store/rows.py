"""Between deliveries, events and database rows: a delivery's row as every backend stores it
(its skim checked, its body compressed), JSON columns (orjson) and the stored document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from hub.sources import skimmed_id, skimmer_for
from hub.store import bulk
from hub.store.base import StoreError
from hub.store.bulk import unpack_body
from hub.store.models import Event, IncomingDelivery, Listed, State

#: A delivery as enqueued: endpoint, received_at, content_type, headers (JSON), the raw body,
#: its events' (delivery id, document or None), the time of enqueue, and the skim (``[key]``,
#: when the store reads the one event's id from the body) or None. What crosses to SQLite's
#: writer process (:mod:`hub.store.sqlite_process`), as a msgpack array.
Row = tuple[str, float, str, bytes, bytes, list[tuple[str, bytes | None]], float, list[Any] | None]

#: Separates lead keys in the ``lead_keys`` column of a row (ASCII unit separator).
KEY_SEP = "\x1f"


def dumps(value: Any, *, what: str) -> bytes:
    """``value`` as JSON bytes; a value JSON cannot hold raises a clear :class:`StoreError`."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        msg = f"The {what} cannot be stored as JSON ({exc}); pass plain dicts, lists and scalars."
        raise StoreError(msg) from exc


def documents(delivery: IncomingDelivery) -> list[bytes | None]:
    """Each event's document as JSON, or None where it is exactly the parsed body.

    Most senders post one lead whose document IS the body; storing it again would double
    the row, so it is read back from the body instead. Ingest knows that case when it
    parses and marks it (``EventIn.document_is_body``); the store does not parse again.
    """
    return [
        None
        if event.document_is_body
        else dumps(event.document, what=f"document of {event.delivery_id!r}")
        for event in delivery.events
    ]


def headers_json(headers: Mapping[str, str]) -> bytes:
    """Headers as a JSON object."""
    return dumps(dict(headers), what="headers")


#: The columns of an ``event_rows`` query packed into ONE value by :func:`packed`: a JSON
#: array of arrays. Fetching one value is one step of the cursor, where every row would be
#: a step of its own, and each step makes the store's thread hand the GIL over and wait to
#: get it back. Blobs travel as hex, JSON blobs as text, REALs as 17-digit text (exact).
_PACKED_COLUMNS = (
    "id, endpoint, delivery_id, printf('%.17g', received_at), hex(body), body_format, "
    "content_type, CAST(headers AS TEXT), CAST(document AS TEXT), state, attempts, "
    "printf('%.17g', next_attempt_at), last_error, CAST(enrichment AS TEXT), target, "
    "mapping, lead_keys, lead_id, lead_created, printf('%.17g', updated_at), "
    "CASE WHEN requeued_at IS NOT NULL THEN printf('%.17g', requeued_at) END"
)


def packed(query: str) -> str:
    """``query`` (a SELECT of ``event_rows`` rows) as a query of one value, for :func:`events`."""
    inner = query.strip().rstrip(";")
    return f"SELECT json_group_array(json_array({_PACKED_COLUMNS})) FROM ({inner})"


def events(value: str | bytes | None, *, newest_first: bool = False) -> list[Event]:
    """The :class:`Event` of each row in a :func:`packed` query's value, by id."""
    found = orjson.loads(value) if value else []
    for r in found:  # to the database's own types: the body's bytes, the times' floats
        r[3], r[4], r[11], r[19] = float(r[3]), bytes.fromhex(r[4]), float(r[11]), float(r[19])
        r[20] = None if r[20] is None else float(r[20])
    out = [event_of(r) for r in found]
    out.sort(key=lambda e: e.id, reverse=newest_first)
    return out


class Columns(Protocol):
    """A row read by position: a list, a tuple, a driver's record."""

    def __getitem__(self, index: int, /) -> Any: ...


def event_of(r: Columns) -> Event:
    """The :class:`Event` of one ``event_rows`` row, its columns as the database types them
    (the body as stored, bytes; JSON columns as text or bytes; times as floats)."""
    body = unpack_body(r[4], r[5])
    return Event(
        id=r[0],
        endpoint=r[1],
        delivery_id=r[2],
        received_at=r[3],
        body=body,
        content_type=r[6],
        headers=orjson.loads(r[7]),
        document=orjson.loads(r[8] if r[8] is not None else body),
        state=State(r[9]),
        attempts=r[10],
        next_attempt_at=r[11],
        last_error=r[12],
        enrichment=orjson.loads(r[13]) if r[13] is not None else None,
        target=r[14],
        mapping=r[15],
        lead_keys=tuple(sorted(r[16].split(KEY_SEP))) if r[16] else (),
        lead_id=r[17],
        lead_created=None if r[18] is None else bool(r[18]),
        updated_at=r[19],
        requeued_at=r[20],
    )


def listed_of(r: Columns) -> Listed:
    """The :class:`Listed` of one ``list_page`` row (both backends: the same columns). Its
    document: the stored one, else the body's when the body was read, else None; its
    enrichment when it was read (only with the documents)."""
    document = None
    if r[13] is not None:
        document = orjson.loads(r[13])
    elif r[14] is not None:
        document = orjson.loads(unpack_body(bytes(r[14]), r[15]))
    return Listed(
        id=r[0],
        endpoint=r[1],
        delivery_id=r[2],
        received_at=float(r[3]),
        state=State(r[4]),
        attempts=r[5],
        next_attempt_at=float(r[6]),
        target=r[7],
        mapping=r[8],
        lead_id=r[9],
        lead_created=None if r[10] is None else bool(r[10]),
        last_error=r[11],
        updated_at=float(r[12]),
        requeued_at=None if r[16] is None else float(r[16]),
        document=document,
        enrichment=None if r[17] is None else orjson.loads(r[17]),
    )


def row_of(delivery: IncomingDelivery, now: float) -> Row:
    """The :data:`Row` of ``delivery``, enqueued at ``now``: what crosses to the child (the
    body still raw; the child compresses it and checks a skim)."""
    return (
        delivery.endpoint,
        delivery.received_at,
        delivery.content_type,
        headers_json(delivery.headers),
        delivery.body,
        [(e.delivery_id, d) for e, d in zip(delivery.events, documents(delivery), strict=True)],
        now,
        None if delivery.skim is None else [delivery.skim.key],
    )


def to_pending(row: Sequence[Any]) -> bulk.Pending | None:
    """The delivery to insert (its skim checked, its body compressed) from its :data:`Row`;
    None when a skimmed body needs the full parser. Called where the store writes: SQLite's
    writer process (off the event loop) or thread; the PostgreSQL store's event loop."""
    endpoint, received_at, content_type, headers, raw, events, now, skim = row
    if skim is not None:
        found = skimmed_id(skimmer_for(skim[0]), content_type, raw)
        if found is None:
            return None
        events = [(found, None)]
    body, body_format = bulk.pack(raw)
    return bulk.Pending(
        endpoint=endpoint,
        received_at=received_at,
        content_type=content_type,
        headers=headers,
        body=body,
        body_format=body_format,
        events=[(d, doc) for d, doc in events],
        now=now,
    )
