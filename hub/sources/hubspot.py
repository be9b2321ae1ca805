"""HubSpot app webhook subscriptions (the Webhooks API; workflows use ``source: hmac``).

* POST only. ``X-HubSpot-Signature-v3`` is the base64 HMAC-SHA256, under the app's
  client secret, of ``"POST"`` + the target URL as configured in the app
  (``webhook_url``) + the raw body + ``X-HubSpot-Request-Timestamp`` (milliseconds,
  refused beyond ``tolerance``): the generic HMAC check does it. A request that carries
  it is decided by it alone: a wrong v3 is refused whatever else the request carries.
  HubSpot decodes some escapes of the URI before it signs v3 (``%3A`` ``%2F`` ``%3F``
  ``%40`` ``%21`` ``%24`` ``%27`` ``%28`` ``%29`` ``%2A`` ``%2C`` ``%3B``: its
  request-validation page), so a ``webhook_url`` holding one (a token with a ``/`` in its
  query, escaped ``%2F``) is signed with it decoded: checked so (:func:`v3_uri`), and as
  written.
* Without a v3 header, HubSpot's legacy ``X-HubSpot-Signature`` is taken (unless the
  endpoint says ``signatures: v3``), by its ``X-HubSpot-Signature-Version``: ``v1`` is the
  hex SHA-256 of client secret + raw body, ``v2`` of client secret + ``"POST"`` + the same
  ``webhook_url`` + raw body; plain hashes, not HMACs, and without a timestamp (a captured
  delivery can be sent again: its events are duplicates while they are kept). A missing
  or empty version is ``v1``, what HubSpot's docs say the Webhooks API sends and its
  scheme from before the version header (2018); any other version is refused.
* The body is a JSON array of thin events (``eventId``, ``subscriptionType``,
  ``objectId``, ``portalId``, ``occurredAt``...). Each event of a configured
  ``subscription_types`` (``contact.creation`` by default) is one event of the hub;
  the others (a type that is not text included) are accepted and dropped. A subscribed
  event without an ``objectId`` the dispatcher can read (missing, empty, an object, an
  array, a boolean) is no lead: beside good ones it is left out, the good ones stored, and
  the ``delivery_received`` line is a warning counting it (``object_id_missing``), the body
  stored with the events for a look. It made the whole delivery a 400, which HubSpot does
  not retry: the good events of its batch were lost. When no subscribed event of the
  delivery is a good one, the delivery is a 400 naming the fault (as Facebook's batches,
  :mod:`hub.sources.facebook`). An event is named by its type, object and
  ``eventId`` (HubSpot keeps the ``eventId`` across retries but does not promise it
  unique). The dispatcher reads the object itself (:mod:`hub.dispatch.hubspot`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from hub.config.models import HmacOptions, HubSpotOptions
from hub.sources.base import (
    BodyError,
    Incoming,
    NoHandshake,
    Split,
    VerificationError,
    natural_id,
    same,
)
from hub.sources.hmac_ import HmacSource
from hub.sources.split import Noted

SIGNATURE = "x-hubspot-signature-v3"
TIMESTAMP = "x-hubspot-request-timestamp"
#: The legacy signature (v1 or v2, as ``X-HubSpot-Signature-Version`` says).
LEGACY = "x-hubspot-signature"
VERSION = "x-hubspot-signature-version"
#: The most of an unknown version's text a reason shows (it is the sender's text).
SHOWN_VERSION = 16
#: The escapes HubSpot decodes in the request URI before it signs v3 (its table of them).
_V3_DECODED = re.compile("%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def v3_uri(url: str) -> str:
    """``url`` as HubSpot writes it in what v3 signs: the escapes of its table decoded."""
    return _V3_DECODED.sub(lambda found: chr(int(found.group(1), 16)), url)


class HubSpotSource(NoHandshake):
    """Signature check (v3, else legacy v1/v2) and event splitting for a HubSpot app's webhooks."""

    kind = "hubspot"
    credential_headers = frozenset({SIGNATURE, LEGACY})
    batches = True

    def __init__(self, options: HubSpotOptions) -> None:
        self.options = options
        #: What both v3 and v2 sign before the body: the method and the full URI (v2's
        #: exactly as configured; v3's with HubSpot's escapes decoded, or as configured).
        request_line = "POST" + options.webhook_url
        lines = dict.fromkeys(("POST" + v3_uri(options.webhook_url), request_line))
        self._signatures = tuple(
            HmacSource(
                HmacOptions(
                    header=SIGNATURE,
                    secret=options.client_secret,
                    encoding="base64",
                    signed=line + "{body}{timestamp}",
                    timestamp_header=TIMESTAMP,
                    timestamp_unit="ms",
                    tolerance=options.tolerance,
                ),
                unit_setting="",  # (HubSpot's unit is no setting of the endpoint)
            )
            for line in lines
        )
        self._legacy = options.signatures != "v3"
        secret = options.client_secret.encode()
        #: What v1 and v2 hash before the raw body.
        self._heads = {"v1": secret, "v2": secret + request_line.encode("utf-8")}
        self._types = frozenset(options.subscription_types)

    def verify(self, request: Incoming, now: float) -> None:
        """v3 when the request carries it (or the endpoint takes nothing else), else legacy.

        Every reason names the scheme that failed; none holds a signature or the secret.
        """
        headers = request.headers
        if SIGNATURE in headers or not self._legacy:
            try:
                self._verify_v3(request, now)
            except VerificationError as exc:
                reason = f"signature v3: {exc.reason}"
                if SIGNATURE not in headers and LEGACY in headers:
                    reason += "; the legacy X-HubSpot-Signature is not taken here (signatures: v3)"
                raise VerificationError(reason) from None
            return
        self._verify_legacy(request)

    def _verify_v3(self, request: Incoming, now: float) -> None:
        """v3 over the URI as HubSpot signs it, or as configured (when that differs): every
        check is run, whichever passes; the reason is the first's."""
        reasons = []
        for signature in self._signatures:
            try:
                signature.verify(request, now)
            except VerificationError as exc:
                reasons.append(exc.reason)
        if len(reasons) == len(self._signatures):
            raise VerificationError(reasons[0])

    def _verify_legacy(self, request: Incoming) -> None:
        """``X-HubSpot-Signature``: hex SHA-256 of secret + body (v1) or secret + POST + URL
        + body (v2), compared in constant time."""
        given = request.headers.get(LEGACY)
        if given is None:
            msg = "missing X-HubSpot-Signature-v3 header (and no legacy X-HubSpot-Signature)"
            raise VerificationError(msg)
        raw = (request.headers.get(VERSION) or "").strip()
        version = raw.lower() or "v1"
        head = self._heads.get(version)
        if head is None:
            shown = raw[:SHOWN_VERSION]
            msg = (
                f"legacy signature: X-HubSpot-Signature-Version {shown!r} is neither v1 nor v2 "
                "(and the request has no X-HubSpot-Signature-v3)"
            )
            raise VerificationError(msg)
        hashed = hashlib.sha256(head)
        hashed.update(request.body)
        if not same(hashed.hexdigest(), given.strip().lower()):
            taken = "" if raw else " (no X-HubSpot-Signature-Version: taken as v1)"
            msg = f"legacy signature {version}: X-HubSpot-Signature does not match the body{taken}"
            raise VerificationError(msg)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        if not isinstance(document, list):
            msg = "not a HubSpot webhook delivery: expected a JSON array of events"
            raise BodyError(400, msg)
        splits: list[Split] = []
        missing: list[Any] = []  # the types of the subscribed events without an objectId
        for event in document:
            if not isinstance(event, dict) or not self._subscribed(event.get("subscriptionType")):
                continue
            kind, object_id, event_id = (
                event.get("subscriptionType"),
                natural_id(event.get("objectId")),
                event.get("eventId"),
            )
            if object_id is None:
                missing.append(kind)
                continue
            splits.append(Split(f"{kind}:{object_id}:{event_id}", event))
        if missing and not splits:
            msg = f"a {missing[0]} event has no 'objectId'"
            raise BodyError(400, msg)
        if missing:
            return Noted(splits, len(missing), None, missed_as="object_id_missing")
        return splits

    def _subscribed(self, kind: Any) -> bool:
        """Whether ``kind`` is a configured subscription type.

        A type that is not text (an array or an object, which a set cannot even look up)
        is of no subscription: the event is dropped like any other unsubscribed one.
        """
        return isinstance(kind, str) and kind in self._types
