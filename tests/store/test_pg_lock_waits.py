"""What the hub says of a lock that holds up its PostgreSQL writes, beyond the timeout case
(``test_pg_ping_lock``): at serve's start, a lock wait of its own line (``store_lock_waiting``:
holders, relation), told as an expected wait when the holder is another instance's start;
a ``lock_timeout`` on the database, which ends each wait at once, named in ``/readyz``'s
cause; the ``leadhub_store_commits_waiting`` gauge; and concurrent probes sharing one ping,
so that they hold one pooled connection while the lock lasts. Real servers, the hub's real
app and serve's own start."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from hub.commands import serve
from hub.store import StoreUnavailable, open_store
from hub.store import postgres as pg
from hub.store.postgres import _SCHEMA_LOCK, APPLICATION_NAME
from tests.pg_server import PostgresServer, find_bindir, sql
from tests.store.helpers import delivery
from tests.store.test_pg_ping_lock import hub_client

pytestmark = pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed")

Logs = list[MutableMapping[str, Any]]


async def _waiting(client: httpx.AsyncClient) -> dict[str, float]:
    """``leadhub_store_commits_waiting`` by cause, from a scrape."""
    answer = await client.get("/metrics", timeout=30)
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    return {s.labels["cause"]: s.value for s in families["leadhub_store_commits_waiting"].samples}


async def _hub_waits_for_locks(dsn: str, sessions: int = 1) -> None:
    """Until ``sessions`` sessions of the hub wait for a lock (30 s: a hang guard)."""
    async with asyncio.timeout(30):
        while (await _lock_waiters(dsn)) < sessions:
            await asyncio.sleep(0.05)


async def _lock_waiters(dsn: str) -> int:
    """The hub's sessions waiting for a lock now."""
    [(count,)] = await sql(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND wait_event_type = 'Lock'",
        APPLICATION_NAME,
    )
    return int(count)


async def _line(logs: Logs, event: str) -> MutableMapping[str, Any]:
    """The first ``event`` line (30 s: a hang guard)."""
    async with asyncio.timeout(30):
        while not (found := [e for e in logs if e["event"] == event]):
            await asyncio.sleep(0.05)
    return found[0]


def _idle(session: asyncpg.Connection) -> str:
    """How a lock's holder, a DBA's session idle in its transaction, is named."""
    return f"pid {session.get_server_pid()} (no application_name, idle in transaction)"


