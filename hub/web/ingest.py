"""``/hooks/{endpoint}``: a lean raw ASGI handler (no Starlette Request/Response on this path).

POST: size limit (Content-Length up front, then counted while reading) → the
source's check on the raw bytes → parse → split → delivery ids → one atomic
``store.enqueue`` → answer. A single-lead JSON sender whose id is a top-level key skips
parse, split and ids here: its delivery goes to the store as a ``SkimId``, and the store
checks the body and reads the id where it writes (``leadhub serve``: in its writer
process, off this event loop); a body it cannot vouch for comes back and takes the full
path. GET answers the sender's handshake (Facebook) or 405.

The POST's work after its body is read is :meth:`Ingest.post`, without a coroutine: it
answers through a callback once the store has committed (``hub.store.base.Submits``).
``leadhub serve``'s HTTP protocol (``hub.commands.protocol``) calls it directly for a plain
webhook POST, skipping the ASGI cycle; ``__call__`` (any other request, any other server)
reads the body through ASGI and awaits the same answer.

Answers (JSON unless noted):

* 200 ``{"status":"accepted","id":N}`` once stored; a source whose deliveries batch
  leads (Facebook, HubSpot apps) also answers ``"ids":[...]`` (new event ids, in order;
  ``[]`` when none is a lead) and ``"duplicates":K`` when part of a batch was known.
* 200 ``{"status":"duplicate","id":N}`` when every event was already stored.
* 401 ``{"error":"unauthorized"}``, never saying why (the log says it).
* 404 unknown endpoint, 405 method, 413 too large, 415 content type, 400 body.
* 422 when the endpoint's ``split`` path finds no lead, nor an empty batch, in the
  delivery (``hub.sources.split``): nothing is stored, and the sender sees it fail.
* 503 ``{"error":"store unavailable"}`` when the store fails: the sender retries. Also
  503 (reason ``bodies_over_limit``) for a body read while the bodies being received, all
  connections together, hold :data:`BODIES_IN_FLIGHT` bytes.

Exactly one ``delivery_received`` log line per request, with ``endpoint``,
``delivery_id``, ``outcome`` and ``reason`` (the logger is resolved when the
app is built, so configure structlog before ``create_app``); a warning for a refusal that
is the configuration's to fix (:data:`WARNED_REASONS`), else info. A ``split`` endpoint's
accepted delivery says more when its path's walk noted it (``hub.sources.split``): a
warning with ``split_partial_miss`` (containers without their leads list, or nulls where
leads should be; the leads found stored), or, with no event, ``split_kept_none``,
``split_left_out`` and ``split_filter`` (a filter kept none of the items it was given;
counted in ``leadhub_split_kept_none_total``). A Facebook batch with a leadgen change that
has no ``value`` object stores its good changes, its line a warning with
``leadgen_malformed`` (``hub.sources.facebook``); so does a HubSpot app's batch with a
subscribed event that has no ``objectId``, with ``object_id_missing``
(``hub.sources.hubspot``). Secrets, tokens,
signatures and bodies are never logged; a header whose name says it may carry a credential
(:func:`is_credential_header`) is never stored, nor a credential of a URL in a stored one
(:func:`without_url_credentials`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from time import perf_counter
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

import orjson
import structlog

from hub.clock import Clock
from hub.config.models import Endpoint, HmacOptions
from hub.logs import Throttle, is_secret_name
from hub.sources import (
    BodyError,
    Incoming,
    Source,
    VerificationError,
    delivery_ids,
)
from hub.sources.base import REDACTED, NoHandshake, WholeBody, redact_fields, redacted
from hub.sources.bodies import parse
from hub.sources.build import build_source
from hub.sources.split import Noted
from hub.store.base import (
    BodyNotSkimmed,
    EventStore,
    Outcome,
    Settle,
    Submits,
    settle_later,
)
from hub.store.models import EnqueueResult, EventIn, IncomingDelivery, SkimId
from hub.web.metrics import WebMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/hooks/"
_log = structlog.get_logger()

#: Headers never stored, whatever the endpoint: credentials, cookies, signatures, transport.
DENIED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-hub-signature",
        "x-hub-signature-256",
        "typeform-signature",
        "webhook-signature",
        "x-webflow-signature",
        "x-li-signature",
        "x-hubspot-signature",
        "x-hubspot-signature-v3",
        "tally-signature",
        "x-api-key",
        "x-auth-token",
        # transport details, not facts about the delivery
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)


#: Words of a header's name (its parts between characters other than letters and digits) that
#: say it holds a credential, as a whole word: ``X-Access``, ``X-Cred``, ``X-Otp``.
CREDENTIAL_WORDS = frozenset({"access", "cred", "creds", "otp", "totp", "mfa"})
#: Endings of a word of a header's name that say so: ``X-Key``, ``X-Webhook-Key``,
#: ``X-ApiKey``, ``X-Auth``, ``X-WebhookAuth``, ``X-Pass``, ``X-Pwd``, ``X-Sig``, ``X-Sid``
#: (whole words or run together, since header names come in lower case).
CREDENTIAL_ENDINGS = ("key", "auth", "pass", "pwd", "sig", "sid")
#: Text that says so anywhere in a header's name (``X-AuthToken``, ``X-UserPassword``,
#: ``X-Shopify-Hmac-Sha256``, ``X-Csrf-Token``, ``X-Session-Id``), besides the names
#: :func:`hub.logs.is_secret_name` masks in the log.
CREDENTIAL_PARTS = (
    "secret",
    "token",
    "passw",
    "passphrase",
    "passcode",
    "credential",
    "signature",
    "authoriz",
    "authentic",
    "hmac",
    "csrf",
    "xsrf",
    "bearer",
    "jwt",
    "cookie",
    "session",
)
#: Headers whose names look like a credential's but are not: an idempotency key names the
#: delivery (the IETF's ``Idempotency-Key``), it opens nothing.
NOT_CREDENTIALS = frozenset({"idempotency-key", "x-idempotency-key"})
_NAME_WORDS = re.compile(r"[^a-z0-9]+")


def is_credential_header(name: str) -> bool:
    """Whether a header's ``name`` (lower case) says it may hold a credential, whatever the
    endpoint: never stored. Zapier-style tools and site builders let their users add any
    header, and users name the ones holding their keys as they like (``X-Auth``,
    ``X-Webhook-Key``, ``X-Pass``), so any name with a word of :data:`CREDENTIAL_WORDS`, a
    word ending as :data:`CREDENTIAL_ENDINGS` say, a part of :data:`CREDENTIAL_PARTS`, or
    one :func:`hub.logs.is_secret_name` masks is taken for one (nothing in the hub reads a
    stored header: one left out costs a fact for whoever reads the store, one kept could
    be a key in every backup)."""
    if name in NOT_CREDENTIALS:
        return False
    if any(part in name for part in CREDENTIAL_PARTS) or is_secret_name(name):
        return True
    return any(
        word in CREDENTIAL_WORDS or word.endswith(CREDENTIAL_ENDINGS)
        for word in _NAME_WORDS.split(name)
    )


#: A query parameter in a header's value: what comes before it, its name, its value.
_QUERY_PARAMETER = re.compile(r"([?&;])([^=&;#?]*)=([^&;#]*)")
#: A URL's user information (``//user:password@``): what comes before the password.
_USER_INFO = re.compile(r"(//[^/?#@\s:]*:)[^/?#@\s]*@")


def without_url_credentials(value: str) -> str:
    """A kept header's ``value`` with what a URL in it carries as a credential written
    ``[redacted]``: the value of each query parameter whose name says it is one (``token``,
    ``api_key``, ``hub.verify_token``, ``sig``: the rule of :func:`is_credential_header`),
    and the password of ``//user:password@``.

    A proxy in front of the hub hands the request's URL on in a header of its own
    (``X-Forwarded-Uri``, ``X-Original-URL``, ``X-Envoy-Original-Path``, ``X-Rewrite-URL``),
    query string and all, and a ``token`` endpoint's senders without a header of their own
    (Unbounce, Jotform) send the token as ``?token=``: the token was stored with every such
    delivery. The rest of the value is kept as sent."""
    if "?" in value:
        value = _QUERY_PARAMETER.sub(_redacted_parameter, value)
    if "@" in value:
        value = _USER_INFO.sub(r"\1[redacted]@", value)
    return value


def _redacted_parameter(match: re.Match[str]) -> str:
    name = unquote_plus(match[2]).lower()
    if not is_credential_header(name):
        return match[0]
    return f"{match[1]}{match[2]}={REDACTED}"


class Answer(NamedTuple):
    """What a request comes to: the response, and what its log line says."""

    status: int
    body: bytes
    outcome: str
    reason: str
    delivery_id: str | None
    #: Fields for the ``delivery_received`` line beyond the usual ones.
    extra: dict[str, Any]
    headers: list[tuple[bytes, bytes]]
    #: Whether the line is a warning though the delivery was taken (a ``split`` path that
    #: missed some of its containers), besides a reason in :data:`WARNED_REASONS`.
    warn: bool = False


#: Called with a POST's answer, once, on the event loop's thread.
Reply = Callable[[Answer], None]


class _Reject(Exception):
    """An answer other than 200, raised inside this module (control flow, not an error)."""

    def __init__(self, status: int, body: dict[str, Any], outcome: str, reason: str, log: str):
        super().__init__(log)
        self.status = status
        self.body = body
        self.outcome = outcome
        self.reason = reason
        self.log = log

    def answer(self, route: HookRoute | None) -> Answer:
        headers = _JSON_HEADERS
        if self.status == 405 and route is not None:
            headers = [*_JSON_HEADERS, (b"allow", route.allow)]
        elif self.status == 413:
            headers = [*_JSON_HEADERS, (b"connection", b"close")]
        return Answer(
            self.status,
            orjson.dumps(self.body),
            self.outcome,
            self.reason,
            None,
            {"detail": self.log},
            headers,
        )


class HookRoute:
    """One endpoint, prepared: its source and which headers it may keep."""

    __slots__ = (
        "_keep",
        "allow",
        "credential_fields",
        "credentials",
        "endpoint",
        "name",
        "named",
        "skim",
        "source",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.source: Source = build_source(endpoint)
        self.credentials = self.source.credential_headers
        self.credential_fields = self.source.credential_fields
        #: Headers the endpoint's config names that hold no credential (an ``hmac``
        #: endpoint's ``timestamp_header``, ``X-Signature-Timestamp`` say): kept whatever
        #: their names look like.
        options = endpoint.options
        named: set[str] = set()
        if isinstance(options, HmacOptions) and options.timestamp_header:
            named.add(options.timestamp_header.lower())
        self.named = frozenset(named - self.credentials - DENIED_HEADERS)
        #: What a 405 says the endpoint takes: GET and HEAD only where a handshake answers.
        handshake = not isinstance(self.source, NoHandshake)
        self.allow = b"POST, GET, HEAD" if handshake else b"POST"
        self._keep: dict[str, bool] = {}
        #: For a single-lead sender whose id is a top-level key: the store checks the JSON
        #: and reads the id without building the document (it is the body; the dispatcher
        #: parses it), see ``hub.sources.skimmed_id``.
        self.skim: SkimId | None = None
        source = self.source
        if isinstance(source, WholeBody) and source.reads_id_only and endpoint.dedupe is None:
            self.skim = SkimId(source.id_key)

    def keeps(self, header: str) -> bool:
        """Whether ``header`` (lower case) may be stored with the delivery."""
        keep = self._keep.get(header)
        if keep is None:
            keep = header in self.named or not (
                header in DENIED_HEADERS
                or header in self.credentials
                or is_credential_header(header)
            )
            if len(self._keep) < 1000:
                self._keep[header] = keep
        return keep


class Prepared(NamedTuple):
    """A reload's endpoints, built (:meth:`Ingest.prepare`): their routes and the bodies'
    budget."""

    routes: dict[str, HookRoute]
    bodies_limit: int


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _answer(
    send: Send,
    status: int,
    payload: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    """Send the response; for a HEAD request (``head``) GET's headers, Content-Length
    included, and no body."""
    fields = [*(headers or _JSON_HEADERS), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": b"" if head else payload})


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers as text, names in lower case; a repeated header's values joined,
    each distinct value once.

    A header sent twice with the same value (a Zapier or Make author adding the
    ``Content-Type`` the tool sends already, a proxy repeating a signature) is that value:
    joined as ``"application/json, application/json"`` it was a 415 telling the sender to
    send ``application/json``, and a repeated signature or token a 401.
    """
    headers: dict[str, str] = {}
    # a repeated header's distinct values, in order (a dict: a set that keeps order), joined
    # once at the end: joined at each value, 8,000 distinct ones held the loop for 0.4 s
    several: dict[str, dict[str, None]] | None = None
    for raw_name, raw_value in raw:
        key = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if key not in headers:
            headers[key] = value
            continue
        if several is None:
            several = {}
        several.setdefault(key, {headers[key]: None})[value] = None
    if several is not None:
        for key, values in several.items():
            headers[key] = ", ".join(values)
    return headers


