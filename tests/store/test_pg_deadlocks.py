"""A transaction of the PostgreSQL store that the server aborts to break a deadlock (SQLSTATE
40P01) wrote nothing: it is run again (``store_deadlock_retried``), a bounded number of
times, rather than answered 503 (a write) or logged ``claim_failed`` (a claim).

Each test's other side is a real connection of its own taking locks in the opposite order to
the store's, as an older release's instance during a rolling deploy may (inserting a batch
lead by lead in the leads' order, where this one inserts in the order of the delivery ids).
The store's connections check for a deadlock 5 s into a wait, the other side's a minute
in: the store, waiting first, is the one the server aborts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.store import open_store
from hub.store.models import EnqueueResult, State
from hub.store.postgres import PostgresStore
from tests.store.helpers import delivery, waiting_for_locks

#: The other side's events (as an older release's instance would insert them).
INSERT_EVENT = """
WITH d AS (
    INSERT INTO deliveries (endpoint, received_at, content_type, headers, body)
    VALUES ('typeform', 1, 'application/json', '{}', '') RETURNING id
)
INSERT INTO events (delivery, endpoint, delivery_id, state, attempts, next_attempt_at,
                    updated_at)
SELECT d.id, 'typeform', $1, 'queued', 0, 1, 1 FROM d
RETURNING id
"""


@contextlib.asynccontextmanager
async def store_and_other(
    postgres_schema: tuple[str, str],
) -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection]]:
    """The store (checking for deadlocks 5 s into a wait) and the other side: a connection
    in a transaction (checking a minute in), rolled back and closed on the way out."""
    dsn, schema = postgres_schema
    store = open_store(f"{dsn}?schema={schema}&deadlock_timeout=5s", clock=ManualClock())
    assert isinstance(store, PostgresStore)
    await store.open()
    other = await asyncpg.connect(
        dsn, server_settings={"search_path": f'"{schema}"', "deadlock_timeout": "60s"}
    )
    try:
        await other.execute("BEGIN")
        yield store, other
    finally:
        await other.close()  # (a transaction still open is rolled back)
        await store.close()


async def _deadlocked(
    postgres_schema: tuple[str, str], write: Awaitable[Any], other: asyncpg.Connection, second: str
) -> tuple[Any, list[Any]]:
    """Start ``write`` (which waits at the id ``other`` holds), then have ``other`` insert
    ``second`` (which ``write`` holds), so each waits for the other; ``other`` commits once
    the server has broken the deadlock. ``write``'s outcome (or error) and the log."""
    with capture_logs() as logs:
        task = asyncio.ensure_future(write)
        await waiting_for_locks(*postgres_schema, 1)
        theirs = await other.fetchval(INSERT_EVENT, second)  # on once the store is aborted
        await other.execute("COMMIT")
        outcome = await asyncio.gather(task, return_exceptions=True)
    return (outcome[0], theirs), logs


def _retried(logs: list[Any]) -> list[str]:
    return [e["what"] for e in logs if e["event"] == "store_deadlock_retried"]


@pytest.mark.parametrize("gathered", [False, True], ids=["batch", "gathered"])
async def test_a_write_aborted_by_a_deadlock_is_run_again_and_answers_the_leads_stored(
    postgres_schema: tuple[str, str], gathered: bool
) -> None:
    """A delivery of two leads (``enqueue_batch``), or two one-lead deliveries gathered in one
    statement (``enqueue_many``), inserts "a" then waits at "b", which the other side holds
    uncommitted; the other side then inserts "a". The server aborts the store's write: it
    was a store error (a 503 for every delivery in it). Run again, it waits for the other
    side's commit and answers both leads as the duplicates they are."""
    async with store_and_other(postgres_schema) as (store, other):
        b = await other.fetchval(INSERT_EVENT, "b")
        if gathered:
            write: Awaitable[Any] = asyncio.gather(
                store.enqueue(delivery("a")), store.enqueue(delivery("b"))
            )
        else:
            write = store.enqueue(delivery("a", "b"))
        (outcome, a), logs = await _deadlocked(postgres_schema, write, other, "a")
        assert not isinstance(outcome, BaseException), outcome
        results = [r for part in outcome for r in part] if gathered else outcome
        assert results == [EnqueueResult(a, True, "a"), EnqueueResult(b, True, "b")]
        # Most often once. The other side, woken by the abort, inserts "a" well within the
        # store's pause before running again (before_rerun); on a loaded machine the store may
        # still come first and the two meet once more: each round is run again as the first.
        what = "enqueue_many" if gathered else "enqueue_batch"
        assert _retried(logs)[:1] == [what] and set(_retried(logs)) == {what}, logs
        assert (await store.counts())[State.QUEUED] == 2  # (each lead once)


