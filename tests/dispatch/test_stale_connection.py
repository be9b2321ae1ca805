"""A kept-alive connection the server closes as the next request goes out (its idle timeout
meeting the request, as uvicorn's 5 s meets a rate-limited burst 5 s after the last) costs the
lead neither an attempt nor a backoff: the hub's transport sends the request once more, at
once, on a new connection. A fresh connection closed unanswered is not sent again (the server
may have acted on it): it fails, named as a close without an answer."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from hub.dispatch.transport import make_http_client
from tests.dispatch.support import (
    KEYS,
    _read_request,
    sandbox_get,
    sandbox_post,
    sandbox_server,
    socket_server,
)

JSON = {"Content-Type": "application/json"}
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


async def test_a_fresh_connection_closed_unanswered_is_not_sent_again() -> None:
    """A server that reads the request on a new connection and closes it unanswered fails the
    request, named as a close without an answer, after that one connection: it may have
    acted on the request (before, the request went again on a second connection)."""
    accepted: list[int] = []

    def handle(conn: socket.socket, _: threading.Event) -> None:
        accepted.append(1)
        with conn:
            _read_request(conn)

    with socket_server(handle) as url:
        async with make_http_client() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="closed without an answer"):
                await client.post(f"{url}/capture", content=b"{}")
    assert len(accepted) == 1


async def test_a_capture_the_sandbox_made_and_did_not_answer_is_made_once() -> None:
    """The sandbox's lost_response fault makes the capture, then closes the (new) connection
    unanswered: the lead exists once. Sent again, a lead without a key to match made a
    second lead (and for a matched one, a second capture outside the target's limit)."""
    with sandbox_server() as (url, _):
        sandbox_post(url, "/_sandbox/faults", {"every": 1, "kinds": ["lost_response"]})
        capture = f"{url}/v2/LeadManagement.svc/Lead.Capture"
        params = {"accessKey": KEYS["LSQ_ACCESS"], "secretKey": KEYS["LSQ_SECRET"]}
        body = b'[{"Attribute":"FirstName","Value":"Once"}]'
        async with make_http_client() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="closed without an answer"):
                await client.post(capture, params=params, content=body, headers=JSON)
        sandbox_post(url, "/_sandbox/faults", {"rate": 0})
        assert [lead["FirstName"] for lead in sandbox_get(url, "/_sandbox/leads")] == ["Once"]


async def test_a_kept_alive_connection_closed_mid_answer_is_not_sent_again() -> None:
    """A server that answers the first request of a kept-alive connection, then begins its
    answer to the second (its status line and part of a header) and closes: the request was
    read, and perhaps acted on. It went again on a new connection all the same (a second
    capture, outside the target's rate limit); it fails now, named as an answer cut short."""
    requests: list[int] = []

    def handle(conn: socket.socket, _: threading.Event) -> None:
        requests.append(0)
        with conn:
            _read_request(conn)
            requests[-1] += 1
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER)
            if conn.recv(1, socket.MSG_PEEK):
                _read_request(conn)
                requests[-1] += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")  # then closed

    with socket_server(handle) as url:
        async with make_http_client() as client:
            first = await client.post(f"{url}/capture", content=b"{}")
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await client.post(f"{url}/capture", content=b"{}")
    assert first.status_code == 200
    assert str(info.value) == "connection closed before the answer's head ended (HTTP 200 begun)"
    assert requests == [2]
