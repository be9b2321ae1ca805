"""A webhook that offers to switch protocols (``Upgrade: h2c``), on ``leadhub serve``'s
protocol over a raw socket: answered, and stored, as the HTTP/1.1 request it also is."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from tests.web.conftest import running_hub

#: What Java's HttpClient (HTTP_2, its default) sends with a request to an http:// URL.
H2C = (
    b"upgrade: h2c\r\nconnection: Upgrade, HTTP2-Settings\r\n"
    b"http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
)


def _post(body: bytes, content_type: bytes, *, chunked: bool = False) -> bytes:
    head = b"POST /hooks/open HTTP/1.1\r\nhost: hub\r\n" + H2C + b"content-type: " + content_type
    if chunked:
        return head + b"\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(body),
            body,
        )
    return head + b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def _exchange(url: str, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` one read apart on one connection, close the sending side, and read
    every answer until the hub closes."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # (each piece its own read)
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.05)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_webhook_offering_an_h2c_upgrade_is_read_whole(tmp_path: Path) -> None:
    """httptools ends a request with ``Upgrade`` and ``Connection: upgrade`` at its head,
    leaving the body to the protocol it would switch to; uvicorn does not switch, so the
    request went on with an empty body: a form webhook was a 200, a duplicate of an empty
    form (the lead lost), a JSON one a 400 "empty body", and the body then read as a next
    request, a 400. Java's HttpClient sends that upgrade with every request to an http://
    URL. Now the upgrade is ignored (RFC 9110 7.8): each request is read, answered and
    stored whole, pipelined behind another or with its body in a later read."""
    form = b"email=asha%40example.com&first_name=Asha"
    lead = orjson.dumps({"email": "rao@example.com"})
    with running_hub(tmp_path, writer="process") as hub:
        empty = hub.client.post(
            "/hooks/open",
            content=b"",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert empty.json()["status"] == "accepted"  # an empty form, as the lost body was read
        pipelined = (
            _post(form, b"application/x-www-form-urlencoded")
            + _post(lead, b"application/json", chunked=True)
            + b"GET /healthz HTTP/1.1\r\nhost: hub\r\n"
            + H2C
            + b"\r\n"
        )
        answers = _exchange(hub.url, [pipelined])
        assert re.findall(rb"HTTP/1.1 (\d+)", answers) == [b"200", b"200", b"200"], answers
        assert re.findall(rb'"status":"(\w+)"', answers) == [b"accepted", b"accepted", b"ok"]
        split = _post(orjson.dumps({"email": "later@example.com"}), b"application/json")
        cut = split.index(b"\r\n\r\n") + 4
        answers = _exchange(hub.url, [split[:cut], split[cut : cut + 3], split[cut + 3 :]])
        assert re.findall(rb'"status":"(\w+)"', answers) == [b"accepted"], answers
        assert [e.document for e in hub.events()] == [
            {},
            {"email": "asha@example.com", "first_name": "Asha"},
            {"email": "rao@example.com"},
            {"email": "later@example.com"},
        ]


def test_a_request_after_an_ignored_upgrade_and_a_close_is_no_refusal(tmp_path: Path) -> None:
    """The parser that reads on after an ignored upgrade takes what follows a request with
    ``Connection: close`` as uvicorn's own parser does (leniently: the hub answers the
    request and closes): without that, the bytes after it were a parse error, counted and
    logged as a refused request (``unreadable``) that no sender sent."""
    body = orjson.dumps({"email": "close@example.com"})
    closing = (
        b"POST /hooks/open HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with running_hub(tmp_path, writer="process") as hub:
        first = _post(orjson.dumps({"email": "h2c@example.com"}), b"application/json")
        answers = _exchange(hub.url, [first + closing + b"GET /healthz HTTP/1.1\r\n\r\n"])
        assert re.findall(rb'"status":"(\w+)"', answers) == [b"accepted", b"accepted"]
        metrics = hub.client.get("/metrics").text
    assert 'reason="unreadable"' not in metrics, [
        line for line in metrics.splitlines() if "unreadable" in line
    ]
