"""The dispatcher's HTTP transport: httpx's client API over an aiohttp connection pool.

httpx stays the API every caller codes against (``httpx.AsyncClient``, ``httpx.Response``,
httpx's exception tree); only the transport underneath is aiohttp's. On loopback against
the sandbox the plain httpx transport (httpcore) does about a third of aiohttp's sends/s
at 4 in flight and gets slower as more calls share its pool; this one keeps up.

Failures are translated into httpx's exceptions so that ``transport_reason`` can tell them
apart (and say which in the event's last error)::

    connection refused            → httpx.ConnectError     ("connection refused ...")
    cannot connect (DNS, routing) → httpx.ConnectError
    connection reset              → httpx.ReadError        ("connection reset ...")
    closed without an answer      → httpx.RemoteProtocolError
    no answer within the timeout  → httpx.ReadTimeout (connect: httpx.ConnectTimeout)
    a broken answer (bad chunks)  → httpx.RemoteProtocolError

Every translated exception keeps the aiohttp error as its ``__cause__``.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict

_RESET = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


def translate(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp (or socket) failure; None if it is not one."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(
            f"server disconnected without sending a response ({detail})"
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(detail)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(detail)
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return httpx.ConnectError(f"connection refused ({detail})")
        return httpx.ConnectError(detail)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
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

    HTTP/1.1 only; no proxies (the hub talks to LeadSquared and Graph directly); TLS
    verified with the system's default context. Timeouts come from httpx's per-request
    ``timeout``: connect (plus the wait for a free connection) and read.
    """

    def __init__(self, *, max_connections: int = 200, keepalive_expiry: float = 5.0) -> None:
        self._limit = max_connections
        self._keepalive = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive)
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
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                compress=None,
            ) as answer:
                content = await answer.read()
                status, raw_headers, reason = answer.status, answer.raw_headers, answer.reason
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            translated = translate(exc)
            if translated is None:
                raise
            translated.request = request
            raise translated from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(
            status,
            headers=list(raw_headers),
            stream=httpx.ByteStream(content),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_http_client(*, max_connections: int = 200) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the dispatcher sends with (over :class:`AiohttpTransport`)."""
    return httpx.AsyncClient(transport=AiohttpTransport(max_connections=max_connections))
