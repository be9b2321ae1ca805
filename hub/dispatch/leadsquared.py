"""The ``Lead.Capture`` client and the classification of every answer into an outcome.

LeadSquared reports application errors in the body, on any status: an ``MX...``
exception arrives in a 400, in a 500, or in a 200 whose ``Status`` is ``Error``.
So the body is read on EVERY answer, and the outcome is:

- ``Status: Success`` → :class:`Delivered` (lead id = ``Message.RelatedId``,
  falling back to ``Message.Id``; created = ``Message.IsCreated``).
- An MX exception → :class:`Dead` (``"<ExceptionType>: <ExceptionMessage>"``),
  except ``MXAPIRateLimitExceededException``, which is :class:`Retry` (rate limited: retried
  past the retry schedule's ``give_up_after``, never dead; so is a 429).
- 429, a 408 (the request timed out on its way in), a 5xx without an MX body, network
  errors and timeouts → :class:`Retry`;
  connection refused, reset, closed without an answer and timeout are told apart.
  The target's ``timeout`` bounds each phase (connecting, waiting for each part of the
  answer) and twice that the whole call (:func:`call_bound`), so a server that sends its
  answer a byte at a time cannot hold a sender (and its rate-limit slot) for long.
- 401 or 404 → :class:`Pause`: the keys or the host are wrong, which no retry of
  this one lead fixes; the target waits until they are. So does a 407 from the proxy the
  environment names (its credentials are wrong, or missing: said so), also when it refuses
  an https tunnel, and a redirect (301, 302, 303, 307, 308): the url is not Lead.Capture's (``http://``
  for ``https://``, a moved host). Redirects are never followed: the keys would go with
  the request to wherever it points. The reason names where, without its query. Any other
  3xx (300 Multiple Choices, 304 Not Modified, ...) pauses too: Lead.Capture answers a POST
  with none, so the url names something else; its reason shows the Location if it has one.
- An answer too large to be Lead.Capture's (:data:`~hub.dispatch.transport.MAX_ANSWER`,
  not read), or one that does not decode as its ``Content-Encoding`` says → :class:`Retry`:
  what it said is unknown, and a retry is safe (Lead.Capture is an upsert).
- Any other 4xx without an MX body → :class:`Dead` with the status and an excerpt.

Keys go in the ``x-LSQ-AccessKey`` / ``x-LSQ-SecretKey`` headers (never the URL,
so they cannot leak through a logged URL or an exception message). An answer that echoes
them back (a proxy's or gateway's error page, an MX message quoting the key it refused) has
them masked before its reason is made: the reason is logged and stored as the event's error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, AnyStr

import httpx
import orjson

from hub.config.models import Target
from hub.dispatch.lease import call_bound
from hub.dispatch.transport import (
    CLOSED_MID_ANSWER,
    MALFORMED,
    PROXY_LOGIN,
    AnswerTooLarge,
    ProxyRefused,
)

CAPTURE_PATH = "/v2/LeadManagement.svc/Lead.Capture"
RATE_LIMIT_EXCEPTION = "MXAPIRateLimitExceededException"
_EXCERPT = 200  # characters of an unexpected body kept in a reason
#: Characters of an MX exception's type and message kept in a reason. LeadSquared's messages
#: are a line, but one may quote the value it refused whole (the sandbox does: a sender's
#: 500 KB "email" made a 500 KB reason, stored as the event's last error and logged whole in
#: its event_dead line).
_MX_TYPE = 100
_MX_MESSAGE = 1000
_BOM = b"\xef\xbb\xbf"
#: The statuses that redirect a request, with a Location to follow.
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: The names of the other 3xx statuses, shown in the reason of a pause for one.
_OTHER_3XX = {300: "Multiple Choices", 304: "Not Modified", 305: "Use Proxy"}


@dataclass(frozen=True, slots=True)
class Delivered:
    """The lead was created or updated."""

    lead_id: str | None
    created: bool | None


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure: try again later.

    ``rate_limited``: the account refused the call for its rate limit (a 429, or the MX
    rate-limit exception on any status). Nothing is wrong with the lead, so such a failure
    is retried however long it lasts: it never makes the event dead.
    """

    reason: str
    rate_limited: bool = False


