"""LinkedIn Lead Gen Forms (Lead Sync lead notifications).

* GET handshake: LinkedIn validates a webhook (at registration, then every 2 hours)
  with ``?challengeCode=<uuid>``; the answer is 200 JSON ``{"challengeCode": ...,
  "challengeResponse": <hex HMAC-SHA256 of the code under the client secret>}``.
  Without a code, or with one that is not a UUID, the answer is 400: the hub signs
  nothing else, since signing any text would let anyone forge ``X-LI-Signature``.
* POST: ``X-LI-Signature`` is the lower-case hex HMAC-SHA256, under the app's client
  secret, of ``"hmacsha256=" + raw body``.
* A ``LEAD_ACTION`` notification is one event, deduped on its ``leadGenFormResponse``
  URN and ``leadAction`` (``CREATED`` or ``DELETED``): LinkedIn says notifications come
  more than once. It carries only URNs; the dispatcher reads the answers
  (``GET {api_url}/leadFormResponses/{id}``, :mod:`hub.dispatch.linkedin`). A verified
  notification of another type is accepted with no event.
* ``leadAction`` is read in any case (``created`` is ``CREATED``; none is ``CREATED``, as
  in LinkedIn's first notifications): the event's document has it upper-cased, so a
  mapping's ``skip_if: {$.leadAction: DELETED}`` holds for ``deleted`` too. An action
  that is neither is stored as sent; the dispatcher reads no response for it and logs
  ``linkedin_lead_action_unknown`` naming it (``hub.dispatch.enrich``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from hub.config.models import LinkedInOptions
from hub.sources.base import BodyError, Handshake, Incoming, Split, VerificationError, digest, same

SIGNATURE = "x-li-signature"
LEAD_ACTION = "LEAD_ACTION"
#: The ``leadAction`` of a new lead (its response is read) and of a withdrawn one.
CREATED, DELETED = "CREATED", "DELETED"
#: The shape of LinkedIn's ``challengeCode`` (a UUID); nothing else is signed.
CHALLENGE = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def lead_action(notice: Mapping[str, Any]) -> str:
    """The notification's ``leadAction`` upper-cased (``created`` was taken for a deletion);
    ``CREATED`` when it has none (null or blank too)."""
    action = notice.get("leadAction")
    if action is None or action == "":
        return CREATED
    return str(action).upper()


class LinkedInSource:
    """Verification, handshake and splitting for LinkedIn lead notifications."""

    kind = "linkedin"
    credential_headers = frozenset({SIGNATURE})
    credential_fields: frozenset[str] = frozenset()
    batches = False

    def __init__(self, options: LinkedInOptions) -> None:
        self.options = options
        self._key = options.client_secret.encode()

    def verify(self, request: Incoming, now: float) -> None:
        given = request.headers.get(SIGNATURE)
        if given is None:
            msg = "missing X-LI-Signature header"
            raise VerificationError(msg)
        expected = digest("sha256", self._key, b"hmacsha256=" + request.body).hex()
        if not same(expected, given.strip().lower()):
            msg = "X-LI-Signature does not match the body"
            raise VerificationError(msg)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        if not isinstance(document, dict):
            msg = "not a LinkedIn lead notification: expected a JSON object"
            raise BodyError(400, msg)
        if document.get("type") != LEAD_ACTION:
            return []
        response = document.get("leadGenFormResponse")
        if not isinstance(response, str) or not response:
            msg = "a LEAD_ACTION notification has no 'leadGenFormResponse' URN"
            raise BodyError(400, msg)
        action = lead_action(document)
        if action in (CREATED, DELETED) and document.get("leadAction") != action:
            document = {**document, "leadAction": action}
        return [Split(f"{response}:{action}", document)]

    def handshake(self, request: Incoming) -> Handshake:
        code = request.query.get("challengeCode")
        if not code:
            return Handshake(400, b'{"error":"missing challengeCode"}', "application/json")
        if not CHALLENGE.fullmatch(code):
            # LinkedIn's codes are UUIDs. Signing any text would sign forged notifications:
            # X-LI-Signature is the HMAC of "hmacsha256=" + body under the same secret.
            return Handshake(400, b'{"error":"challengeCode is not a UUID"}', "application/json")
        answer = digest("sha256", self._key, code.encode("utf-8", "surrogateescape")).hex()
        body = orjson.dumps({"challengeCode": code, "challengeResponse": answer})
        return Handshake(200, body, "application/json")
