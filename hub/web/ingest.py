"""``/hooks/{endpoint}``: a lean raw ASGI handler (no Starlette Request/Response on this path).

POST: size limit (Content-Length up front, then counted while reading) → the
source's check on the raw bytes → parse → split → delivery ids → one atomic
``store.enqueue`` → answer. A single-lead JSON sender whose id is a top-level key skips
parse, split and ids here: its delivery goes to the store as a ``SkimId``, and the store
checks the body and reads the id where it writes (``leadhub serve``: in its writer
process, off this event loop); a body it cannot vouch for comes back and takes the full
path. GET answers the sender's handshake (Facebook) or 405.

Answers (JSON unless noted):

* 200 ``{"status":"accepted","id":N}`` once stored; a source whose deliveries batch
  leads (Facebook, HubSpot apps) also answers ``"ids":[...]`` (new event ids, in order;
  ``[]`` when none is a lead) and ``"duplicates":K`` when part of a batch was known.
* 200 ``{"status":"duplicate","id":N}`` when every event was already stored.
* 401 ``{"error":"unauthorized"}``, never saying why (the log says it).
* 404 unknown endpoint, 405 method, 413 too large, 415 content type, 400 body.
* 503 ``{"error":"store unavailable"}`` when the store fails: the sender retries.

Exactly one ``delivery_received`` log line per request, with ``endpoint``,
``delivery_id``, ``outcome`` and ``reason`` (the logger is resolved when the
app is built, so configure structlog before ``create_app``). Secrets, tokens, signatures and bodies
are never logged; headers that carry credentials are never stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from time import perf_counter
from typing import Any

import orjson
import structlog

from hub.clock import Clock
from hub.config.models import Endpoint
from hub.logs import is_secret_name
from hub.sources import (
    BodyError,
    Incoming,
    Source,
    VerificationError,
    build_source,
    delivery_ids,
)
from hub.sources.base import NoHandshake, WholeBody
from hub.sources.bodies import parse
from hub.store.base import BodyNotSkimmed, EventStore
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


class _Reject(Exception):
    """An answer other than 200, raised inside this module (control flow, not an error)."""

    def __init__(self, status: int, body: dict[str, Any], outcome: str, reason: str, log: str):
        super().__init__(log)
        self.status = status
        self.body = body
        self.outcome = outcome
        self.reason = reason
        self.log = log


class _Route:
    """One endpoint, prepared: its source and which headers it may keep."""

    __slots__ = ("_keep", "allow", "credentials", "endpoint", "name", "skim", "source")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.source: Source = build_source(endpoint)
        self.credentials = self.source.credential_headers
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
            keep = not (
                header in DENIED_HEADERS or header in self.credentials or is_secret_name(header)
            )
            if len(self._keep) < 1000:
                self._keep[header] = keep
        return keep


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _answer(
    send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [*(headers or _JSON_HEADERS), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload})


_UNAUTHORIZED = {"error": "unauthorized"}


class Ingest:
    """The ASGI app behind ``/hooks/{endpoint}``."""

    def __init__(
        self,
        *,
        endpoints: Mapping[str, Endpoint],
        store: EventStore,
        clock: Clock,
        metrics: WebMetrics,
    ) -> None:
        self.routes = {name: _Route(endpoint) for name, endpoint in endpoints.items()}
        self.store = store
        self.clock = clock
        self.metrics = metrics
        # resolved once: a per-call lazy proxy would rebuild a bound logger on every request
        self._log = structlog.get_logger().bind()

    def reload(self, endpoints: Mapping[str, Endpoint]) -> None:
        """Serve ``endpoints`` from the next request on; a request under way finishes with
        the endpoint it started with."""
        self.routes = {name: _Route(endpoint) for name, endpoint in endpoints.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        name = scope["path"][len(PREFIX) :]
        route = self.routes.get(name)
        label = route.name if route else ""
        delivery_id: str | None = None
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
                status, body, outcome, delivery_id, extra = await self._post(route, scope, receive)
                await _answer(send, status, body)
                self._done(label, start, outcome, "", delivery_id, status, extra)
            elif method in ("GET", "HEAD"):
                await self._handshake(route, scope, send, start)
            else:
                raise _Reject(
                    405,
                    {"error": f"method {method[:10]!r} not allowed; use POST"},
                    "rejected",
                    "method_not_allowed",
                    f"method {method[:10]!r}",
                )
        except _Reject as rej:
            headers = _JSON_HEADERS
            if rej.status == 405 and route is not None:
                headers = [*_JSON_HEADERS, (b"allow", route.allow)]
            elif rej.status == 413:
                headers = [*_JSON_HEADERS, (b"connection", b"close")]
            await _answer(send, rej.status, orjson.dumps(rej.body), headers)
            self._done(
                label, start, rej.outcome, rej.reason, delivery_id, rej.status, {"detail": rej.log}
            )
        except _Disconnected:
            self._done(label, start, "rejected", "disconnected", None, 0, {})
        except Exception as exc:  # a bug: answer 500 and say so, never crash the server
            _log.exception("ingest_failed", endpoint=label, error=type(exc).__name__)
            await _answer(send, 500, b'{"error":"internal error"}')
            self._done(label, start, "failed", "internal_error", delivery_id, 500, {})

    def _done(
        self,
        endpoint: str,
        start: float,
        outcome: str,
        reason: str,
        delivery_id: str | None,
        status: int,
        extra: dict[str, Any],
    ) -> None:
        self.metrics.delivery(endpoint, outcome, reason, perf_counter() - start)
        self._log.info(
            "delivery_received",
            endpoint=endpoint,
            delivery_id=delivery_id,
            outcome=outcome,
            reason=reason or None,
            status=status,
            **extra,
        )

    async def _read(
        self, route: _Route, scope: Scope, receive: Receive
    ) -> tuple[bytes, dict[str, str]]:
        limit = route.endpoint.max_body
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            key = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
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
                raise _too_large(limit, f"Content-Length {size}")
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _too_large(limit, f"{len(body)} bytes")
            return body, headers
        buffer = bytearray(body)
        while True:
            if len(buffer) > limit:
                raise _too_large(limit, f"more than {limit} bytes")
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            buffer += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if len(buffer) > limit:
            raise _too_large(limit, f"{len(buffer)} bytes")
        return bytes(buffer), headers

    async def _post(
        self, route: _Route, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, str, str | None, dict[str, Any]]:
        body, headers = await self._read(route, scope, receive)
        now = self.clock.time()
        request = Incoming("POST", headers, body, scope.get("query_string", b""))
        content_type = headers.get("content-type")
        try:
            route.source.verify(request, now)
        except VerificationError as exc:
            raise _Reject(401, _UNAUTHORIZED, "rejected", "unauthorized", exc.reason) from None
        kept = {k: v for k, v in headers.items() if route.keeps(k)}
        results: list[EnqueueResult] | None = None
        if route.skim is not None:
            # The store checks the body and reads its id, where it writes (off this loop).
            try:
                results = await self._enqueue(
                    route,
                    IncomingDelivery(
                        route.name, now, body, content_type or "", kept, (), route.skim
                    ),
                    None,
                )
            except BodyNotSkimmed:
                pass  # the full parser decides, below
        if results is not None:
            ids = [r.delivery_id or "" for r in results]
        else:
            try:
                parsed = parse(content_type, body)
                splits = route.source.split(request, parsed.document)
            except VerificationError as exc:  # a key inside the body (Google's google_key)
                raise _Reject(401, _UNAUTHORIZED, "rejected", "unauthorized", exc.reason) from None
            except BodyError as exc:
                reason = "unsupported_media_type" if exc.status == 415 else "bad_body"
                raise _Reject(
                    exc.status, {"error": exc.reason}, "rejected", reason, exc.reason
                ) from None
            if not splits:
                return 200, b'{"status":"accepted","ids":[]}', "accepted", None, {"events": 0}
            ids = delivery_ids(route.endpoint, splits, body)
            delivery = IncomingDelivery(
                endpoint=route.name,
                received_at=now,
                body=body,
                content_type=content_type or "",
                headers=kept,
                events=tuple(
                    EventIn(i, s.document, parsed.is_body and s.document is parsed.document)
                    for i, s in zip(ids, splits, strict=True)
                ),
            )
            results = await self._enqueue(route, delivery, ids[0])
        first = ids[0]
        new = [r.id for r in results if not r.duplicate]
        extra: dict[str, Any] = {"event_ids": [r.id for r in results]}
        if len(ids) > 1:
            extra["delivery_ids"] = ids
        if not new:
            return (
                200,
                orjson.dumps({"status": "duplicate", "id": results[0].id}),
                "duplicate",
                first,
                extra,
            )
        answer: dict[str, Any] = {"status": "accepted", "id": new[0]}
        if route.source.batches:
            answer["ids"] = new
            if len(new) < len(results):
                answer["duplicates"] = len(results) - len(new)
        return 200, orjson.dumps(answer), "accepted", first, extra

    async def _enqueue(
        self, route: _Route, delivery: IncomingDelivery, first: str | None
    ) -> list[EnqueueResult]:
        """``store.enqueue``; a failing store is a 503 (BodyNotSkimmed passes through)."""
        try:
            return await self.store.enqueue(delivery)
        except BodyNotSkimmed:
            raise
        except Exception as exc:
            _log.error(
                "store_enqueue_failed",
                endpoint=route.name,
                delivery_id=first,
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )
            raise _Reject(
                503,
                {"error": "store unavailable"},
                "failed",
                "store_unavailable",
                type(exc).__name__,
            ) from None

    async def _handshake(self, route: _Route, scope: Scope, send: Send, start: float) -> None:
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
        body = answer.body if scope["method"] == "GET" else b""
        await _answer(send, answer.status, body, [(b"content-type", answer.content_type.encode())])
        ok = answer.status == 200
        _log.info("handshake_answered", endpoint=route.name, status=answer.status, ok=ok)
        self.metrics.delivery(
            route.name,
            "handshake" if ok else "rejected",
            "" if ok else "unauthorized",
            perf_counter() - start,
        )


class _Disconnected(Exception):
    """The client went away before its body was read."""


def _too_large(limit: int, seen: str) -> _Reject:
    return _Reject(
        413,
        {"error": f"body over the {limit}-byte limit"},
        "rejected",
        "too_large",
        f"body too large ({seen})",
    )
