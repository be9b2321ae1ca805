"""Google Ads lead form webhooks.

Google signs nothing: the body's ``google_key`` must equal the key set on the
form (the endpoint's ``key``), compared in constant time. The key lives inside
the body, so the check runs at :meth:`GoogleSource.split`, after parsing. The
document is the body; the natural delivery id is ``lead_id``.
"""

from __future__ import annotations

from typing import Any

from hub.config.models import GoogleOptions
from hub.sources.base import Incoming, Split, VerificationError, WholeBody


class GoogleSource(WholeBody):
    """The ``google_key`` check; one event per body, deduped on ``lead_id``."""

    kind = "google"
    credential_headers: frozenset[str] = frozenset()
    #: The key is checked here and never needed again: it is not stored (see ``redacted``).
    credential_fields = frozenset({"google_key"})
    id_key = "lead_id"

    def __init__(self, options: GoogleOptions) -> None:
        self.options = options

    def verify(self, request: Incoming, now: float) -> None:
        return None  # the key is inside the body: checked by split()

    def split(self, request: Incoming, document: Any) -> list[Split]:
        given = document.get("google_key") if isinstance(document, dict) else None
        if not isinstance(given, str) or not given:
            msg = "missing or empty google_key in the body"
            raise VerificationError(msg)
        if not self.options.key or not self.options.key.matches(given):
            msg = "google_key does not match the endpoint's key"
            raise VerificationError(msg)
        return super().split(request, document)
