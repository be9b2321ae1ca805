"""``leadhub serve``'s protocol and a request cut off by the read timeout behind one whose
answer is still pending: the 408 comes after that answer, as the other refusals do, and a
pending answer that never comes does not hold the connection for good.

Found by reading: the 408 was written and the connection closed at once, so a webhook whose
store commit was slow (stored, or about to be) was never answered 200: its sender read the
408 as the answer to it. Real sockets against a hub on serve's protocol and store writer
process; the read timeout shortened; the webhook's answer held by the test (the delivery is
committed, its answer handed to the protocol only when the test says).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.commands import protocol
from hub.commands.protocol import HubHttpProtocol
from hub.web.ingest import Answer, Ingest
from tests.web.conftest import Hub, running_hub
from tests.web.test_protocol import _Wire
from tests.web.test_protocol_refusals import KINDS, OK

WAIT = 0.5  # the read timeout in these tests (seconds)
#: A request cut off in its head: its request line and one header, never the blank line.
CUT_HEAD = b"POST /hooks/typeform HTTP/1.1\r\nhost: hub\r\n"
TIMED_OUT = {"error": f"request not sent whole: no byte for {WAIT:g} s"}


@dataclass
class Held:
    """Answers ingest gave, held back from the protocol until :meth:`release`; set when
    the read timeout ended a request (refused it, or closed its connection)."""

    answers: list[Callable[[], None]] = field(default_factory=list)
    given: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    timed_out: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None

    def release(self) -> None:
        answers, self.answers = self.answers, []
        assert self.loop is not None
        for answer in answers:
            self.loop.call_soon_threadsafe(answer)


@pytest.fixture
def held_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Hub, Held]]:
    """A hub on serve's protocol and store writer whose read timeout is :data:`WAIT` and
    whose webhook answers (either path's) wait for the test to release them."""
    held = Held()
    post = Ingest.post
    timed_out = HubHttpProtocol._read_timed_out

    def holding(self: Ingest, route: Any, headers: Any, body: Any, query: Any, reply: Any) -> None:
        held.loop = asyncio.get_running_loop()

        def hold(answer: Answer) -> None:
            held.answers.append(lambda: reply(answer))
            held.given.release()

        post(self, route, headers, body, query, hold)

    def watched(self: HubHttpProtocol) -> None:
        timed_out(self)
        if self.refused or self.transport.is_closing():
            held.timed_out.set()

    # (raising=False: the tests also run, and fail, on a protocol without the timeout)
    monkeypatch.setattr(protocol, "READ_TIMEOUT", WAIT, raising=False)
    monkeypatch.setattr(Ingest, "post", holding)
    monkeypatch.setattr(HubHttpProtocol, "_read_timed_out", watched)
    with running_hub(tmp_path, writer="process") as hub:
        try:
            yield hub, held
        finally:
            if held.answers:  # (uvicorn's graceful stop waits for them)
                held.release()


@pytest.mark.parametrize("kind", ["webhook", "chunked webhook"])
def test_a_408_waits_for_the_answer_before_it(held_hub: tuple[Hub, Held], kind: str) -> None:
    """A webhook (the fast path, or uvicorn's path for a chunked one), then in the same
    write the head of a second request that never ends. The read timeout ends the second
    while the webhook's answer is still held; once the answer is given, the sender reads
    the 200, then the 408, then end of file; the delivery stored once. (Before, the 408 was
    written and the connection closed at the timeout: the sender read the 408 as the answer
    to its stored delivery, and the 200 was never sent.)"""
    hub, held = held_hub
    wire = _Wire(hub.url)
    wire.send(KINDS[kind]("e-held") + CUT_HEAD)
    assert held.given.acquire(timeout=10), "the webhook was never answered by ingest"
    assert held.timed_out.wait(10), "the read timeout never ended the second request"
    held.release()
    first = wire.response()
    refused = wire.response()
    assert wire.closed()
    wire.close()
    assert (first[0], orjson.loads(first[2])) == (200, OK[kind])
    assert "connection" not in first[1]
    assert (refused[0], orjson.loads(refused[2])) == (408, TIMED_OUT)
    assert refused[1]["connection"] == "close"
    assert [e.delivery_id for e in hub.events()] == ["e-held"]


def test_an_answer_that_never_comes_does_not_hold_the_connection(
    held_hub: tuple[Hub, Held],
) -> None:
    """The same, but the webhook's answer is never given: the connection is still closed
    (:data:`READ_TIMEOUT` after the 408 was due), with nothing written: the 408 alone would
    be read as the answer to the webhook. (Waiting for the answer without that bound, a
    connection whose store never answered was held for as long as that lasted.)"""
    hub, held = held_hub
    wire = _Wire(hub.url)
    wire.send(KINDS["webhook"]("e-held") + CUT_HEAD)
    assert held.given.acquire(timeout=10), "the webhook was never answered by ingest"
    wire.sock.settimeout(20 * WAIT)  # a hang guard: the connection must end well before
    assert wire.closed(), "the hub wrote something"
    wire.close()
    assert [e.delivery_id for e in hub.events()] == ["e-held"]
