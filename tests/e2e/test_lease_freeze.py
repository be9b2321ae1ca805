"""A worker whose event's lease ran out while it waited on the database sends nothing.

A hub that freezes (SIGSTOP, a paused VM) or whose database answers late can find, when it
resumes, that the lease of an event it holds ended meanwhile: another worker may have claimed
the event and sent it. Seen with two real hubs on one PostgreSQL store, the first SIGSTOPped
for 25 s mid-drain with a 10 s lease: once woken it sent a lead the second had sent already
(two Lead Capture activities for one lead). These tests make the same waits without a signal,
deterministically, by holding a table lock in PostgreSQL: one while the worker waits for its
rate-limit slot (``rate_slots``), one while its claim is answered (``events``). Real
processes: a ``serve --role worker`` and a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from hub.store import EventStore, open_store
from hub.store.models import EventIn, IncomingDelivery, State
from hub.store.postgres import Q
from tests.dispatch.support import KEYS, target_yaml
from tests.e2e.test_crash import CONFIG
from tests.e2e.test_reload import Log
from tests.support.server import free_port, leadhub_process, serve_args

pytestmark = pytest.mark.slow

LEASE = 8.0  # the shortest a 1 s timeout allows: a call of 2 s, 5 s to spare, 1 s to start
CLAIM_TURN = Q["lock_claims"]  # the turn every claim takes (hub/store/sql/postgres.sql)
HEADERS = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}


def _leads(sandbox: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = httpx.get(
        f"{sandbox}/_sandbox/leads", headers=HEADERS, timeout=10
    ).json()
    return found


async def _queue_one(store: EventStore, email: str) -> None:
    document = {"email": email, "name": "Frozen"}
    await store.enqueue(
        IncomingDelivery(
            endpoint="forms",
            received_at=time.time(),
            body=orjson.dumps(document),
            content_type="application/json",
            headers={},
            events=(EventIn(delivery_id=email, document=document),),
        )
    )


@contextlib.asynccontextmanager
async def _opened(db: str) -> AsyncIterator[EventStore]:
    store = open_store(db)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _hub_and_sandbox(tmp_path: Path, db: str) -> tuple[list[str], str, list[str], str]:
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    # rate-limited: the window is kept in the store, so each call waits on rate_slots
    target = target_yaml("default", sandbox, rate_limit="100/1s", timeout="1s")
    files = {"forms.yaml": CONFIG, "targets.yaml": target}
    args, base, _ = serve_args(tmp_path, files, "--role", "worker", "--lease", "8s", db=db)
    sandbox_args = ["sandbox", "--port", str(sandbox_port), "--rate-limit", "off"]
    sandbox_args += ["--access-key", KEYS["LSQ_ACCESS"], "--secret-key", KEYS["LSQ_SECRET"]]
    return args, base, sandbox_args, sandbox


async def test_a_slot_granted_after_the_lease_ended_sends_nothing(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """The worker claims an event, then waits for its rate-limit slot past the lease's end
    (``rate_slots`` locked); meanwhile another worker (this test, taking the claims' turn as
    a hub does) claims the event. When the slot comes, the first worker puts the event back
    (it is no longer its own: ``event_lease_lost``) instead of sending it: before, it sent
    it, after the lease had ended and while the other held it."""
    dsn, schema = postgres_schema
    db = f"{dsn}?schema={schema}"
    args, base, sandbox_args, sandbox = _hub_and_sandbox(tmp_path, db)
    env = {**KEYS, "FORMS_TOKEN": "unused"}
    settings = {"search_path": f'"{schema}"'}
    with (
        leadhub_process(sandbox_args, ready_url=f"{sandbox}/"),
        leadhub_process(args, ready_url=f"{base}/healthz", env=env) as hub,
    ):
        log = Log(hub)
        slots = await asyncpg.connect(dsn, server_settings=settings)
        other = await asyncpg.connect(dsn, server_settings=settings)
        try:
            async with _opened(db) as store:  # (opened first: its open checks rate_slots)
                held = slots.transaction()
                await held.start()
                await slots.execute("LOCK TABLE rate_slots IN EXCLUSIVE MODE")
                await _queue_one(store, "slot@example.com")
            lease_end = await _claimed(other)  # by the hub, which now waits for a slot
            async with other.transaction():
                await other.execute(CLAIM_TURN)  # the hub claims nothing meanwhile
                await _until_server_time(other, lease_end + 0.3)
                # the other worker's claim, as `claim` makes it (lease of 60 s)
                await other.execute(
                    "UPDATE events SET state = 'sending', attempts = attempts + 1,"
                    " next_attempt_at = extract(epoch from clock_timestamp()) + 60"
                )
            await held.commit()  # the hub's slot comes now
            # the hub is done with it: it finds the event no longer its own (its release,
            # or before, a delivery written once it had sent the lead, is refused)
            await _logged(log, "event_lease_lost")
            assert _leads(sandbox) == [], "sent after its lease had ended"
            # the other worker lets it go: the hub claims it again and sends it, once
            await other.execute("UPDATE events SET state = 'queued', next_attempt_at = 0")
        finally:
            await slots.close()
            await other.close()
        await _sent_once(hub, dsn, settings, sandbox, "slot@example.com")


async def _sent_once(
    hub: subprocess.Popen[str], dsn: str, settings: dict[str, str], sandbox: str, email: str
) -> None:
    """Once the one event is delivered, stop the hub; its lead (``email``) reached the
    sandbox by one call."""
    await _delivered(dsn, settings)
    hub.send_signal(2)
    hub.wait(timeout=15)
    log = hub.stdout.read() if hub.stdout else ""  # (what a Log has not read of it)
    (lead,) = _leads(sandbox)
    assert lead["EmailAddress"] == email
    assert len(_activities(sandbox, lead)) == 1, log  # sent once


async def _logged(log: Log, name: str) -> None:
    """Wait until the hub has logged ``name``."""
    deadline = time.monotonic() + 60
    while not log.events(name):
        assert time.monotonic() < deadline, f"the hub never logged {name}"
        await asyncio.sleep(0.1)


async def _delivered(dsn: str, settings: dict[str, str]) -> None:
    """Wait until the one event is delivered."""
    conn = await asyncpg.connect(dsn, server_settings=settings)
    try:
        deadline = time.monotonic() + 30
        while await conn.fetchval("SELECT state FROM events") != State.DELIVERED.value:
            assert time.monotonic() < deadline, "the event was never delivered"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _claimed(conn: asyncpg.Connection) -> float:
    """The lease end (server time) of the one event once it is claimed."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = await conn.fetchrow("SELECT state, next_attempt_at FROM events")
        if row is not None and row["state"] == "sending":
            return float(row["next_attempt_at"])
        await asyncio.sleep(0.05)
    raise AssertionError("the hub never claimed the event")


