"""LinkedIn enrichment: read the form response behind a lead notification.

A notification names the response by URN (``urn:li:leadGenFormResponse:<id>``); its
answers are read with ``GET {api_url}/leadFormResponses/<id>`` and the headers
``Authorization: Bearer <token>``, ``LinkedIn-Version`` and
``X-Restli-Protocol-Version: 2.0.0``. The outcome is one of
:mod:`hub.dispatch.fetch`'s:

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

from urllib.parse import quote

from hub.config.models import LinkedInOptions
from hub.dispatch.fetch import (
    FetchDead,
    FetchOutcome,
    LeadReader,
    classify_rest,
    message_with,
    read_lead,
    refused_id,
)

URN_PREFIX = "urn:li:leadGenFormResponse:"


def response_id(urn: str) -> str:
    """The id a ``leadGenFormResponse`` URN names (the text itself when it is no URN)."""
    return urn.removeprefix(URN_PREFIX)


def classify_linkedin(status: int, content: bytes) -> FetchOutcome:
    """The outcome of one response read, from its status and raw body."""
    return classify_rest(
        status,
        content,
        describe=message_with("serviceErrorCode", "serviceErrorCode "),
        token_advice="the access token is expired, or lacks r_marketing_leadgen_automation "
        "or a role on the form's account: fix it",
        missing="the form response does not exist (deleted?)",
        advice={
            426: (
                "LinkedIn no longer serves this LinkedIn-Version: set the endpoint's "
                "api_version to a current one (YYYYMM, less than a year old)",
                "version",
            )
        },
    )


class LinkedInClient(LeadReader):
    """Reads LinkedIn form responses over one shared :class:`httpx.AsyncClient`."""

    async def fetch_response(self, options: LinkedInOptions, urn: str) -> FetchOutcome:
        """Read the form response ``urn`` names; never raises on I/O errors."""
        token = options.access_token.reveal()
        ident = response_id(urn)
        if not ident:
            return FetchDead(f"{urn!r} is not a LinkedIn form response", "rejected", asked=False)
        refused = refused_id(ident, "a LinkedIn form response id", forbidden="/")
        if refused is not None:
            return refused
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
            timeout=options.read_timeout,
            headers=headers,
        )