_UNAUTHORIZED = {"error": "unauthorized"}
#: The ``reason`` of a refused body by its status (any other: ``bad_body``).
_BODY_REASONS = {415: "unsupported_media_type", 422: "split_found_nothing"}
#: Refusals whose ``delivery_received`` line is a warning: a ``split`` path that misses
#: every delivery (a typo, a sender's new envelope) refuses them all, and the log must say
#: so louder than the info line of a sender's bad body; and bodies refused because those
#: being received hold :data:`BODIES_IN_FLIGHT` (a flood, or the limit too low).
WARNED_REASONS = frozenset({"split_found_nothing", "bodies_over_limit"})
#: Seconds between two ``store_enqueue_failed`` lines of one endpoint and kind of error.
STORE_ERROR_EVERY = 1.0
#: The most event and delivery ids a batch's ``delivery_received`` line lists: the first
#: ones, with ``events`` counting them all and ``ids_left_out`` the rest. A 1,000-lead batch
#: listed every one, a line of about 80 KB (200 KB with long ids), which Docker's and
#: Kubernetes' log drivers cut at 16 KiB into pieces that a collector reading one JSON
#: object a line cannot parse. 50 ids of the longest kind (200 characters) stay under it;
#: ``leadhub events`` lists them all.
LOGGED_IDS = 50
#: The most bytes of request bodies held while they are still coming in, all connections
#: together (raised to the largest ``max_body``, so that any one body fits): a body read
#: past it is answered 503 (:func:`over_budget`), and its sender retries. Bodies are read
#: whole before a signature or token is checked, so each connection of anyone who can reach
#: the port held up to ``max_body``: 300 connections sending 1 MiB bodies one byte short,
#: with no credentials, grew the hub by 300 MB, 20,000 (the usual file limit) by 20 GB.
BODIES_IN_FLIGHT = 64 * 1024 * 1024
#: What a request whose sender left before its body was read comes to (no answer is sent).
DISCONNECTED = Answer(0, b"", "rejected", "disconnected", None, {}, [])