#: What a rate-limited answer's reason adds: the hub keeps under the limit it is given, so
#: another caller shares the account's limit (or the plan's is lower than configured).
RATE_LIMIT_ADVICE = (
    "retried until the account has room, never dead for this; if it persists, other callers "
    "share the account's limit: lower the target's rate_limit"
)


@dataclass(frozen=True, slots=True)
class Dead:
    """A permanent failure for this lead: retrying the same request cannot succeed."""

    reason: str


@dataclass(frozen=True, slots=True)
class Pause:
    """The target itself is unusable (bad keys, wrong host): hold its events, do not kill them."""

    reason: str


Outcome = Delivered | Retry | Dead | Pause


def _excerpt(content: bytes) -> str:
    text = content.decode("utf-8", "replace").strip()
    if not text:
        return "(empty body)"
    return text[:_EXCERPT] + ("..." if len(text) > _EXCERPT else "")


def parse_json(content: bytes) -> Any:
    """The JSON of ``content``, None if it is none; a UTF-8 byte order mark (which .NET
    services such as LeadSquared's may write) is skipped, as RFC 8259 allows a parser to."""
    if content.startswith(_BOM):
        content = content[3:]
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _mx_exception(body: Any) -> tuple[str, str] | None:
    """``(ExceptionType, ExceptionMessage)`` when ``body`` is an MX error envelope."""
    if not isinstance(body, dict):
        return None
    kind = body.get("ExceptionType")
    if not isinstance(kind, str) or not kind.startswith("MX"):
        return None
    message = body.get("ExceptionMessage")
    return _cut(kind, _MX_TYPE), _cut(str(message) if message is not None else "", _MX_MESSAGE)


def _cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _delivered(body: dict[str, Any]) -> Delivered:
    message = body.get("Message")
    if not isinstance(message, dict):
        return Delivered(lead_id=None, created=None)
    lead_id = message.get("RelatedId") or message.get("Id")
    created = message.get("IsCreated")
    return Delivered(
        lead_id=str(lead_id) if lead_id else None,
        created=created if isinstance(created, bool) else None,
    )


#: How a target's configuration fixed while the hub runs is taken (see the README).
RELOAD = "reload the hub (kill -HUP; a restart for a value set in a variable, not a _FILE)"
#: What to do about refused keys: the events wait, their attempts not counted.
KEYS_FIX = (
    "set the target's access_key and secret_key to the account's keys (Settings > API and "
    f"Webhooks), then {RELOAD}; its events wait meanwhile, their attempts not counted"
)

#: A 407, from the proxy the environment names: no retry of one lead fixes its credentials.
PROXY_REFUSED = (
    "the proxy refused the hub's credentials ({}); check the user and password in "
    "HTTPS_PROXY / HTTP_PROXY"
)
#: A 407 from a proxy the hub sent no credentials to (its variable's URL holds no user).
PROXY_LOGIN_MISSING = (
    "the proxy asks for credentials and the hub has none to give ({}); put them in the "
    "proxy's URL in HTTPS_PROXY / HTTP_PROXY (http://user:password@host:port, with @ : / in "
    "them percent-escaped), then restart the hub"
)


def proxy_reason(detail: str, *, login: bool) -> str:
    """What a proxy's 407 (``detail``) means and how to fix it: the credentials the hub sent
    were refused (``login``), or it sent none. A send's pause and a lead read's retry say it."""
    return (PROXY_REFUSED if login else PROXY_LOGIN_MISSING).format(detail)


def proxy_refused(detail: str, *, login: bool) -> Pause:
    """A 407's pause (see :func:`proxy_reason`)."""
    return Pause(proxy_reason(detail, login=login))


def proxy_answer(content: bytes) -> str:
    """The detail of a 407 a proxy answered a forwarded request with: its status, the body's
    start."""
    return f"HTTP 407 {_excerpt(content)}"


def redirect_shown(location: str | None, base: str) -> str:
    """Where a redirect points, as a reason may show it: resolved against ``base`` (the
    request's URL), without credentials, query or fragment (a server may copy a token it
    was sent there)."""
    if not location:
        return "nowhere (no Location header)"
    try:
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(base, location.strip()))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "a Location that is not a URL"
    if ":" in host:
        host = f"[{host}]"
    query = " (query not shown)" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


