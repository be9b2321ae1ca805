"""A process killed between its claim and its routes stalls no other process, nor the hub
restarted in its place (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from hub.clock import ManualClock
from hub.store import EventStore, open_store
from hub.store.base import ROUTING_GRACE
from hub.store.models import Event, State
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.store.helpers import delivery
from tests.support.server import leadhub_process, serve_args

LEASE = 60.0  # serve's default: what a killed instance's claim keeps until it ends


async def _claim_then_die(url: str) -> Event:
    """What a kill -9 between a claim and its routes leaves: one event claimed (lease
    running) without a route, by an instance gone since a little more than ROUTING_GRACE."""
    claimed_at = time.time() - ROUTING_GRACE - 5
    store = open_store(url, clock=ManualClock(claimed_at))
    await store.open()
    try:
        await store.enqueue(delivery("claimed-by-the-dead"))
        (event,) = await store.claim(limit=1, lease=LEASE)
        return event
    finally:
        await store.close()


@pytest.mark.slow
def test_leads_go_out_while_a_dead_instance_s_unrouted_claim_still_holds_its_lease(
    tmp_path: Path, hub_db_url: str
) -> None:
    """The dead instance's event could be any lead's, so for a few seconds it held back
    every later event; until its lease ended (45 s more here) it held back every lead of
    every target on every instance (on SQLite: of the hub restarted after the kill). A live
    instance now sends its leads at once, and the dead one's event waits for its lease as
    before."""
    url = hub_db_url
    dead = asyncio.run(_claim_then_die(url))
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, db=url)
    emails = [f"after{n}@example.com" for n in range(5)]
    with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV):
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for email in emails:
                assert client.post("/hooks/forms", json={"email": email}).status_code == 200

        def delivered() -> int:
            counts = on_store(url, lambda store: store.counts())
            return counts[State.DELIVERED]

        wait_until(lambda: delivered() == len(emails), timeout=20, what="the new leads sent")

    async def stale(store: EventStore) -> Event | None:
        return await store.get(dead.id)

    found = on_store(url, stale)
    assert found is not None and found.state is State.SENDING and found.target is None
