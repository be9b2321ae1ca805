"""The dispatcher's HTTP transport: httpx's client API over an aiohttp connection pool.

httpx stays the API every caller codes against (``httpx.AsyncClient``, ``httpx.Response``,
httpx's exception tree); only the transport underneath is aiohttp's. On loopback against
the sandbox the plain httpx transport (httpcore) does about a third of aiohttp's sends/s
at 4 in flight and gets slower as more calls share its pool; this one keeps up.

Failures are translated into httpx's exceptions so that ``transport_reason`` can tell them
apart (and say which in the event's last error)::

    connection refused            → httpx.ConnectError     ("connection refused ...")
    cannot connect (DNS, routing) → httpx.ConnectError
    connection reset (mid-answer) → httpx.ReadError        ("connection reset ...")
    closed without an answer      → httpx.RemoteProtocolError (its head begun: "... before
                                    the answer's head ended", never sent again)
    no answer within the timeout  → httpx.ReadTimeout (connect: httpx.ConnectTimeout)
    a broken answer (bad chunks)  → httpx.RemoteProtocolError ("an answer that is not ...")
    the proxy refuses a tunnel    → ProxyRefused (an httpx.ProxyError with the status)
    the proxy cannot be reached   → httpx.ProxyError
    the proxy breaks a tunnel     → httpx.ProxyError       ("the proxy, asked for a tunnel: ...")
    an answer over MAX_ANSWER     → AnswerTooLarge (an httpx.TransportError), not read
    a body unlike its encoding    → httpx.DecodingError (also an encoding not asked for)

Every translated exception keeps the aiohttp error as its ``__cause__``.

Answers are bounded: every answer the dispatcher reads (a ``Lead.Capture`` result, a Graph
lead, a LinkedIn form response, a HubSpot object) is a few KB, so a body over
:data:`MAX_ANSWER`, before or after decompression, is refused instead of read into memory: one
misconfigured URL serving a download or an endless stream cannot exhaust the process. The
transport decodes ``gzip`` and ``deflate`` itself (httpx's decoders have no bound) and asks
for nothing else.

Proxies: the standard variables, as curl, httpx and Go read them (:class:`Proxies`).
``HTTPS_PROXY`` / ``HTTP_PROXY`` (or ``ALL_PROXY``; lower case first) name the proxy for
``https://`` / ``http://`` URLs, ``NO_PROXY`` the hosts reached directly; credentials in a
proxy's URL go in a ``Proxy-Authorization`` header and are never logged. Loopback hosts
(the embedded sandbox) are always reached directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import weakref
import zlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict

from hub.dispatch.proxies import Proxies

_RESET = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)

#: The largest answer body read, in bytes, compressed or not: 4 MiB, a thousand times a
#: Graph lead or a HubSpot object with every property, and read in milliseconds.
MAX_ANSWER = 4 * 1024 * 1024
#: What the dispatcher's client accepts (httpx's default also offers zstd, and would decode
#: it without a bound): the two encodings :func:`_decoded` bounds.
ACCEPT_ENCODING = "gzip, deflate"
#: zlib's window bits for each encoding decoded: gzip; deflate as zlib data (RFC 9110).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _size(count: int) -> str:
    """``count`` bytes, as a person reads them (``4 MiB``, ``64 KiB``, ``100 bytes``)."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"


#: Set by :meth:`_TrackingConnector.connect` when the request under way (in this task) was
#: given a connection that had carried an earlier request: a kept-alive one.
_reused: ContextVar[list[bool]] = ContextVar("connection_reused")


