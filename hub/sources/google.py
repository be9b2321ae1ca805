"""Google Ads lead form webhooks.

Google signs nothing: the body's ``google_key`` must equal the key set on the
form (the endpoint's ``key``), compared in constant time. The key lives inside
the body, so the check runs at :meth:`GoogleSource.split`, after parsing. The
document is the body; the natural delivery id is ``lead_id``.

Before that, :meth:`GoogleSource.verify` refuses what it can tell without parsing
the body, as the split's check would: a form or multipart body without a field
that can be ``google_key``, or a form whose ``google_key`` is not the key. Every
other sender's check runs on the raw bytes before the body is parsed; this one
ran after, so anyone could make the hub unescape (and report the bad escape at
the end of) a mebibyte of a form for nothing, most of a tenth of a second of
the event loop each, more on a loaded machine. A JSON body is parsed first as
before (orjson reads a mebibyte in about a millisecond).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.sources.base import Incoming, Split, VerificationError, WholeBody
from hub.sources.bodies import MULTIPART, form_values, media_type

if TYPE_CHECKING:  # (an annotation only: ``leadhub events`` reads credential_fields here)
    from hub.config.models import GoogleOptions


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
        """Refuse, before the body is parsed, a form or multipart body :meth:`split` would
        refuse for its ``google_key`` (see the module docstring); the rest is checked by
        :meth:`split`. Never refuses a body :meth:`split` would take."""
        headers = request.headers
        if _encoded(headers.get("content-encoding")) or _encoded(
            headers.get("transfer-encoding"), "chunked"
        ):
            return  # (answered 415 by ingest, whose check follows this one)
        content_type = headers.get("content-type")
        if media_type(content_type or "")[0] == MULTIPART:
            # a part's name is written as it is (python-multipart reads no escapes of it)
            if b"google_key" not in request.body:
                raise VerificationError(_MISSING)
            return
        key = self.options.key
        values = form_values(content_type, request.body, "google_key", len(key.reveal()))
        if values is None:
            return
        if len(values) != 1 or values[0] == "":  # (several: a list, as the parser makes it)
            raise VerificationError(_MISSING)
        given = values[0]
        if not isinstance(given, str):  # (None: unread, too long to be the key)
            raise VerificationError(_MISMATCH if given is None else _MISSING)
        if not key or not key.matches(given):
            raise VerificationError(_MISMATCH)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        given = document.get("google_key") if isinstance(document, dict) else None
        if not isinstance(given, str) or not given:
            raise VerificationError(_MISSING)
        if not self.options.key or not self.options.key.matches(given):
            raise VerificationError(_MISMATCH)
        return super().split(request, document)


_MISSING = "missing or empty google_key in the body"
_MISMATCH = "google_key does not match the endpoint's key"


def _encoded(value: str | None, *plain: str) -> bool:
    """Whether a ``Content-Encoding`` (or ``Transfer-Encoding``, ``plain`` ``chunked``) says
    the body is compressed: its bytes are then not the body's text."""
    if value is None:
        return False
    codings = {c.strip().lower() for c in value.split(",")}
    return bool(codings - {"", "identity", *plain})
