"""Typeform webhooks.

``Typeform-Signature`` is ``sha256=`` + base64 HMAC-SHA256 of the raw body under
the webhook secret. There is no timestamp. The document is the body; the natural
delivery id is ``event_id`` (stable across Typeform's retries).
"""

from __future__ import annotations

import base64

from hub.config.models import TypeformOptions
from hub.sources.base import Incoming, VerificationError, WholeBody, digest, same

SIGNATURE = "typeform-signature"


class TypeformSource(WholeBody):
    """``Typeform-Signature`` check; one event per body, deduped on ``event_id``."""

    kind = "typeform"
    credential_headers = frozenset({SIGNATURE})
    id_key = "event_id"

    def __init__(self, options: TypeformOptions) -> None:
        self.options = options
        self._key = options.secret.encode()

    def verify(self, request: Incoming, now: float) -> None:
        given = request.headers.get(SIGNATURE)
        if given is None:
            msg = "missing Typeform-Signature header"
            raise VerificationError(msg)
        mac = digest("sha256", self._key, request.body)
        expected = "sha256=" + base64.b64encode(mac).decode()
        if not same(expected, given.strip()):
            msg = "Typeform-Signature does not match the body"
            raise VerificationError(msg)
