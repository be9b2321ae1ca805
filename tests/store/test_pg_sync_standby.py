"""A PostgreSQL primary whose commits wait for a synchronous standby that is not there
(``synchronous_standby_names`` naming one that is gone, stopped or never made): every commit
of the store's waits for as long as that lasts (its sessions commit with
``synchronous_commit = on`` at least, whatever the server's), and the server says nothing.
serve's start waited there without a line, then was told the server could not be reached;
webhooks got 503 with a guessed cause. Now the wait is named (wait event ``SyncRep``) with
what to do: at serve's start, in the watchdog's answers and ``store_stalled``, and when a
statement's time runs out. Real servers, a real ``leadhub serve``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from hub.store import StoreUnavailable, open_store
from hub.store import postgres as pg
from hub.store.base import EventStore
from hub.web.app import create_app
from tests.pg_server import PostgresServer, find_bindir, sql
from tests.pgbouncer import PgBouncer, find_pgbouncer
from tests.store.helpers import delivery
from tests.support.server import free_port, leadhub_process, wait_http
from tests.web.conftest import make_config, stored_events
from tests.web.test_serve import ENV, serve_args, signed
from tests.web.test_store_wait import lines, wait_for_line

pytestmark = pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed")


async def _standby_names(dsn: str, names: str) -> None:
    """Set the server's ``synchronous_standby_names`` and have it read it (a reload); with
    a name, return once a commit waits for it (the reload takes a moment to reach every
    process of the server)."""
    await sql(dsn, f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    await sql(dsn, "SELECT pg_reload_conf()")
    if not names:
        return
    conn = await asyncpg.connect(dsn, server_settings={"synchronous_commit": "on"})
    try:
        async with asyncio.timeout(30):
            while True:
                try:  # (a transaction id: its commit waits; cancelled, it commits here)
                    await conn.fetchval("SELECT txid_current()", timeout=2)
                except TimeoutError:
                    return
    finally:
        conn.terminate()


def _names_the_wait(text: str) -> None:
    """``text`` names the wait, the setting's value and what to do."""
    assert "SyncRep" in text and "synchronous_standby_names = 'nosuch'" in text, text
    assert "bring that standby back" in text, text


@contextlib.asynccontextmanager
async def _waiting_store(
    query: str = "", *, bouncer: bool = False
) -> AsyncIterator[tuple[PostgresServer, EventStore]]:
    """A server of the test's own, a store opened on it (URL options ``query``; through a
    transaction-mode PgBouncer if ``bouncer``) with one delivery stored, then the server's
    commits made to wait for a standby that is not there."""
    with contextlib.ExitStack() as started:
        server = started.enter_context(PostgresServer())
        dsn = server.dsn
        if bouncer:
            dsn = started.enter_context(PgBouncer(server.dsn)).dsn()
        store = open_store(f"{dsn}{query}")
        await store.open()
        try:
            await store.enqueue(delivery("before"))
            await _standby_names(server.dsn, "nosuch")
            yield server, store
        finally:
            await _standby_names(server.dsn, "")  # (the close's writes end)
            await store.close()


@pytest.mark.skipif(find_pgbouncer() is None, reason="PgBouncer is not installed")
async def test_the_wait_is_named_behind_a_pooler_given_an_idle_timeout_in_the_url() -> None:
    """Behind PgBouncer, with the URL's ``idle_in_transaction_session_timeout`` (which the
    pool sets in each transaction: PgBouncer refuses it as a startup setting), the look at
    what commits wait for connects as the pool does, and the 503 names the wait (the look
    connected with the setting, was refused, and the 503 said nothing of it)."""
    query = "?stall_after=1s&idle_in_transaction_session_timeout=60s"
    async with _waiting_store(query, bouncer=True) as (_, store):
        with pytest.raises(StoreUnavailable) as answered:
            await asyncio.wait_for(store.enqueue(delivery("waits")), timeout=30)
        _names_the_wait(str(answered.value))


def _stalled(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "store_stalled"]


