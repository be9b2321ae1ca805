"""A webhook whose Content-Length is given more than once, on ``leadhub serve``'s protocol
over a raw socket: the same value is that value (RFC 9112 6.3), different ones a 400 that
says so."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from hub.commands import protocol
from tests.web.conftest import running_hub
from tests.web.test_protocol_upgrade import _exchange


def _post(body: bytes, *lengths: bytes) -> bytes:
    """A JSON webhook to the open endpoint with a Content-Length line for each of
    ``lengths`` (``%d`` in one stands for the body's length)."""
    head = b"POST /hooks/open HTTP/1.1\r\nhost: hub\r\ncontent-type: application/json\r\n"
    for length in lengths:
        head += b"Content-Length: " + length.replace(b"%d", b"%d" % len(body)) + b"\r\n"
    return head + b"x-after: 1\r\n\r\n" + body


def _cut(wire: bytes, cuts: list[int]) -> list[bytes]:
    """``wire`` in pieces, cut at ``cuts``."""
    return [wire[start:end] for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True)]


def _each_answered(url: str, requests: list[bytes]) -> list[bytes]:
    """Send ``requests`` on one connection, each once the one before it is answered (a
    request begins a read: one pipelined behind another in the same read is not read so),
    and the answers."""
    address = urlsplit(url)
    answers = []
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        for request in requests:
            sock.sendall(request)
            received = b""
            while not received.endswith(b"}") and (chunk := sock.recv(65536)):
                received += chunk
            answers.append(received)
    return answers


def test_a_content_length_repeated_with_one_value_is_that_value(tmp_path: Path) -> None:
    """The parser (llhttp) refused a Content-Length sent twice, or as ``n, n``: a Zapier or
    Make author who adds the Content-Length the tool sends already got a 400 "Invalid HTTP
    request received.", and the lead was never taken. Each is now read with its one value,
    whole, in one read, keep-alive behind another, or with its head cut anywhere across
    reads."""
    leads = [orjson.dumps({"email": f"lead{n}@example.com"}) for n in range(6)]
    with running_hub(tmp_path, writer="process") as hub:
        answers = _each_answered(
            hub.url,
            [
                _post(leads[0], b"%d", b"%d"),
                _post(leads[1], b"%d, %d"),
                b"\r\n\r\n" + _post(leads[2], b"%d", b"%d,%d", b"%d"),  # (blank lines first)
            ],
        )
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert b'"status":"accepted"' in answer, answer
        wire = _post(leads[3], b"%d", b"%d")
        second = wire.index(b"Content-Length", wire.index(b"Content-Length") + 1)
        # inside the second line; before it, then inside it; a byte a read around it
        splits = ([second + 3], [second - 5, second + 17], list(range(second - 2, second + 20)))
        for lead, cuts in zip(leads[3:], splits, strict=True):
            wire = _post(lead, b"%d", b"%d")
            ends = [*cuts, len(wire)]
            pieces = [wire[start:end] for start, end in zip([0, *cuts], ends, strict=True)]
            answered = _exchange(hub.url, pieces)
            assert re.findall(rb'"status":"(\w+)"', answered) == [b"accepted"], (cuts, answered)
        assert [e.document for e in hub.events()] == [orjson.loads(lead) for lead in leads]


def test_a_content_length_repeated_with_different_values_is_refused(tmp_path: Path) -> None:
    """Different values are still a 400 (the body's end is unknown), now saying why; nothing
    is stored."""
    lead = orjson.dumps({"email": "asha@example.com"})
    with running_hub(tmp_path, writer="process") as hub:
        for lengths in ((b"%d", b"5"), (b"%d, 5",), (b"%d", b"%d, 7")):
            answers = _exchange(hub.url, [_post(lead, *lengths)])
            assert re.findall(rb"HTTP/1.1 (\d+)", answers) == [b"400"], answers
            assert orjson.loads(answers.partition(b"\r\n\r\n")[2]) == {
                "error": "Content-Length is given more than once, with different values; "
                "send it once, the body's length in bytes"
            }
        assert hub.events() == []


