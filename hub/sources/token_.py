"""Shared-token endpoints (``source: token``): Zapier, Make, Pipedream, Unbounce, Jotform.

The token is accepted as ``Authorization: Bearer <token>``, as the password of
``Authorization: Basic`` (Zapier's "Basic Auth" field, ``user|token``), in the
header named by ``header`` (when set), or as the ``?token=`` query parameter;
every candidate is compared in constant time. A ``+`` in the query's token is taken
as written as well as for a space (a base64 token pasted into a URL unescaped). Senders
without a signature of their own (Unbounce, Jotform) can only use the query form. The
delivery id comes from the endpoint's ``dedupe`` path, else a hash of the body.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote, unquote_plus

from hub.config.models import TokenOptions
from hub.sources.base import Incoming, VerificationError, WholeBody


def _basic_password(credentials: str) -> str | None:
    """The password in Basic credentials (``base64(user:password)``), or None if malformed."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def _plus_kept(query: bytes) -> str:
    """The first ``token`` query value with its ``+`` kept as written, not read as a space.

    A token made with ``openssl rand -base64`` holds a ``+`` about one time in three, and
    is pasted into a sender's URL as it is (``?token=ab+cd``): read the form way, the value
    was ``ab cd`` and every delivery a 401 ("the token does not match"), the URL looking
    right. Both readings are compared.
    """
    for field in query.decode("latin-1").split("&"):
        name, _, value = field.partition("=")
        if unquote_plus(name) == "token":
            return unquote(value)
    return ""


class TokenSource(WholeBody):
    """A shared-secret token check; one event per body."""

    kind = "token"

    def __init__(self, options: TokenOptions) -> None:
        self.options = options
        self._header = options.header.lower() if options.header else None
        names = {"authorization"}
        if self._header:
            names.add(self._header)
        self.credential_headers = frozenset(names)

    def verify(self, request: Incoming, now: float) -> None:
        token = self.options.token
        if not token:
            msg = "the endpoint's token is empty"
            raise VerificationError(msg)
        candidates: list[str] = []
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer":
                candidates.append(value.strip())
            elif scheme.lower() == "basic":
                password = _basic_password(value.strip())
                if password is not None:
                    candidates.append(password)
        if self._header is not None and self._header in request.headers:
            candidates.append(request.headers[self._header].strip())
        if request.query_string and "token" in request.query:
            candidates.append(request.query["token"])
            if b"+" in request.query_string:
                candidates.append(_plus_kept(request.query_string))
        if not candidates:
            msg = "no token in Authorization (Bearer or Basic), the token header or ?token="
            raise VerificationError(msg)
        matched = False
        for candidate in candidates:
            if token.matches(candidate):
                matched = True
        if not matched:
            msg = "the token does not match"
            raise VerificationError(msg)
