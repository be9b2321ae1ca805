"""The SQLite store's fast paths keep their promises: marked bodies, bulk inserts, claims."""

from __future__ import annotations

from pathlib import Path

import orjson

from hub.clock import ManualClock
from hub.store.models import EventIn, IncomingDelivery

from .test_sqlite import opened, raw


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
