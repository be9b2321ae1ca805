"""A session of the hub frozen in the middle of a statement while it holds a turn (the claims',
an account's calls'): the instance waiting for that turn ends it once it has been frozen
:data:`~hub.store.postgres.FROZEN_AFTER` seconds, and goes on.

asyncpg prepares a statement (Parse, Describe, Flush) before it sends its Bind, Execute and
Sync. A client that froze in between (a stopped process, a paused VM) left its session
``active``, waiting for its client (wait event ClientRead): the server's
``idle_in_transaction_session_timeout`` never applied, and every other instance waited for
that turn as long as the frozen one's connection lasted (a SIGSTOPped hub's: for ever; a
run of the suite caught it as a two-instance test whose second instance never claimed).
Here the frozen holder is a real connection of the hub's name left just so (a statement
prepared in its transaction, nothing sent after); the waiter is the real store on a real
server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest
from structlog.testing import capture_logs

from hub.store import StoreUnavailable
from hub.store import postgres as pg
from hub.store.postgres import APPLICATION_NAME, PostgresStore, Q
from tests.pg_server import sql
from tests.store.helpers import delivery, waiting_for_locks
from tests.store.test_pg_deadlocks import INSERT_EVENT  # (an instance's insert, uncommitted)
from tests.store.test_pgbouncer import opened

#: Seconds a holder may be frozen before the waiter ends it, in these tests.
FROZEN = 1.0


def store_on(postgres_schema: tuple[str, str]) -> AbstractAsyncContextManager[PostgresStore]:
    """The store on ``(dsn, schema)``, opened, and closed on the way out."""
    dsn, schema = postgres_schema
    return opened(f"{dsn}?schema={schema}")


@contextlib.asynccontextmanager
async def holder(
    postgres_schema: tuple[str, str], turn: str, *, application: str = APPLICATION_NAME
) -> AsyncIterator[asyncpg.Connection]:
    """A session (named ``application``) in a transaction holding ``turn``: ``claims``,
    ``account`` (the rate-limit lock of account ``acct``) or ``none``."""
    dsn, schema = postgres_schema
    conn = await asyncpg.connect(
        dsn, server_settings={"search_path": f'"{schema}"', "application_name": application}
    )
    try:
        await conn.execute("BEGIN")
        if turn == "claims":
            await conn.fetchval(Q["lock_claims"])
        elif turn == "account":
            await conn.execute(Q["lock_account"], "acct")
        yield conn
    finally:
        conn.terminate()


async def freeze(conn: asyncpg.Connection) -> None:
    """Leave ``conn`` as a client frozen mid-statement leaves it: a statement parsed and
    described, its Bind, Execute and Sync never sent."""
    await conn.prepare("SELECT id FROM events WHERE state = 'queued'")


async def take(store: PostgresStore, turn: str) -> object:
    """What the store does in ``turn`` once it is its own."""
    if turn == "claims":
        return [e.id for e in await store.claim(limit=10, lease=30)]
    return (await store.take_slots("acct", calls=25, window=5.0, hold=5.0)).slots


async def state_of(dsn: str, pid: int) -> str | None:
    """The state of backend ``pid``; None once it has ended."""
    found = await sql(dsn, "SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    return str(found[0][0]) if found else None


@pytest.fixture
def waiter(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(dsn, schema)`` of the waiting store: a fresh schema, reached directly or through a
    PgBouncer in transaction mode."""
    via = "pgbouncer_schema" if request.param == "pgbouncer" else "postgres_schema"
    found: tuple[str, str] = request.getfixturevalue(via)
    return found


@pytest.mark.parametrize(
    ("turn", "waiter"),
    [("claims", "direct"), ("account", "direct"), ("claims", "pgbouncer")],
    indirect=["waiter"],
)
async def test_a_session_frozen_mid_statement_in_a_turn_is_ended_and_the_waiter_goes_on(
    waiter: tuple[str, str], postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, turn: str
) -> None:
    """The waiter's turn comes once the frozen holder has been frozen FROZEN_AFTER seconds: the
    holder is ended (its transaction rolled back), ``store_frozen_session_ended`` names its pid
    and how long it was frozen, and the claim (or the take of slots) completes. Also with the
    waiter behind PgBouncer (transaction mode: its look goes through the pooler too)."""
    monkeypatch.setattr(pg, "FROZEN_AFTER", FROZEN)
    direct = (postgres_dsn, waiter[1])
    async with store_on(waiter) as store, holder(direct, turn) as frozen:
        [result] = await store.enqueue(delivery("frozen-1"))
        await freeze(frozen)
        pid = frozen.get_server_pid()
        assert await state_of(postgres_dsn, pid) == "active"
        with capture_logs() as logs:
            taken = await asyncio.wait_for(take(store, turn), timeout=30)  # (a hang guard)
        if turn == "claims":
            assert taken == [result.id]
        else:
            assert isinstance(taken, tuple) and len(taken) == 1, taken
        ended = [e for e in logs if e["event"] == "store_frozen_session_ended"]
        assert [e["pid"] for e in ended] == [pid], logs
        assert ended[0]["log_level"] == "warning"
        assert ended[0]["frozen_for"] >= FROZEN
        assert ended[0]["transaction_for"] >= ended[0]["frozen_for"]
        assert await state_of(postgres_dsn, pid) is None
        with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)):
            await frozen.fetchval("SELECT 1")


