"""Generic HMAC-signed webhooks (``source: hmac``): Tally, Webflow, HubSpot and the like.

The signature travels in the header named by ``header``: ``prefix`` followed by
the ``encoding`` (hex or base64) of the HMAC (``algorithm``: sha256, sha1, sha512)
of the signed content under ``secret``. The signed content is the ``signed``
template with ``{body}`` replaced by the raw body and ``{timestamp}`` by the value
of ``timestamp_header`` (e.g. Webflow: ``{timestamp}:{body}``, unit ms). When a
timestamp header is configured it must lie within ``tolerance`` of now. Hex
signatures are compared case-insensitively. The delivery id comes from the
endpoint's ``dedupe`` path, else a hash of the body.

A signature that does not match is looked at once more, for the log line only: when it is
the right HMAC of the body written with another prefix, encoding or algorithm (a sender that
writes ``sha256=`` where the endpoint names no prefix, base64 where it says hex), the reason
names the settings it was made with, so that onboarding a sender is a fix of its YAML, not
a guess. The sender still gets a bare 401.
"""

from __future__ import annotations

import base64

from hub.config.models import HmacOptions
from hub.sources.base import Incoming, VerificationError, WholeBody, check_timestamp, digest, same

_ALGORITHMS = ("sha256", "sha1", "sha512")
_ENCODINGS = ("hex", "base64")
#: The longest text before a signature the log names as its prefix (``sha256=``, ``v1=``).
_SHOWN_PREFIX = 20


class HmacSource(WholeBody):
    """A configurable HMAC signature check; one event per body."""

    kind = "hmac"

    def __init__(self, options: HmacOptions, unit_setting: str = "timestamp_unit") -> None:
        """``unit_setting``: the key a refusal names when the timestamp is in the other unit
        (``""`` for a source that builds its options itself: HubSpot's milliseconds)."""
        self.options = options
        self._unit_setting = unit_setting
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
            check_timestamp(
                raw,
                now=now,
                tolerance=opts.tolerance,
                unit=opts.timestamp_unit,
                setting=self._unit_setting,
            )
            timestamp = (raw or "").strip()
        elif self._uses_timestamp:
            msg = "the signed template uses {timestamp} but no timestamp_header is configured"
            raise VerificationError(msg)
        before = self._before.replace("{timestamp}", timestamp).encode("utf-8")
        after = self._after.replace("{timestamp}", timestamp).encode("utf-8")
        signed = before + request.body + after
        mac = digest(opts.algorithm, self._key, signed)
        given = given.strip()
        if opts.encoding == "hex":
            expected = opts.prefix + mac.hex()
            compared = given[: len(opts.prefix)] + given[len(opts.prefix) :].lower()
        else:
            expected = opts.prefix + base64.b64encode(mac).decode()
            compared = given
        if not same(expected, compared):
            otherwise = self._made_otherwise(given, signed, mac)
            msg = f"{opts.header} does not match the body{otherwise}"
            raise VerificationError(msg)

    def _made_otherwise(self, given: str, signed: bytes, mac: bytes) -> str:
        """What settings ``given`` was made with, when it is the right HMAC of ``signed``
        under another prefix, encoding or algorithm (``""`` when it is not: a wrong secret, a
        body changed on the way); ``mac``: its HMAC under the endpoint's algorithm, made for
        the check already. Only a failed check comes here; each comparison is
        constant-time, so the 401's timing tells no more of the right signature than before.
        """
        opts = self.options
        for algorithm in sorted(_ALGORITHMS, key=lambda a: a != opts.algorithm):
            if algorithm != opts.algorithm:  # (the endpoint's own: ``mac``, made already)
                mac = digest(algorithm, self._key, signed)
            for encoding in _ENCODINGS:
                text = mac.hex() if encoding == "hex" else base64.b64encode(mac).decode()
                tail = given[-len(text) :] if len(given) >= len(text) else ""
                if not same(text, tail.lower() if encoding == "hex" else tail):
                    continue
                prefix = given[: len(given) - len(text)]
                if len(prefix) > _SHOWN_PREFIX:  # more than a prefix: never log what it is
                    return ""
                wrong = [
                    f"{key}: {value!r}" if key == "prefix" else f"{key}: {value}"
                    for key, value, configured in (
                        ("algorithm", algorithm, opts.algorithm),
                        ("encoding", encoding, opts.encoding),
                        ("prefix", prefix, opts.prefix),
                    )
                    if value != configured
                ]
                if not wrong:  # made as set: then it matched (never here)
                    return ""
                return (
                    f" as the endpoint is set; it is the body's signature made with "
                    f"{', '.join(wrong)}: set that on the endpoint"
                )
        return ""
