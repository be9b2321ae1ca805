"""Two ``leadhub serve --role worker`` on one store, one without endpoint ``late`` (a rolling
deploy that adds it), and a ``late`` event that per-lead ordering holds back behind an earlier
event of its lead, in flight: the worker with ``late`` puts it back again and again, each
time with a last error of its own. The worker without ``late`` claims it once all the same
(it claimed it again after each of them: its mark, the last error, had been overwritten).
Real processes, a real target on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.store.base import ENDPOINT_ABSENT
from hub.store.models import State
from tests.dispatch.support import (
    CAPTURE,
    KEYS,
    RecordingTarget,
    flat_endpoint_yaml,
    target_yaml,
)
from tests.e2e.support import enqueue_document, log_lines, stored_events, wait_until
from tests.support.server import leadhub_process, serve_args, serve_in_thread

SAME = "same@example.com"
#: Ordering waits of the ``late`` event, by the worker with ``late``, before the earlier
#: event's call is let through. The worker without ``late`` took the event back after some of
#: them only (whichever worker claimed first): 5 to 11 times in 20 on either store.
WAITS = 20


class HoldingTarget(RecordingTarget):
    """A :class:`RecordingTarget` that holds a call whose FirstName is ``Held`` until
    :attr:`let_through` is set (:attr:`holding` once it arrived)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.let_through = threading.Event()

    async def capture(self, request: Request) -> Response:
        attributes = {a["Attribute"]: a["Value"] for a in await request.json()}
        if attributes.get("FirstName") == "Held":
            self.holding.set()
            while not self.let_through.is_set():
                await asyncio.sleep(0.05)
        return await super().capture(request)


@pytest.fixture
def holding_target() -> Iterator[tuple[str, HoldingTarget]]:
    """A :class:`HoldingTarget` on loopback: (its base URL, the fake); what it holds is let
    through at the end."""
    fake = HoldingTarget()
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    try:
        with serve_in_thread(app) as url:
            yield url, fake
    finally:
        fake.let_through.set()


def _enqueue(db: str, endpoint: str, delivery_id: str, first_name: str) -> int:
    """Store one lead for :data:`SAME` of ``endpoint``; its event id."""
    return enqueue_document(db, endpoint, delivery_id, {"email": SAME, "first_name": first_name})


@pytest.mark.slow
def test_the_worker_without_an_endpoint_claims_an_event_held_back_by_ordering_once(
    tmp_path: Path, hub_db_url: str, holding_target: tuple[str, HoldingTarget]
) -> None:
    """The worker without ``late`` runs alone first: it sends ``Held`` (forms, for SAME; the
    target holds its call) and puts ``late``'s event for SAME back untried, marked. Then the
    worker with ``late`` starts: it claims that event and puts it back behind ``Held``, in
    flight, :data:`WAITS` times or more. Meanwhile the worker without ``late`` does not claim
    it again; once ``Held`` is let through, the event goes out after it, at its first
    counted attempt."""
    url, target = holding_target
    db = hub_db_url
    targets = target_yaml("default", url, timeout="20s")
    forms, late = flat_endpoint_yaml("forms", "default"), flat_endpoint_yaml("late", "default")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, _, _ = serve_args(
        tmp_path / "old", {"targets.yaml": targets, "forms.yaml": forms}, "--role", "worker", db=db
    )
    new_files = {"targets.yaml": targets, "forms.yaml": forms, "late.yaml": late}
    new, _, _ = serve_args(tmp_path / "new", new_files, "--role", "worker", db=db)
    held = _enqueue(db, "forms", "held", "Held")
    left = _enqueue(db, "late", "late", "Late")
    with leadhub_process(old, env=KEYS) as without:
        assert without.stdout is not None
        old_output = ""
        wait_until(
            lambda: (
                target.holding.is_set()
                and any(
                    e.id == left
                    and e.state is State.QUEUED
                    and (e.last_error or "").startswith(ENDPOINT_ABSENT)
                    for e in stored_events(db)
                )
            ),
            what="Held at the target, late's event left by the worker without late",
        )
        with leadhub_process(new, env=KEYS) as having:
            stdout = having.stdout
            assert stdout is not None
            new_output = ""

            def waited() -> bool:
                nonlocal new_output
                new_output += stdout.read()
                return len(log_lines(new_output, "event_waiting", left)) >= WAITS

            wait_until(waited, timeout=90, what=f"{WAITS} ordering waits of late's event")
            old_output += without.stdout.read()
            claimed_while_held = len(log_lines(old_output, "event_claimed", left))
            target.let_through.set()
            wait_until(
                lambda: all(e.state is State.DELIVERED for e in stored_events(db)),
                timeout=60,
                what="both events delivered",
            )
        old_output += without.stdout.read()
    events = {e.id: e for e in stored_events(db)}
    waits = log_lines(new_output, "event_waiting", left)
    assert {w["blocker"] for w in waits} == {held}
    assert claimed_while_held == 1, f"{claimed_while_held} claims for {len(waits)} waits"
    assert len(log_lines(old_output, "event_claimed", left)) == 1
    assert target.names(SAME) == ["Held", "Late"]
    assert (events[left].state, events[left].attempts) == (State.DELIVERED, 1)
