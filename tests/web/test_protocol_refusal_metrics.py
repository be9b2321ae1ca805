"""``leadhub serve``'s protocol counts the requests it refuses itself in
``leadhub_deliveries_total``: 400 for bytes its parser cannot read (``unreadable``), 431 for a
head over :data:`MAX_HEAD` (``headers_too_large``), 408 for a request cut off in its head by
the read timeout (``read_timeout``), each once, as ``rejected``, under ``endpoint=""`` unless
the request's head was read whole and names an endpoint; a request whose own cycle was
started (a webhook cut off in its body) is counted by that cycle, ``disconnected``, and not
again. Before, none of these refusals was counted anywhere: a sender sending garbage or
huge headers was invisible in Prometheus.

Real sockets against a hub on serve's protocol and store writer process (read timeout
shortened); ``/metrics`` read with prometheus_client's parser, before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.commands import protocol
from hub.commands.protocol import MAX_HEAD
from tests.web.conftest import Hub, running_hub
from tests.web.test_protocol import _request, _signed, _Wire
from tests.web.test_protocol_refusals import GARBAGE, _chunked, _send, _sized

WAIT = 0.5  # the read timeout in these tests (seconds)

Series = tuple[str, str, str]  # endpoint, outcome, reason


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    monkeypatch.setattr(protocol, "READ_TIMEOUT", WAIT, raising=False)
    with running_hub(tmp_path, writer="process") as running:
        yield running


def deliveries(hub: Hub) -> dict[Series, float]:
    """Every ``leadhub_deliveries_total`` series the hub exports, by its labels."""
    text = hub.client.get("/metrics").text
    counted: dict[Series, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "leadhub_deliveries_total":
                labels = sample.labels
                key = (labels["endpoint"], labels["outcome"], labels["reason"])
                counted[key] = sample.value
    return counted


def _answers(wire: _Wire, *statuses: int) -> None:
    """The connection is answered ``statuses`` in order, then closed."""
    got = [wire.response()[0] for _ in statuses]
    assert got == list(statuses)
    wire.sock.settimeout(10 * WAIT)  # (a hang guard: the read timeout closes it before)
    assert wire.closed()
    wire.close()


def garbage(wire: _Wire) -> None:
    wire.send(GARBAGE)
    _answers(wire, 400)


def bad_length(wire: _Wire) -> None:
    """A webhook whose Content-Length the parser refuses: addressed to a known endpoint, but
    refused in its head, so not named."""
    body, headers = _signed("e-bad")
    wire.send(_request(body, {**headers, "content-length": "abc"}))
    _answers(wire, 400)


def over_in_one_read(wire: _Wire) -> None:
    _send(wire, _sized(_request(*_signed("e-over")), MAX_HEAD + 1), "one write")
    _answers(wire, 431)


def over_in_many_reads(wire: _Wire) -> None:
    _send(wire, _sized(_request(*_signed("e-over")), MAX_HEAD + 1), "1 KiB writes")
    _answers(wire, 431)


def cut_in_head(wire: _Wire) -> None:
    wire.send(b"POST /hooks/typeform HTTP/1.1\r\nhost: hub\r\n")
    _answers(wire, 408)


def cut_in_body(wire: _Wire) -> None:
    """A webhook cut off in its body: the fast path's own ``disconnected``, not a 408 more."""
    wire.send(_request(*_signed("e-cut"))[:-5])
    _answers(wire, 408)


def chunks_turn_to_garbage(wire: _Wire) -> None:
    """A chunked webhook (uvicorn's path: ingest reads its body) whose chunks turn into
    garbage: ingest's own ``disconnected``, not an ``unreadable`` more."""
    cut = _chunked("e-cut")
    wire.send(cut[: cut.index(b"\r\n\r\n") + 4] + b"5\r\nab\r\nzz\r\n")
    _answers(wire, 400)


def garbage_behind_a_webhook(wire: _Wire) -> None:
    wire.send(_request(*_signed("e-1")) + GARBAGE)
    _answers(wire, 200, 400)


def queued_chunks_turn_to_garbage(wire: _Wire) -> None:
    """A webhook, then a chunked one queued behind it whose chunks turn into garbage: the
    second was never started, its head named the endpoint."""
    cut = _chunked("e-cut")
    cut = cut[: cut.index(b"\r\n\r\n") + 4] + b"5\r\nab\r\nzz\r\n"
    wire.send(_request(*_signed("e-1")) + cut)
    _answers(wire, 200, 400)


def queued_garbage_to_an_unknown_endpoint(wire: _Wire) -> None:
    """The same to a path under /hooks/ that names no endpoint: ``endpoint=""``."""
    body, headers = _signed("e-cut")
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    cut = _request(chunked, {**headers, "transfer-encoding": "chunked"}, path="/hooks/nope")
    cut = cut[: cut.index(b"\r\n\r\n") + 4] + b"5\r\nab\r\nzz\r\n"
    wire.send(_request(*_signed("e-1")) + cut)
    _answers(wire, 200, 400)


ACCEPTED = ("typeform", "accepted", "")
CASES: dict[str, tuple[Callable[[_Wire], None], dict[Series, float]]] = {
    "garbage": (garbage, {("", "rejected", "unreadable"): 1}),
    "bad content-length": (bad_length, {("", "rejected", "unreadable"): 1}),
    "head over in one read": (over_in_one_read, {("", "rejected", "headers_too_large"): 1}),
    "head over in many reads": (
        over_in_many_reads,
        {("", "rejected", "headers_too_large"): 1},
    ),
    "cut off in its head": (cut_in_head, {("", "rejected", "read_timeout"): 1}),
    "webhook cut off in its body": (cut_in_body, {("typeform", "rejected", "disconnected"): 1}),
    "chunks turn to garbage": (
        chunks_turn_to_garbage,
        {("typeform", "rejected", "disconnected"): 1},
    ),
    "garbage behind a webhook": (
        garbage_behind_a_webhook,
        {ACCEPTED: 1, ("", "rejected", "unreadable"): 1},
    ),
    "queued chunks turn to garbage": (
        queued_chunks_turn_to_garbage,
        {ACCEPTED: 1, ("typeform", "rejected", "unreadable"): 1},
    ),
    "queued garbage to an unknown endpoint": (
        queued_garbage_to_an_unknown_endpoint,
        {ACCEPTED: 1, ("", "rejected", "unreadable"): 1},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_refusal_is_counted_once(hub: Hub, case: str) -> None:
    exchange, expected = CASES[case]
    before = deliveries(hub)
    exchange(_Wire(hub.url))
    after = deliveries(hub)
    grown = {key: value - before.get(key, 0) for key, value in after.items()}
    assert {key: value for key, value in grown.items() if value} == expected


def test_every_refused_connection_counts(hub: Hub) -> None:
    """Garbage on three connections: three 400s with the JSON reason, counted 3; the hub
    serves on."""
    for _ in range(3):
        wire = _Wire(hub.url)
        wire.send(GARBAGE)
        status, _, body = wire.response()
        assert (status, orjson.loads(body)) == (400, {"error": "Invalid HTTP request received."})
        wire.close()
    assert deliveries(hub)[("", "rejected", "unreadable")] == 3
    assert hub.client.get("/healthz").status_code == 200
