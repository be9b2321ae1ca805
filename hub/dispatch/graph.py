"""Facebook enrichment: read the lead behind a ``leadgen`` notification from the Graph API.

A Facebook notification only says that lead ``leadgen_id`` exists; its fields are
read with ``GET {graph_url}/{leadgen_id}?fields=...&access_token=<page token>``.
The outcome is one of :mod:`hub.dispatch.fetch`'s:

- ``Fetched``: the Graph lead object.
- ``FetchRetry``: network errors, 5xx, Graph's transient codes (1, 2, 4, 17,
  32, 341, 368, 613, the rate limits 80000-80014, or ``is_transient``; code 1 worded "reduce
  the amount of data" only :data:`REDUCE_TRIES` times, then dead naming ``fields``) and
  expired/invalid tokens (code 190: a human must refresh the page token) or ones
  lacking a permission (3, 10, 200-299: a human must grant it); until then the lead
  waits and the event's last error says why.
- ``FetchDead``: the lead no longer exists (Graph code 100 with subcode 33: "Object with
  ID ... does not exist, cannot be loaded due to missing permissions", or another Graph
  error at HTTP 404). A 404 without Graph's error object is no Graph answer: retried,
  naming ``graph_url``.

Graph's other code 100 errors refuse the read's parameters, the same for every lead (``(#100)
Tried accessing nonexisting field (emial) on node type (LeadgenLeads)``: a name in the
endpoint's ``fields`` that Graph's lead has not, or no longer has in a newer ``graph_url``
version): retried, the reason naming ``fields``, for a human to fix.

The page access token is a secret: it goes in the query as Graph expects, but it
never appears in a reason, a log line or an exception message (every reason is
also scrubbed of it, in case Graph echoes it back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from hub.config.models import FacebookOptions
from hub.dispatch.fetch import (
    EXCERPT,
    NOT_THE_API,
    FetchDead,
    Fetched,
    FetchOutcome,
    FetchRetry,
    LeadReader,
    read_lead,
    refused_id,
)
from hub.dispatch.leadsquared import parse_json

#: Graph error codes that mean "try again later": throttling, temporary outages, a
#: temporary block for a policy violation (368: Meta's guide says to wait and retry), and the
#: Business Use Case rate limits (80000-80014: 80005 is LeadGen's, which lead reads count
#: against, 80001 the Pages one a page token's calls count against).
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613, *range(80000, 80015)})
#: Of those, the rate limits: the app (4), the user (17), the page (32), the application's
#: (341), calls per second (613) and the Business Use Cases': every read of the endpoint
#: waits while one of them holds (``FetchRetry.throttled``), not only the read refused.
THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
#: Code 1 ("An unknown error occurred", Meta's guide: wait and retry) worded "Please reduce
#: the amount of data you're asking for, then retry your request": Graph gave up on the read
#: as asked (its fields), and answers it so again and again, unlike a passing outage.
REDUCE_CODE = 1
REDUCE_WORDS = "reduce the amount of data"
#: Tries such a read gets (a few, over a minute or two on the default schedule: Graph may
#: have been loaded for a moment), then the lead is dead, its reason naming ``fields``.
REDUCE_TRIES = 5
TOKEN_CODE = 190
#: Graph's "permission not granted or removed" codes (10, and 200-299), and 3 (API Method:
#: the app lacks the capability or permission the call needs): the page token or its app
#: lacks what lead reads need, which a human grants; every lead waits for it meanwhile.
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
NOT_FOUND_CODE = 100
#: Code 100's subcode for a node Graph cannot load (the lead deleted, or not visible to the
#: page token); code 100 without it refuses a parameter of the read (its ``fields``).
NOT_FOUND_SUBCODE = 33
#: The fields a Graph lead has (Meta's Lead reference), named in the advice of a refused read.
LEAD_FIELDS = (
    "ad_id, ad_name, adset_id, adset_name, campaign_id, campaign_name, created_time, "
    "custom_disclaimer_responses, field_data, form_id, id, is_organic, partner_name, platform"
)
#: The notification keys a mapping may rely on, added to the lead where it lacks them.
CHANGE_KEYS = ("page_id", "form_id", "ad_id", "adgroup_id", "leadgen_id", "created_time")


def merge_document(lead: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """The document Facebook mappings see: the lead plus the change keys it lacks."""
    document = dict(lead)
    for key in CHANGE_KEYS:
        if key in change and document.get(key) in (None, ""):
            document[key] = change[key]
    return document


def classify_graph(status: int, content: bytes) -> FetchOutcome:
    """The outcome of one Graph lead read, from its status and raw body."""
    body = parse_json(content)
    error = body.get("error") if isinstance(body, dict) else None
    if 200 <= status < 300 and isinstance(body, dict) and error is None:
        return Fetched(body)
    if isinstance(error, dict):
        given = error.get("code")
        # Only an integer is a Graph code: a list or an object (unhashable) raised TypeError
        # here, the event retried as "preparing the event failed" with a traceback each time.
        code = given if isinstance(given, int) and not isinstance(given, bool) else None
        message = str(error.get("message", ""))[:EXCERPT]
        kind = str(error.get("type", "unknown"))[:EXCERPT]
        label = f"Graph error {str(given)[:EXCERPT]} ({kind}): {message}"
        if code == TOKEN_CODE:
            return FetchRetry(
                f"{label}; the page access token is expired or invalid: refresh it", "token"
            )
        if code in PERMISSION_CODES:
            return FetchRetry(
                f"{label}; the page access token (or its app) lacks a permission lead reads need "
                "(leads_retrieval, pages_manage_ads, pages_read_engagement, pages_show_list): "
                "grant it",
                "token",
            )
        if code == REDUCE_CODE and REDUCE_WORDS in message.lower():
            return FetchRetry(
                f"{label}; Graph would not answer the read with the fields it asks for: read "
                "fewer (the endpoint's fields; a lead's own are few and small, so this may also "
                "be Graph loaded for a while)",
                "transient",
                tries=REDUCE_TRIES,
            )
        if code in TRANSIENT_CODES or error.get("is_transient") is True:
            return FetchRetry(label, "transient", throttled=code in THROTTLE_CODES)
        if code == NOT_FOUND_CODE and not _gone(error):
            # The same read of every lead fails alike: killing each as deleted (as it was)
            # lost every lead of the endpoint to a typo in its fields.
            return FetchRetry(
                f"{label}; Graph refuses the read's parameters: check the endpoint's fields "
                f"(a lead's: {LEAD_FIELDS})",
                "config",
            )
        if code == NOT_FOUND_CODE:
            # Graph's own words: "does not exist, cannot be loaded due to missing permissions":
            # a page token of another page reads every lead so, none of them deleted.
            return FetchDead(
                f"{label}; the lead was deleted, or the page access token cannot see it (a "
                "token of another page, or without leads access to this one)",
                "not_found",
                fixable=True,
            )
        if status == 404:
            return FetchDead(f"{label}; the lead does not exist (deleted?)", "not_found")
        if status >= 500:
            return FetchRetry(f"HTTP {status}: {label}", "server_error")
        return FetchDead(f"HTTP {status}: {label}", "rejected")
    text = content.decode("utf-8", "replace").strip()[:EXCERPT] or "(empty body)"
    if status == 404:  # Graph says a lead is gone with its error object (code 100)
        return FetchRetry(f"HTTP 404: {text}; {NOT_THE_API.format(option='graph_url')}", "config")
    if status >= 500 or status in (408, 429):  # 408: the request timed out on its way in
        return FetchRetry(f"HTTP {status}: {text}", "server_error")
    if 200 <= status < 300:
        return FetchRetry(f"HTTP {status} with an unexpected body: {text}", "bad_answer")
    return FetchDead(f"HTTP {status}: {text}", "rejected")


def _gone(error: Mapping[str, Any]) -> bool:
    """Whether a code 100 ``error`` says the lead cannot be loaded: subcode 33, or Graph's
    ``GraphMethodException`` ("Unsupported get request"), never a refused field."""
    return (
        error.get("error_subcode") == NOT_FOUND_SUBCODE
        or error.get("type") == "GraphMethodException"
    )


class GraphClient(LeadReader):
    """Reads Graph leads over one shared :class:`httpx.AsyncClient`."""

    async def fetch_lead(self, options: FacebookOptions, leadgen_id: str) -> FetchOutcome:
        """Read lead ``leadgen_id``; never raises on I/O errors."""
        token = options.page_access_token.reveal()
        # "/", "?", "#": another Graph path, a query, a fragment (12#x would read lead 12)
        refused = refused_id(leadgen_id, "a Facebook lead id", forbidden="/?#")
        if refused is not None:
            return refused
        # Quoted, so that what the notification names is the one node read (a space, a %).
        url = f"{options.graph_url.rstrip('/')}/{quote(leadgen_id, safe='')}"
        params = {"fields": ",".join(options.fields), "access_token": token}
        return await read_lead(
            self._http,
            url,
            token=token,
            classify=classify_graph,
            url_option="graph_url",
            timeout=options.read_timeout,
            params=params,
        )
