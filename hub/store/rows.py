"""Between :class:`Event` and database rows: JSON columns (orjson) and the stored document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hub.store.base import StoreError
from hub.store.bulk import unpack_body
from hub.store.models import Event, IncomingDelivery, State

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


def events_from_packed(packed: str | bytes | None) -> list[Event]:
    """Events from the ``packed_rows_by_ids`` query's one value, in id order."""
    found = orjson.loads(packed) if packed else []
    events = [
        Event(
            id=r[0],
            endpoint=r[1],
            delivery_id=r[2],
            received_at=float(r[3]),
            body=(body := unpack_body(bytes.fromhex(r[4]), r[5])),
            content_type=r[6],
            headers=orjson.loads(r[7]),
            document=orjson.loads(r[8] if r[8] is not None else body),
            state=State(r[9]),
            attempts=r[10],
            next_attempt_at=float(r[11]),
            last_error=r[12],
            enrichment=orjson.loads(r[13]) if r[13] is not None else None,
            target=r[14],
            mapping=r[15],
            lead_keys=tuple(sorted(r[16].split(KEY_SEP))) if r[16] else (),
            lead_id=r[17],
            lead_created=None if r[18] is None else bool(r[18]),
            updated_at=float(r[19]),
        )
        for r in found
    ]
    events.sort(key=lambda e: e.id)
    return events


def event_from_row(row: Mapping[str, Any]) -> Event:
    """An :class:`Event` from a row of the ``event_rows`` view."""
    body = unpack_body(bytes(row["body"]), row["body_format"])
    document = orjson.loads(row["document"] if row["document"] is not None else body)
    keys = row["lead_keys"]
    created = row["lead_created"]
    return Event(
        id=row["id"],
        endpoint=row["endpoint"],
        delivery_id=row["delivery_id"],
        received_at=row["received_at"],
        body=body,
        content_type=row["content_type"],
        headers=orjson.loads(row["headers"]),
        document=document,
        state=State(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        enrichment=orjson.loads(row["enrichment"]) if row["enrichment"] is not None else None,
        target=row["target"],
        mapping=row["mapping"],
        lead_keys=tuple(sorted(keys.split(KEY_SEP))) if keys else (),
        lead_id=row["lead_id"],
        lead_created=None if created is None else bool(created),
        updated_at=row["updated_at"],
    )
