"""A small forward HTTP proxy on loopback, for tests of the dispatcher behind a proxy.

It does what a corporate egress proxy does, for real: requests in absolute form
(``POST http://host:port/path HTTP/1.1``) are forwarded, and ``CONNECT host:port`` opens a
tunnel (HTTPS). Whatever host a client names, the proxy connects to ``127.0.0.1`` on that
port, so a test can use names that resolve nowhere (``lsq.proxied.test``): only a client that
goes through the proxy reaches the server. Each request's first line and
``Proxy-Authorization`` header are recorded. With ``password`` set, a request without those
credentials gets ``407``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class ProxyLog:
    """What the proxy saw: request lines (``CONNECT host:port HTTP/1.1``, ``POST http://...``)
    and the ``Proxy-Authorization`` header of each (None when absent)."""

    lines: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    #: Set by a test: from then on the proxy takes any credentials (its account was fixed).
    fixed: bool = False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class _Proxy:
    def __init__(self, log: ProxyLog, credentials: str | None) -> None:
        self.log = log
        self.credentials = credentials

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handle(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # one client connection may carry several requests (keep-alive)
            head = await reader.readuntil(b"\r\n\r\n")
            first, *lines = head.decode("latin-1").split("\r\n")
            headers = [line for line in lines if line]
            auth = next(
                (h.split(":", 1)[1].strip() for h in headers if _named(h, "proxy-authorization")),
                None,
            )
            self.log.lines.append(first)
            self.log.authorizations.append(auth)
            method, target, version = first.split(" ", 2)
            length = next(
                (int(h.split(":", 1)[1]) for h in headers if _named(h, "content-length")), 0
            )
            body = await reader.readexactly(length) if length else b""
            if self.credentials is not None and auth != self.credentials and not self.log.fixed:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
                writer.write(b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            if method == "CONNECT":
                port = int(target.rsplit(":", 1)[1])
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            url = urllib.parse.urlsplit(target)
            hop = ("proxy-authorization", "proxy-connection", "connection")
            kept = [h for h in headers if not _named(h, *hop)]
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", url.port or 80)
            path = url.path + (f"?{url.query}" if url.query else "")
            request = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"])
            up_writer.write(request.encode("latin-1") + b"\r\n\r\n" + body)
            await up_writer.drain()
            answer = await up_reader.read()  # the server closes after its answer
            up_writer.close()
            answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
            head_lines = [
                line
                for line in answer_head.split(b"\r\n")
                if not line.lower().startswith(b"connection:")
            ]
            writer.write(b"\r\n".join([*head_lines, b"Connection: keep-alive"]) + b"\r\n\r\n")
            writer.write(answer_body)
            await writer.drain()


def _named(header: str, *names: str) -> bool:
    return header.split(":", 1)[0].strip().lower() in names


def basic(login: str, password: str) -> str:
    """The ``Proxy-Authorization`` value of ``login:password``."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@contextlib.contextmanager
def forward_proxy(
    *, login: str | None = None, password: str | None = None
) -> Iterator[tuple[str, ProxyLog]]:
    """Run the proxy in a thread; yields (``http://127.0.0.1:PORT``, its log)."""
    log = ProxyLog()
    credentials = basic(login or "", password) if password is not None else None
    proxy = _Proxy(log, credentials)
    loop = asyncio.new_event_loop()
    started: list[asyncio.Server] = []
    ready = threading.Event()

    async def start() -> None:
        started.append(await asyncio.start_server(proxy.handle, "127.0.0.1", 0))
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    ready.wait(10)
    server = started[0]
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:

        async def stop() -> None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
