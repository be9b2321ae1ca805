"""When a delivery is recorded: its call's end, whenever the lane's ack writer gets to it."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from hub.store import open_store
from hub.store.models import State
from hub.units import RateLimit
from tests.dispatch.support import (
    all_in,
    enqueue,
    forms_config,
    opened_store,
    refusing_update,
    running,
    sandbox_server,
    wait_for,
)

#: Each delivery's write takes half a second (the database is slow, or busy).
SLOW_ACKS = refusing_update("slow", "NEW.state = 'delivered'", "PERFORM pg_sleep(0.5)")


@pytest.mark.parametrize("rate_limit", ["off", "25/5s"])
async def test_a_delivery_written_late_keeps_its_call_s_time(
    tmp_path: Path, postgres_schema: tuple[str, str], rate_limit: str
) -> None:
    """One sender, two leads, each delivery's write half a second long. The second call goes
    out as soon as the first ends, also at a rate limit (its sender does not wait for the
    first write), and each delivery is recorded as of its call's end: the two times are a call
    apart, though the second was written half a second after the first."""
    dsn, schema = postgres_schema
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url, rate_limit=rate_limit)
        store = open_store(f"{dsn}?schema={schema}")
        await store.open()
        conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            await conn.execute(SLOW_ACKS)
            docs = [{"email": "first@example.com"}, {"email": "second@example.com"}]
            ids = await enqueue(store, "forms", docs, prefix="t")
            async with running(config, store, concurrency=1):
                await wait_for(all_in(State.DELIVERED, store, ids), what="both delivered")
            events = [await store.get(eid) for eid in ids]
        finally:
            await conn.close()
            await store.close()
    times = sorted(e.updated_at for e in events if e is not None)
    assert len(times) == 2
    assert times[1] - times[0] < 0.25, times


async def test_deliveries_at_the_limit_are_recorded_no_more_than_it_allows_in_any_window(
    tmp_path: Path,
) -> None:
    """A backlog drained at 6 calls a second, 16 senders, into a sandbox that allows as
    many: none refused, and the deliveries' recorded times, written behind the next calls,
    never put more than 6 into any second."""
    limit = RateLimit(6, 1.0)
    with sandbox_server(rate_limit=limit) as (url, _):
        config = forms_config(tmp_path, url, rate_limit="6/1s")
        async with opened_store(tmp_path / "hub.db") as store:
            docs = [{"email": f"w{n}@example.com"} for n in range(14)]
            ids = await enqueue(store, "forms", docs, prefix="w")
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="all delivered")
            events = [await store.get(eid) for eid in ids]
    assert all(e is not None and e.attempts == 1 for e in events)  # no 429, nothing retried
    times = sorted(e.updated_at for e in events if e is not None)
    assert all(
        later - first >= limit.window for first, later in zip(times, times[6:], strict=False)
    )