async def test_a_delivery_whose_commit_waits_for_a_missing_standby_is_answered_naming_it() -> None:
    """The watchdog's 503 (after ``?stall_after=``) and its ``store_stalled`` line say that the
    commits wait for a synchronous standby (they guessed a stopped server, a lock, a network);
    once the standby is no longer waited for, the write waiting commits, and the sender's
    retry is a duplicate of it."""
    async with _waiting_store("?stall_after=1s") as (server, store):
        with capture_logs() as logs:
            with pytest.raises(StoreUnavailable) as answered:
                # (30 s: a hang guard; answered after 1 s and one reading of the server)
                await asyncio.wait_for(store.enqueue(delivery("waits")), timeout=30)
            async with asyncio.timeout(30):
                while not _stalled(logs):
                    await asyncio.sleep(0.05)
        assert "has not answered for 1 s" in str(answered.value)
        _names_the_wait(str(answered.value))
        (stalled,) = _stalled(logs)
        _names_the_wait(str(stalled["cause"]))
        assert stalled["waits_for"] == "standby"  # (the cause's kind, for alerts to match)
        await _standby_names(server.dsn, "")
        (again,) = await asyncio.wait_for(store.enqueue(delivery("waits")), timeout=30)
        assert again.duplicate  # the waiting commit went through once the wait ended
        assert {e.delivery_id for e in await store.list(limit=10)} == {"before", "waits"}


async def test_a_statement_whose_time_ran_out_waiting_for_a_missing_standby_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction (a ping here; a claim, an ack) whose commit waited out the driver's
    timeout (60 s; 2 s here) was told "cannot be reached ... check that PostgreSQL is
    running", the server answering every read all along."""
    monkeypatch.setattr(pg, "COMMAND_TIMEOUT", 2.0)
    async with _waiting_store() as (_, store):
        with pytest.raises(StoreUnavailable) as failed:
            await asyncio.wait_for(store.ping(), timeout=30)  # (a hang guard)
    assert "did not answer in time" in str(failed.value)
    _names_the_wait(str(failed.value))


async def test_readyz_names_a_commit_wait_for_a_missing_standby(tmp_path: Path) -> None:
    """``/readyz``'s 503 says that the store's commits wait for a synchronous standby (its
    headline, not the setting's value: the probe is open to anyone), and its
    ``readiness_failed`` line says all of it (they said "store unavailable" and "no answer
    within 3s", the server answering every read); a scrape meanwhile sets
    ``leadhub_store_commits_waiting{cause="standby"}`` to 1."""
    async with _waiting_store() as (_, store):
        app = create_app(config=make_config(tmp_path), store=store)
        transport = httpx.ASGITransport(app=app)
        with capture_logs() as logs:
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                answer = await client.get("/readyz", timeout=30)
                scraped = await client.get("/metrics", timeout=30)
    assert answer.status_code == 503, answer.text
    assert answer.json() == {
        "status": "unavailable",
        "reason": "store unavailable",
        "cause": "its commits wait for a synchronous standby to confirm them",
    }
    (failed,) = [e for e in logs if e["event"] == "readiness_failed"]
    assert failed["error"] == "TimeoutError"
    _names_the_wait(str(failed["detail"]))
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    waiting = families["leadhub_store_commits_waiting"].samples
    assert {s.labels["cause"]: s.value for s in waiting} == {"standby": 1, "lock": 0}


@pytest.mark.slow
def test_serve_waiting_at_start_for_a_missing_standby_says_so_then_starts(tmp_path: Path) -> None:
    """serve's first commit at start (making the store's tables) waits for the standby: a
    ``store_commit_waiting`` warning names the wait a few seconds in (there was no line for
    a minute, then 'cannot be reached'). serve goes on waiting, not listening; once the
    standby is no longer waited for, the commit ends, serve starts and stores a webhook."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with PostgresServer() as server:
        # (ALTER SYSTEM, so that a reload can undo it: a setting of the command line outranks it)
        asyncio.run(_standby_names(server.dsn, "nosuch"))
        args = serve_args(tmp_path, port, role="web", db=server.dsn)
        with leadhub_process(args, env=ENV) as proc:
            seen = wait_for_line(proc, "store_commit_waiting")
            (waiting, *_) = lines(seen, "store_commit_waiting")
            assert waiting["level"] == "warning"
            _names_the_wait(str(waiting["cause"]))
            assert not lines(seen, "hub_ready") and not lines(seen, "store_waiting")
            asyncio.run(_standby_names(server.dsn, ""))
            wait_http(f"{base}/healthz", proc=proc)
            event_id, body, sig = signed(1)
            answer = httpx.post(
                f"{base}/hooks/typeform",
                content=body,
                headers={"content-type": "application/json", "typeform-signature": sig},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        assert [e.delivery_id for e in asyncio.run(stored_events(server.dsn))] == [event_id]
