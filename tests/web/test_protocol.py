"""The transport under ``leadhub serve``'s HTTP protocol: one write per loop iteration."""

from __future__ import annotations

import asyncio
import socket

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from hub.commands.protocol import GatheringTransport, HubHttpProtocol
from tests.support.server import free_port


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