class _TrackingConnector(aiohttp.TCPConnector):
    """aiohttp's pool, noting whether each request was given a kept-alive connection.

    Only a request sent on a kept-alive connection may be sent again when the server closes
    it unanswered (:meth:`AiohttpTransport.handle_async_request`): the server closed an
    idle connection as the request went out, and never read it. A fresh connection closed
    unanswered may have been read and acted on (a capture made, then the server failing
    before its answer): sending it again would capture the lead twice, outside the
    target's rate limit and uncounted, so it fails as a close without an answer instead.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        try:
            conn = await super().connect(req, traces, timeout)
        except aiohttp.ClientHttpProxyError:  # the proxy's own status: translated as such
            raise
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as exc:
            if req.proxy is None:
                raise
            # Opening an https tunnel, before anything reached the target: what closed, or
            # answered in no HTTP, was the proxy (said as the target's, it was looked for
            # at LeadSquared's end).
            raise ProxyBroken(translate(exc) or exc) from exc
        protocol = conn.protocol
        if protocol is not None:
            if protocol in self._used:
                flag = _reused.get(None)
                if flag is not None:
                    flag[0] = True
            else:
                self._used.add(protocol)
        return conn


class ProxyBroken(aiohttp.ClientConnectionError):
    """The proxy closed the request to open an https tunnel (``CONNECT``) unanswered, or
    answered it in no HTTP; ``cause`` says which."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the proxy, asked for a tunnel: {cause}")


class AnswerTooLarge(httpx.TransportError):
    """The answer's body is over ``limit`` bytes (``status``: its HTTP status); it was not
    read, and its connection was closed."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(
            f"the answer (HTTP {status}) is larger than {_size(limit)}: not read "
            "(does the url name the right API?)"
        )
        self.status = status
        self.limit = limit


class ProxyRefused(httpx.ProxyError):
    """The proxy answered the request to open an https tunnel (``CONNECT``) with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the proxy answered the tunnel request with HTTP {status} {message}")
        self.status = status
        #: Whether the hub sent the proxy credentials (its variable's URL held a user): a 407
        #: then refused them, else asked for some (set by the transport that sent it).
        self.login = True


#: The ``httpx.Response`` extension saying whether an answer came through a proxy the hub
#: sent credentials to (True), one it sent none to (False); absent when no proxy was used. A
#: 407 is worded by it: credentials refused, or credentials missing.
PROXY_LOGIN = "leadhub_proxy_login"


#: What an answer that is not HTTP, or is broken HTTP, is called in a reason.
MALFORMED = "an answer that is not well-formed HTTP"
#: What a connection the server closed after it began its answer, before its head ended, says.
CLOSED_MID_ANSWER = "connection closed before the answer's head ended"


def _answer_begun(exc: BaseException) -> bool:
    """Whether ``exc`` (the server closed the connection) came after the server had begun
    its answer: aiohttp then gives the half-parsed answer as its message, else a text. An
    answer begun means the request was read, and perhaps acted on."""
    return isinstance(exc, aiohttp.ServerDisconnectedError) and not isinstance(exc.message, str)


#: What a connection not made in time says (its TLS handshake counts: a server that takes the
#: connection and never answers the handshake is the same wait).
CONNECT_TIMEOUT = "connect timeout (no connection made within the timeout, TLS handshake included)"