#: Sent with every handshake answer (see :meth:`Ingest._handshake`).
_NOSNIFF = (b"x-content-type-options", b"nosniff")


class Ingest:
    """The ASGI app behind ``/hooks/{endpoint}``.

    A POST's work after its body is read runs without a coroutine (:meth:`post`): verify,
    hand the delivery to the store, and answer from the store's callback
    (``hub.store.base.Submits``) or from a task's when the store has only ``enqueue``.
    The server's protocol (``hub.commands.protocol``) calls :meth:`post` itself for a
    plain POST, skipping the ASGI cycle; everything else comes through ``__call__``.
    """

    def __init__(
        self,
        *,
        endpoints: Mapping[str, Endpoint],
        store: EventStore,
        clock: Clock,
        metrics: WebMetrics,
    ) -> None:
        self.routes = {name: HookRoute(endpoint) for name, endpoint in endpoints.items()}
        #: Bodies being read, all connections together (this path's and the protocol's).
        self.bodies = BodyBudget(bodies_limit(endpoints))
        self.store = store
        self.clock = clock
        self.metrics = metrics
        # resolved once: a per-call lazy proxy would rebuild a bound logger on every request
        self._log = structlog.get_logger().bind()
        #: store_enqueue_failed lines, by endpoint and kind of error
        self._store_errors = Throttle(STORE_ERROR_EVERY)
        #: The run of refused deliveries under way: when its first was refused (monotonic),
        #: how many, and whether a store_enqueue_failed line told of it (see _store_back).
        self._refused_since: float | None = None
        self._refused = 0
        self._refusal_told = False
        self._submit: Callable[[IncomingDelivery, Settle], None]
        if isinstance(store, Submits):
            self._submit = store.submit
        else:
            self._submit = lambda delivery, tell: settle_later(store.enqueue(delivery), tell)

    @staticmethod
    def prepare(endpoints: Mapping[str, Endpoint]) -> Prepared:
        """``endpoints`` made ready to serve (:meth:`use`), changing nothing: what may fail
        of a reload of the ingest, done before anything of the hub is changed (a reload
        whose routes failed to build after the dispatcher had reloaded was half applied).

        Raises:
            Exception: an endpoint's source could not be built.
        """
        routes = {name: HookRoute(endpoint) for name, endpoint in endpoints.items()}
        return Prepared(routes, bodies_limit(endpoints))

    def use(self, prepared: Prepared) -> None:
        """Serve ``prepared``'s endpoints from the next request on (cannot fail); a request
        under way finishes with the endpoint it started with."""
        self.routes = prepared.routes
        self.bodies.limit = prepared.bodies_limit

    def reload(self, endpoints: Mapping[str, Endpoint]) -> None:
        """Serve ``endpoints`` from the next request on (:meth:`prepare`, then :meth:`use`)."""
        self.use(self.prepare(endpoints))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        name = scope["path"][len(PREFIX) :]
        route = self.routes.get(name)
        if route is None and name.endswith("/"):  # a URL pasted with a trailing slash
            route = self.routes.get(name[:-1])
        label = route.name if route else ""
        try:
            if route is None:
                shown = name[:100]
                raise _Reject(
                    404,
                    {"error": f"unknown endpoint {shown!r}"},
                    "rejected",
                    "unknown_endpoint",
                    f"no endpoint named {shown!r}",
                )
            method = scope["method"]
            if method == "POST":
                body, headers = await self._read(route, scope, receive)
                answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

                def reply(answer: Answer) -> None:
                    if not answered.done():
                        answered.set_result(answer)

                self.post(route, headers, body, scope.get("query_string", b""), reply)
                answer = await answered
            elif method in ("GET", "HEAD"):
                await self._handshake(route, scope, send, start)
                return
            else:
                raise _Reject(
                    405,
                    {"error": f"method {method[:10]!r} not allowed; use POST"},
                    "rejected",
                    "method_not_allowed",
                    f"method {method[:10]!r}",
                )
        except _Reject as rej:
            answer = rej.answer(route)
        except _Answered as answered_early:
            answer = answered_early.answer
        except _Disconnected:
            self.done(label, start, DISCONNECTED)
            return
        except Exception as exc:  # a bug: answer 500 and say so, never crash the server
            answer = _failed(label, exc)
        await _answer(send, answer.status, answer.body, answer.headers)
        self.done(label, start, answer)

    def done(self, endpoint: str, start: float, answer: Answer) -> None:
        """Count the request and write its ``delivery_received`` line."""
        self.metrics.delivery(endpoint, answer.outcome, answer.reason, perf_counter() - start)
        warn = answer.warn or answer.reason in WARNED_REASONS
        log = self._log.warning if warn else self._log.info
        log(
            "delivery_received",
            endpoint=endpoint,
            delivery_id=answer.delivery_id,
            outcome=answer.outcome,
            reason=answer.reason or None,
            status=answer.status,
            **answer.extra,
        )

    async def _read(
        self, route: HookRoute, scope: Scope, receive: Receive
    ) -> tuple[bytes, dict[str, str]]:
        limit = route.endpoint.max_body
        headers = header_dict(scope["headers"])
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise _Reject(
                    400,
                    {"error": "Content-Length is not a number"},
                    "rejected",
                    "bad_body",
                    "unparseable Content-Length",
                ) from None
            if size > limit:
                # Read it first (unless the sender waits for a 100 Continue to send it):
                # see DRAIN_LIMIT.
                if size <= DRAIN_LIMIT and "100-continue" not in headers.get("expect", ""):
                    await _drain(receive, size)
                raise _too_large(limit, f"Content-Length {size}")
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if not more:
            if len(body) > limit:
                raise _too_large(limit, f"{len(body)} bytes")
            return body, headers
        buffer = bytearray()
        bodies = self.bodies
        try:
            while True:
                # max_body before the budget: the budget is no more than the largest max_body
                # when that is 64 MiB or more, and a body over it was then a 503 (retried,
                # for good) at every try, never its 413
                size = len(buffer) + len(body)
                if size > limit:
                    if not more:
                        raise _too_large(limit, f"{size} bytes")
                    bodies.give(len(buffer))  # (dropped: not held while the rest is drained)
                    buffer.clear()
                    await _drain(receive, DRAIN_LIMIT - size)
                    raise _too_large(limit, f"more than {limit} bytes")
                if not bodies.take(len(body)):
                    raise _Answered(over_budget(bodies))
                buffer += body
                if not more:
                    break
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                body = message.get("body", b"")
                more = message.get("more_body", False)
        finally:
            bodies.give(len(buffer))
        return bytes(buffer), headers

    def post(
        self, route: HookRoute, headers: dict[str, str], body: bytes, query: bytes, reply: Reply
    ) -> None:
        """Answer a POST to ``route`` whose whole body is read: the sender's check on the raw
        bytes, then (skim) the store reads the id, or parse → split → delivery ids, then
        one atomic enqueue. ``reply`` gets the answer once, perhaps before this returns."""
        try:
            now = self.clock.time()
            request = Incoming("POST", headers, body, query)
            try:
                route.source.verify(request, now)
            except VerificationError as exc:
                raise _Reject(401, _UNAUTHORIZED, "rejected", "unauthorized", exc.reason) from None
            encoding = headers.get("content-encoding")
            if encoding is not None and encoding.strip().lower() not in ("", "identity"):
                raise _encoded(encoding)
            transfer = headers.get("transfer-encoding")
            if transfer is not None and _compressed(transfer):
                raise _encoded(transfer, "Transfer-Encoding")
            kept = {k: without_url_credentials(v) for k, v in headers.items() if route.keeps(k)}
            content_type = headers.get("content-type") or ""
            if route.skim is None:
                self._parsed(route, request, now, kept, reply)
                return
            # The store checks the body and reads its id, where it writes (off this loop).
            delivery = IncomingDelivery(route.name, now, body, content_type, kept, (), route.skim)

            def skimmed(outcome: Outcome) -> None:
                if isinstance(outcome, BodyNotSkimmed):
                    self._parsed(route, request, now, kept, reply)  # the full parser decides
                    return
                results = self._stored(route, None, outcome)
                reply(_accepted(route, [r.delivery_id or "" for r in results], results))

            self._submit(delivery, self._then(route, reply, skimmed))
        except _Reject as rej:
            reply(rej.answer(route))
        except Exception as exc:
            reply(_failed(route.name, exc))

    def _parsed(
        self,
        route: HookRoute,
        request: Incoming,
        now: float,
        kept: dict[str, str],
        reply: Reply,
    ) -> None:
        body = request.body
        content_type = request.headers.get("content-type")
        try:
            parsed = parse(content_type, body)
        except BodyError as exc:
            raise _body_refused(exc) from None
        if parsed.form_as_json:  # (curl -d posts JSON so): the line says how it was read
            reply = _noting(reply, form_body_read_as_json=True)
        try:
            splits = route.source.split(request, parsed.document)
        except VerificationError as exc:  # a key inside the body (Google's google_key)
            reply(_Reject(401, _UNAUTHORIZED, "rejected", "unauthorized", exc.reason).answer(route))
            return
        except BodyError as exc:
            reply(_body_refused(exc).answer(route))
            return
        if isinstance(splits, Noted):  # leads left out (a split path's miss), or none kept
            reply = _noting(reply, warn=splits.warns, **splits.fields())
            if splits.kept_none is not None:
                self.metrics.kept_none(route.name)
        if not splits:
            reply(
                Answer(
                    200,
                    b'{"status":"accepted","ids":[]}',
                    "accepted",
                    "",
                    None,
                    {"events": 0},
                    _JSON_HEADERS,
                )
            )
            return
        ids = delivery_ids(route.endpoint, splits, body)
        document, documents = parsed.document, [s.document for s in splits]
        content_type = content_type or ""
        if route.credential_fields:  # (ids come from the body as received, as a retry's do)
            fields = route.credential_fields
            body, content_type, clean = without_credentials(body, content_type, document, fields)
            documents = [clean if d is document else redact_fields(d, fields) for d in documents]
            document = clean
        delivery = IncomingDelivery(
            endpoint=route.name,
            received_at=now,
            body=body,
            content_type=content_type,
            headers=kept,
            events=tuple(
                EventIn(i, d, parsed.is_body and d is document)
                for i, d in zip(ids, documents, strict=True)
            ),
        )

        def stored(outcome: Outcome) -> None:
            reply(_accepted(route, ids, self._stored(route, ids[0], outcome)))

        self._submit(delivery, self._then(route, reply, stored))

    def _then(self, route: HookRoute, reply: Reply, step: Callable[[Outcome], None]) -> Settle:
        """``step``, told the store's outcome, with its rejections and bugs answered."""

        def settled(outcome: Outcome) -> None:
            try:
                step(outcome)
            except _Reject as rej:
                reply(rej.answer(route))
            except Exception as exc:
                reply(_failed(route.name, exc))

        return settled

    def _stored(self, route: HookRoute, first: str | None, outcome: Outcome) -> list[EnqueueResult]:
        """The results of an enqueue; a failing store is a 503 (BodyNotSkimmed passes)."""
        if not isinstance(outcome, BaseException):
            if self._refused_since is not None:
                self._store_back()
            return outcome
        if isinstance(outcome, BodyNotSkimmed):
            raise outcome
        self._store_failed(route.name, first, outcome)
        raise _Reject(
            503,
            {"error": "store unavailable"},
            "failed",
            "store_unavailable",
            type(outcome).__name__,
        )

    def _store_failed(self, endpoint: str, first: str | None, error: BaseException) -> None:
        """Log a failed enqueue: at most once per :data:`STORE_ERROR_EVERY` seconds for an
        endpoint and kind of error (a store that is down fails every request, each of which
        has its own ``delivery_received`` line already), saying how many went unlogged."""
        if self._refused_since is None:
            self._refused_since = self.clock.monotonic()
        self._refused += 1
        key = (endpoint, type(error).__name__)
        more = self._store_errors.extra(key, self.clock.time())
        if more is None:
            return
        self._refusal_told = True
        _log.error(
            "store_enqueue_failed",
            endpoint=endpoint,
            delivery_id=first,
            error=key[1],
            detail=str(error)[:300],
            **more,
        )

    def _store_back(self) -> None:
        """The store took a delivery after refusing some: ``store_enqueue_recovered`` (a
        warning: ``failed``, the deliveries refused since the run's first, ``seconds``), when
        a ``store_enqueue_failed`` line told of the run. Without it a log at warning level
        (and a PostgreSQL web instance's: no writer of its own logs a recovery) ended on the
        failure. A run none of whose refusals was told (within a second of a line: a store
        flapping at the edge of a full disk) ends without a line, so at most one such line
        follows each failure line."""
        if self._refusal_told and self._refused_since is not None:
            _log.warning(
                "store_enqueue_recovered",
                failed=self._refused,
                seconds=round(self.clock.monotonic() - self._refused_since, 3),
            )
        self._refused_since = None
        self._refused = 0
        self._refusal_told = False

    async def _handshake(self, route: HookRoute, scope: Scope, send: Send, start: float) -> None:
        request = Incoming(scope["method"], {}, b"", scope.get("query_string", b""))
        answer = route.source.handshake(request)
        if answer is None:
            raise _Reject(
                405,
                {"error": "this endpoint takes POST only"},
                "rejected",
                "method_not_allowed",
                "GET on an endpoint without a handshake",
            )
        # nosniff: a challenge is echoed as sent, and must never be read as HTML by a browser
        headers = [(b"content-type", answer.content_type.encode()), _NOSNIFF]
        await _answer(send, answer.status, answer.body, headers, head=scope["method"] == "HEAD")
        ok = answer.status == 200
        _log.info("handshake_answered", endpoint=route.name, status=answer.status, ok=ok)
        self.metrics.delivery(
            route.name,
            "handshake" if ok else "rejected",
            "" if ok else "unauthorized",
            perf_counter() - start,
        )


