"""A lock on the store's tables that blocks inserts but not reads (a DBA's ``CREATE INDEX``
without ``CONCURRENTLY``, ``LOCK TABLE ... IN SHARE MODE``, the session that took it left
idle in its transaction): every webhook waited for it and was answered 503, while the ping,
a write of ``meta`` alone, passed: ``/readyz`` 200 and ``leadhub_store_up`` 1 throughout, an
alert on either never fired. The ping now takes the insert's lock first. A real server, the
hub's real app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from hub.store import StoreUnavailable, open_store
from hub.store.base import EventStore
from hub.store.postgres import PostgresStore, Q
from hub.web.app import create_app
from tests.pg_server import PostgresServer, find_bindir, sql
from tests.store.helpers import delivery
from tests.web.conftest import make_config

pytestmark = pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed")


@contextlib.asynccontextmanager
async def hub_client(store: EventStore, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The hub's app on ``store`` (open), asked in process."""
    app = create_app(config=make_config(tmp_path), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        yield client


def _names_the_lock(text: str, holder: asyncpg.Connection) -> None:
    """``text`` says that the hub's writes wait for a lock, which session holds it, and what
    to do (it guessed at a stopped server, a lock or a network)."""
    assert "its writes wait for a lock another session holds" in text, text
    assert (
        f"held by pid {holder.get_server_pid()} (no application_name, idle in transaction)" in text
    ), text
    assert "pg_terminate_backend" in text, text


async def _store_up(client: httpx.AsyncClient, waiting: str | None = None) -> float:
    """``leadhub_store_up`` from a scrape, whose ``leadhub_store_commits_waiting`` is 1 for
    ``waiting`` alone (None: for no cause)."""
    answer = await client.get("/metrics", timeout=30)
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    (up,) = families["leadhub_store_up"].samples
    waits = {s.labels["cause"]: s.value for s in families["leadhub_store_commits_waiting"].samples}
    assert waits == {cause: float(cause == waiting) for cause in ("standby", "lock")}, waits
    return up.value


async def test_a_lock_that_blocks_inserts_makes_readyz_503_and_store_up_0(tmp_path: Path) -> None:
    """While a session holds ``SHARE`` on ``events`` (reads pass, inserts wait), ``/readyz``
    answers 503 and the scrape ``leadhub_store_up`` 0, as a delivery is answered 503 after
    ``?stall_after=``; each names the wait and its holder (the probe's body the headline
    alone; the scrape's ``metrics_ping_failed`` as ``readiness_failed``), read while the
    probe's own ping waits (no delivery waiting yet: a ping cancelled first waited no
    more). Once the lock is let go, 200 and 1 again."""
    with PostgresServer() as server:
        store = open_store(f"{server.dsn}?stall_after=1s")
        await store.open()
        try:
            async with hub_client(store, tmp_path) as client:
                assert (await client.get("/readyz", timeout=30)).status_code == 200
                assert await _store_up(client) == 1
                dba = await asyncpg.connect(server.dsn)
                try:
                    await dba.execute("BEGIN; LOCK TABLE events IN SHARE MODE")
                    assert await store.counts() is not None  # reads pass
                    with capture_logs() as logs:
                        ready = await client.get("/readyz", timeout=30)
                    assert ready.status_code == 503, ready.text
                    assert (
                        ready.json()["cause"] == "its writes wait for a lock another session holds"
                    )
                    (failed,) = [e for e in logs if e["event"] == "readiness_failed"]
                    _names_the_lock(str(failed["detail"]), dba)
                    with capture_logs() as logs:
                        assert await _store_up(client, waiting="lock") == 0
                    (scraped,) = [e for e in logs if e["event"] == "metrics_ping_failed"]
                    _names_the_lock(str(scraped["detail"]), dba)  # (as /readyz's line)
                    with capture_logs() as logs:
                        with pytest.raises(StoreUnavailable) as stalled:  # (30 s: a hang guard)
                            await asyncio.wait_for(store.enqueue(delivery("held")), timeout=30)
                        async with asyncio.timeout(30):  # (its line: told once answered)
                            while not [e for e in logs if e["event"] == "store_stalled"]:
                                await asyncio.sleep(0.05)
                    _names_the_lock(str(stalled.value), dba)
                    (line,) = [e for e in logs if e["event"] == "store_stalled"]
                    assert line["waits_for"] == "lock", line  # (the cause's kind, for alerts)
                    _names_the_lock(str(line["cause"]), dba)
                finally:
                    await dba.close()  # (its transaction ends: the lock is let go)
                assert (await client.get("/readyz", timeout=30)).status_code == 200
                assert await _store_up(client) == 1
        finally:
            await store.close()


async def _waits_for_a_lock(dsn: str) -> None:
    """Until a session of the hub waits for a lock (30 s: a hang guard)."""
    async with asyncio.timeout(30):
        while not await sql(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'leadhub'"
            " AND wait_event_type = 'Lock'",
        ):
            await asyncio.sleep(0.05)


async def test_a_start_that_migrates_does_not_deadlock_with_a_running_instances_ping() -> None:
    """A start that migrates an older store (``ALTER TABLE events``) while another instance
    pings: the ping holds the insert's lock on ``events`` and then writes ``meta``'s
    ``last_ping`` row. The start wrote that row first (its own ping at open) and then waited
    for ``events``: a deadlock, the start refused (``deadlock detected``) or the ping. The
    other instance's ping is played by a session running the ping's own statements, its
    write sent once the start waits for ``events``."""
    with PostgresServer() as server:
        first = open_store(server.dsn)
        await first.open()
        await first.close()
        await sql(server.dsn, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        other = await asyncpg.connect(server.dsn)
        try:
            await other.execute("BEGIN")
            await other.execute(Q["ping_locks"])  # the running instance's ping, under way
            starting = open_store(server.dsn)
            opening = asyncio.ensure_future(starting.open())
            try:
                await _waits_for_a_lock(server.dsn)  # its migration waits for events
                await asyncio.wait_for(other.execute(Q["ping"], "1"), timeout=30)
                await other.execute("COMMIT")
                await asyncio.wait_for(opening, timeout=30)
            finally:
                opening.cancel()
                await starting.close()
        finally:
            await other.close()
        assert await sql(server.dsn, "SELECT value FROM meta WHERE key = 'schema_version'") == [
            ("2",)
        ]


async def test_the_hubs_own_turn_at_a_purge_is_not_named_as_a_lock_on_its_writes() -> None:
    """A purge waiting for its turn (the advisory lock another instance's purge step holds,
    as instances take turns at purging, claiming and an account's calls) blocks no insert:
    the reading of what the store's writes wait for does not name it. Naming it, a probe or
    a stalled delivery timed out for another reason was told to end that session's
    transaction."""
    with PostgresServer() as server:
        store = open_store(server.dsn)
        assert isinstance(store, PostgresStore)
        await store.open()
        other = await asyncpg.connect(server.dsn)
        try:
            await store.enqueue(delivery("kept"))
            await other.execute(
                "SELECT pg_advisory_lock(hashtextextended('leadhub.purge:' || current_schema(), 0))"
            )
            purging = asyncio.ensure_future(store.purge(before=4e9))
            try:
                await _waits_for_a_lock(server.dsn)
                await asyncio.sleep(1.5)  # (waited over a second: what the reading counts)
                assert await store.commit_wait() is None
            finally:
                await other.close()  # (the turn let go: the purge goes on)
                await asyncio.wait_for(purging, timeout=30)
        finally:
            await store.close()
