"""HubSpot enrichment: read the CRM object behind an app webhook event.

An event names its object by type (the ``subscriptionType``'s prefix: ``contact``,
``company``, ``deal``, ``ticket``) and ``objectId``; the object is read with
``GET {api_url}/crm/v3/objects/{type}s/{objectId}?properties=...`` and
``Authorization: Bearer <token>``. The outcome is one of :mod:`hub.dispatch.fetch`'s:

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

from hub.config.models import HUBSPOT_OBJECTS, HubSpotOptions
from hub.dispatch.fetch import (
    FetchDead,
    FetchOutcome,
    LeadReader,
    classify_rest,
    message_with,
    read_lead,
    refused_id,
)

#: CRM object path of each subscription type's prefix.
OBJECTS = HUBSPOT_OBJECTS


def classify_hubspot(status: int, content: bytes) -> FetchOutcome:
    """The outcome of one object read, from its status and raw body."""
    return classify_rest(
        status,
        content,
        describe=message_with("category"),
        token_advice="the access token is expired or lacks the object's read scope "
        "(crm.objects.contacts.read for contacts): fix it",
        missing="the object does not exist (deleted or merged?)",
    )


class HubSpotClient(LeadReader):
    """Reads HubSpot CRM objects over one shared :class:`httpx.AsyncClient`."""

    async def fetch_object(self, options: HubSpotOptions, event: Mapping[str, Any]) -> FetchOutcome:
        """Read the object ``event`` names; never raises on I/O errors."""
        kind = str(event.get("subscriptionType") or "").partition(".")[0]
        path = OBJECTS.get(kind)
        object_id = str(event.get("objectId") or "")
        if path is None or not object_id:
            reason = f"cannot tell which CRM object a {kind or 'typeless'} event names"
            return FetchDead(reason, "rejected", asked=False)
        refused = refused_id(object_id, f"a HubSpot {kind} id", forbidden="/")
        if refused is not None:
            return refused
        token = options.access_token.reveal()
        url = f"{options.api_url}/crm/v3/objects/{path}/{quote(object_id, safe='')}"
        return await read_lead(
            self._http,
            url,
            token=token,
            classify=classify_hubspot,
            url_option="api_url",
            timeout=options.read_timeout,
            params={"properties": ",".join(options.properties)},
            headers={"Authorization": f"Bearer {token}"},
        )
