"""``leadhub serve``'s protocol logs each request it refuses itself (400 ``unreadable``, 431
``headers_too_large``, 408 ``read_timeout``) as ingest logs a rejected delivery: one
``delivery_received`` line with ``endpoint``, ``outcome`` ``rejected``, ``reason``, ``status``
and ``detail``, at most one a second per endpoint and reason, the next saying how many were
left out (``unlogged``); on a ``worker`` too, which counts none of them.

Before, these refusals were counted in ``leadhub_deliveries_total`` but the log had only
uvicorn's bare "Invalid HTTP request received." warning (and the protocol's own for 431 and
408): no status, reason or endpoint, and one per refusal however many came. Real sockets
against a hub on serve's protocol and store writer process (read timeout shortened), lines
taken with structlog's ``capture_logs``; the worker is a real ``leadhub serve --role worker``
(its JSON lines read from its output).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from hub.commands import protocol
from hub.commands.protocol import MAX_HEAD
from tests.support.logs import HANG_GUARD, logged
from tests.support.server import free_port, leadhub_process
from tests.web.conftest import Hub, running_hub
from tests.web.test_protocol import _Wire
from tests.web.test_protocol_refusal_metrics import CASES, WAIT, deliveries
from tests.web.test_protocol_refusals import GARBAGE, TOO_LARGE
from tests.web.test_serve import ENV, serve_args

Line = MutableMapping[str, Any]
#: The detail of each refusal's line, by reason (the error its answer says).
DETAILS = {
    "unreadable": "Invalid HTTP request received.",
    "headers_too_large": TOO_LARGE["error"],
    "read_timeout": f"request not sent whole: no byte for {WAIT:g} s",
}
STATUSES = {"unreadable": 400, "headers_too_large": 431, "read_timeout": 408}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    monkeypatch.setattr(protocol, "READ_TIMEOUT", WAIT, raising=False)
    with running_hub(tmp_path, writer="process") as running:
        yield running


def _deliveries(logs: list[Line], count: int) -> list[Line]:
    """The ``delivery_received`` lines, once there are ``count``; and no other line of
    structlog's. (uvicorn's own warnings reach structlog only as serve sets logging up, not
    in this thread's server: ``test_a_worker_logs_its_refusals_and_counts_none`` and
    ``tests/e2e/test_listen.py`` look for them.)"""
    lines = logged(logs, "delivery_received", count)
    assert [line for line in logs if line["event"] != "delivery_received"] == []
    return lines


@pytest.mark.parametrize("case", list(CASES))
def test_each_refusal_is_one_line_like_ingests(hub: Hub, case: str) -> None:
    """Each counted delivery is one ``delivery_received`` line with the same endpoint,
    outcome and reason (the cases of ``test_protocol_refusal_metrics``): a refusal of the
    protocol's own in ingest's shape, with its status and its answer's error as ``detail``;
    one counted by its own cycle (``disconnected``) is logged by that cycle only."""
    exchange, expected = CASES[case]
    with capture_logs() as logs:
        exchange(_Wire(hub.url))
        lines = _deliveries(logs, int(sum(expected.values())))
    got = sorted((line["endpoint"], line["outcome"], line["reason"] or "") for line in lines)
    assert got == sorted(key for key, n in expected.items() for _ in range(int(n)))
    for line in lines:
        reason = line["reason"]
        if reason in DETAILS:
            assert line == {
                "event": "delivery_received",
                "log_level": "info",
                "endpoint": line["endpoint"],
                "delivery_id": None,
                "outcome": "rejected",
                "reason": reason,
                "status": STATUSES[reason],
                "detail": DETAILS[reason],
            }


def test_a_flood_of_refusals_is_throttled(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Garbage on three connections within the throttle's interval (set to an hour): one
    line; a head over the limit meanwhile has its own; once the interval is over (set to
    0), the next refusal's line says how many were left out. Each is counted still."""
    monkeypatch.setattr(protocol, "REFUSAL_LOG_EVERY", 3600.0)

    def refused(request: bytes, status: int) -> None:
        wire = _Wire(hub.url)
        wire.send(request)
        assert wire.response()[0] == status
        wire.close()

    over = b"GET /healthz HTTP/1.1\r\nx-pad: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    with capture_logs() as logs:
        for _ in range(3):
            refused(GARBAGE, 400)
        refused(over, 431)
        monkeypatch.setattr(protocol, "REFUSAL_LOG_EVERY", 0.0)
        refused(GARBAGE, 400)
        lines = _deliveries(logs, 3)
    assert [(line["reason"], line.get("unlogged")) for line in lines] == [
        ("unreadable", None),
        ("headers_too_large", None),
        ("unreadable", 2),
    ]
    counted = deliveries(hub)
    assert counted[("", "rejected", "unreadable")] == 4
    assert counted[("", "rejected", "headers_too_large")] == 1


def _lines(proc: Any, event: str) -> list[dict[str, Any]]:
    """Every JSON line ``proc`` has written, once one is named ``event`` (hang guard)."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        proc.stdout.seek(0)
        lines = [orjson.loads(text) for text in proc.stdout if text.startswith("{")]
        if any(line["event"] == event for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_a_worker_logs_its_refusals_and_counts_none(tmp_path: Path) -> None:
    """``leadhub serve --role worker`` (no ingest: it takes no deliveries) refuses garbage
    as the web role does and logs it the same way, but counts it in no delivery series,
    as it counts none of its other requests (a /hooks path is its 404, counted nowhere)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = serve_args(tmp_path, port, role="worker")
    with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV) as proc:
        with contextlib.closing(_Wire(base)) as wire:
            wire.send(GARBAGE)
            status, _, body = wire.response()
            assert (status, orjson.loads(body)) == (400, {"error": DETAILS["unreadable"]})
            assert wire.closed()
        lines = _lines(proc, "delivery_received")
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
    (line,) = [line for line in lines if line["event"] == "delivery_received"]
    assert {k: line[k] for k in ("endpoint", "outcome", "reason", "status", "detail")} == {
        "endpoint": "",
        "outcome": "rejected",
        "reason": "unreadable",
        "status": 400,
        "detail": DETAILS["unreadable"],
    }
    assert "leadhub_deliveries_total{" not in metrics
    assert [line for line in lines if line.get("logger") == "uvicorn.error"] == []
