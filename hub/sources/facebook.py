"""Facebook / Meta Lead Ads (the page ``leadgen`` webhook field).

* GET handshake: ``hub.mode=subscribe`` and ``hub.verify_token`` equal to the
  endpoint's ``verify_token`` (constant time) answer 200 with ``hub.challenge`` as
  text/plain; anything else answers 403.
* POST: ``X-Hub-Signature-256`` is ``sha256=`` + lower-case hex HMAC-SHA256 of the
  raw body under ``app_secret``. The legacy SHA-1 ``X-Hub-Signature`` is taken only
  when ``allow_sha1`` is set and the SHA-256 header is absent. Meta signs the
  ``\\u``-escaped body it sends, so only the raw bytes verify.
* Every ``entry[].changes[]`` with ``field == "leadgen"`` is one event, deduped on
  ``leadgen_id``. Its document is the change's ``value`` plus ``entry_id`` and
  ``entry_time``; the dispatcher later merges the lead read from the Graph API.
  Ids are kept as strings: Meta sends them as strings or as JSON numbers, and
  numbers can exceed 2^53, so every integer id is turned into its decimal string
  here (``hub.sources.bodies`` already keeps integers beyond 64 bits exact).
* A verified notification without any leadgen change (another page field, say)
  is accepted with zero events: Meta would otherwise retry it for 36 hours.
* A leadgen change without a ``value`` object is no lead. Beside good ones it is left
  out, the good ones stored (a 400 lost them all, and Meta's retries of the whole batch
  fail as it did), and the ``delivery_received`` line is a warning counting it
  (``leadgen_malformed``), the body stored with the events for a look. When no change
  of the batch is a good one, the delivery is a 400 naming the fault.
"""

from __future__ import annotations

from typing import Any

from hub.config.models import FacebookOptions
from hub.sources.base import BodyError, Handshake, Incoming, Split, VerificationError, digest, same
from hub.sources.split import Noted

SIGNATURE_256 = "x-hub-signature-256"
SIGNATURE_SHA1 = "x-hub-signature"


def _id_text(value: Any) -> Any:
    """Integer ids become decimal strings; everything else is kept."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith("_id")


#: The answer to a handshake refused: a short JSON reason, as every other refusal has (it names
#: no token, so it tells a prober nothing the documentation does not).
_REFUSED = (
    b'{"error":"subscription not verified: hub.mode must be subscribe, with a hub.challenge '
    b"and this endpoint's hub.verify_token\"}"
)


class FacebookSource:
    """Verification, handshake and batch splitting for Facebook Lead Ads."""

    kind = "facebook"
    credential_headers = frozenset({SIGNATURE_256, SIGNATURE_SHA1})
    credential_fields: frozenset[str] = frozenset()
    batches = True

    def __init__(self, options: FacebookOptions) -> None:
        self.options = options
        self._key = options.app_secret.encode()

    def verify(self, request: Incoming, now: float) -> None:
        given = request.headers.get(SIGNATURE_256)
        if given is not None:
            expected = "sha256=" + digest("sha256", self._key, request.body).hex()
            if not same(expected, given.strip().lower()):
                msg = "X-Hub-Signature-256 does not match the body"
                raise VerificationError(msg)
            return
        legacy = request.headers.get(SIGNATURE_SHA1)
        if legacy is not None and self.options.allow_sha1:
            expected = "sha1=" + digest("sha1", self._key, request.body).hex()
            if not same(expected, legacy.strip().lower()):
                msg = "X-Hub-Signature (sha1) does not match the body"
                raise VerificationError(msg)
            return
        if legacy is not None:
            msg = "only the legacy X-Hub-Signature (sha1) was sent and allow_sha1 is off"
            raise VerificationError(msg)
        msg = "missing X-Hub-Signature-256 header"
        raise VerificationError(msg)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        if not isinstance(document, dict) or not isinstance(document.get("entry"), list):
            msg = "not a Facebook notification: expected an object with an 'entry' list"
            raise BodyError(400, msg)
        splits: list[Split] = []
        malformed = 0
        for entry in document["entry"]:
            if not isinstance(entry, dict):
                continue
            changes = entry.get("changes")
            if not isinstance(changes, list):
                continue
            for change in changes:
                if not isinstance(change, dict) or change.get("field") != "leadgen":
                    continue
                value = change.get("value")
                if not isinstance(value, dict):
                    malformed += 1
                    continue
                event: dict[str, Any] = {
                    key: _id_text(item) if _is_id_key(key) else item for key, item in value.items()
                }
                if "id" in entry:
                    event.setdefault("entry_id", _id_text(entry["id"]))
                if "time" in entry:
                    event.setdefault("entry_time", entry["time"])
                leadgen_id = event.get("leadgen_id")
                natural = str(leadgen_id) if isinstance(leadgen_id, str) and leadgen_id else None
                splits.append(Split(natural, event))
        if malformed and not splits:
            msg = "a leadgen change has no 'value' object"
            raise BodyError(400, msg)
        if malformed:
            return Noted(splits, malformed, None, missed_as="leadgen_malformed")
        return splits

    def handshake(self, request: Incoming) -> Handshake:
        query = request.query
        mode = query.get("hub.mode", "")
        token = query.get("hub.verify_token", "")
        challenge = query.get("hub.challenge")
        if (
            mode == "subscribe"
            and challenge is not None
            and self.options.verify_token
            and self.options.verify_token.matches(token)
        ):
            return Handshake(200, challenge.encode("utf-8", "replace"))
        return Handshake(403, _REFUSED, "application/json")
