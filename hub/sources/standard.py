"""Standard Webhooks 1.0 (Make event subscriptions, Svix and other senders).

Headers ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
``webhook-signature``: a space-separated list of ``v1,<base64 HMAC-SHA256>``
entries over ``{id}.{timestamp}.{raw body}``, keyed with the base64-decoded secret
after its ``whsec_`` prefix. Several entries appear during key rotation: any match
is enough. The timestamp must lie within ``tolerance`` of now (default 5 minutes).
The natural delivery id is ``webhook-id``.
"""

from __future__ import annotations

import base64
import binascii

from hub.config.models import StandardOptions
from hub.sources.base import (
    Incoming,
    Split,
    VerificationError,
    WholeBody,
    check_timestamp,
    digest,
    same,
)

ID = "webhook-id"
TIMESTAMP = "webhook-timestamp"
SIGNATURE = "webhook-signature"
SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key in a ``whsec_<base64>`` secret (the prefix is optional).

    An empty key (``whsec_`` alone) is refused: anyone can sign with it.
    """
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        msg = "The Standard Webhooks secret is not 'whsec_' + base64; copy it from the sender."
        raise ValueError(msg) from None
    return key


class StandardSource(WholeBody):
    """Standard Webhooks verification; one event per body, deduped on ``webhook-id``."""

    kind = "standard"
    credential_headers = frozenset({SIGNATURE})

    def __init__(self, options: StandardOptions) -> None:
        self.options = options
        try:
            self._key: bytes | None = decode_secret(options.secret.reveal())
        except ValueError:
            self._key = None  # every request is rejected; the loader reports the bad secret

    def verify(self, request: Incoming, now: float) -> None:
        if self._key is None:
            msg = "the endpoint's secret is not a valid whsec_ secret"
            raise VerificationError(msg)
        msg_id = request.headers.get(ID)
        timestamp = request.headers.get(TIMESTAMP)
        signatures = request.headers.get(SIGNATURE)
        if not msg_id or timestamp is None or signatures is None:
            msg = "missing webhook-id, webhook-timestamp or webhook-signature header"
            raise VerificationError(msg)
        check_timestamp(timestamp, now=now, tolerance=self.options.tolerance)
        signed = f"{msg_id}.{timestamp}.".encode("utf-8", "surrogateescape") + request.body
        expected = base64.b64encode(digest("sha256", self._key, signed)).decode()
        found = False
        for entry in signatures.split():
            # (a header sent in several lines is joined with ", ": "v1,a=, v1,b=")
            version, _, value = entry.removesuffix(",").partition(",")
            # compare every entry, so the time taken does not say which one matched
            if version == "v1" and same(expected, value):
                found = True
        if not found:
            msg = "no v1 entry of webhook-signature matches"
            raise VerificationError(msg)

    def split(self, request: Incoming, document: object) -> list[Split]:
        msg_id = request.headers.get(ID) or None
        return [Split(msg_id, document)]