#: What to do about the MX exceptions seen in practice (leadsquared-facts.md §2), added to
#: a dead event's reason; the others' messages speak for themselves.
MX_ADVICE = {
    "MXDuplicateEntryException": (
        "another lead already holds this email or phone (LeadSquared keeps each unique): "
        "merge the two leads there, or match by the colliding field (the mapping's "
        "search_by), or leave it out of the mapping's fields"
    ),
    "MXMandatoryAttributeMissingException": (
        "the account requires a field the mapping did not send: add it to the mapping's fields"
    ),
    "MXUnknownAttributeException": (
        "the account has no such lead field: check the mapping's field names against its "
        "lead fields (custom ones are mx_...)"
    ),
}


def _other_3xx_reason(status: int, location: str | None) -> str:
    """Why a 3xx that is no redirect (a 300, a 304) pauses the target: Lead.Capture answers a
    POST with none of them, so what answered is not it, for every lead alike; retried, as
    such an answer was, each lead spent its attempts until it gave up."""
    name = _OTHER_3XX.get(status)
    shown = f"HTTP {status} {name}" if name else f"HTTP {status}"
    where = f" (Location: {location})" if location else ""
    return (
        f"{shown}{where}: not an answer Lead.Capture gives to a POST, so the target's url "
        "does not name it; set the target's url to the account's LeadSquared API host "
        f"(https://), then {RELOAD}"
    )


def classify(
    status: int, content: bytes, *, location: str | None = None, proxy_login: bool = True
) -> Outcome:
    """The outcome of one ``Lead.Capture`` answer, from its status and raw body
    (``location``: where a 3xx points, shown by :func:`redirect_shown`; ``proxy_login``:
    whether the proxy it came through, if any, was sent credentials, for a 407's reason)."""
    body = parse_json(content)
    if isinstance(body, dict) and body.get("Status") == "Success" and status < 300:
        return _delivered(body)
    mx = _mx_exception(body)
    if mx is not None and status not in (401, 404):
        kind, message = mx
        reason = f"{kind}: {message}"
        if kind == RATE_LIMIT_EXCEPTION:
            return Retry(
                f"rate limited (HTTP {status}): {reason}; {RATE_LIMIT_ADVICE}", rate_limited=True
            )
        advice = MX_ADVICE.get(kind)
        return Dead(f"{reason.rstrip('.')}; {advice}" if advice else reason)
    if status == 401:
        detail = f"{mx[0]}: {mx[1]}" if mx else _excerpt(content)
        return Pause(
            f"HTTP 401: the target's access/secret keys were refused ({detail}); {KEYS_FIX}"
        )
    if status == 404:
        detail = _excerpt(content)
        return Pause(
            f"HTTP 404: no Lead.Capture at the target's url ({detail}); set the target's url "
            f"to the account's API host, then {RELOAD}"
        )
    if status == 407:
        return proxy_refused(proxy_answer(content), login=proxy_login)
    if status in REDIRECTS:
        where = location or "an address it does not give"
        return Pause(
            f"HTTP {status}: the target's url redirects to {where}; the hub does not follow "
            "redirects (the keys would go along): set the target's url to the account's "
            "LeadSquared API host (https://)"
        )
    if 300 <= status < 400:
        return Pause(_other_3xx_reason(status, location))
    if status == 429:
        return Retry(
            f"rate limited (HTTP 429): {_excerpt(content)}; {RATE_LIMIT_ADVICE}", rate_limited=True
        )
    if status >= 500:
        return Retry(f"HTTP {status}: {_excerpt(content)}")
    if status == 408:
        # The server (a load balancer, a gateway) gave up waiting for the request to arrive:
        # a slow network, nothing about the lead (RFC 9110 15.5.9: it may be repeated).
        return Retry(f"HTTP 408: the server timed out reading the request ({_excerpt(content)})")
    if 400 <= status < 500:
        return Dead(f"HTTP {status}: {_excerpt(content)}")
    if isinstance(body, dict) and body.get("Status") == "Error":
        return Dead(f"HTTP {status} with Status Error: {_excerpt(content)}")
    # A 2xx that is neither Success nor an error envelope: the answer is not understood,
    # and the lead may or may not exist. Retrying is safe (Lead.Capture is an upsert).
    return Retry(f"HTTP {status} with an unexpected body: {_excerpt(content)}")


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def transport_reason(exc: httpx.TransportError) -> str:
    """A short reason for a network failure; never includes the URL or headers."""
    if isinstance(exc, AnswerTooLarge):
        return str(exc)
    chain = _causes(exc)
    detail = str(exc) or type(exc).__name__
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return _kind("connection refused", detail)
    if any(isinstance(c, ConnectionResetError) for c in chain):
        return _kind("connection reset", detail)
    if isinstance(exc, httpx.TimeoutException):
        kind = {
            httpx.ConnectTimeout: "connect timeout",
            httpx.ReadTimeout: "timeout waiting for the answer",
            httpx.WriteTimeout: "timeout sending the request",
            httpx.PoolTimeout: "timeout waiting for a free connection",
        }.get(type(exc), "timeout")
        return _kind(kind, detail)
    if isinstance(exc, httpx.ConnectError):
        lowered = detail.lower()
        if "refused" in lowered:
            return _kind("connection refused", detail)
        return _connect_reason(chain, _host(exc)) or _kind("cannot connect", detail)
    if isinstance(exc, httpx.ProxyError):
        return _kind("proxy error", detail)
    if isinstance(exc, httpx.RemoteProtocolError):
        if detail.startswith((MALFORMED, CLOSED_MID_ANSWER)):  # it answered, or began to
            return detail
        return _kind("connection closed without an answer", detail)
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        lowered = detail.lower()
        if "reset" in lowered or "errno 104" in lowered or "broken pipe" in lowered:
            return _kind("connection reset", detail)
        return f"network error while talking to the target ({type(exc).__name__}: {detail})"
    return f"network error ({type(exc).__name__}: {detail})"