def translate(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp (or socket) failure; None if it is not one."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return ProxyRefused(exc.status, exc.message)
    if isinstance(exc, ProxyBroken):
        return httpx.ProxyError(detail)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError(f"cannot connect to the proxy ({detail})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        if _answer_begun(exc):  # its text is the repr of aiohttp's half-parsed answer
            status = getattr(exc.message, "code", None)
            return httpx.RemoteProtocolError(f"{CLOSED_MID_ANSWER} (HTTP {status} begun)")
        # worded as hub.dispatch.leadsquared.transport_reason names the kind (said once)
        return httpx.RemoteProtocolError(f"connection closed without an answer ({detail})")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # Its text is "Connection timeout to host <the request's whole URL>": the query too,
        # with a Graph read's access_token, percent-encoded where a reason's scrubbing of the
        # token missed it (an app token's "|" as "%7C"). Said without it.
        return httpx.ConnectTimeout(CONNECT_TIMEOUT)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(detail)
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return httpx.ConnectError(f"connection refused ({detail})")
        return httpx.ConnectError(detail)
    if isinstance(exc, aiohttp.ClientResponseError):
        # An answer aiohttp could not parse (a bad status line, chunk size or header): its
        # text names the request's URL, which may hold a token in its query (the Graph API's
        # access_token), percent-encoded where a reason's scrubbing would miss it. Its status
        # is aiohttp's (400), not the server's, and its message quotes the line over several.
        message = " ".join(str(exc.message).split())
        return httpx.RemoteProtocolError(f"{MALFORMED} ({message})")
    if isinstance(exc, aiohttp.ClientPayloadError):
        if "ConnectionResetError" in detail:  # named in its text only, not as its cause
            return httpx.ReadError(f"connection reset while the answer was read ({detail})")
        return httpx.RemoteProtocolError(detail)
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError) or (
        isinstance(exc, OSError) and exc.errno in _RESET
    ):
        return httpx.ReadError(f"connection reset ({detail})")
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(detail)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return httpx.ReadError(detail)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(detail)
    return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport sending over one ``aiohttp`` session (made on first use).

    HTTP/1.1 only; through the proxy the environment names (:class:`Proxies`), if any; TLS
    verified with the system's default context. Timeouts come from httpx's per-request
    ``timeout``: connect (plus the wait for a free connection) and read. Bodies over
    ``max_answer`` bytes, compressed or decoded, raise :class:`AnswerTooLarge`.
    """

    def __init__(
        self,
        *,
        max_connections: int = 200,
        keepalive_expiry: float = 5.0,
        proxies: Proxies | None = None,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        self._limit = max_connections
        self._max_answer = max_answer
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._proxies = proxies if proxies is not None else Proxies()

    def _open(self) -> aiohttp.ClientSession:
        connector = _TrackingConnector(limit=self._limit, keepalive_timeout=self._keepalive)
        # No cookie jar and no default headers: httpx sends exactly what it built.
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None or session.closed:
            session = self._session = self._open()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        pool, connect = timeouts.get("pool"), timeouts.get("connect")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=timeouts.get("read"),
        )
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
        )
        body = await request.aread()
        url = request.url
        proxy = self._proxies.choose(url.scheme, url.host, url.port) if self._proxies else None
        if proxy is not None and url.scheme == "http":
            # Sent to the proxy itself, in absolute form: its credentials go with the request
            # (aiohttp sends proxy_headers only with the CONNECT that opens an https tunnel).
            headers.update(proxy.headers)
        send = functools.partial(
            session.request,
            request.method,
            str(request.url),
            headers=headers,
            data=body or None,
            allow_redirects=False,
            timeout=timeout,
            compress=None,
            proxy=None if proxy is None else proxy.url,
            proxy_headers=None if proxy is None else proxy.headers,
        )
        reused = [False]
        _reused.set(reused)  # (this task's; read back below)
        try:
            try:
                status, raw_headers, reason, content = await self._exchange(send)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if (
                    isinstance(exc, aiohttp.ClientConnectorError)
                    or not reused[0]
                    or _answer_begun(exc)
                ):
                    # no connection was made (a new one now fares no better), or a fresh
                    # one was closed unanswered: the server may have acted on the request;
                    # or the server had begun its answer: it read the request
                    raise
                # A kept-alive connection the server closed as the request went out (its
                # idle timeout met the request): sent once more, at once, on a new one (the
                # pool has dropped the closed one). A server that closes every connection
                # unanswered fails this second try the same way, and that is the error.
                reused[0] = False
                status, raw_headers, reason, content = await self._exchange(send)
        except (AnswerTooLarge, httpx.DecodingError) as exc:
            exc.request = request
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            translated = translate(exc)
            if translated is None:
                raise
            if isinstance(translated, ProxyRefused) and proxy is not None:
                translated.login = bool(proxy.headers)
            translated.request = request
            raise translated from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if proxy is not None and url.scheme == "http":  # (a tunnel's answers are the server's)
            extensions[PROXY_LOGIN] = bool(proxy.headers)
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(
            status,
            headers=list(raw_headers),
            stream=httpx.ByteStream(content),
            request=request,
            extensions=extensions,
        )

    async def _exchange(
        self, send: Callable[[], contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]]
    ) -> tuple[int, Any, str | None, bytes]:
        """One request and its whole answer: status, raw headers, reason, body (decoded)."""
        async with send() as answer:
            status, raw_headers, reason = answer.status, answer.raw_headers, answer.reason
            content = await _read_bounded(answer, self._max_answer)
            encoding = answer.headers.get("Content-Encoding")
            if encoding is not None:
                content = _decoded(content, encoding, status, self._max_answer)
                raw_headers = _without_encoding(raw_headers)
        return status, raw_headers, reason, content

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_bounded(answer: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of ``answer``, at most ``limit`` bytes, else :class:`AnswerTooLarge`.

    A Content-Length within the limit is read in one go, as before (the common case); one
    over it is refused unread; a body without one (chunked, or up to the close) is read
    piece by piece until it ends or passes the limit.
    """
    length = answer.content_length
    if length is not None:
        if length > limit:
            raise AnswerTooLarge(answer.status, limit)
        return await answer.read()
    body = bytearray()
    async for piece in answer.content.iter_any():
        body += piece
        if len(body) > limit:
            raise AnswerTooLarge(answer.status, limit)
    return bytes(body)


def _decoded(content: bytes, encoding: str, status: int, limit: int) -> bytes:
    """``content`` decoded from its ``Content-Encoding``, at most ``limit`` bytes of it.

    Raises:
        AnswerTooLarge: it decodes to more than ``limit`` bytes (a few KB of gzip can
            decode to GB).
        httpx.DecodingError: it is not what its encoding says, or is encoded in a way the
            hub did not ask for (:data:`ACCEPT_ENCODING`).
    """
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return content
    wbits = _WBITS.get(name)
    if wbits is None:
        msg = f"the answer is encoded as {encoding!r}, which the hub did not ask for"
        raise httpx.DecodingError(msg)
    try:
        decoder = zlib.decompressobj(wbits)
        decoded = decoder.decompress(content, limit + 1)
    except zlib.error as exc:
        if name != "deflate":
            msg = f"the answer claims Content-Encoding {name} but is not ({exc})"
            raise httpx.DecodingError(msg) from exc
        return _decoded_raw_deflate(content, status, limit)
    if len(decoded) > limit:
        raise AnswerTooLarge(status, limit)
    return decoded


def _decoded_raw_deflate(content: bytes, status: int, limit: int) -> bytes:
    """``deflate`` sent without its zlib header, as some servers do (httpx reads it too)."""
    try:
        decoded = zlib.decompressobj(-zlib.MAX_WBITS).decompress(content, limit + 1)
    except zlib.error as exc:
        msg = f"the answer claims Content-Encoding deflate but is not ({exc})"
        raise httpx.DecodingError(msg) from exc
    if len(decoded) > limit:
        raise AnswerTooLarge(status, limit)
    return decoded


def _without_encoding(raw_headers: Any) -> tuple[tuple[bytes, bytes], ...]:
    """The answer's headers for a body already decoded: without its Content-Encoding and
    Content-Length (httpx would decode the body again, and the length is the encoded one)."""
    dropped = (b"content-encoding", b"content-length")
    return tuple((name, value) for name, value in raw_headers if name.lower() not in dropped)


def make_http_client(
    *, max_connections: int = 200, proxies: Proxies | None = None
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the dispatcher sends with (over :class:`AiohttpTransport`),
    through the proxies the environment names unless ``proxies`` is given.

    Raises:
        ProxySettingError: a proxy variable holds a proxy the hub cannot use.
    """
    transport = AiohttpTransport(max_connections=max_connections, proxies=proxies)
    return httpx.AsyncClient(transport=transport, headers={"Accept-Encoding": ACCEPT_ENCODING})
