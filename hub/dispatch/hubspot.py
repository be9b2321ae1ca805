"""HubSpot enrichment: read the CRM object behind an app webhook event.

An event names its object by type (the ``subscriptionType``'s prefix: ``contact``,
``company``, ``deal``, ``ticket``) and ``objectId``; the object is read with
``GET {api_url}/crm/v3/objects/{type}s/{objectId}?properties=...`` and
``Authorization: Bearer <token>``. The outcome is one of :mod:`hub.dispatch.graph`'s:

- ``Fetched``: the object (``id``, ``properties``, ``createdAt``...).
- ``FetchRetry``: network errors, 429, 5xx, and 401/403: an expired token or one
  without the object's read scope; a human must fix it, and until then the lead waits
  and the event's last error says why.
- ``FetchDead``: the object does not exist (404: deleted or merged away), or another
  refusal.

The token travels only in the header and never appears in a reason or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from hub.config.models import HubSpotOptions
from hub.dispatch.graph import FetchDead, Fetched, FetchOutcome, FetchRetry, read_lead

#: CRM object path of each subscription type's prefix.
OBJECTS = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}
_EXCERPT = 200


def merge_event(crm_object: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """The document HubSpot mappings see: the object plus the event's keys it lacks
    (``objectId``, ``portalId``, ``subscriptionType``, ``occurredAt``...)."""
    document = dict(crm_object)
    for key, value in event.items():
        document.setdefault(key, value)
    return document


def classify_hubspot(status: int, content: bytes) -> FetchOutcome:
    """The outcome of one object read, from its status and raw body."""
    try:
        body: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if 200 <= status < 300 and isinstance(body, dict):
        return Fetched(body)
    if isinstance(body, dict) and "message" in body:
        category = body.get("category")
        detail = str(body["message"])[:_EXCERPT] + (f" ({category})" if category else "")
    else:
        detail = content.decode("utf-8", "replace").strip()[:_EXCERPT] or "(empty body)"
    label = f"HTTP {status}: {detail}"
    if status in (401, 403):
        return FetchRetry(
            f"{label}; the access token is expired or lacks the object's read scope "
            "(crm.objects.contacts.read for contacts): fix it",
            "token",
        )
    if status == 404:
        return FetchDead(f"{label}; the object does not exist (deleted or merged?)", "not_found")
    if status == 429 or status >= 500:
        return FetchRetry(label, "server_error")
    if 200 <= status < 300:
        return FetchRetry(f"HTTP {status} with an unexpected body: {detail}", "bad_answer")
    return FetchDead(label, "rejected")


class HubSpotClient:
    """Reads HubSpot CRM objects over one shared :class:`httpx.AsyncClient`."""

    def __init__(self, http: httpx.AsyncClient, *, timeout: float = 10.0) -> None:
        self._http = http
        self._timeout = timeout

    async def fetch_object(self, options: HubSpotOptions, event: Mapping[str, Any]) -> FetchOutcome:
        """Read the object ``event`` names; never raises on I/O errors."""
        kind = str(event.get("subscriptionType") or "").partition(".")[0]
        path = OBJECTS.get(kind)
        object_id = str(event.get("objectId") or "")
        if path is None or not object_id:
            reason = f"cannot tell which CRM object a {kind or 'typeless'} event names"
            return FetchDead(reason, "rejected")
        token = options.access_token.reveal()
        url = f"{options.api_url}/crm/v3/objects/{path}/{quote(object_id, safe='')}"
        return await read_lead(
            self._http,
            url,
            token=token,
            classify=classify_hubspot,
            url_option="api_url",
            timeout=self._timeout,
            params={"properties": ",".join(options.properties)},
            headers={"Authorization": f"Bearer {token}"},
        )
