"""LinkedIn enrichment: read the form response behind a lead notification.

A notification names the response by URN (``urn:li:leadGenFormResponse:<id>``); its
answers are read with ``GET {api_url}/leadFormResponses/<id>`` and the headers
``Authorization: Bearer <token>``, ``LinkedIn-Version`` and
``X-Restli-Protocol-Version: 2.0.0``. The outcome is one of
:mod:`hub.dispatch.graph`'s:

- ``Fetched``: the response object (``formResponse.answers``, ``testLead``...).
- ``FetchRetry``: network errors, 429, 5xx; 401/403: an expired token or one without
  the lead permission (``r_marketing_leadgen_automation`` and a role on the ad account
  or page); 426: an ``api_version`` LinkedIn no longer serves (it keeps about a year of
  versions). A human must fix the last two; until then the lead waits and the event's
  last error says why.
- ``FetchDead``: the response does not exist (404), or another refusal.

The access token is a secret: it travels only in the header and never appears in a
reason, a log line or an exception message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from hub.config.models import LinkedInOptions
from hub.dispatch.graph import FetchDead, Fetched, FetchOutcome, FetchRetry, read_lead

URN_PREFIX = "urn:li:leadGenFormResponse:"
_EXCERPT = 200


def response_id(urn: str) -> str:
    """The id a ``leadGenFormResponse`` URN names (the text itself when it is no URN)."""
    return urn.removeprefix(URN_PREFIX)


def merge_notification(response: Mapping[str, Any], notification: Mapping[str, Any]) -> Any:
    """The document LinkedIn mappings see: the response plus the notification's keys it
    lacks (``leadAction``, ``leadGenFormResponse``, ``occurredAt``...)."""
    document = dict(response)
    for key, value in notification.items():
        document.setdefault(key, value)
    return document


def classify_linkedin(status: int, content: bytes) -> FetchOutcome:
    """The outcome of one response read, from its status and raw body."""
    try:
        body: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if 200 <= status < 300 and isinstance(body, dict):
        return Fetched(body)
    if isinstance(body, dict) and "message" in body:
        code = body.get("serviceErrorCode")
        detail = str(body["message"])[:_EXCERPT] + (f" (serviceErrorCode {code})" if code else "")
    else:
        detail = content.decode("utf-8", "replace").strip()[:_EXCERPT] or "(empty body)"
    label = f"HTTP {status}: {detail}"
    if status in (401, 403):
        return FetchRetry(
            f"{label}; the access token is expired, or lacks r_marketing_leadgen_automation "
            "or a role on the form's account: fix it",
            "token",
        )
    if status == 426:
        return FetchRetry(
            f"{label}; LinkedIn no longer serves this LinkedIn-Version: set the endpoint's "
            "api_version to a current one (YYYYMM, less than a year old)",
            "version",
        )
    if status == 404:
        return FetchDead(f"{label}; the form response does not exist (deleted?)", "not_found")
    if status == 429 or status >= 500:
        return FetchRetry(label, "server_error")
    if 200 <= status < 300:
        return FetchRetry(f"HTTP {status} with an unexpected body: {detail}", "bad_answer")
    return FetchDead(label, "rejected")


class LinkedInClient:
    """Reads LinkedIn form responses over one shared :class:`httpx.AsyncClient`."""

    def __init__(self, http: httpx.AsyncClient, *, timeout: float = 10.0) -> None:
        self._http = http
        self._timeout = timeout

    async def fetch_response(self, options: LinkedInOptions, urn: str) -> FetchOutcome:
        """Read the form response ``urn`` names; never raises on I/O errors."""
        token = options.access_token.reveal()
        ident = response_id(urn)
        if not ident:
            return FetchDead(f"{urn!r} is not a LinkedIn form response", "rejected")
        url = f"{options.api_url}/leadFormResponses/{quote(ident, safe='')}"
        headers = {
            "Authorization": f"Bearer {token}",
            "LinkedIn-Version": options.api_version,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        return await read_lead(
            self._http,
            url,
            token=token,
            classify=classify_linkedin,
            url_option="api_url",
            timeout=self._timeout,
            headers=headers,
        )
