"""HubSpot app webhook subscriptions (the Webhooks API; workflows use ``source: hmac``).

* POST only. ``X-HubSpot-Signature-v3`` is the base64 HMAC-SHA256, under the app's
  client secret, of ``"POST"`` + the target URL as configured in the app
  (``webhook_url``) + the raw body + ``X-HubSpot-Request-Timestamp`` (milliseconds,
  refused beyond ``tolerance``): the generic HMAC check does it.
* The body is a JSON array of thin events (``eventId``, ``subscriptionType``,
  ``objectId``, ``portalId``, ``occurredAt``...). Each event of a configured
  ``subscription_types`` (``contact.creation`` by default) is one event of the hub;
  the others (a type that is not text included) are accepted and dropped. A subscribed
  event without an ``objectId`` the dispatcher can read (missing, empty, an object, an
  array, a boolean) makes the delivery a 400. An event is named by its type, object and
  ``eventId`` (HubSpot keeps the ``eventId`` across retries but does not promise it
  unique). The dispatcher reads the object itself (:mod:`hub.dispatch.hubspot`).
"""

from __future__ import annotations

from typing import Any

from hub.config.models import HmacOptions, HubSpotOptions
from hub.sources.base import BodyError, Incoming, NoHandshake, Split, natural_id
from hub.sources.hmac_ import HmacSource

SIGNATURE = "x-hubspot-signature-v3"
TIMESTAMP = "x-hubspot-request-timestamp"


class HubSpotSource(NoHandshake):
    """v3 signature check and event splitting for a HubSpot app's webhooks."""

    kind = "hubspot"
    credential_headers = frozenset({SIGNATURE, "x-hubspot-signature"})
    batches = True

    def __init__(self, options: HubSpotOptions) -> None:
        self.options = options
        self._signature = HmacSource(
            HmacOptions(
                header=SIGNATURE,
                secret=options.client_secret,
                encoding="base64",
                signed="POST" + options.webhook_url + "{body}{timestamp}",
                timestamp_header=TIMESTAMP,
                timestamp_unit="ms",
                tolerance=options.tolerance,
            )
        )
        self._types = frozenset(options.subscription_types)

    def verify(self, request: Incoming, now: float) -> None:
        self._signature.verify(request, now)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        if not isinstance(document, list):
            msg = "not a HubSpot webhook delivery: expected a JSON array of events"
            raise BodyError(400, msg)
        splits: list[Split] = []
        for event in document:
            if not isinstance(event, dict) or not self._subscribed(event.get("subscriptionType")):
                continue
            kind, object_id, event_id = (
                event.get("subscriptionType"),
                natural_id(event.get("objectId")),
                event.get("eventId"),
            )
            if object_id is None:
                msg = f"a {kind} event has no 'objectId'"
                raise BodyError(400, msg)
            splits.append(Split(f"{kind}:{object_id}:{event_id}", event))
        return splits

    def _subscribed(self, kind: Any) -> bool:
        """Whether ``kind`` is a configured subscription type.

        A type that is not text (an array or an object, which a set cannot even look up)
        is of no subscription: the event is dropped like any other unsubscribed one.
        """
        return isinstance(kind, str) and kind in self._types
