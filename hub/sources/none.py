"""Unverified endpoints (``source: none``): for trusted networks only (``check`` warns).

The document is the body; the delivery id comes from the endpoint's ``dedupe``
path, else a hash of the body.
"""

from __future__ import annotations

from hub.config.models import NoneOptions
from hub.sources.base import Incoming, WholeBody


class NoneSource(WholeBody):
    """Takes every request as it is."""

    kind = "none"
    credential_headers: frozenset[str] = frozenset()

    def __init__(self, options: NoneOptions | None = None) -> None:
        self.options = options

    def verify(self, request: Incoming, now: float) -> None:
        return None
