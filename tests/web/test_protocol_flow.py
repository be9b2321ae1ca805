"""``leadhub serve``'s protocol and a sender that never reads its answers: the webhook fast
path writes nothing more once the transport asked it to pause writing, as uvicorn's path
waits, so what the hub holds for such a connection stays bounded. Real sockets against a
hub on serve's protocol, the hub's socket send buffer shrunk so that its writes back up
after a few hundred answers rather than tens of thousands."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.commands.protocol import HubHttpProtocol
from tests.web.conftest import Hub, running_hub
from tests.web.test_protocol import _request, _signed

#: Requests sent at most: more than it takes to fill both sockets' buffers and the hub's
#: transport past its high-water mark (64 KiB) with answers of ~150 bytes.
REQUESTS = 1500


@pytest.fixture
def watched_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Hub, threading.Semaphore, list[int]]]:
    """A hub on serve's protocol with 4 KiB socket send buffers; a semaphore released at
    each webhook the fast path answers; and, at each answer on either path, how many bytes
    the transport held unsent above its high-water mark (negative: below it)."""
    fast = threading.Semaphore(0)
    over: list[int] = []
    made = HubHttpProtocol.connection_made
    respond = HubHttpProtocol._respond
    complete = HubHttpProtocol.on_response_complete

    def small_buffer(self: HubHttpProtocol, transport: Any) -> None:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        made(self, transport)

    def responding(self: HubHttpProtocol, *args: Any) -> None:
        respond(self, *args)
        fast.release()

    def completing(self: HubHttpProtocol) -> None:
        _, high = self.transport.get_write_buffer_limits()
        over.append(self.transport.get_write_buffer_size() - high)
        complete(self)

    monkeypatch.setattr(HubHttpProtocol, "connection_made", small_buffer)
    monkeypatch.setattr(HubHttpProtocol, "_respond", responding)
    monkeypatch.setattr(HubHttpProtocol, "on_response_complete", completing)
    with running_hub(tmp_path, writer="process") as hub:
        yield hub, fast, over


def test_answers_to_a_sender_that_never_reads_stay_bounded(
    watched_hub: tuple[Hub, threading.Semaphore, list[int]],
) -> None:
    """One webhook POST at a time, each sent once the one before was answered (so each is
    read alone, nothing under way: the fast path), and no answer ever read: the hub stops
    answering once its transport holds its high-water mark (the next request waits on
    uvicorn's path for the sender to read), never holding more than that and one answer.
    (The fast path wrote its answer whatever the transport said: the transport's buffer
    grew by an answer for each request, as long as the sender kept sending.)"""
    hub, fast, over = watched_hub
    host, port = hub.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    request = _request(*_signed("e-unread"))  # the same delivery: its duplicates after it
    sent = 0
    try:
        while sent < REQUESTS:
            sock.sendall(request)
            sent += 1
            if not fast.acquire(timeout=3):  # the hub stopped answering (a hang guard)
                break
    finally:
        sock.close()
    assert over and max(over) <= 1024, f"{max(over)} bytes over the high-water mark"
    assert sent < REQUESTS, "every request was answered: the writes never backed up"
    assert [e.delivery_id for e in hub.events()] == ["e-unread"]