def _kind(kind: str, detail: str) -> str:
    """``kind (detail)``, or ``detail`` alone when it already says ``kind``: the aiohttp
    transport's exceptions name the kind themselves (:func:`hub.dispatch.transport.translate`),
    and "connection refused (connection refused (...))" says it twice."""
    return detail if detail.startswith(kind) else f"{kind} ({detail})"


def _host(exc: httpx.TransportError) -> str:
    """The host ``exc``'s request went to (its name is no secret), or ``the target``."""
    try:
        return exc.request.url.host or "the target"
    except RuntimeError:  # an exception raised without its request
        return "the target"


#: OpenSSL's verify codes for a certificate whose issuer is not among the trusted ones:
#: unable to get the issuer's certificate (2, 20), self-signed (18, 19).
_UNKNOWN_ISSUER = frozenset({2, 18, 19, 20})
#: What to do about one: a private CA (a gateway's, a TLS-inspecting proxy's) is trusted
#: through OpenSSL's own variable, read when the hub starts.
PRIVATE_CA = (
    "; if a private CA signs it (a gateway's, a proxy's that re-signs TLS), point "
    "SSL_CERT_FILE at a bundle holding that CA and restart the hub"
)


#: What OpenSSL's terse handshake failures mean, for the ones a url's mistake causes.
_TLS_HINTS = {
    # the bytes that came back were no TLS record: an answer in plain HTTP, as often as not
    "WRONG_VERSION_NUMBER": (
        ": the server does not speak TLS at that port; if it is a plain-http one, "
        "the url is http://, not https://"
    ),
}