def test_a_head_with_a_repeated_length_cut_off_is_refused_408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection's first request, its Content-Length given twice, its head cut off before
    its end (held back, to be read again whole): the read timeout refuses it 408 as it does
    any head not sent whole. It closed the connection without a word (taken for a connection
    that had begun no request)."""
    monkeypatch.setattr(protocol, "READ_TIMEOUT", 0.5, raising=False)
    wire = _post(b"{}", b"%d", b"%d")
    cut = wire[: wire.index(b"x-after")]
    with running_hub(tmp_path, writer="process") as hub:
        address = urlsplit(hub.url)
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(cut)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    assert re.findall(rb"HTTP/1.1 (\d+)", received) == [b"408"], received
    assert b"request not sent whole" in received, received


def test_a_repeated_length_pipelined_behind_another_request_is_that_value(
    tmp_path: Path,
) -> None:
    """A head with a repeated Content-Length behind another request in the same read (the
    parser gives no offsets: only a head that began a read was read again) was a 400
    "Invalid HTTP request received.", its lead lost. Now every placement is read with the
    one value: behind one request or several in one read, two such in one read, cut off
    across reads after another, behind a request whose own head or body came across reads
    (then cut off itself, too)."""
    leads = [orjson.dumps({"email": f"lead{n}@example.com"}) for n in range(18)]
    health = b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n"
    with running_hub(tmp_path, writer="process") as hub:
        behind_one = _post(leads[0], b"%d") + _post(leads[1], b"%d", b"%d")
        behind_two = health + _post(leads[2], b"%d") + b"\r\n" + _post(leads[3], b"%d, %d")
        two_repeated = _post(leads[4], b"%d", b"%d") + _post(leads[5], b"%d", b"%d")
        cut_after_one = _post(leads[6], b"%d") + _post(leads[7], b"%d", b"%d")
        second = cut_after_one.index(b"POST", 1)
        cut_across = _post(leads[8], b"%d") + _post(leads[9], b"%d", b"%d")
        first_cut = cut_across.index(b"x-after")
        cut_twice = _post(leads[10], b"%d") + _post(leads[11], b"%d", b"%d")
        twice = cut_twice.index(b"POST", 1)
        in_body = [_post(leads[n], b"%d") + _post(leads[n + 1], b"%d", b"%d") for n in (12, 14, 16)]
        body_at = [wire.index(b"}") - 5 for wire in in_body]  # (inside the first one's body)
        head_at = [wire.index(b"POST", 1) + 40 for wire in in_body]  # (in the second's head)
        cases = [
            [behind_one],
            [behind_two],
            [two_repeated],
            [cut_after_one[: second + 30], cut_after_one[second + 30 :]],  # in its head
            [cut_across[:first_cut], cut_across[first_cut:]],  # the one before it cut
            [cut_twice[: twice + 5], cut_twice[twice + 5 : twice + 60], cut_twice[twice + 60 :]],
            _cut(in_body[0], [body_at[0]]),  # it behind a body that came across reads
            _cut(in_body[1], [body_at[1], head_at[1]]),  # so, and then cut off itself
            _cut(in_body[2], [50, body_at[2], head_at[2], head_at[2] + 30]),  # all of those
        ]
        for pieces in cases:
            answered = _exchange(hub.url, pieces)
            statuses = re.findall(rb'"status":"(\w+)"', answered)
            assert statuses.count(b"accepted") == 2, (pieces, answered)
            assert b"HTTP/1.1 400" not in answered, (pieces, answered)
        assert [e.document for e in hub.events()] == [orjson.loads(lead) for lead in leads]


def test_a_pipelined_head_with_different_lengths_is_refused_after_the_one_before(
    tmp_path: Path,
) -> None:
    """Behind another request in the same read, different values are still a 400 that says
    so, after the answer of the request before it; only that one is stored."""
    leads = [orjson.dumps({"email": f"lead{n}@example.com"}) for n in range(2)]
    with running_hub(tmp_path, writer="process") as hub:
        answered = _exchange(hub.url, [_post(leads[0], b"%d") + _post(leads[1], b"%d", b"5")])
        assert re.findall(rb"HTTP/1.1 (\d+)", answered) == [b"200", b"400"], answered
        assert b"with different values" in answered, answered
        assert [e.document for e in hub.events()] == [orjson.loads(leads[0])]
