"""``leadhub serve``'s protocol refusing a request (431 for a head over :data:`MAX_HEAD`, 400
for bytes its parser cannot read): however the head's bytes are split across reads, before
anything is dispatched, and after the answers of the requests read whole before it on the
connection (in request order), over real sockets against a hub on serve's protocol."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import orjson
import pytest

from hub.commands.protocol import MAX_HEAD
from tests.web.conftest import Hub
from tests.web.test_protocol import _request, _signed, _Wire

HEALTH = b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n"
GARBAGE = b"HELLO THERE\r\n\r\n"
TOO_LARGE = {"error": f"request headers over the {MAX_HEAD}-byte limit"}
INVALID = {"error": "Invalid HTTP request received."}


def _sized(request: bytes, head: int) -> bytes:
    """``request`` with an ``x-pad`` header line after its request line, so that its head
    (request line, header lines, the blank line) is ``head`` bytes."""
    line = request.index(b"\r\n") + 2
    pad = head - (request.index(b"\r\n\r\n") + 4) - len(b"x-pad: \r\n")
    assert pad >= 0
    sized = request[:line] + b"x-pad: " + b"a" * pad + b"\r\n" + request[line:]
    assert sized.index(b"\r\n\r\n") + 4 == head
    return sized


def _chunked(event_id: str) -> bytes:
    """A signed Typeform delivery with a chunked body: uvicorn's path, not the fast one."""
    body, headers = _signed(event_id)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return _request(chunked, {**headers, "transfer-encoding": "chunked"})


#: A request of each kind, by the event id it stores (None: a health check, nothing stored).
KINDS: dict[str, Callable[[str], bytes]] = {
    "webhook": lambda event_id: _request(*_signed(event_id)),  # the fast path
    "chunked webhook": _chunked,  # uvicorn's path to the app, which would store it
    "health check": lambda event_id: HEALTH,  # uvicorn's path, nothing stored
}
OK = {
    "webhook": {"status": "accepted", "id": 1},
    "chunked webhook": {"status": "accepted", "id": 1},
    "health check": {"status": "ok"},
}


def _send(wire: _Wire, request: bytes, split: str) -> None:
    """``request`` in one write, or its head in 1 KiB writes (the last one with the end of
    the head and the body: everything is read before the hub could close the connection)."""
    if split == "one write":
        wire.send(request)
        return
    wire.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    last = request.index(b"\r\n\r\n") // 1024 * 1024  # where the last write begins
    for at in range(0, last, 1024):
        wire.send(request[at : at + 1024])
        time.sleep(0.001)  # pacing, so that the hub reads them apart
    wire.send(request[last:])


# -- a head over the limit, however it is split ---------------------------------------------


