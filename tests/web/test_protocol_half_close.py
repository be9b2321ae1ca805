"""``leadhub serve``'s protocol and a sender that half-closes its connection
(``shutdown(SHUT_WR)``, as ``nc -N`` does) after its requests: it sends no more, but may
still read, so the answers of the requests it sent whole are written, in order (and a
refusal queued after them), then the connection is closed.

Before, uvicorn's protocol closed the connection at the end of file: a webhook stored
meanwhile was never answered 200 (its sender would retry a delivery the hub had kept), a
health check got no answer, and pipelined requests not started yet were never started (a
refusal already queued, which pauses reading, was the one case answered). Real sockets
against a hub on serve's protocol and store writer process.
"""

from __future__ import annotations

import re
import socket
import time

import orjson
import pytest

from tests.support.logs import HANG_GUARD
from tests.web.conftest import Hub
from tests.web.test_protocol import _request, _signed, _Wire
from tests.web.test_protocol_refusal_metrics import deliveries
from tests.web.test_protocol_refusals import GARBAGE, HEALTH, INVALID, _chunked

#: A request cut off in its head: its request line and one header, never the blank line.
CUT_HEAD = b"POST /hooks/typeform HTTP/1.1\r\nhost: hub\r\n"
ACCEPTED = {"status": "accepted", "id": 1}
ACCEPTED_1 = ("typeform", "accepted", "")  # its series in leadhub_deliveries_total
OK = {"status": "ok"}


def _webhook(event_id: str) -> bytes:
    return _request(*_signed(event_id))


#: What is sent in one write before the half-close; the answers, in order; what is stored.
CASES: dict[str, tuple[bytes, list[tuple[int, object]], list[str]]] = {
    "a webhook": (_webhook("e-1"), [(200, ACCEPTED)], ["e-1"]),
    "a chunked webhook": (_chunked("e-1"), [(200, ACCEPTED)], ["e-1"]),
    "a health check": (HEALTH, [(200, OK)], []),
    "a webhook and garbage": (
        _webhook("e-1") + GARBAGE,
        [(200, ACCEPTED), (400, INVALID)],
        ["e-1"],
    ),
    "three webhooks": (
        _webhook("e-1") + _webhook("e-2") + _webhook("e-3"),
        [
            (200, ACCEPTED),
            (200, {"status": "accepted", "id": 2}),
            (200, {"status": "accepted", "id": 3}),
        ],
        ["e-1", "e-2", "e-3"],
    ),
    "a webhook, a health check and a chunked webhook": (
        _webhook("e-1") + HEALTH + _chunked("e-2"),
        [(200, ACCEPTED), (200, OK), (200, {"status": "accepted", "id": 2})],
        ["e-1", "e-2"],
    ),
    "a webhook, a health check and garbage": (
        _webhook("e-1") + HEALTH + GARBAGE,
        [(200, ACCEPTED), (200, OK), (400, INVALID)],
        ["e-1"],
    ),
    "a webhook and a head left unfinished": (
        _webhook("e-1") + CUT_HEAD,
        [(200, ACCEPTED)],
        ["e-1"],
    ),
    "a webhook and a webhook left unfinished in its body": (
        _webhook("e-1") + _webhook("e-cut")[:-5],
        [(200, ACCEPTED)],
        ["e-1"],
    ),
    "a chunked webhook and a webhook left unfinished in its body": (
        _chunked("e-1") + _webhook("e-cut")[:-5],
        [(200, ACCEPTED)],
        ["e-1"],
    ),
    "a webhook and a chunked webhook left unfinished in its body": (
        _webhook("e-1") + _chunked("e-cut")[:-7],
        [(200, ACCEPTED)],
        ["e-1"],
    ),
    # nothing owed: closed at once, as before
    "garbage": (GARBAGE, [(400, INVALID)], []),
    "a head left unfinished": (CUT_HEAD, [], []),
    "a webhook left unfinished in its body": (_webhook("e-cut")[:-5], [], []),
}


def _half_closed(hub: Hub, data: bytes) -> list[tuple[int, object]]:
    """``data`` in one write, then the sending side shut: the answers read until the hub
    closes the connection, by status and JSON body."""
    wire = _Wire(hub.url)
    wire.send(data)
    wire.sock.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := wire.sock.recv(65536):  # (the socket's timeout: a hang guard)
        got += chunk
    wire.close()
    answers = []
    for status, body in re.findall(rb"HTTP/1\.1 (\d+) .*?\r\n\r\n(\{[^}]*\})", got, re.S):
        answers.append((int(status), orjson.loads(body)))
    assert got.count(b"HTTP/1.1 ") == len(answers), got
    return answers


@pytest.mark.parametrize("case", list(CASES))
def test_a_half_closed_connection_gets_its_answers_then_is_closed(
    fast_hub: tuple[Hub, list[int]], case: str
) -> None:
    """Each request sent whole is answered, in order, a refusal after them; then the hub
    closes the connection; a request left unfinished is dropped (not stored, no answer)."""
    hub, _ = fast_hub
    data, answers, stored = CASES[case]
    assert _half_closed(hub, data) == answers
    assert [e.delivery_id for e in hub.events()] == stored
    assert hub.client.get("/healthz").status_code == 200  # it serves on


def test_a_connection_half_closed_after_its_answers_is_closed(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """A keep-alive connection whose requests were all answered, then half-closed: closed,
    nothing more written."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    wire.send(_webhook("e-1"))
    status, headers, body = wire.response()
    assert (status, orjson.loads(body)) == (200, ACCEPTED)
    assert "connection" not in headers  # kept alive
    wire.sock.shutdown(socket.SHUT_WR)
    assert wire.closed()
    wire.close()


#: Requests left unfinished in their body, after those sent whole: what is counted.
CUT: dict[str, tuple[bytes, dict[tuple[str, str, str], float]]] = {
    "a webhook": (_webhook("e-cut")[:-5], {}),
    "a chunked webhook": (_chunked("e-cut")[:-7], {}),
    "a webhook behind a webhook": (_webhook("e-1") + _webhook("e-cut")[:-5], {ACCEPTED_1: 1}),
    "a chunked webhook behind a webhook": (
        _webhook("e-1") + _chunked("e-cut")[:-7],
        {ACCEPTED_1: 1},
    ),
    # the app reading the first one's body resumes reading: the end of file comes while the
    # second is still queued
    "a webhook behind a chunked webhook": (
        _chunked("e-1") + _webhook("e-cut")[:-5],
        {ACCEPTED_1: 1},
    ),
}


@pytest.mark.parametrize("case", list(CUT))
def test_a_webhook_left_unfinished_is_counted_disconnected(
    fast_hub: tuple[Hub, list[int]], case: str
) -> None:
    """A webhook the half-close left unfinished in its body is counted (and logged)
    ``disconnected`` once, as when its sender closes both sides: under way (the fast path's,
    or ingest reading its body) or queued behind another and dropped at the end of file,
    never started (counted nowhere before: the connection closed under the one before it,
    whose answer was lost, and it was never started either)."""
    hub, _ = fast_hub
    data, counted = CUT[case]
    before = deliveries(hub)
    _half_closed(hub, data)
    expected = {**counted, ("typeform", "rejected", "disconnected"): 1}
    deadline = time.monotonic() + HANG_GUARD  # (counted after the close, in the server)
    while True:
        after = deliveries(hub)
        grown = {key: value - before.get(key, 0) for key, value in after.items()}
        grown = {key: value for key, value in grown.items() if value}
        if grown == expected or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert grown == expected
