"""``leadhub serve``'s protocol closes a connection that stops sending a request.

Found under ``ulimit -n 64``: connections that sent part of a request and then nothing (a
sender whose host vanished mid-request) were held for as long as the hub ran, each a file
descriptor, until every new connection was refused. The wait is :data:`READ_TIMEOUT`
(30 s), shortened here; real sockets to a hub on serve's protocol and store writer process.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.commands import protocol
from tests.web.conftest import Hub, running_hub
from tests.web.test_protocol import _request, _signed

WAIT = 0.5  # the read timeout in these tests (seconds)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    # (raising=False: the tests also run, and fail, on a protocol without the timeout)
    monkeypatch.setattr(protocol, "READ_TIMEOUT", WAIT, raising=False)
    with running_hub(tmp_path, writer="process") as running:
        yield running


def _connect(hub: Hub) -> socket.socket:
    host, port = hub.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the hub writes until it closes the connection; fails if it is still open
    after ``within`` seconds."""
    sock.settimeout(within)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pytest.fail(f"the connection is still open after {within} s: {got!r}")
    finally:
        sock.close()
    return got


def test_a_connection_that_sends_nothing_is_closed(hub: Hub) -> None:
    """A connection that never starts a request is closed, without an answer (nothing was
    asked), once the wait is over: before, it stayed open for good. (Timed from before the
    connection is made, as the hub's wait starts after: timed from after, a test thread that
    ran late once connected, the hub's thread already waiting, measured less than the wait.)"""
    connecting = time.monotonic()
    got = _until_closed(_connect(hub), within=10 * WAIT)
    assert got == b""
    assert time.monotonic() - connecting >= WAIT * 0.8


def test_a_request_cut_off_mid_head_is_answered_408_and_closed(hub: Hub) -> None:
    sock = _connect(hub)
    sock.sendall(b"POST /hooks/typeform HTTP/1.1\r\nHost: hub\r\n")
    got = _until_closed(sock, within=10 * WAIT)
    assert got.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in got.lower()


def test_a_webhook_cut_off_mid_body_is_answered_408_stores_nothing_and_is_counted(
    hub: Hub,
) -> None:
    """Headers and part of the body, then nothing: a 408 and the connection closed; nothing
    stored, and the request counted as rejected, ``disconnected``, as a sender that closes
    mid-body is."""
    body, headers = _signed("e-stalled")
    sock = _connect(hub)
    sock.sendall(_request(body, headers)[:-5])
    got = _until_closed(sock, within=10 * WAIT)
    assert got.startswith(b"HTTP/1.1 408 ")
    assert hub.events() == []
    counted = (
        'leadhub_deliveries_total{endpoint="typeform",outcome="rejected",reason="disconnected"} 1.0'
    )
    assert counted in hub.client.get("/metrics").text.splitlines()


#: The wait of the slow-sender test, and how often its sender sends a part: the sender and
#: the hub share a process, and a loaded machine that stops the process for longer than the
#: wait less a part's interval lets the hub's timer run before the sender's next part (with
#: parts every WAIT / 2, the process stopped at random for up to 0.8 s failed it 8 of 8).
SLOW_WAIT, PART_EVERY = 1.5, 0.1


