"""Helpers for end-to-end tests: a real ``leadhub serve``, signing, sandbox read-back, polling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from hub.store import EventStore, open_store
from hub.store.models import Event, EventIn, IncomingDelivery
from tests.mappings.cases import DEMO_ENV

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SHIPPED = REPO / "mappings"
SANDBOX_KEYS = {"x-LSQ-AccessKey": "sandbox", "x-LSQ-SecretKey": "sandbox"}
#: Lead fields the sandbox adds itself.
#: A token endpoint ``forms`` (its token from ``FORMS_TOKEN``) and its mapping: email, name.
FORMS_CONFIG = """kind: endpoint
name: forms
source: token
token: ${FORMS_TOKEN}
---
kind: mapping
name: forms-map
endpoint: forms
fields:
  EmailAddress: { path: $.email, required: true }
  FirstName: $.name
"""
SYSTEM_FIELDS = ("ProspectID", "CreatedOn", "ModifiedOn")


def fixture(sender: str, name: str) -> tuple[bytes, dict[str, str]]:
    """A fixture's exact body bytes and its request headers."""
    base = FIXTURES / sender / name
    body_path = base.with_suffix(".json")
    if not body_path.exists():
        body_path = base.with_suffix(".body")
    meta = orjson.loads((FIXTURES / sender / f"{name}.headers.json").read_bytes())
    return body_path.read_bytes(), dict(meta["headers"])


def typeform_signature(body: bytes) -> str:
    digest = hmac.new(DEMO_ENV["TYPEFORM_SECRET"].encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def facebook_signature(body: bytes) -> str:
    digest = hmac.new(DEMO_ENV["FB_APP_SECRET"].encode(), body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def tally_signature(body: bytes) -> str:
    digest = hmac.new(DEMO_ENV["TALLY_SECRET"].encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def linkedin_signature(body: bytes) -> str:
    key = DEMO_ENV["LINKEDIN_CLIENT_SECRET"].encode()
    return hmac.new(key, b"hmacsha256=" + body, hashlib.sha256).hexdigest()


def tiktok_signature(body: bytes) -> str:
    """TikTok's claimed X-Open-Signature: the hex HMAC-SHA256 of the body (as posted, its
    non-ASCII written as \\uXXXX escapes) under the app secret."""
    return hmac.new(DEMO_ENV["TIKTOK_APP_SECRET"].encode(), body, hashlib.sha256).hexdigest()


def webflow_headers(body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with a Webflow timestamp of now (ms) and its signature over ``body``."""
    stamp = str(int(time.time() * 1000))
    signed = stamp.encode() + b":" + body
    digest = hmac.new(DEMO_ENV["WEBFLOW_SECRET"].encode(), signed, hashlib.sha256).hexdigest()
    return {**headers, "x-webflow-timestamp": stamp, "x-webflow-signature": digest}


def hubspot_headers(
    body: bytes, headers: dict[str, str], url: str = DEMO_ENV["HUBSPOT_WEBHOOK_URL"]
) -> dict[str, str]:
    """``headers`` with a HubSpot timestamp of now (ms) and its v3 signature of a POST of
    ``body`` to ``url`` (the demo webhook URL)."""
    stamp = str(int(time.time() * 1000))
    signed = b"POST" + url.encode() + body + stamp.encode()
    key = DEMO_ENV["HUBSPOT_CLIENT_SECRET"].encode()
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        **headers,
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": signature,
    }


def standard_headers(body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with a Standard Webhooks timestamp of now and its one signature of
    ``body`` (the webhook-id kept)."""
    stamp = str(int(time.time()))
    key = base64.b64decode(DEMO_ENV["STANDARD_SECRET"].removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {**headers, "webhook-timestamp": stamp, "webhook-signature": f"v1,{signature}"}


def post(base: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST a delivery as the sender would (Content-Length recomputed by httpx)."""
    sent = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    return httpx.post(base + path, content=body, headers=sent, timeout=10)


def leads(base: str) -> list[dict[str, Any]]:
    """Every lead in the embedded sandbox of a hub at ``base``."""
    response = httpx.get(f"{base}/sandbox/_sandbox/leads", headers=SANDBOX_KEYS, timeout=10)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def activities(base: str, lead_id: str) -> list[dict[str, Any]]:
    """The Lead Capture activities of one sandbox lead."""
    response = httpx.get(
        f"{base}/sandbox/_sandbox/leads/{lead_id}/activities", headers=SANDBOX_KEYS, timeout=10
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def lead_by_email(base: str, email: str) -> list[dict[str, Any]]:
    """The sandbox leads with ``email``."""
    return [lead for lead in leads(base) if lead.get("EmailAddress") == email]


def wait_until(check: Callable[[], bool], *, timeout: float = 60.0, what: str = "it") -> None:
    """Poll ``check`` until true; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.05)


def attributes(lead: dict[str, Any]) -> dict[str, Any]:
    """A lead's attributes without the fields the sandbox adds."""
    return {k: v for k, v in lead.items() if k not in SYSTEM_FIELDS}


def on_store(url: str, work: Callable[[EventStore], Awaitable[T]]) -> T:
    """Open the store at ``url`` (as another process would), run ``work`` on it, close it."""

    async def run() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def lead_delivery(endpoint: str, n: int, *, prefix: str = "lead") -> IncomingDelivery:
    """The ``n``-th one-lead delivery of ``endpoint`` (as a webhook would store it): email
    ``{prefix}{n}@example.com``, name ``N{n}``, delivery id ``{prefix}-{n}``."""
    document = {"email": f"{prefix}{n}@example.com", "name": f"N{n}"}
    return IncomingDelivery(
        endpoint=endpoint,
        received_at=time.time(),
        body=orjson.dumps(document),
        content_type="application/json",
        headers={},
        events=(EventIn(delivery_id=f"{prefix}-{n}", document=document),),
    )


def queue_leads(url: str, endpoint: str, count: int, *, prefix: str = "lead") -> None:
    """Store ``count`` one-lead deliveries of ``endpoint`` (:func:`lead_delivery`) in the
    store at ``url``."""

    async def queue(store: EventStore) -> None:
        for n in range(count):
            await store.enqueue(lead_delivery(endpoint, n, prefix=prefix))

    on_store(url, queue)


def stored_events(url: str) -> list[Event]:
    """Every event in the store at ``url`` (up to 10,000), newest first."""
    return on_store(url, lambda store: store.list(limit=10_000))


def enqueue_document(url: str, endpoint: str, delivery_id: str, document: dict[str, Any]) -> int:
    """Store ``document`` as one delivery of ``endpoint`` named ``delivery_id`` in the store at
    ``url`` (as a webhook would); its event id."""

    async def work(store: EventStore) -> int:
        (result,) = await store.enqueue(
            IncomingDelivery(
                endpoint=endpoint,
                received_at=time.time(),
                body=orjson.dumps(document),
                content_type="application/json",
                headers={},
                events=(EventIn(delivery_id=delivery_id, document=document),),
            )
        )
        return int(result.id)

    return on_store(url, work)


def log_lines(output: str, event: str, event_id: int) -> list[dict[str, Any]]:
    """The JSON log lines in ``output`` of ``event`` for event ``event_id``."""
    found = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [e for e in found if e.get("event") == event and e.get("event_id") == event_id]