@pytest.mark.parametrize("split", ["one write", "1 KiB writes"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_head_over_the_limit_is_a_431_before_anything_sees_it(
    fast_hub: tuple[Hub, list[int]], kind: str, split: str
) -> None:
    """A head one byte over :data:`MAX_HEAD`, ending in the same read as it began or not:
    431 with the JSON reason, ``connection: close``, the connection closed, and neither the
    fast path nor the app saw the request (nothing stored). (A whole head in one read was
    served as if it were fine: the check ran only while a head was still unfinished after
    a read.)"""
    hub, answered = fast_hub
    wire = _Wire(hub.url)
    _send(wire, _sized(KINDS[kind]("e-over"), MAX_HEAD + 1), split)
    status, headers, body = wire.response()
    assert (status, orjson.loads(body)) == (431, TOO_LARGE)
    assert headers["connection"] == "close"
    assert wire.closed()
    wire.close()
    assert answered == []
    assert hub.events() == []
    assert hub.client.get("/healthz").status_code == 200  # it serves on


@pytest.mark.parametrize("split", ["one write", "1 KiB writes"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_head_of_the_limit_is_served(
    fast_hub: tuple[Hub, list[int]], kind: str, split: str
) -> None:
    """A head of exactly :data:`MAX_HEAD` bytes is served as any other: the webhook on the
    fast path, the rest on uvicorn's."""
    hub, answered = fast_hub
    wire = _Wire(hub.url)
    _send(wire, _sized(KINDS[kind]("e-limit"), MAX_HEAD), split)
    status, headers, body = wire.response()
    wire.close()
    assert (status, orjson.loads(body)) == (200, OK[kind])
    assert "connection" not in headers
    assert answered == ([200] if kind == "webhook" else [])
    stored = [] if kind == "health check" else ["e-limit"]
    assert [e.delivery_id for e in hub.events()] == stored


def test_each_pipelined_request_has_its_own_head_budget(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """Three requests with heads of :data:`MAX_HEAD` bytes and one just under, in one
    write: each is counted on its own, all four answered 200 in order."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    requests = [
        _sized(_request(*_signed("e-1")), MAX_HEAD),
        _sized(HEALTH, MAX_HEAD),
        _sized(_chunked("e-2"), MAX_HEAD),
        _sized(_request(*_signed("e-3")), MAX_HEAD - 1),
    ]
    wire.send(b"".join(requests))
    answers = [wire.response() for _ in requests]
    wire.close()
    assert [(s, orjson.loads(b)) for s, _, b in answers] == [
        (200, {"status": "accepted", "id": 1}),
        (200, {"status": "ok"}),
        (200, {"status": "accepted", "id": 2}),
        (200, {"status": "accepted", "id": 3}),
    ]
    assert [e.delivery_id for e in hub.events()] == ["e-1", "e-2", "e-3"]


# -- a refusal behind a request still waiting for its answer ----------------------------------


@pytest.mark.parametrize("kind", ["webhook", "chunked webhook", "health check"])
def test_garbage_behind_a_request_is_answered_after_it(
    fast_hub: tuple[Hub, list[int]], kind: str
) -> None:
    """A whole request and, in the same write, bytes the parser refuses: the request's own
    answer (a webhook's 200 once stored), then the 400, then the connection closed; the
    delivery stored once. (The 400 was written at once and the connection closed under the
    webhook being stored: it was kept, and its sender got a 400 for it; uvicorn's path
    dropped the health check's answer the same way.)"""
    hub, answered = fast_hub
    wire = _Wire(hub.url)
    wire.send(KINDS[kind]("e-first") + GARBAGE)
    first = wire.response()
    refused = wire.response()
    assert wire.closed()
    wire.close()
    assert (first[0], orjson.loads(first[2])) == (200, OK[kind])
    assert (refused[0], orjson.loads(refused[2])) == (400, INVALID)
    assert refused[1]["connection"] == "close"
    assert answered == ([200] if kind == "webhook" else [])
    stored = [] if kind == "health check" else ["e-first"]
    assert [e.delivery_id for e in hub.events()] == stored


def test_refusals_come_in_request_order(fast_hub: tuple[Hub, list[int]]) -> None:
    """A webhook, then a health check pipelined behind it, then garbage, in one write: 200,
    200, 400 in that order; and a webhook followed by a head over the limit: 200 then 431.
    Nothing read after a refusal is started."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    wire.send(_request(*_signed("e-1")) + HEALTH + GARBAGE + _request(*_signed("e-never")))
    answers = [wire.response() for _ in range(3)]
    assert wire.closed()
    wire.close()
    assert [(s, orjson.loads(b)) for s, _, b in answers] == [
        (200, {"status": "accepted", "id": 1}),
        (200, {"status": "ok"}),
        (400, INVALID),
    ]
    wire = _Wire(hub.url)
    over = _sized(_request(*_signed("e-over")), MAX_HEAD + 1)
    wire.send(_request(*_signed("e-2")) + over)
    answers = [wire.response() for _ in range(2)]
    assert wire.closed()
    wire.close()
    assert [(s, orjson.loads(b)) for s, _, b in answers] == [
        (200, {"status": "accepted", "id": 2}),
        (431, TOO_LARGE),
    ]
    assert [e.delivery_id for e in hub.events()] == ["e-1", "e-2"]


def test_a_request_cut_short_behind_one_under_way_is_not_started(
    fast_hub: tuple[Hub, list[int]],
) -> None:
    """A webhook, then a chunked one whose chunks turn into garbage, in one write: the first
    is answered 200 once stored, the second only by the 400 (never handed to the app: not
    stored), then the connection closed."""
    hub, _ = fast_hub
    wire = _Wire(hub.url)
    cut = _chunked("e-cut")
    cut = cut[: cut.index(b"\r\n\r\n") + 4] + b"5\r\nab"  # a chunk of 5 bytes, cut short...
    wire.send(_request(*_signed("e-1")) + cut + b"\r\nzz\r\n")  # ...by a bad size line
    answers = [wire.response() for _ in range(2)]
    assert wire.closed()
    wire.close()
    assert [(s, orjson.loads(b)) for s, _, b in answers] == [
        (200, {"status": "accepted", "id": 1}),
        (400, INVALID),
    ]
    assert [e.delivery_id for e in hub.events()] == ["e-1"]
