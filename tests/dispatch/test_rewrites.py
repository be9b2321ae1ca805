"""A stopping dispatcher and the store writes it was still trying again (:class:`Rewrites`).

A delivery the store could not record (an outage) is written again in the background. When
the dispatcher stops while such a write is in flight (the store has it, its answer is on
the way), the write is let finish: cut off, it was tried again as the stop's last try, found
its own lease already used (``event_lease_lost``), and the lead, sent and recorded, got no
``lead_sent`` line (the CI flake of ``test_store_comeback`` at 87a67d2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from structlog.testing import capture_logs

from hub.clock import SYSTEM_CLOCK, ManualClock
from hub.dispatch.retry import Rewrites
from hub.store import open_store
from hub.store.base import LeaseLost, StoreUnavailable
from hub.store.models import State
from tests.dispatch.support import enqueue, opened_store


async def test_a_write_in_flight_when_the_dispatcher_stops_is_let_finish(
    tmp_path: Path,
) -> None:
    async with opened_store(tmp_path / "hub.db") as store:
        (event_id,) = await enqueue(store, "forms", [{"email": "a@example.com"}])
        (event,) = await store.claim(limit=1, lease=60.0)
        rewrites = Rewrites(SYSTEM_CLOCK)
        rewrites.claimed([event], SYSTEM_CLOCK.monotonic(), 60.0)
        landed, answer = asyncio.Event(), asyncio.Event()
        outcomes: list[str] = []

        async def record() -> None:
            """The delivery's write: the store takes it, and its answer takes a while."""
            try:
                await store.ack(event_id, lead_id="L1", created=True, lease=event.lease)
            except LeaseLost:
                outcomes.append("lease lost")
                raise
            outcomes.append("recorded")
            landed.set()
            await answer.wait()

        with capture_logs() as logs:
            rewrites.add(event, record, "ack")
            await asyncio.wait_for(landed.wait(), 10)
            closing = asyncio.ensure_future(rewrites.close())
            await asyncio.sleep(0.05)
            answer.set()
            await asyncio.wait_for(closing, 10)
        assert outcomes == ["recorded"], outcomes
        assert [e["event"] for e in logs] == ["store_write_resumed"], logs
        found = await store.get(event_id)
        assert found is not None and (found.state, found.lead_id) == (State.DELIVERED, "L1")
        assert len(rewrites) == 0


async def test_a_stop_while_the_store_is_still_out_does_not_wait_out_the_pause(
    tmp_path: Path,
) -> None:
    """Between two tries (a pause of up to 2 s) the stop does not wait: it gives each write
    its last try at once, and what the store still refuses is given up with its reason."""
    async with opened_store(tmp_path / "hub.db") as store:
        (event_id,) = await enqueue(store, "forms", [{"email": "a@example.com"}])
        (event,) = await store.claim(limit=1, lease=60.0)
        rewrites = Rewrites(SYSTEM_CLOCK)
        tries: list[float] = []

        async def refused() -> None:
            tries.append(SYSTEM_CLOCK.monotonic())
            raise StoreUnavailable("the store is out")

        with capture_logs() as logs:
            rewrites.add(event, refused, "ack")
            while not tries:
                await asyncio.sleep(0.01)
            await rewrites.close()
        assert len(tries) == 2, tries  # the background try, and the stop's last one
        given_up = [e for e in logs if e["event"] == "store_write_given_up"]
        assert [e["event_id"] for e in given_up] == [event_id], logs


async def test_a_claim_s_leases_are_noted_only_when_their_tokens_do_not_tell_their_end(
    tmp_path: Path,
) -> None:
    """Real claims of a real store: tokens the claim's own reckoning agrees with (the store's
    clock reads as the dispatcher's) are not kept, so a worker that claims a large backlog
    holds no entry per lease; once the tokens are an hour ahead of the dispatcher's wall
    clock (a step the store applied), each lease is noted, and its end is the claim's, not
    the token's. (Both clocks are set by hand: the store's tokens are read off its own.)"""
    store_clock, clock = ManualClock(), ManualClock()
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", clock=store_clock)
    await store.open()
    try:
        await enqueue(store, "forms", [{"email": f"a{n}@example.com"} for n in range(300)])
        claimed = await store.claim(limit=200, lease=60.0)
        rewrites = Rewrites(clock)
        rewrites.claimed(claimed, clock.monotonic(), 60.0)
        assert len(rewrites._ends) == 0
        assert rewrites._lease_end(claimed[0]) == clock.monotonic() + 60.0
        rest = await store.claim(limit=100, lease=60.0)
        clock.step(-3600.0)  # (the store's tokens now an hour ahead of this wall clock)
        rewrites.claimed(rest, clock.monotonic(), 60.0)
        assert len(rewrites._ends) == len(rest) == 100
        assert rewrites._lease_end(rest[0]) == clock.monotonic() + 60.0
    finally:
        await store.close()