@pytest.mark.parametrize("kind", ["running", "idle in transaction", "another application's"])
async def test_a_holder_that_is_not_a_frozen_session_of_the_hub_is_left_alone(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A holder running a slow statement (wait event PgSleep), one idle in its transaction
    (the server's idle_in_transaction_session_timeout is for that), and a session of another
    application frozen mid-statement (a DBA's: the hub ends only its own): each holds the
    claims' turn 2.5 s, 2.5 times FROZEN_AFTER, and is not ended; the claim comes once the
    holder commits. The wait is told (``store_turn_waiting``, once within a minute), naming
    the holder as this role sees it: nothing said why the dispatcher sent nothing."""
    monkeypatch.setattr(pg, "FROZEN_AFTER", FROZEN)
    application = "psql" if kind == "another application's" else APPLICATION_NAME
    async with (
        store_on(postgres_schema) as store,
        holder(postgres_schema, "claims", application=application) as other,
    ):
        [result] = await store.enqueue(delivery("left-1"))
        pid = other.get_server_pid()
        # (running: busy with a slow statement, not waiting for its client)
        sleeping = (
            asyncio.ensure_future(other.fetchval("SELECT pg_sleep(2.5)"))
            if kind == "running"
            else None
        )
        if kind == "another application's":
            await freeze(other)
        with capture_logs() as logs:
            claiming = asyncio.ensure_future(take(store, "claims"))
            await asyncio.sleep(2.5)
            assert not claiming.done()
            assert await state_of(postgres_schema[0], pid) is not None
            if sleeping is not None:
                await sleeping
            elif kind == "another application's":
                # (a frozen client goes on: Bind, Execute and Sync, then the commit)
                await other.fetchval("SELECT 1")
            await other.execute("COMMIT")
            assert await asyncio.wait_for(claiming, timeout=30) == [result.id]
        assert not [e for e in logs if e["event"].startswith("store_frozen")], logs
        # ... but the wait is told, once, naming the holder as this role sees it
        (told,) = [e for e in logs if e["event"] == "store_turn_waiting"]
        assert told["log_level"] == "warning"
        assert told["waited"] >= FROZEN
        holder_seen = {
            "running": f"pid {pid} (leadhub, active, PgSleep, ",
            "idle in transaction": f"pid {pid} (leadhub, idle in transaction, ClientRead, ",
            "another application's": f"pid {pid} (psql, active, ClientRead, ",
        }[kind]
        assert str(told["holders"]).startswith(holder_seen), told


async def test_a_write_held_up_by_a_session_frozen_mid_statement_goes_on_once_its_wait_is_read(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance froze while it inserted a delivery (its sender, unanswered, retries through
    another instance): the retry's insert waits on the frozen one's uncommitted row, which the
    server never ends, so the retry was answered 503 after every ``stall_after``, for ever.
    The reading of what the writes wait for (``commit_wait``: the watchdog's, ``/readyz``'s)
    ends a session of the hub frozen over FROZEN_AFTER that holds them up, and the write
    stores the delivery."""
    monkeypatch.setattr(pg, "FROZEN_AFTER", FROZEN)
    monkeypatch.setattr(pg, "WAIT_READ_KEPT", 0.0)  # (each reading its own)
    dsn, schema = postgres_schema
    async with store_on(postgres_schema) as store, holder(postgres_schema, "none") as frozen:
        await frozen.execute(INSERT_EVENT, "retried")
        await freeze(frozen)
        with capture_logs() as logs:
            writing = asyncio.ensure_future(store.enqueue(delivery("retried")))
            try:
                await waiting_for_locks(dsn, schema, 1)
                await asyncio.sleep(FROZEN)
                wait = await store.commit_wait()
                assert wait is not None and wait.cause == "lock", wait
                (result,) = await asyncio.wait_for(writing, timeout=10)
            finally:
                writing.cancel()
        assert not result.duplicate  # (the frozen insert was rolled back)
        ended = [e for e in logs if e["event"] == "store_frozen_session_ended"]
        assert [e["pid"] for e in ended] == [frozen.get_server_pid()], logs
        assert [e.delivery_id for e in await store.list(limit=10)] == ["retried"]


async def test_a_frozen_holder_of_a_turn_is_ended_though_a_lock_timeout_cuts_each_wait(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a ``lock_timeout`` shorter than FROZEN_AFTER (the URL's here; the role's or the
    database's alike), every wait for the frozen holder's turn is cut short (the claim
    refused, tried again by the dispatcher a second later) before it has waited long enough
    to look: the refusal looks instead, and once the holder has been frozen FROZEN_AFTER
    it is ended and a claim goes through. (The claims were refused for as long as the holder
    stayed frozen.)"""
    monkeypatch.setattr(pg, "FROZEN_AFTER", FROZEN)
    dsn, schema = postgres_schema
    async with (
        opened(f"{dsn}?schema={schema}&lock_timeout=200ms") as store,
        holder(postgres_schema, "claims") as frozen,
    ):
        [result] = await store.enqueue(delivery("cut-1"))
        await freeze(frozen)
        refused = 0
        with capture_logs() as logs:
            async with asyncio.timeout(30):  # (a hang guard)
                while True:
                    try:
                        claimed = await store.claim(limit=10, lease=30)
                        break
                    except StoreUnavailable:
                        refused += 1
                        await asyncio.sleep(0.2)
        assert [e.id for e in claimed] == [result.id]
        assert refused >= 1  # (each wait was cut: the look came from a refusal)
        ended = [e for e in logs if e["event"] == "store_frozen_session_ended"]
        assert [e["pid"] for e in ended] == [frozen.get_server_pid()], logs