async def _claim_through_a_deadlock(store: Any, other: Any, dsn: str, schema: str) -> Any:
    """A claim of ``store`` while ``other`` holds what it writes: once the claim waits,
    ``other`` asks for the claims' turn (a deadlock the server breaks by aborting the claim),
    then lets go; the claim's outcome, or its exception."""
    claim = asyncio.ensure_future(store.claim(limit=5, lease=30.0))
    await waiting_for_locks(dsn, schema, 1)
    await other.execute(  # the claims' turn, once the store's claim is aborted
        "SELECT pg_advisory_xact_lock(hashtextextended('leadhub.claims:' || $1, 0))",
        schema,
    )
    await other.execute("ROLLBACK")
    outcomes = await asyncio.gather(claim, return_exceptions=True)
    return outcomes[0]


async def test_a_claim_aborted_by_a_deadlock_is_run_again(
    postgres_schema: tuple[str, str],
) -> None:
    """A claim holds the claims' turn (an advisory lock) and waits to write the clock mark,
    which the other side holds; the other side then waits for the claims' turn. The server
    aborts the claim: it was a store error (``claim_failed``, and a second before the next).
    Run again once the turn is free, it claims the queued event."""
    dsn, schema = postgres_schema
    async with store_and_other(postgres_schema) as (store, other):
        (queued,) = await store.enqueue(delivery("a"))
        await other.execute(
            "INSERT INTO meta (key, value) VALUES ('clock_mark', '0') "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        with capture_logs() as logs:
            claimed = await _claim_through_a_deadlock(store, other, dsn, schema)
        assert not isinstance(claimed, BaseException), claimed
        assert [e.id for e in claimed] == [queued.id]
        assert _retried(logs) == ["claim"]


async def test_a_clock_step_of_a_claim_run_again_is_logged_once(
    postgres_schema: tuple[str, str],
) -> None:
    """A claim that undoes a step back of the clock, then is aborted by a deadlock writing
    the clock mark (as above), undid nothing (rolled back); run again, it undoes the step.
    ``clock_stepped_back`` was logged at each try, twice for a step applied once: an
    operator read two steps of the clock. Logged once, with the try that committed."""
    dsn, schema = postgres_schema
    async with store_and_other(postgres_schema) as (store, other):
        clock = store.clock
        assert isinstance(clock, ManualClock)
        (queued,) = await store.enqueue(delivery("a"))
        assert await store.claim(limit=5, lease=30.0) != []  # (the clock mark: now)
        await store.retry(queued.id, at=clock.time(), error="later")
        clock.set(clock.time() - 3600.0)
        await other.execute("UPDATE meta SET value = value WHERE key = 'clock_mark'")
        with capture_logs() as logs:
            claimed = await _claim_through_a_deadlock(store, other, dsn, schema)
        assert not isinstance(claimed, BaseException), claimed
        assert [e.id for e in claimed] == [queued.id]  # (its due time moved back too)
        assert _retried(logs) == ["claim"]
        stepped = [e for e in logs if e["event"] == "clock_stepped_back"]
        assert [(e["seconds"], e["events"]) for e in stepped] == [(3600.0, 1)]
