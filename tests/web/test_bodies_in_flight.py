"""Bodies still coming in hold at most ``BODIES_IN_FLIGHT`` bytes, all connections together.

Found by a hostile sender: a body is read whole before its signature or token is checked,
so anyone who could reach the port held ``max_body`` (1 MiB) of the hub's memory per
connection by sending a body one byte short and waiting (each byte starts the 30 s read
wait over). 300 such connections, without a credential, grew the hub by 300 MB, and the
memory stayed with the process after they closed; the usual file limit (20,000) allows
20 GB. A body read past the limit is now answered 503 (its sender retries) and its
connection closed; what a body took is given back when it is read whole or dropped.

Real sockets to a hub on uvicorn's own protocol (every body read by ingest through ASGI)
and on serve's (a webhook's body gathered by the protocol itself); the limit is lowered to
the fixture endpoints' ``max_body`` (1 MiB).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from hub.web import ingest
from hub.web.ingest import Ingest
from tests.web.conftest import Hub, running_hub
from tests.web.test_protocol import _request, _signed, _Wire

KIB = 1024
DECLARED = 512 * KIB  # each holder's Content-Length (within the endpoint's 1 MiB)
SENT = 400 * KIB  # what each holder sends of it before it waits


@pytest.fixture(params=["thread", "process"])
def hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Hub]:
    # (raising=False: the tests also run, and fail, on an ingest without the limit)
    monkeypatch.setattr(ingest, "BODIES_IN_FLIGHT", 0, raising=False)
    with running_hub(tmp_path, writer=request.param) as running:
        yield running


def _held(hub: Hub) -> Callable[[], int]:
    app_ingest = cast(Any, hub.app).state.ingest
    assert isinstance(app_ingest, Ingest)
    return lambda: app_ingest.bodies.held


def _wait_for(what: Callable[[], int], value: int) -> None:
    deadline = time.monotonic() + 30
    while what() != value:
        if time.monotonic() > deadline:
            pytest.fail(f"bodies held: {what()} bytes, not {value}, after 30 s")
        time.sleep(0.01)


@pytest.fixture
def wires(hub: Hub) -> Iterator[Callable[[], _Wire]]:
    """New raw connections to ``hub``, each closed at the end of the test."""
    made: list[_Wire] = []

    def wire() -> _Wire:
        made.append(_Wire(hub.url))
        return made[-1]

    yield wire
    for each in made:
        each.close()


def _holder(wire: _Wire) -> _Wire:
    """``wire``, once it sent the head and part of a body to a known endpoint; it waits."""
    head = _request(b"", {"content-type": "application/json"})
    head = head.replace(b"content-length: 0", f"content-length: {DECLARED}".encode())
    wire.send(head + b"x" * SENT)
    return wire


def test_a_body_read_past_the_limit_is_answered_503_and_the_rest_are_taken(
    hub: Hub, wires: Callable[[], _Wire]
) -> None:
    """Two connections hold 800 KiB of the 1 MiB; a third body of 400 KiB is answered 503
    before it ends (its connection closed); a small webhook still fits and is stored. Once
    one holder leaves and the other's body ends, nothing is held, and a body of 1 MiB (the
    whole limit) is accepted."""
    held = _held(hub)
    first, second = _holder(wires()), _holder(wires())
    _wait_for(held, 2 * SENT)

    third = _holder(wires())
    status, headers, body = third.response()
    assert status == 503
    assert headers["connection"] == "close"
    assert orjson.loads(body) == {
        "error": "too many request bodies are being received at once; try again shortly"
    }
    third.close()
    _wait_for(held, 2 * SENT)  # (what the third took is given back)

    small, small_headers = _signed("in-flight-small")
    wire = wires()
    wire.send(_request(small, small_headers))
    assert wire.response()[0] == 200

    first.close()
    _wait_for(held, SENT)
    second.send(b"x" * (DECLARED - SENT))  # its body ends: no signature, 401
    assert second.response()[0] == 401
    _wait_for(held, 0)

    pad = b"x" * (ingest.bodies_limit(cast(Any, hub.app).state.config.endpoints) - 200)
    large, large_headers = _signed("in-flight-large", f'"pad":"{pad.decode()}"')
    assert len(large) <= 1 << 20
    wire = wires()
    wire.send(_request(large, large_headers))
    assert wire.response()[0] == 200
    assert sorted(e.delivery_id for e in hub.events()) == ["in-flight-large", "in-flight-small"]

    metrics = hub.client.get("/metrics").text
    assert (
        'leadhub_deliveries_total{endpoint="typeform",outcome="failed",'
        'reason="bodies_over_limit"} 1.0' in metrics
    )


def test_a_chunked_body_over_max_body_is_413_where_the_budget_is_max_body(
    hub: Hub, wires: Callable[[], _Wire]
) -> None:
    """The budget is the largest ``max_body`` when that is more (here 1 MiB, the fixture
    endpoints'): a chunked body over ``max_body``, alone, is its 413 (not retried), not a 503
    for the budget (retried by its sender at every try, for good); what it took is given
    back as soon as it is over, not held while the rest is read and dropped."""
    head = _request(b"", {"content-type": "application/json", "transfer-encoding": "chunked"})
    data = b"x" * (64 * KIB)
    chunks = (f"{len(data):x}\r\n".encode() + data + b"\r\n") * 17  # 1 MiB and 64 KiB
    wire = wires()
    wire.send(head + chunks)
    _wait_for(_held(hub), 0)  # (its rest is being read and dropped)
    wire.send(b"0\r\n\r\n")
    status, _, body = wire.response()
    assert (status, orjson.loads(body)["error"][:9]) == (413, "body over")
