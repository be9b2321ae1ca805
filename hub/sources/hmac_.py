"""Generic HMAC-signed webhooks (``source: hmac``): Tally, Webflow, HubSpot and the like.

The signature travels in the header named by ``header``: ``prefix`` followed by
the ``encoding`` (hex or base64) of the HMAC (``algorithm``: sha256, sha1, sha512)
of the signed content under ``secret``. The signed content is the ``signed``
template with ``{body}`` replaced by the raw body and ``{timestamp}`` by the value
of ``timestamp_header`` (e.g. Webflow: ``{timestamp}:{body}``, unit ms). When a
timestamp header is configured it must lie within ``tolerance`` of now. Hex
signatures are compared case-insensitively. The delivery id comes from the
endpoint's ``dedupe`` path, else a hash of the body.
"""

from __future__ import annotations

import base64

from hub.config.models import HmacOptions
from hub.sources.base import Incoming, VerificationError, WholeBody, check_timestamp, digest, same


class HmacSource(WholeBody):
    """A configurable HMAC signature check; one event per body."""

    kind = "hmac"

    def __init__(self, options: HmacOptions) -> None:
        self.options = options
        self._key = options.secret.encode()
        self._header = options.header.lower()
        self.credential_headers = frozenset({self._header})
        before, _, after = options.signed.partition("{body}")
        self._before = before
        self._after = after
        self._uses_timestamp = "{timestamp}" in options.signed

    def verify(self, request: Incoming, now: float) -> None:
        opts = self.options
        given = request.headers.get(self._header)
        if given is None:
            msg = f"missing {opts.header} header"
            raise VerificationError(msg)
        timestamp = ""
        if opts.timestamp_header:
            raw = request.headers.get(opts.timestamp_header.lower())
            check_timestamp(raw, now=now, tolerance=opts.tolerance, unit=opts.timestamp_unit)
            timestamp = (raw or "").strip()
        elif self._uses_timestamp:
            msg = "the signed template uses {timestamp} but no timestamp_header is configured"
            raise VerificationError(msg)
        before = self._before.replace("{timestamp}", timestamp).encode("utf-8")
        after = self._after.replace("{timestamp}", timestamp).encode("utf-8")
        mac = digest(opts.algorithm, self._key, before + request.body + after)
        given = given.strip()
        if opts.encoding == "hex":
            expected = opts.prefix + mac.hex()
            given = given[: len(opts.prefix)] + given[len(opts.prefix) :].lower()
        else:
            expected = opts.prefix + base64.b64encode(mac).decode()
        if not same(expected, given):
            msg = f"{opts.header} does not match the body"
            raise VerificationError(msg)
