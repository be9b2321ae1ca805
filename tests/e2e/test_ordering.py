"""Two worker processes on one database keep one lead's events in order (real processes)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hub.store import EventStore
from hub.store.models import Event, EventIn, IncomingDelivery, State
from tests.dispatch.support import (
    FB_ENV,
    facebook_yaml,
    flat_endpoint_yaml,
    recording_target,
    slow_graph,
    target_yaml,
)
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_reload import Log
from tests.support.server import leadhub_process, serve_args

SAME = "race@example.com"


def _enqueue(db: str, endpoint: str, delivery_id: str, document: object) -> None:
    async def work(store: EventStore) -> None:
        await store.enqueue(
            IncomingDelivery(
                endpoint=endpoint,
                received_at=time.time(),
                body=b"{}",
                content_type="application/json",
                headers={},
                events=(EventIn(delivery_id=delivery_id, document=document),),
            )
        )

    on_store(db, work)


def _events(db: str) -> list[Event]:
    return on_store(db, lambda store: store.list(limit=100))


@pytest.mark.slow
def test_a_later_event_never_overtakes_one_claimed_with_a_slow_read(
    tmp_path: Path, hub_db_url: str
) -> None:
    """The audit's race, with two `serve --role worker`: one claims a Facebook event F (its
    lead read from a Graph API that answers once A is at the target) with A (a form lead
    for race@, which the target takes 4 s to answer); B, for the same email, comes while A
    is in flight and goes to either worker. A goes out at once, without waiting for F's
    read, and the target gets A before B (it got B first, 4 times in 4: A's routes were
    written only after F's read, so B's ordering check, in the other worker, could not
    see A)."""
    with (
        recording_target(slow={"A": 4.0}) as (url, target),
        slow_graph(None) as (graph_url, graph),
    ):
        files = {
            "targets.yaml": target_yaml("default", url, timeout="10s"),
            "forms.yaml": flat_endpoint_yaml("forms", "default"),
            "fb.yaml": facebook_yaml(graph_url),
        }
        db = hub_db_url
        first, first_url, _ = serve_args(tmp_path, files, "--role", "worker", db=db)
        # (at debug level: its claims are logged, each as events_claimed)
        second, second_url, _ = serve_args(
            tmp_path, files, "--role", "worker", "--log-level", "debug", db=db
        )
        _enqueue(db, "fb", "f", {"leadgen_id": "4242", "page_id": "1"})
        _enqueue(db, "forms", "a", {"email": SAME, "first_name": "A"})
        with leadhub_process(first, ready_url=f"{first_url}/healthz", env=FB_ENV):
            wait_until(lambda: graph.held == 1, what="F and A claimed, F being read")
            with leadhub_process(second, ready_url=f"{second_url}/healthz", env=FB_ENV) as proc:
                # B comes once the second worker claims too: it may go to either
                log = Log(proc)
                wait_until(lambda: bool(log.events("events_claimed")), what="a second claimer")
                _enqueue(db, "forms", "b", {"email": SAME, "first_name": "B"})
                # F's read is held until A is at the target (it answered after 3 s, which a
                # loaded machine could take to get A out): A went out while F was being read
                wait_until(lambda: bool(target.arrived), what="A at the target")
                graph.ended.set()
                wait_until(
                    lambda: all(e.state is State.DELIVERED for e in _events(db)),
                    timeout=60,
                    what="every event delivered",
                )
                b_claimed = [e.attempts for e in _events(db) if e.delivery_id == "b"]
    assert target.names(SAME) == ["A", "B"]
    assert target.names("4242@fb.example") == ["F"]
    assert b_claimed == [1]
    assert target.arrived[0] < graph.answered[0]  # A went out while F was being read
