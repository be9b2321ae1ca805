"""Two ``leadhub serve --role worker`` on one store, one without the Facebook endpoint ``fb``
(a rolling deploy that adds it), and an ``fb`` event whose lead the Graph API fails to read:
the worker with ``fb`` retries it again and again, each time with a last error of its own,
before any route is recorded. The worker without ``fb`` claims it once all the same (it
claimed it again after each failed read: its mark, the last error, had been overwritten).
Real processes, a Graph API and a target on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.store.base import ENDPOINT_ABSENT
from hub.store.models import State
from tests.dispatch.support import (
    FB_ENV,
    facebook_yaml,
    flat_endpoint_yaml,
    recording_target,
    target_yaml,
)
from tests.e2e.support import enqueue_document, log_lines, stored_events, wait_until
from tests.support.server import leadhub_process, serve_args, serve_in_thread

LEADGEN = "4242"
#: Failed reads of the ``fb`` event, by the worker with ``fb``, before the Graph API mends.
#: The worker without ``fb`` took the event back after some of them only (whichever worker
#: claimed first).
FAILED_READS = 20


class FailingGraph:
    """A Graph API that answers every lead read 500 until :attr:`mend` is set, then the lead
    (email ``<id>@fb.example``); :attr:`failed` counts the reads it refused."""

    def __init__(self) -> None:
        self.mend = threading.Event()
        self.failed = 0

    async def lead(self, request: Request) -> Response:
        lead_id = request.path_params["lead_id"]
        if not self.mend.is_set():
            self.failed += 1
            error = {"message": "An unexpected error has occurred.", "code": 2}
            return JSONResponse({"error": error}, status_code=500)
        field_data = [{"name": "email", "values": [f"{lead_id}@fb.example"]}]
        return JSONResponse({"id": lead_id, "field_data": field_data})


@pytest.fixture
def failing_graph() -> Iterator[tuple[str, FailingGraph]]:
    """A :class:`FailingGraph` on loopback: (its Graph URL, the fake)."""
    fake = FailingGraph()
    app = Starlette(routes=[Route("/v21.0/{lead_id}", fake.lead)])
    with serve_in_thread(app) as url:
        yield f"{url}/v21.0", fake


def _enqueue_lead(db: str) -> int:
    """Store one ``fb`` delivery naming the lead :data:`LEADGEN`; its event id."""
    return enqueue_document(db, "fb", "fb-1", {"leadgen_id": LEADGEN, "page_id": "1"})


@pytest.mark.slow
def test_the_worker_without_an_endpoint_claims_an_event_whose_read_fails_once(
    tmp_path: Path, hub_db_url: str, failing_graph: tuple[str, FailingGraph]
) -> None:
    """The worker without ``fb`` runs alone first: it puts the ``fb`` event back untried,
    marked. Then the worker with ``fb`` starts: it claims the event and its lead's read
    fails, :data:`FAILED_READS` times or more (each a retry, its last error the read's).
    Meanwhile the worker without ``fb`` does not claim it again; once the Graph API mends,
    the lead is read and sent, once, every attempt counted being a read of the worker with
    ``fb``."""
    graph_url, graph = failing_graph
    db = hub_db_url
    with recording_target() as (url, target):
        targets = target_yaml("default", url)
        forms = flat_endpoint_yaml("forms", "default")
        (tmp_path / "old").mkdir()
        (tmp_path / "new").mkdir()
        old_files = {"targets.yaml": targets, "forms.yaml": forms}
        old, _, _ = serve_args(tmp_path / "old", old_files, "--role", "worker", db=db)
        new_files = {**old_files, "fb.yaml": facebook_yaml(graph_url)}
        new, _, _ = serve_args(tmp_path / "new", new_files, "--role", "worker", db=db)
        left = _enqueue_lead(db)
        with leadhub_process(old, env=FB_ENV) as without:
            assert without.stdout is not None
            wait_until(
                lambda: any(
                    e.id == left
                    and e.state is State.QUEUED
                    and (e.last_error or "").startswith(ENDPOINT_ABSENT)
                    for e in stored_events(db)
                ),
                what="the fb event left by the worker without fb",
            )
            with leadhub_process(new, env=FB_ENV):
                wait_until(
                    lambda: graph.failed >= FAILED_READS,
                    timeout=90,
                    what=f"{FAILED_READS} failed reads of the fb event's lead",
                )
                old_output = without.stdout.read()
                claimed_while_failing = len(log_lines(old_output, "event_claimed", left))
                failed = stored_events(db)
                graph.mend.set()
                wait_until(
                    lambda: all(e.state is State.DELIVERED for e in stored_events(db)),
                    timeout=60,
                    what="the fb event delivered",
                )
            old_output += without.stdout.read()
    assert claimed_while_failing == 1, f"{claimed_while_failing} claims for {graph.failed} reads"
    assert len(log_lines(old_output, "event_claimed", left)) == 1
    (retrying,) = failed  # (no route: the read failed before one was recorded)
    assert retrying.target is None
    assert (retrying.last_error or "").startswith("Facebook lead fetch failed: ")
    (event,) = stored_events(db)
    assert target.names(f"{LEADGEN}@fb.example") == ["F"]
    assert (event.state, event.attempts) == (State.DELIVERED, graph.failed + 1)
