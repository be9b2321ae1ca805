"""What the enrichment clients share: the outcome of a lead read, and how one is made.

Facebook's Graph API (:mod:`hub.dispatch.graph`), LinkedIn's REST API
(:mod:`hub.dispatch.linkedin`) and HubSpot's CRM API (:mod:`hub.dispatch.hubspot`) are
each read with one GET (:func:`read_lead`), whose answer becomes :class:`Fetched`,
:class:`FetchRetry` or :class:`FetchDead`; the token of the read is masked in every
reason. LinkedIn's and HubSpot's answers are classified alike (:func:`classify_rest`).

A read that is redirected (``http://`` for ``https://``, a moved API) is retried with the
redirect in its reason, for a human to fix the ``api_url`` / ``graph_url``: redirects are
not followed (the token would go along), and killing each lead for a setting would be wrong.
An answer too large for a lead (:data:`~hub.dispatch.transport.MAX_ANSWER`, not read), or
one that does not decode as its ``Content-Encoding`` says, is retried as a ``bad_answer``.
A proxy's 407 is retried as ``proxy``, worded as a send's is (credentials refused, or none
given: :func:`~hub.dispatch.leadsquared.proxy_reason`); the dispatcher then holds the
endpoint's reads, that time not counting toward give_up_after (``Dispatcher.hold_reads``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from hub.config.models import DEFAULT_READ_TIMEOUT
from hub.dispatch.leadsquared import (
    REDIRECTS,
    parse_json,
    proxy_answer,
    proxy_reason,
    redirect_shown,
    transport_reason,
)
from hub.dispatch.lease import read_bound
from hub.dispatch.transport import PROXY_LOGIN, AnswerTooLarge, ProxyRefused
from hub.sources.bodies import MAX_DEPTH, too_deep

EXCERPT = 200  # characters of an error body kept in a reason
#: The advice of a 404 that is not the API's own error (no JSON error object): the URL does
#: not name the API (a wrong path or host, a proxy's page), so every lead's read fails alike.
NOT_THE_API = "no error of the API's own: does the endpoint's {option} name the API?"
#: The longest lead id a read puts in its URL. Real ids are short (a Facebook lead's 16
#: digits, a LinkedIn response id or a HubSpot object id under 100 characters); a longer one
#: comes from a delivery that names no lead, and would make a URL the client refuses.
MAX_ID = 512
#: Seconds a lead read may wait to connect, and for each part of the answer; the whole read
#: at most twice that (:func:`read_bound`). An endpoint's ``read_timeout`` (this by default).
READ_TIMEOUT = DEFAULT_READ_TIMEOUT


#: The longest wait an answer's headers are taken at (seconds): Graph's usage headers give a
#: day at most; a longer Retry-After (a broken or hostile server) holds reads no longer.
MAX_WAIT = 24 * 3600.0
#: Graph's usage headers (JSON) whose ``estimated_time_to_regain_access`` (minutes) says how
#: long the app, page or business is throttled for: Business Use Case limits (page tokens'
#: calls count there), and the platform's per app and per page ones.
USAGE_HEADERS = ("x-business-use-case-usage", "x-page-usage", "x-app-usage")


def parse_wait(headers: Mapping[str, str], now: float) -> float | None:
    """The seconds an answer's ``headers`` say to wait before the next call (the longest of
    ``Retry-After``, in seconds or as an HTTP date, and Graph's usage headers'
    ``estimated_time_to_regain_access``), at most :data:`MAX_WAIT`; None when they give none
    (what is no time: text, a negative, broken JSON, is none)."""
    waits = [_retry_after(headers.get("retry-after"), now)]
    for name in USAGE_HEADERS:
        value = headers.get(name)
        if value:
            minutes = _regain_minutes(parse_json(value.encode("utf-8", "replace")))
            waits.append(None if minutes is None else minutes * 60.0)
    given = [wait for wait in waits if wait is not None]
    return min(max(given), MAX_WAIT) if given else None


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _lead_read_usage(entry: dict[str, Any]) -> bool:
    """Whether a usage header's entry counts a lead read's calls: one without a ``type`` (the
    per app and per page headers), or a Business Use Case of the lead reads' own, LeadGen
    (code 80005) or Pages (80001, the page token's calls). Another use case's throttling (the
    same business's ads_management, 10 hours, say) does not hold lead reads."""
    kind = entry.get("type")
    if kind is None:
        return True
    return isinstance(kind, str) and any(part in kind.lower() for part in ("lead", "page"))


def _regain_minutes(usage: Any, depth: int = 0) -> float | None:
    """The longest ``estimated_time_to_regain_access`` in a usage header's JSON: a flat
    object (X-App-Usage, X-Page-Usage), or by business id a list of them (Business Use Case,
    only those of lead reads: :func:`_lead_read_usage`)."""
    if depth > 3:
        return None
    found: list[float] = []
    if isinstance(usage, dict):
        if not _lead_read_usage(usage):
            return None
        value = usage.get("estimated_time_to_regain_access")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value) and value > 0:
                found.append(float(value))
        children = list(usage.values())
    elif isinstance(usage, list):
        children = usage
    else:
        return None
    for child in children:
        if isinstance(child, dict | list) and (minutes := _regain_minutes(child, depth + 1)):
            found.append(minutes)
    return max(found) if found else None


@dataclass(frozen=True, slots=True)
class Fetched:
    """The lead object the API answered."""

    lead: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FetchRetry:
    """A transient failure; ``kind`` is a short label for metrics (``token``, ``network``...).

    ``throttled``: the API said the app or account is over its rate limit (Graph's rate-limit
    codes, a 429, or an answer giving a time to wait), so every read of the endpoint waits,
    not only this one: ``wait`` seconds, when the answer gave them (:func:`parse_wait`).
    An event failing so at its ``tries``-th attempt is dead, its reason what to change.
    """

    reason: str
    kind: str
    throttled: bool = False
    wait: float | None = None
    #: Attempts the event gets at most when its read fails so (None: as many as the target's
    #: give_up_after allows): an answer the API gives the same read each time is no outage.
    tries: int | None = None


@dataclass(frozen=True, slots=True)
class FetchDead:
    """The lead cannot be fetched, ever (deleted, or not a lead id); ``fixable``: or the API
    cannot tell it from a token that may not see it (Graph's code 100, subcode 33), so the
    dead event's reason ends with the replay that reads it again once the token is fixed.
    ``asked``: False when no request was made (the delivery names no lead the API could
    hold): the API said nothing, and a hold of the endpoint's reads is not over for it."""

    reason: str
    kind: str
    fixable: bool = False
    asked: bool = True


FetchOutcome = Fetched | FetchRetry | FetchDead


#: What a URL's path resolves away (RFC 3986, 5.2.4): never a lead id, whatever the API.
DOT_SEGMENTS = frozenset({".", ".."})


def refused_id(ident: str, what: str, forbidden: str = "") -> FetchDead | None:
    """Why ``ident``, read from a delivery, cannot name ``what`` (``a Facebook lead id``),
    as a dead outcome; None when it can be read.

    Empty, longer than :data:`MAX_ID` or holding a character that is not printable (a
    control character, a line break) is no id of any of the three APIs: reading it could
    only fail, and that failure (httpx refusing the URL) would be a retry blaming the
    endpoint's ``graph_url`` / ``api_url``, tried again for as long as ``give_up_after``.
    Nor is one holding a character of ``forbidden`` (what the API's ids never hold), nor
    ``.`` or ``..``: escaping leaves dots alone, and httpx resolves a URL's dot segments
    before sending, so ``{api_url}/leadFormResponses/..`` read ``{api_url}`` itself and a
    HubSpot objectId ``.`` the list of contacts, with the endpoint's token, as the lead.
    """
    if (
        ident
        and len(ident) <= MAX_ID
        and ident.isprintable()
        and ident not in DOT_SEGMENTS
        and not any(c in ident for c in forbidden)
    ):
        return None
    shown = repr(ident[:60]) + (f"... ({len(ident)} characters)" if len(ident) > 60 else "")
    return FetchDead(f"{shown} is not {what}", "rejected", asked=False)


def id_text(value: Any) -> str | None:
    """A lead id as a delivery gave it, as text: a string as it is, an integer (Meta sends ids
    as JSON numbers too) as its digits; None for what no lead id is (an object, an array, a
    boolean, a fraction, null), which :func:`not_an_id` refuses."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def not_an_id(value: Any, what: str) -> FetchDead:
    """Why ``value`` (not text, see :func:`id_text`) cannot name ``what``, as a dead outcome:
    its JSON is shown, never Python's text of it, which would have been read as an id."""
    shown = orjson.dumps(value, default=repr).decode()
    if len(shown) > 60:
        shown = shown[:60] + f"... ({len(shown)} characters)"
    return FetchDead(f"{shown} is not {what}", "rejected", asked=False)


def scrubbed(outcome: FetchOutcome, token: str) -> FetchOutcome:
    """``outcome`` with ``token`` masked in its reason, in case a server echoes it back: as
    sent, and percent-encoded as in the request line it may quote (a server echoing the
    request, its line quoted whole as a bad status line, showed a Graph app token's ``|`` as
    ``%7C``)."""
    if not token or isinstance(outcome, Fetched):
        return outcome
    reason = outcome.reason
    for form in {token, quote(token, safe="")}:
        reason = reason.replace(form, "**********")
    return dataclasses.replace(outcome, reason=reason)


async def read_lead(
    http: httpx.AsyncClient,
    url: str,
    *,
    token: str,
    classify: Callable[[int, bytes], FetchOutcome],
    url_option: str,
    timeout: float,
    **request: Any,
) -> FetchOutcome:
    """GET ``url`` (``request``: its params or headers) and classify the answer; a network
    failure, an answer not whole within :func:`read_bound`, or a bad ``url_option`` is a
    retry. ``token`` is masked in every reason."""
    bound = read_bound(timeout)
    try:
        async with asyncio.timeout(bound):  # a server dribbling its answer holds no read long
            response = await http.get(url, timeout=timeout, **request)
    except AnswerTooLarge as exc:
        return FetchRetry(str(exc), "bad_answer")
    except httpx.DecodingError as exc:
        reason = f"an answer that does not decode as its Content-Encoding says ({exc})"
        return scrubbed(FetchRetry(reason, "bad_answer"), token)
    except ProxyRefused as exc:
        if exc.status == 407:  # (to an https read's tunnel request)
            return scrubbed(FetchRetry(proxy_reason(str(exc), login=exc.login), "proxy"), token)
        return scrubbed(FetchRetry(transport_reason(exc), "network"), token)
    except httpx.TransportError as exc:
        return scrubbed(FetchRetry(transport_reason(exc), "network"), token)
    except TimeoutError:
        return FetchRetry(f"no whole answer within {bound:g} s (2 x the read timeout)", "network")
    except httpx.InvalidURL as exc:
        return scrubbed(FetchRetry(f"{url_option} is invalid: {exc}", "config"), token)
    if response.status_code in REDIRECTS:
        return scrubbed(_redirected(response, url_option), token)
    if response.status_code == 407:
        # The proxy's, to a forwarded (http) read: worded as a send's is, whether the hub
        # sent it credentials or none; each lead's read was dead as "rejected". (No
        # extension: no proxy of the hub's was used, so none was sent credentials.)
        login = bool(response.extensions.get(PROXY_LOGIN, False))
        reason = proxy_reason(proxy_answer(masked(response.content, token)), login=login)
        return scrubbed(FetchRetry(reason, "proxy"), token)
    if 200 <= response.status_code < 300 and too_deep(response.content):
        # No lead nests so deep, and one that does could not be stored (its enrichment, as
        # JSON): every attempt failed with a traceback, for as long as give_up_after.
        reason = f"the API answered a lead nested more than {MAX_DEPTH} levels deep"
        return FetchDead(reason, "bad_answer")
    content = masked(response.content, token)
    outcome = classify(response.status_code, content)
    if isinstance(outcome, FetchRetry):
        outcome = _throttled(outcome, response)
    return scrubbed(outcome, token)


def _throttled(outcome: FetchRetry, response: httpx.Response) -> FetchRetry:
    """``outcome`` marked throttled, with the wait its answer gives, when the API says to
    wait: a rate-limit answer (marked so by its classifier, or a 429), or one of a server
    that failed for now (a transient Graph error, a 5xx) giving a time to come back."""
    wait = parse_wait(response.headers, time.time())
    throttled = outcome.throttled or response.status_code == 429
    if not throttled and (wait is None or outcome.kind not in ("transient", "server_error")):
        return outcome
    return dataclasses.replace(outcome, throttled=True, wait=wait)


def masked(content: bytes, token: str) -> bytes:
    """An answer's ``content`` with ``token`` masked (as sent, and percent-encoded as in a
    URL it quotes) before its reason is made: the reason keeps an excerpt, and a token that
    the cut went through was no longer whole for :func:`scrubbed` to find."""
    if not token:
        return content
    for form in {token, quote(token, safe="")}:
        content = content.replace(form.encode(), b"**********")
    return content


def _redirected(response: httpx.Response, url_option: str) -> FetchRetry:
    """A redirected read: retried, naming where it points (without its query, which may
    hold the token the read sent) and the setting to change."""
    shown = redirect_shown(response.headers.get("Location"), str(response.url))
    return FetchRetry(
        f"HTTP {response.status_code}: the API redirects the read to {shown}; the hub does "
        f"not follow redirects (the token would go along): check the endpoint's {url_option}",
        "config",
    )


class LeadReader:
    """What the Graph, LinkedIn and HubSpot clients share: one :class:`httpx.AsyncClient`,
    handed to :func:`read_lead` for each read (with the endpoint's ``read_timeout``)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http


def message_with(key: str, prefix: str = "") -> Callable[[dict[str, Any]], str | None]:
    """A ``describe`` for :func:`classify_rest`: an error body's ``message``, followed by
    its ``key`` in brackets when it has one (``(serviceErrorCode 100)``)."""

    def describe(body: dict[str, Any]) -> str | None:
        if "message" not in body:
            return None
        value = body.get(key)
        return str(body["message"])[:EXCERPT] + (f" ({prefix}{value})" if value else "")

    return describe


def classify_rest(
    status: int,
    content: bytes,
    *,
    describe: Callable[[dict[str, Any]], str | None],
    token_advice: str,
    missing: str,
    advice: Mapping[int, tuple[str, str]] | None = None,
) -> FetchOutcome:
    """The outcome of one read from a REST API answering JSON (LinkedIn's, HubSpot's).

    A 2xx object is the lead. 401/403 (``token_advice`` says what to fix) and the statuses
    in ``advice`` (``status: (what to fix, kind)``) are retried, for a human to act on; so
    are 408, 429 and 5xx. 404 (``missing``) and other refusals are final. ``describe`` turns an
    error body into its detail (None: the raw text is shown instead). A 404 without the API's
    JSON error (an HTML page, an empty body: a server or path that is not the API's) is
    retried, naming ``api_url``: every lead's read would fail alike, each killed as deleted.
    """
    body = parse_json(content)
    if 200 <= status < 300 and isinstance(body, dict):
        return Fetched(body)
    detail = describe(body) if isinstance(body, dict) else None
    api_said = detail is not None  # the API's own JSON error, with its message
    if detail is None:
        detail = content.decode("utf-8", "replace").strip()[:EXCERPT] or "(empty body)"
    label = f"HTTP {status}: {detail}"
    if status in (401, 403):
        return FetchRetry(f"{label}; {token_advice}", "token")
    if advice and status in advice:
        fix, kind = advice[status]
        return FetchRetry(f"{label}; {fix}", kind)
    if status == 404 and not api_said:
        return FetchRetry(f"{label}; {NOT_THE_API.format(option='api_url')}", "config")
    if status == 404:
        return FetchDead(f"{label}; {missing}", "not_found")
    if status in (408, 429) or status >= 500:  # 408: the request timed out on its way in
        return FetchRetry(label, "server_error")
    if 200 <= status < 300:
        return FetchRetry(f"HTTP {status} with an unexpected body: {detail}", "bad_answer")
    return FetchDead(label, "rejected")


def merge_missing(lead: Mapping[str, Any], notice: Mapping[str, Any]) -> dict[str, Any]:
    """The lead plus every key of the notice it lacks (LinkedIn's and HubSpot's documents)."""
    document = dict(lead)
    for key, value in notice.items():
        document.setdefault(key, value)
    return document