async def _old_store(dsn: str) -> None:
    """A store made, then set back to schema version 1: the next start migrates it."""
    store = open_store(dsn)
    await store.open()
    await store.close()
    await sql(dsn, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")


async def test_a_start_waiting_for_another_instances_start_says_it_is_expected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve's start of an older store waits for the schema lock that another instance
    starting holds while it migrates the tables (played by a session of the hub's name
    taking that lock, as an instance's open does). It logs ``store_lock_waiting`` at info,
    ``expected`` true, naming the holder's pid and application and the schema lock, and
    tells nobody to end that transaction; no ``store_commit_waiting`` (the wait was told as
    a commit's, the other instance's start as a session to end). Once that start commits,
    this one migrates and opens."""
    monkeypatch.setattr(serve, "OPEN_LOOK_AFTER", 0.5)
    with PostgresServer() as server:
        await _old_store(server.dsn)
        other = await asyncpg.connect(
            server.dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        store = open_store(server.dsn)
        try:
            await other.execute("BEGIN")
            await other.execute(_SCHEMA_LOCK, None)
            with capture_logs() as logs:
                opening = asyncio.ensure_future(
                    serve.open_waiting(store, wait=0, db_url=server.dsn)
                )
                try:
                    line = await _line(logs, "store_lock_waiting")
                    await other.execute("COMMIT")
                    await asyncio.wait_for(opening, timeout=30)
                finally:
                    opening.cancel()
            assert line["log_level"] == "info"
            assert line["expected"] is True
            held = f"pid {other.get_server_pid()} (leadhub, idle in transaction)"
            assert line["holders"] == held
            assert line["relation"] == "the store's schema lock"
            cause = str(line["cause"])
            assert cause.startswith("its writes wait for another leadhub instance opening"), cause
            assert "an expected wait" in cause and "pg_terminate_backend" not in cause, cause
            assert not [e for e in logs if e["event"] == "store_commit_waiting"]
            assert await store.counts() is not None  # opened
        finally:
            await store.close()
            await other.close()
        version = await sql(server.dsn, "SELECT value FROM meta WHERE key = 'schema_version'")
        assert version == [("2",)]


async def test_a_start_behind_another_instances_migration_held_by_a_dba_names_the_dba(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two real instances start on an older store while a DBA's session holds ``events``
    (idle in its transaction): the first migrates, its ``ALTER TABLE`` waiting for the DBA;
    the second waits for the first's schema lock. The second's ``store_lock_waiting`` is a
    warning naming the DBA's session, the end of the chain, as the one to end (not the
    other instance, which waits itself), and both relations waited for. (Its lines are
    taken until one names the second's own wait: counted once over a second.)"""
    monkeypatch.setattr(serve, "OPEN_LOOK_AFTER", 0.5)
    monkeypatch.setattr(serve, "OPEN_TOLD_EVERY", 0.2)
    monkeypatch.setattr(pg, "WAIT_READ_KEPT", 0.0)  # (each look a reading of its own)
    both = "events, the store's schema lock"
    with PostgresServer() as server:
        await _old_store(server.dsn)
        dba = await asyncpg.connect(server.dsn)
        first, second = open_store(server.dsn), open_store(server.dsn)
        try:
            await dba.execute("BEGIN; LOCK TABLE events IN ACCESS SHARE MODE")
            migrating = asyncio.ensure_future(first.open())
            await _hub_waits_for_locks(server.dsn)
            with capture_logs() as logs:
                opening = asyncio.ensure_future(
                    serve.open_waiting(second, wait=0, db_url=server.dsn)
                )
                try:
                    async with asyncio.timeout(30):  # (a hang guard)
                        while not (
                            lines := [
                                e
                                for e in logs
                                if e["event"] == "store_lock_waiting" and e["relation"] == both
                            ]
                        ):
                            await asyncio.sleep(0.05)
                    await dba.execute("ROLLBACK")
                    await asyncio.wait_for(migrating, timeout=30)
                    await asyncio.wait_for(opening, timeout=30)
                finally:
                    migrating.cancel()
                    opening.cancel()
            line = lines[0]
            assert line["log_level"] == "warning"
            assert line["expected"] is False
            assert line["holders"] == _idle(dba)  # (not the first instance: it waits too)
            cause = str(line["cause"])
            assert cause.startswith("its writes wait for a lock another session holds"), cause
            assert "2 sessions of the hub" in cause and "pg_terminate_backend" in cause, cause
        finally:
            await first.close()
            await second.close()
            await dba.close()


async def test_a_lock_timeout_on_the_database_names_the_lock_at_once(tmp_path: Path) -> None:
    """With ``lock_timeout`` set on the database, a DBA's ``SHARE`` lock on ``events`` makes
    every ping fail at once (55P03), and ``/readyz`` answered 503 with no cause. It now
    names the wait, that lock_timeout cancels it, and (in ``readiness_failed``) the holder,
    the table and the mode, as the timeout case does; a scrape's
    ``leadhub_store_commits_waiting`` says ``lock`` meanwhile. Once the lock goes: the gauge
    0, and 200."""
    with PostgresServer() as server:
        await sql(server.dsn, "ALTER DATABASE postgres SET lock_timeout = '200ms'")
        store = open_store(server.dsn)
        await store.open()
        dba = await asyncpg.connect(server.dsn)
        try:
            async with hub_client(store, tmp_path) as client:
                assert (await client.get("/readyz", timeout=30)).status_code == 200
                assert await _waiting(client) == {"standby": 0, "lock": 0}
                await dba.execute("BEGIN; LOCK TABLE events IN SHARE MODE")
                assert await _waiting(client) == {"standby": 0, "lock": 1}
                with capture_logs() as logs:
                    ready = await client.get("/readyz", timeout=30)
                assert ready.status_code == 503, ready.text
                assert ready.json() == {
                    "status": "unavailable",
                    "reason": "store unavailable",
                    "cause": "its writes wait for a lock another session holds, and "
                    "lock_timeout cancels them",
                }
                (failed,) = [e for e in logs if e["event"] == "readiness_failed"]
                assert failed["error"] == "LockTimedOut"
                detail = str(failed["detail"])
                assert "lock_timeout = 200ms for the hub's sessions" in detail, detail
                assert f"held by {_idle(dba)}: ShareLock on events" in detail, detail
                assert "pg_terminate_backend" in detail and "lock_timeout=0" in detail, detail
                await dba.execute("ROLLBACK")
                assert await _waiting(client) == {"standby": 0, "lock": 0}
                assert (await client.get("/readyz", timeout=30)).status_code == 200
        finally:
            await dba.close()
            await store.close()


async def test_concurrent_probes_under_a_lock_hold_one_connection(tmp_path: Path) -> None:
    """While a lock holds up inserts, 30 concurrent ``/readyz`` probes (and the scrapes
    beside them) share one ping: one session of the hub waits for the lock, not one per
    probe (which took the whole pool of 10). A webhook sent meanwhile is answered once the
    lock goes."""
    with PostgresServer() as server:
        store = open_store(server.dsn)
        await store.open()
        dba = await asyncpg.connect(server.dsn)
        try:
            async with hub_client(store, tmp_path) as client:
                await dba.execute("BEGIN; LOCK TABLE events IN SHARE MODE")
                probes = [
                    asyncio.ensure_future(client.get(path, timeout=30))
                    for path in ["/readyz"] * 30 + ["/metrics"] * 3
                ]
                await _hub_waits_for_locks(server.dsn)
                most = 0
                while not all(probe.done() for probe in probes):  # (about 3 s: their wait)
                    most = max(most, await _lock_waiters(server.dsn))
                    await asyncio.sleep(0.05)
                assert most == 1
                answers = [await probe for probe in probes]
                assert {a.status_code for a in answers[:30]} == {503}
                sent = asyncio.ensure_future(store.enqueue(delivery("meanwhile")))
                await _hub_waits_for_locks(server.dsn, 2)  # (the ping, and the webhook's write)
                await dba.execute("ROLLBACK")
                [stored] = await asyncio.wait_for(sent, timeout=30)
                assert not stored.duplicate
                assert (await client.get("/readyz", timeout=30)).status_code == 200
        finally:
            await dba.close()
            await store.close()


async def test_closing_the_store_ends_a_shared_ping_waiting_for_a_lock() -> None:
    """A ping shared by probes and waiting for a lock is ended by the store's close: its
    waiter is answered unavailable (not a bare cancellation), and the close returns while
    the lock is still held."""
    with PostgresServer() as server:
        store = open_store(server.dsn)
        await store.open()
        dba = await asyncpg.connect(server.dsn)
        try:
            await dba.execute("BEGIN; LOCK TABLE events IN SHARE MODE")
            pinging = asyncio.ensure_future(store.ping())
            await _hub_waits_for_locks(server.dsn)
            await asyncio.wait_for(store.close(), timeout=30)
            with pytest.raises(StoreUnavailable, match="is closing; the ping was ended"):
                await asyncio.wait_for(pinging, timeout=30)
            assert await _lock_waiters(server.dsn) == 0
        finally:
            await dba.close()
            await store.close()