class BodyBudget:
    """The bytes of request bodies held while they are still coming in (:attr:`held`), all
    connections together, against :attr:`limit` (see :data:`BODIES_IN_FLIGHT`)."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.held = 0
        self.limit = limit

    def take(self, size: int) -> bool:
        """Hold ``size`` bytes more, unless that would pass the limit (False)."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """``size`` bytes taken are no longer held (their body ended, or was dropped)."""
        self.held -= size


def bodies_limit(endpoints: Mapping[str, Endpoint]) -> int:
    """:data:`BODIES_IN_FLIGHT`, or the largest endpoint's ``max_body`` if that is more. A
    configuration with no endpoint (only targets, or a reload that took every endpoint away)
    has the default: ``max(BODIES_IN_FLIGHT, *())`` raised a TypeError, which stopped
    ``serve`` at start with a traceback and failed such a reload after it had half applied."""
    return max((BODIES_IN_FLIGHT, *(e.max_body for e in endpoints.values())))


def over_budget(bodies: BodyBudget) -> Answer:
    """The 503 for a body read while the bodies coming in hold :attr:`BodyBudget.limit`: the
    sender retries it later; the connection is closed (the rest of the body is not read)."""
    return Answer(
        503,
        b'{"error":"too many request bodies are being received at once; try again shortly"}',
        "failed",
        "bodies_over_limit",
        None,
        {"detail": f"bodies being received hold {bodies.held} of {bodies.limit} bytes"},
        [*_JSON_HEADERS, (b"connection", b"close")],
    )


class _Disconnected(Exception):
    """The client went away before its body was read."""


class _Answered(Exception):
    """A request answered before its body was read whole (:func:`over_budget`)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.reason)
        self.answer = answer