def test_a_slow_sender_that_keeps_sending_is_not_cut_off(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte starts the wait over: a body sent a few bytes at a time, each part well
    within the wait but the whole of it longer than three waits, is stored and answered."""
    monkeypatch.setattr(protocol, "READ_TIMEOUT", SLOW_WAIT, raising=False)
    body, headers = _signed("e-slow", extra='"pad": "' + "x" * 100 + '"')
    wire = _request(body, headers)
    sock = _connect(hub)
    head, rest = wire[: len(wire) - len(body)], wire[len(wire) - len(body) :]
    sock.sendall(head)
    started = time.monotonic()
    parts = int(3 * SLOW_WAIT / PART_EVERY) + 5
    assert len(rest) >= parts
    cuts = [len(rest) * i // parts for i in range(parts + 1)]
    for start, end in itertools.pairwise(cuts):
        time.sleep(PART_EVERY)
        sock.sendall(rest[start:end])
    assert time.monotonic() - started > 3 * SLOW_WAIT
    sock.settimeout(10)
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert [e.delivery_id for e in hub.events()] == ["e-slow"]


def test_a_kept_alive_connection_gets_a_fresh_wait_for_each_request(hub: Hub) -> None:
    """A connection that sent one request whole, then starts a second and stops mid-way,
    is answered the first (200) and then 408 for the second."""
    first_body, first_headers = _signed("e-first")
    second_body, second_headers = _signed("e-second")
    sock = _connect(hub)
    sock.sendall(_request(first_body, first_headers))
    time.sleep(WAIT / 2)
    sock.sendall(_request(second_body, second_headers)[:-3])
    got = _until_closed(sock, within=10 * WAIT)
    assert got.startswith(b"HTTP/1.1 200 "), got
    assert b"HTTP/1.1 408 " in got
    assert [e.delivery_id for e in hub.events()] == ["e-first"]


def test_a_request_begun_before_the_answer_ahead_of_it_gets_the_read_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose first bytes came before the answer to the one ahead of it was written
    waits for the rest of its head as any request under way does, not the keep-alive wait
    between requests (1 s here): the connection was closed under it, without an answer, once
    its sender paused longer than that."""
    monkeypatch.setattr(protocol, "READ_TIMEOUT", 8.0, raising=False)
    with running_hub(tmp_path, writer="process", timeout_keep_alive=1) as hub:
        first, second = _request(*_signed("e-ahead")), _request(*_signed("e-begun"))
        sock = _connect(hub)
        sock.sendall(first + second[:20])
        sock.settimeout(10)
        got = sock.recv(65536)  # the first answer (the second request has begun)
        assert got.startswith(b"HTTP/1.1 200 "), got
        time.sleep(3)  # three keep-alive waits, well within the read wait
        sock.sendall(second[20:])
        while got.count(b"HTTP/1.1 ") < 2 and (chunk := sock.recv(65536)):
            got += chunk
        sock.close()
        assert got.count(b"HTTP/1.1 200 ") == 2, got
        assert [e.delivery_id for e in hub.events()] == ["e-ahead", "e-begun"]


#: The request time of the trickle tests, shorter than the wait for each byte, whose sender
#: sends a byte far more often than that wait (the wait alone never ends its connection).
TRICKLE_TIME, TRICKLE_WAIT, BYTE_EVERY = 1.0, 3.0, 0.2


def _trickle(sock: socket.socket, data: bytes, within: float) -> bytes:
    """Send ``data`` a byte every :data:`BYTE_EVERY` s until the hub closes the connection
    (what it wrote then); fails if ``data`` runs out or ``within`` seconds pass first."""
    deadline = time.monotonic() + within
    sock.settimeout(BYTE_EVERY)
    got = b""
    for byte in data:
        if time.monotonic() > deadline:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        got += chunk
        if not chunk:
            sock.close()
            return got
    sock.close()
    pytest.fail(f"the connection was still open after {within} s of trickling: {got!r}")


@pytest.fixture
def trickle_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    # (raising=False: the tests also run, and fail, on a protocol without the request time)
    monkeypatch.setattr(protocol, "READ_TIMEOUT", TRICKLE_WAIT, raising=False)
    monkeypatch.setattr(protocol, "REQUEST_TIME", TRICKLE_TIME, raising=False)
    with running_hub(tmp_path, writer="process") as running:
        yield running


def test_a_request_trickled_a_byte_at_a_time_is_answered_408_and_closed(
    trickle_hub: Hub,
) -> None:
    """Each byte started the wait over, so a sender sending a byte a little more often than
    the wait held its connection (and a file descriptor) for as long as it liked. A request
    now has a time to come whole: past it, a 408 and the connection closed; nothing stored."""
    body, headers = _signed("e-trickled")
    got = _trickle(_connect(trickle_hub), _request(body, headers), within=20 * TRICKLE_TIME)
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b"connection: close" in got.lower()
    assert b"request not sent whole within" in got, got
    assert trickle_hub.events() == []


def test_blank_lines_before_a_first_request_do_not_hold_a_connection(trickle_hub: Hub) -> None:
    """Blank lines begin no request (the parser skips them): sent a byte at a time, each one
    started the wait for the first request over. Closed now, without an answer (nothing was
    asked)."""
    got = _trickle(_connect(trickle_hub), b"\r\n" * 10_000, within=20 * TRICKLE_TIME)
    assert got == b""


def test_a_request_sent_slowly_but_steadily_is_not_cut(
    trickle_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request longer in coming than the request time is not cut while its sender keeps
    sending: each :data:`REQUEST_RATE` bytes add a second."""
    monkeypatch.setattr(protocol, "REQUEST_RATE", 100, raising=False)
    body, headers = _signed("e-steady", extra='"pad": "' + "x" * 5000 + '"')
    wire = _request(body, headers)
    sock = _connect(trickle_hub)
    started = time.monotonic()
    step = 100  # 100 bytes every 0.1 s: ten times the rate
    for at in range(0, len(wire), step):
        sock.sendall(wire[at : at + step])
        time.sleep(0.1)
    assert time.monotonic() - started > 2 * TRICKLE_TIME
    sock.settimeout(30)
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert [e.delivery_id for e in trickle_hub.events()] == ["e-steady"]


def test_a_blank_line_after_an_answer_does_not_hold_the_connection(hub: Hub) -> None:
    """A blank line after a request's answer began no request but stopped uvicorn's
    keep-alive wait, and no other wait ran: the connection stayed open for good. Now the
    keep-alive wait (uvicorn's 5 s) closes it."""
    body, headers = _signed("e-then-blank")
    sock = _connect(hub)
    sock.sendall(_request(body, headers))
    sock.settimeout(30)
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    sock.sendall(b"\r\n")
    got = _until_closed(sock, within=60)
    assert got == b""


def test_a_request_that_never_ends_is_cut_however_fast_it_comes(
    trickle_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes sent fast kept adding time to a request's: a chunk's extension, which counted
    toward no limit (now bounded on its own), or a body of one-byte chunks, six bytes on
    the wire for each of the body's (which stays within ``max_body`` for long). A request
    has a most it may take."""
    monkeypatch.setattr(protocol, "REQUEST_TIME_MAX", 2 * TRICKLE_TIME, raising=False)
    sock = _connect(trickle_hub)
    sock.sendall(
        b"POST /hooks/typeform HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    sock.settimeout(0.05)
    got = b""
    deadline = time.monotonic() + 20 * TRICKLE_TIME
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"1\r\nx\r\n" * 682)
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        got += chunk
        if not chunk or got.startswith(b"HTTP/1.1 408 "):
            break
    sock.close()
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b"at most" in got


@pytest.mark.parametrize("path", ["/hooks/nope", "/hooks/typeform"])
def test_a_request_answered_before_its_body_came_whole_gets_no_second_answer(
    hub: Hub, path: str
) -> None:
    """A POST answered before its body came whole (an unknown endpoint's 404; a body
    announced too large, 413) whose sender then stops: the connection is closed once the
    wait is over, with no second answer. It got a 408 after its 404 (two answers to one
    request)."""
    length = 10 if path == "/hooks/nope" else 100 * 1024 * 1024
    sock = _connect(hub)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n{{".encode()
    )
    got = _until_closed(sock, within=10 * WAIT)
    assert got.count(b"HTTP/1.1 ") == 1, got
    assert got.startswith(b"HTTP/1.1 404 " if path == "/hooks/nope" else b"HTTP/1.1 413 "), got
