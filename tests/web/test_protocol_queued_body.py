"""A request queued behind others on a connection holds little of its body until it starts.

Found by a hostile sender: uvicorn stops reading once a queued request holds more body than
it keeps for the app (``HIGH_WATER_LIMIT``, 64 KiB), but reads on after each answer to a
request ahead of it, so each of those answers added a read (up to 256 KiB) to the queued
body, outside ingest's budget of bodies being read and before its ``max_body`` could refuse
it: 90 pipelined ``GET /healthz`` ahead of a POST declaring 200 MB held 13 MB, per
connection and without a credential. Reading now stays paused until the app reads the body.

A hub on serve's protocol; the queued body's size is read off the protocol as it grows.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT

from hub.commands.protocol import HubHttpProtocol
from tests.web.conftest import Hub
from tests.web.test_protocol import _request, _signed

AHEAD = 50
HEALTH = b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n"
READ = 256 * 1024  # the most one read of the event loop takes


@pytest.fixture
def queued_bodies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of a queued request's body (held by uvicorn) after each part of it is read."""
    sizes: list[int] = []
    on_body = HubHttpProtocol.on_body

    def recording(self: HubHttpProtocol, body: bytes) -> None:
        on_body(self, body)
        cycle: Any = self.cycle
        if self.pipeline and self.pipeline[0][0] is cycle:
            sizes.append(len(cycle.body))

    monkeypatch.setattr(HubHttpProtocol, "on_body", recording)
    return sizes


class _Streaming:
    """``size`` bytes sent on ``sock`` from another thread, until sent or refused; how many
    went out so far."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        self.sent = 0
        self._sock = sock
        self._size = size
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        chunk = b"a" * 65536
        with contextlib.suppress(OSError):
            while self.sent < self._size:
                self._sock.sendall(chunk)
                self.sent += len(chunk)

    def stalled(self) -> None:
        """Wait until the hub takes no more of the body (it stopped reading: its buffers and
        the kernel's are full)."""
        deadline = time.monotonic() + 30
        last = -1
        while last != self.sent:
            assert time.monotonic() < deadline, "the body was still being taken after 30 s"
            last = self.sent
            time.sleep(0.3)

    def join(self) -> None:
        self._thread.join(timeout=60)


@contextlib.contextmanager
def _write_lock(path: Path) -> Iterator[None]:
    """The store's write lock held by another connection (the hub's writes wait)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_queued_body_is_not_read_on_by_the_answers_ahead_of_it(
    fast_hub: tuple[Hub, list[int]], queued_bodies: list[int]
) -> None:
    """A webhook held by the store's write lock, 50 health checks behind it, then a POST
    declaring 200 MB whose body is sent until the hub stops taking it. Once the lock is let
    go, each health check is answered, and the queued body holds no more than uvicorn's
    limit and the read that passed it (before: one more read for each answer ahead of it,
    the bytes waiting in the kernel's buffers); the POST is then answered 413 like any body
    over ``max_body``."""
    hub, _ = fast_hub
    host, port = hub.url.removeprefix("http://").split(":")
    webhook, headers = _signed("ahead-of-a-queued-body")
    declared = 200 * 1024 * 1024
    head = b"POST /hooks/typeform HTTP/1.1\r\nhost: hub\r\ncontent-length: %d\r\n\r\n" % declared
    first = b"a" * (2 * HIGH_WATER_LIMIT)  # (queued with part of its body, whatever the timing)
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        with _write_lock(hub.db_dir / "hub.db"):
            sock.sendall(_request(webhook, headers) + HEALTH * AHEAD + head + first)
            streaming = _Streaming(sock, declared - len(first))
            streaming.stalled()
        received = b""
        while b"413 Request Entity Too Large" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed before the 413: {received[-300:]!r}"
            received += chunk
        streaming.join()
    finally:
        sock.close()
    assert received.count(b"HTTP/1.1 200 OK") == AHEAD + 1
    assert queued_bodies, "the POST was never queued with part of its body"
    assert max(queued_bodies) <= HIGH_WATER_LIMIT + READ
    assert [e.delivery_id for e in hub.events()] == ["ahead-of-a-queued-body"]