#: How much of a body over ``max_body`` is read, and dropped, before its 413. Answering as
#: soon as the limit is seen, and closing the connection, left the rest of the body unread
#: in the socket: the kernel then resets the connection, and the sender, still writing, most
#: often saw the reset instead of the 413 (117 of 200 such posts in the chaos soak) and
#: retried the same body, where a 413 tells it to stop. A body declared larger is answered at
#: once, and the connection lingers (``hub.commands.protocol.GatheringTransport.close``); so
#: is one whose sender waits for ``100 Continue`` (it has sent nothing yet).
DRAIN_LIMIT = 16 * 1024 * 1024


async def _drain(receive: Receive, budget: int) -> None:
    """Read the rest of the request's body and drop it, until it ends or more than
    ``budget`` bytes have come.

    Raises:
        _Disconnected: the sender left meanwhile.
    """
    read = 0
    while read <= budget:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        if not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


def _body_refused(exc: BodyError) -> _Reject:
    """The answer to a body that cannot be taken: its status and reason."""
    reason = _BODY_REASONS.get(exc.status, "bad_body")
    return _Reject(exc.status, {"error": exc.reason}, "rejected", reason, exc.reason)


def _noting(reply: Reply, *, warn: bool = False, **fields: Any) -> Reply:
    """``reply``, with ``fields`` added to its answer's ``delivery_received`` line (a
    warning when ``warn``)."""

    def noted(answer: Answer) -> None:
        reply(answer._replace(extra={**answer.extra, **fields}, warn=answer.warn or warn))

    return noted