def _connect_reason(chain: list[BaseException], host: str) -> str | None:
    """What a failure to connect to ``host`` was, when the chain says: a host name that
    does not resolve, or TLS (a certificate not verified, say for being self-signed or for
    another host), which a generic "cannot connect" would hide; None otherwise."""
    for cause in chain:  # aiohttp's wrappers subclass these without their attributes
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = getattr(cause, "verify_message", None)
            if why:
                hint = PRIVATE_CA if getattr(cause, "verify_code", None) in _UNKNOWN_ISSUER else ""
                return f"TLS certificate verification failed for {host} ({why}){hint}"
        elif isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None):
            hint = _TLS_HINTS.get(str(cause.reason), "")
            return f"TLS handshake with {host} failed ({cause.reason}){hint}"
        elif isinstance(cause, socket.gaierror) and cause.strerror:
            return f"the host name {host} does not resolve ({cause.strerror})"
    return None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call: its outcome, the HTTP status (None on a network error) and its duration."""

    outcome: Outcome
    status: int | None
    seconds: float


#: The most call URLs (a target's url with a mapping's query) a client keeps parsed.
URLS_KEPT = 64


class LeadSquaredClient:
    """Sends ``Lead.Capture`` calls over one shared :class:`httpx.AsyncClient`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        #: Each call URL, parsed once: httpx parses a URL given as text at every request,
        #: a tenth of a call's CPU (a few targets and mappings make a few URLs).
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}

    def _url(self, target: Target, query: Mapping[str, str]) -> httpx.URL:
        """``Lead.Capture`` at ``target`` with ``query``, as httpx would build it from the text
        and the params (the query replaces any the text has)."""
        key = (target.url, tuple(query.items()))
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= URLS_KEPT:
                self._urls.clear()
            text = target.url.rstrip("/") + CAPTURE_PATH
            url = self._urls[key] = httpx.URL(text, params=dict(query))
        return url

    async def capture(
        self,
        target: Target,
        *,
        query: Mapping[str, str],
        body: Sequence[Mapping[str, Any]],
    ) -> Attempt:
        """POST one lead to ``target`` and classify the answer; never raises on I/O errors."""
        started = time.perf_counter()
        if not target.url:
            outcome: Outcome = Pause(
                f"target {target.name!r} has no url; set `url:` in its target file"
            )
            return Attempt(outcome, None, 0.0)
        headers = {
            "x-LSQ-AccessKey": target.access_key.reveal(),
            "x-LSQ-SecretKey": target.secret_key.reveal(),
            "Content-Type": "application/json",
        }
        bound = call_bound(target)
        try:
            async with asyncio.timeout(bound):
                response = await self._http.post(
                    self._url(target, query),
                    content=orjson.dumps(list(body)),
                    headers=headers,
                    timeout=target.timeout,
                )
        except TimeoutError:
            reason = f"timeout: no whole answer within {bound:g}s (twice the target's timeout)"
            return Attempt(Retry(reason), None, time.perf_counter() - started)
        except ProxyRefused as exc:
            seconds = time.perf_counter() - started
            if exc.status == 407:
                return Attempt(proxy_refused(str(exc), login=exc.login), None, seconds)
            return Attempt(Retry(f"proxy error ({exc})"), None, seconds)
        except httpx.TransportError as exc:
            return Attempt(Retry(transport_reason(exc)), None, time.perf_counter() - started)
        except httpx.DecodingError as exc:
            reason = f"an answer that does not decode as its Content-Encoding says ({exc})"
            return Attempt(Retry(reason), None, time.perf_counter() - started)
        except httpx.InvalidURL as exc:
            return Attempt(Pause(f"target url {target.url!r} is invalid: {exc}"), None, 0.0)
        status = response.status_code
        location = response.headers.get("Location")
        shown = None
        if status in REDIRECTS or (300 <= status < 400 and location):
            shown = redirect_shown(location, str(response.url))
        # (no extension: no proxy of the hub's was used, and none was sent credentials: a
        # 407 then is an intercepting proxy's, asking for some)
        login = bool(response.extensions.get(PROXY_LOGIN, False))
        outcome = classify(status, response.content, location=shown, proxy_login=login)
        if not isinstance(outcome, Delivered):  # (a delivery's reason is never shown)
            content = _without_keys(response.content, target)
            if content != response.content:
                outcome = classify(status, content, location=shown, proxy_login=login)
            if not isinstance(outcome, Delivered):
                outcome = replace(outcome, reason=_without_keys(outcome.reason, target))
        return Attempt(outcome, status, time.perf_counter() - started)


def _without_keys(text: AnyStr, target: Target) -> AnyStr:
    """``text`` (an answer's body, or the reason made of it) with the target's keys masked:
    masked in the body before the reason cuts it, so that no part of a key is left at the
    cut; in the reason too, for what it takes from elsewhere (the Location it names)."""
    for key in (target.access_key.reveal(), target.secret_key.reveal()):
        if not key:
            continue
        if isinstance(text, bytes):
            text = text.replace(key.encode(), b"**********")
        else:
            text = text.replace(key, "**********")
    return text