async def _claim_waiting(conn: asyncpg.Connection) -> float:
    """The server time at which the hub's claim began the statement now waiting for
    ``conn``'s lock of ``events`` (the claim read its time just before it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # (pg_stat_activity is read once per transaction, and ``conn`` is in one: read anew)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        started = await conn.fetchval(
            "SELECT max(extract(epoch from a.query_start))::float8"
            " FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE NOT l.granted AND l.relation = 'events'::regclass"
        )
        if started is not None:
            return float(started)
        await asyncio.sleep(0.05)
    raise AssertionError("the hub's claim never waited for the lock")


async def _until_server_time(conn: asyncpg.Connection, at: float) -> None:
    while await conn.fetchval("SELECT extract(epoch from clock_timestamp())::float8") < at:
        await asyncio.sleep(0.05)


def _activities(sandbox: str, lead: dict[str, object]) -> list[object]:
    """The Lead Capture activities of ``lead``: one per call that reached it."""
    url = f"{sandbox}/_sandbox/leads/{lead['ProspectID']}/activities"
    found: list[object] = httpx.get(url, headers=HEADERS, timeout=10).json()
    return found


async def test_a_claim_answered_after_its_lease_ended_is_not_sent(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """The worker's claim is answered only after the lease it took has ended (``events``
    locked while the claim waits, as a hub frozen between its claim and its answer, or a
    database answering late, would be); its next claim, made at once, takes the event
    again, the first lease having ended. The lease counts from before the claim was asked
    for, so the first copy is not sent as if its lease had just begun: the lead is sent
    once. Before, it was sent under both claims (two Lead Capture activities), as it would
    have been by this worker and another that claimed it meanwhile."""
    dsn, schema = postgres_schema
    db = f"{dsn}?schema={schema}"
    args, base, sandbox_args, sandbox = _hub_and_sandbox(tmp_path, db)
    env = {**KEYS, "FORMS_TOKEN": "unused"}
    async with _opened(db) as store:  # the event, not yet claimable (skipped)
        await _queue_one(store, "claim@example.com")
    settings = {"search_path": f'"{schema}"'}
    await_sql = await asyncpg.connect(dsn, server_settings=settings)
    await await_sql.execute("UPDATE events SET state = 'skipped'")
    await await_sql.close()
    with (
        leadhub_process(sandbox_args, ready_url=f"{sandbox}/"),
        leadhub_process(args, ready_url=f"{base}/healthz", env=env) as hub,
    ):
        lock = await asyncpg.connect(dsn, server_settings=settings)
        try:
            async with lock.transaction():
                await lock.execute("LOCK TABLE events IN EXCLUSIVE MODE")
                await lock.execute("UPDATE events SET state = 'queued', next_attempt_at = 0")
                # the hub's next claim reads the time, then waits for the lock: answered
                # once the lease it took has ended (2 s past it)
                asked = await _claim_waiting(lock)
                await _until_server_time(lock, asked + LEASE + 2)
        finally:
            await lock.close()
        await _sent_once(hub, dsn, settings, sandbox, "claim@example.com")