def _encoded(encoding: str, header: str = "Content-Encoding") -> _Reject:
    """415 for a body sent compressed (``Content-Encoding``, or a ``Transfer-Encoding`` such
    as ``gzip, chunked``): no sender of leads does, and it would be read as plain bytes, its
    signature checked over the compressed ones (a JSON body was a 400 "not valid UTF-8")."""
    shown = encoding.strip()[:40]
    reason = f"{header} {shown} is not supported; send the body uncompressed"
    return _Reject(415, {"error": reason}, "rejected", "unsupported_media_type", reason)


def _compressed(transfer: str) -> bool:
    """Whether a ``Transfer-Encoding`` names a coding besides ``chunked`` (which the server
    has undone) and ``identity``."""
    codings = {coding.strip().lower() for coding in transfer.split(",")}
    return bool(codings - {"chunked", "identity", ""})


def _accepted(route: HookRoute, ids: list[str], results: list[EnqueueResult]) -> Answer:
    """The 200 for stored ``results`` (delivery ``ids``): accepted, or duplicate when
    every event was known."""
    first = ids[0]
    new = [r.id for r in results if not r.duplicate]
    extra: dict[str, Any] = {"event_ids": [r.id for r in results[:LOGGED_IDS]]}
    if len(ids) > 1:
        extra["delivery_ids"] = ids[:LOGGED_IDS]
    if len(ids) > LOGGED_IDS:
        extra["events"] = len(ids)
        extra["ids_left_out"] = len(ids) - LOGGED_IDS
    if not new:
        payload = orjson.dumps({"status": "duplicate", "id": results[0].id})
        return Answer(200, payload, "duplicate", "", first, extra, _JSON_HEADERS)
    answer: dict[str, Any] = {"status": "accepted", "id": new[0]}
    if route.source.batches:
        answer["ids"] = new
        if len(new) < len(results):
            answer["duplicates"] = len(results) - len(new)
    return Answer(200, orjson.dumps(answer), "accepted", "", first, extra, _JSON_HEADERS)


