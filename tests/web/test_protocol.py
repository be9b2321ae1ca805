"""``leadhub serve``'s HTTP protocol: one write per loop iteration, and webhook POSTs taken
without the ASGI cycle (answered the same as through it)."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from hub.commands.protocol import GatheringTransport, HubHttpProtocol
from tests.sources import fixtures as fx
from tests.support.server import free_port
from tests.web.conftest import Hub, running_hub


async def _pair() -> tuple[GatheringTransport, socket.socket, list[bytes]]:
    """A gathering transport over a real one on one end of a socket pair, the other end, and
    the real transport's writes."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    writes: list[bytes] = []
    real_write = transport.write

    def counting(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        real_write(data)

    transport.write = counting  # type: ignore[method-assign]
    theirs.setblocking(False)
    return GatheringTransport(transport, loop), theirs, writes


async def _read_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


async def test_writes_of_one_iteration_go_out_as_one() -> None:
    """Two writes in one iteration reach the socket in order, through ONE write of the inner."""
    gathering, peer, writes = await _pair()
    gathering.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    gathering.write(b"")
    gathering.write(memoryview(b"ok"))
    assert writes == []  # nothing yet: the iteration is not over
    assert gathering.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    gathering.write(b"next")
    gathering.close()  # writes what is gathered first, then closes
    assert writes[-1] == b"next"
    assert await _read_all(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\noknext"
    assert gathering.is_closing()  # the rest is the inner transport's
    peer.close()


async def test_end_of_file_comes_after_what_is_gathered() -> None:
    """write_eof() writes the gathered bytes first: the peer reads them, then end of file."""
    gathering, peer, writes = await _pair()
    gathering.write(b"last words")
    gathering.write_eof()
    assert writes == [b"last words"]
    assert await _read_all(peer) == b"last words"
    gathering.close()
    peer.close()


async def test_abort_drops_what_is_gathered() -> None:
    """abort() discards unwritten data, as a transport's own abort does."""
    gathering, peer, writes = await _pair()
    gathering.write(b"never sent")
    gathering.abort()
    await asyncio.sleep(0)
    assert writes == []
    assert await _read_all(peer) == b""
    peer.close()


async def test_uvicorn_serves_through_it() -> None:
    """uvicorn with HubHttpProtocol answers keep-alive requests and a streamed response."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await receive()
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["path"] == "/stream":
            for part in (b"a", b"b", b"c"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    port = free_port()
    config = uvicorn.Config(app, port=port, http=HubHttpProtocol, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in ("/one", "/two"):
                response = await client.get(path)
                assert (response.status_code, response.text) == (200, path)
            response = await client.get("/stream")
            assert response.text == "abc/stream"
    finally:
        server.should_exit = True
        await task


# -- a webhook POST without the ASGI cycle ----------------------------------------------------


def _signed(event_id: str, extra: str = "") -> tuple[bytes, dict[str, str]]:
    """A Typeform delivery with ``event_id``, signed as the fixture endpoint checks it."""
    body = orjson.dumps({"event_id": event_id, "event_type": "form_response"})
    if extra:
        body = body[:-1] + b"," + extra.encode() + b"}"
    mac = hmac.new(fx.TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "typeform-signature": "sha256=" + base64.b64encode(mac).decode(),
    }
    return body, headers


def _request(body: bytes, headers: dict[str, str], *, path: str = "/hooks/typeform") -> bytes:
    head = [f"POST {path} HTTP/1.1", "host: hub"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if not any(name.lower() == "transfer-encoding" for name in headers):
        head.append(f"content-length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Wire:
    """A raw connection to the hub: what goes out is exactly what the test wrote."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: its status, headers (lower case) and body."""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] == "100":
            return self.response()  # an interim answer to Expect: 100-continue
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        size = int(headers["content-length"])
        while len(self.buffer) < size:
            self._more()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return int(lines[0].split()[1]), headers, body

    def closed(self) -> bool:
        """Whether the hub closed the connection (end of file, nothing more to read)."""
        return not self.buffer and self.sock.recv(1) == b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the hub closed the connection mid-response")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def test_a_webhook_post_is_answered_without_asgi_once_stored(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """The Typeform fixture is stored and answered by the protocol itself; its redelivery is
    the duplicate of it; a bad signature is a 401 the same way, storing nothing."""
    hub, answered = fast_hub
    d = fx.load("typeform", "form_response_full", "typeform")
    first = hub.send(d)
    assert (first.status_code, first.json()) == (200, {"status": "accepted", "id": 1})
    again = hub.send(d)
    assert (again.status_code, again.json()) == (200, {"status": "duplicate", "id": 1})
    forged = hub.client.post(d.path, content=d.body + b" ", headers=d.headers)
    assert (forged.status_code, forged.json()) == (401, {"error": "unauthorized"})
    assert answered == [200, 200, 401]
    [event] = hub.events()
    assert event.body == d.body and event.endpoint == "typeform"


def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Three requests in one write (a webhook, a health check, a webhook): three answers in
    that order on the same connection, the second and third behind the first (uvicorn's
    queue), both leads stored; then a fourth on the kept connection."""
    hub, answered = fast_hub
    wire = _Wire(hub.url)
    one, two, three = _signed("e-1"), _signed("e-2"), _signed("e-3")
    health = b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n"
    wire.send(_request(*one) + health + _request(*two))
    statuses = [wire.response() for _ in range(3)]
    assert [(s, orjson.loads(b)) for s, _, b in statuses] == [
        (200, {"status": "accepted", "id": 1}),
        (200, {"status": "ok"}),
        (200, {"status": "accepted", "id": 2}),
    ]
    wire.send(_request(*three))
    status, headers, body = wire.response()
    assert (status, orjson.loads(body)) == (200, {"status": "accepted", "id": 3})
    assert "connection" not in headers  # kept open
    wire.close()
    assert answered == [200, 200]  # the first and the last skipped ASGI, not the pipelined one
    assert [e.delivery_id for e in hub.events()] == ["e-1", "e-2", "e-3"]


@pytest.mark.parametrize(
    ("version", "extra"),
    [("HTTP/1.0", {}), ("HTTP/1.1", {"connection": "close"})],
)
def test_a_request_that_ends_its_connection_gets_connection_close(
    fast_hub: tuple[Hub, list[int]], version: str, extra: dict[str, str]
) -> None:
    """HTTP/1.0, or ``Connection: close``: the answer says ``connection: close`` and the hub
    closes the connection after it."""
    hub, answered = fast_hub
    body, headers = _signed("e-close")
    wire = _Wire(hub.url)
    wire.send(_request(body, {**headers, **extra}).replace(b"HTTP/1.1", version.encode(), 1))
    status, got, answer = wire.response()
    assert (status, got["connection"]) == (200, "close")
    assert orjson.loads(answer) == {"status": "accepted", "id": 1}
    assert wire.closed()
    wire.close()
    assert answered == [200]


def test_what_the_protocol_leaves_to_asgi_is_answered_the_same(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Expect: 100-continue, a chunked body, a body over the endpoint's limit, a mistyped
    Content-Length: uvicorn's path and the same app answer them (100 then 200; 200; 413 and
    close; 400), and the protocol answered none itself."""
    hub, answered = fast_hub
    wire = _Wire(hub.url)
    body, headers = _signed("e-expect")
    wire.send(_request(body, {**headers, "expect": "100-continue"}))
    status, _, answer = wire.response()
    assert (status, orjson.loads(answer)) == (200, {"status": "accepted", "id": 1})
    body, headers = _signed("e-chunked")
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    wire.send(_request(chunked, {**headers, "transfer-encoding": "chunked"}))
    status, _, answer = wire.response()
    assert (status, orjson.loads(answer)) == (200, {"status": "accepted", "id": 2})
    big, headers = _signed("e-big", extra='"pad":"' + "x" * (2 << 20) + '"')
    wire.send(_request(big, headers))
    status, got, answer = wire.response()
    assert (status, got["connection"]) == (413, "close")
    wire.close()
    assert answered == []
    assert [e.delivery_id for e in hub.events()] == ["e-expect", "e-chunked"]


def test_a_sender_that_leaves_before_the_answer_still_has_its_lead_stored(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """The whole request sent, the connection closed at once: the lead is stored (the hub
    never said 200, so the sender retries, and the retry is the duplicate), and the hub
    goes on serving."""
    hub, _ = fast_hub
    body, headers = _signed("e-gone")
    wire = _Wire(hub.url)
    wire.send(_request(body, headers))
    wire.close()
    deadline = time.monotonic() + 15
    while not hub.events():
        assert time.monotonic() < deadline, "the lead was not stored"
        time.sleep(0.02)
    retry = hub.client.post("/hooks/typeform", content=body, headers=headers)
    assert retry.json() == {"status": "duplicate", "id": 1}


def test_a_body_the_store_cannot_skim_takes_the_full_parser(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """A 30-digit number (which the writer's skim leaves to the full parser) comes back from
    the store and is parsed on the loop, then stored: 200, its digits intact."""
    hub, answered = fast_hub
    body, headers = _signed("e-long", extra='"n":123456789012345678901234567890')
    answer = hub.client.post("/hooks/typeform", content=body, headers=headers)
    assert (answer.status_code, answer.json()) == (200, {"status": "accepted", "id": 1})
    assert answered == [200]
    [event] = hub.events()
    assert event.document["n"] == "123456789012345678901234567890"


# -- found by breaking it: each answered as uvicorn's own path answers it --------------------


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_request_behind_one_answered_while_reading_gets_its_answer(
    tmp_path: Path, writer: str
) -> None:
    """A forged delivery and a good one in one write, keep-alive timeout 0: the first is
    answered (401) while the write is still being read, the second once stored, on both
    paths. (The answer written while reading armed the keep-alive timer with the second
    request already under way: the timer closed the connection before its answer.)"""
    with running_hub(tmp_path, writer=writer, timeout_keep_alive=0) as hub:
        wire = _Wire(hub.url)
        body, headers = _signed("e-forged")
        try:
            wire.send(_request(body + b" ", headers) + _request(*_signed("e-good")))
            assert wire.response()[0] == 401
            status, _, answer = wire.response()
        finally:
            wire.close()
        assert (status, orjson.loads(answer)) == (200, {"status": "accepted", "id": 1})
        assert [e.delivery_id for e in hub.events()] == ["e-good"]


def test_a_sender_that_leaves_mid_body_is_counted_as_disconnected(hub: Hub) -> None:
    """Headers and part of the body, then the connection closed: nothing stored, and the
    request counted (and logged) as rejected, ``disconnected``, on either path."""
    body, headers = _signed("e-half")
    wire = _Wire(hub.url)
    wire.send(_request(body, headers)[:-5])
    wire.close()
    counted = (
        'leadhub_deliveries_total{endpoint="typeform",outcome="rejected",reason="disconnected"} 1.0'
    )
    deadline = time.monotonic() + 10
    while counted not in hub.client.get("/metrics").text.splitlines():
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.02)
    assert hub.events() == []


def test_a_content_length_of_thousands_of_digits_is_the_apps_400(hub: Hub) -> None:
    """A Content-Length of 5,000 digits (zeros, then the real length: the parser takes it)
    is the app's 400 on either path, not uvicorn's "Invalid HTTP request" from an
    exception in the protocol's callback (Python will not read so long a number)."""
    body, headers = _signed("e-digits")
    long = b"content-length: " + b"0" * 5000 + str(len(body)).encode()
    request = _request(body, headers).replace(b"content-length: %d" % len(body), long)
    wire = _Wire(hub.url)
    wire.send(request)
    status, _, answer = wire.response()
    assert (status, orjson.loads(answer)) == (400, {"error": "Content-Length is not a number"})
    wire.close()
    assert hub.events() == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /hooks/open HTTP/1.1\r\nHost: hub\r\nContent-Length: abc\r\n\r\n{}",
        b"HELLO THERE\r\n\r\n",
    ],
    ids=["content-length-abc", "not-http"],
)
def test_a_request_the_parser_refuses_gets_a_json_400(
    fast_hub: tuple[Hub, list[int]], request_bytes: bytes
) -> None:
    """What uvicorn's parser cannot read is answered by serve's protocol as the app answers
    bad input: 400 with a short JSON reason (uvicorn sent plain text), then the connection is
    closed."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    wire.send(request_bytes)
    status, headers, answer = wire.response()
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert orjson.loads(answer) == {"error": "Invalid HTTP request received."}
    assert wire.closed()
    wire.close()
    assert hub.events() == []


def _protocols() -> int:
    """How many HubHttpProtocol objects this process holds (the hub runs in a thread here)."""
    return sum(1 for o in gc.get_objects() if type(o) is HubHttpProtocol)


def test_an_idle_connection_keeps_no_bytes_of_a_head_that_came_across_reads(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """A head that spans reads is kept from its first byte while it is read (to be read again
    should its Content-Length repeat); it was kept until the connection's next request, up to
    64 KiB per idle keep-alive connection (300 connections after a 60 KB head in two reads:
    29 KB each more than after one in one read). Once the head is read whole, no bytes of it
    are left on the protocol."""
    hub, _ = fast_hub
    marker = b"kept-" + b"m" * 30_000
    body, headers = _signed("head-across-reads")
    wire_bytes = _request(body, {**headers, "x-marker": marker.decode()})
    cut = wire_bytes.index(marker) + len(marker) // 2
    wire = _Wire(hub.url)
    try:
        wire.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire.send(wire_bytes[:cut])
        time.sleep(0.2)  # (its own read)
        wire.send(wire_bytes[cut:])
        assert wire.response()[0] == 200
        held = [
            name
            for protocol in gc.get_objects()
            if type(protocol) is HubHttpProtocol
            for name, value in vars(protocol).items()
            if isinstance(value, bytes | bytearray) and marker[:40] in value
        ]
        assert held == []
    finally:
        wire.close()
    assert [e.delivery_id for e in hub.events()] == ["head-across-reads"]


def test_a_closed_connection_is_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    """Each closed connection's protocol (its parser, flow control, last webhook) is freed
    as it closes, by reference counting. The transport's ``lingers`` held the protocol's
    bound method, a cycle: every closed connection waited for the cyclic collector, which
    serve runs rarely (``hub.runtime``), and those alive at a young collection waited in
    the older generations for a full one (``leadhub serve`` grew in a mixed soak). With
    the collector off, 60 connections closed every way leave at most 2 protocols behind
    (the test client's own may still be open); 60 were left before."""
    with running_hub(tmp_path, writer="process") as hub:
        hub.client.get("/healthz")
        gc.collect()
        gc.disable()
        try:
            before = _protocols()
            for i in range(60):
                body, headers = _signed(f"e-freed-{i}")
                wire = _Wire(hub.url)
                kind = i % 4
                if kind == 0:  # answered; the sender closes
                    wire.send(_request(body, headers))
                    assert wire.response()[0] == 200
                elif kind == 1:  # answered with Connection: close; the hub closes
                    wire.send(_request(body, {**headers, "connection": "close"}))
                    assert wire.response()[0] == 200
                    assert wire.closed()
                elif kind == 2:  # the sender leaves mid-body
                    wire.send(_request(body, headers)[:-5])
                else:  # refused by the parser: a 400, and the hub closes
                    wire.send(b"POST /hooks/typeform HTTP/1.1\r\nhost hub\r\n\r\n")
                    assert wire.response()[0] == 400
                    assert wire.closed()
                wire.close()
            deadline = time.monotonic() + 30  # (connections are lost a little after)
            while (left := _protocols() - before) > 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert left <= 2, f"{left} closed connections' protocols still held"
        finally:
            gc.enable()
