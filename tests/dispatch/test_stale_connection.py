"""A kept-alive connection the server closes as the next request goes out (its idle timeout
meeting the request, as uvicorn's 5 s meets a rate-limited burst 5 s after the last) costs the
lead neither an attempt nor a backoff: the hub's transport sends the request once more, at
once, on a new connection. A server that closes every connection unanswered still fails."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from hub.dispatch.transport import make_http_client
from tests.dispatch.support import _read_request, socket_server

ANSWER = b'{"Status":"Success","Message":{"Id":"a","RelatedId":"lead-1"}}'


@contextlib.contextmanager
def closes_on_reuse() -> Iterator[tuple[str, list[int]]]:
    """A server answering the first request of each connection (kept alive), then closing
    that connection unanswered when its second request arrives. Yields its URL and the
    number of requests each connection received, in the order connections came."""
    requests: list[int] = []

    def handle(conn: socket.socket, _: threading.Event) -> None:
        requests.append(0)
        with conn:
            _read_request(conn)
            requests[-1] += 1
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER)
            if conn.recv(1, socket.MSG_PEEK):  # the next one on this connection (not the
                _read_request(conn)  # client's own close): closed unanswered
                requests[-1] += 1

    with socket_server(handle) as url:
        yield url, requests


async def test_a_request_on_a_connection_closed_under_it_goes_again_on_a_new_one() -> None:
    """The second POST meets its connection closing: it is answered on a new connection,
    where before it failed as "connection closed without an answer" (a retry with backoff,
    an attempt spent)."""
    with closes_on_reuse() as (url, requests):
        async with make_http_client() as client:
            first = await client.post(f"{url}/capture", content=b"{}")
            second = await client.post(f"{url}/capture", content=b"{}")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.content == ANSWER
    # the first connection got both requests (it answered one); a second got the retry
    assert requests[:2] == [2, 1]


async def test_a_server_closing_every_connection_unanswered_still_fails() -> None:
    """The one extra send is all: a server that never answers fails the request, named as
    a close without an answer, after two connections."""
    accepted: list[int] = []

    def handle(conn: socket.socket, _: threading.Event) -> None:
        accepted.append(1)
        with conn:
            _read_request(conn)

    with socket_server(handle) as url:
        async with make_http_client() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="closed without an answer"):
                await client.post(f"{url}/capture", content=b"{}")
    assert len(accepted) == 2