def _failed(endpoint: str, exc: Exception) -> Answer:
    """A bug: a 500 that says so (and a log line with its traceback), never a crash."""
    _log.error("ingest_failed", endpoint=endpoint, error=type(exc).__name__, exc_info=exc)
    return Answer(
        500, b'{"error":"internal error"}', "failed", "internal_error", None, {}, _JSON_HEADERS
    )


def without_credentials(
    body: bytes, content_type: str, document: Any, fields: frozenset[str]
) -> tuple[bytes, str, Any]:
    """The body, Content-Type and document to store for a delivery whose ``document`` (parsed
    from ``body``) carries credentials in ``fields`` (Google's ``google_key``), none of
    them in the clear.

    :func:`~hub.sources.base.redacted` replaces the value where the body writes it as JSON
    encoders do; that it did so is checked by parsing the result. A body that writes it
    otherwise (``"gk\\/key"``, as PHP's json_encode escapes a slash, or a ``\\u`` escape),
    or a form body, is stored as the JSON of the redacted document instead (its bytes as
    received would keep the key for every backup and ``leadhub events --json``). The document
    itself is redacted too: one not read back from the body (a body with a number beyond
    64 bits) is stored as it is.
    """
    clean = redact_fields(document, fields)
    if clean is document:
        return body, content_type, document
    kept = redacted(body, document, fields)
    try:
        if parse(content_type, kept).document == clean:
            return kept, content_type, clean
    except BodyError:
        pass
    return orjson.dumps(clean), "application/json", clean


def _too_large(limit: int, seen: str) -> _Reject:
    return _Reject(
        413,
        {"error": f"body over the {limit}-byte limit"},
        "rejected",
        "too_large",
        f"body too large ({seen})",
    )
