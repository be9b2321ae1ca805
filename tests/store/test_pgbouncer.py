"""The PostgreSQL store through a real PgBouncer in transaction mode (tests.pgbouncer), where
each transaction may run on another server session: the store sets its settings in each
transaction and prepares no named statement (hub.store.postgres_pooler). The contract tests
of enqueue, claim, outcomes, replay and the rate window run through it too (conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from hub.store import StoreError, StoreUnavailable, open_store
from hub.store.base import Replayed, replayed_states
from hub.store.models import Ack
from hub.store.postgres import PostgresStore
from tests.pg_server import fresh_schema, sql
from tests.pgbouncer import PgBouncer
from tests.store.helpers import delivery

LEASE = 30.0
SETTINGS = (
    "SELECT current_setting('search_path'), current_setting('jit'), "
    "current_setting('idle_in_transaction_session_timeout'), current_setting('application_name')"
)
#: Seconds to wait for PgBouncer to queue a client (it does within milliseconds).
QUEUED_WITHIN = 30.0


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresStore]:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.contextmanager
def loop_errors() -> Iterator[list[str]]:
    """The messages the running event loop's exception handler is given in the block
    (asyncio logs each as an error: asyncpg's pool reports there a connection it took back
    in a transaction, "Resetting connection with an active transaction")."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    before = loop.get_exception_handler()

    def keep(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(str(context.get("message")))

    loop.set_exception_handler(keep)
    try:
        yield seen
    finally:
        loop.set_exception_handler(before)


async def until_a_client_waits(bouncer: PgBouncer) -> None:
    """Returns once ``bouncer`` holds a client waiting for a server connection (its admin
    console's ``SHOW POOLS``); fails after :data:`QUEUED_WITHIN` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + QUEUED_WITHIN
    while True:
        pools = await asyncio.to_thread(bouncer.show, "SHOW POOLS")
        if any(int(p["cl_waiting"]) for p in pools if p["database"] == bouncer.database):
            return
        assert loop.time() < deadline, f"no client waiting within {QUEUED_WITHIN} s: {pools}"
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def one_session(postgres_dsn: str) -> Iterator[PgBouncer]:
    """A transaction-mode PgBouncer with ONE server connection: every client's transactions
    run on the same server session, so what one leaves there the next one sees."""
    with PgBouncer(postgres_dsn, pool_size=1) as bouncer:
        yield bouncer


async def test_each_transaction_has_the_store_s_settings(
    pgbouncer_schema: tuple[str, str],
) -> None:
    """PgBouncer refuses the store's startup settings ("unsupported startup parameter:
    jit"): the store, told so, sets them in each transaction, ``?schema=``'s search_path
    included, so its tables are that schema's."""
    dsn, schema = pgbouncer_schema
    with capture_logs() as logs:
        async with opened(f"{dsn}?schema={schema}") as store, store._conn() as conn:
            settings = tuple(await conn.fetchrow(SETTINGS) or ())
    assert settings == (f'"{schema}"', "off", "10s", "leadhub")
    (detected,) = [e for e in logs if e["event"] == "store_pooler_detected"]
    assert "unsupported startup parameter" in detected["reason"]
    assert [e["settings"] for e in logs if e["event"] == "store_opened"] == ["per transaction"]
    ((made,),) = await sql(dsn, "SELECT to_regclass($1::text) IS NOT NULL", f'"{schema}".events')
    assert made


async def test_settings_a_pooler_drops_are_found_missing_and_set_per_transaction(
    postgres_dsn: str,
) -> None:
    """A PgBouncer told to accept and drop the store's startup settings
    (``ignore_startup_parameters``) connects, but without them: the store sees they did not
    arrive and sets them per transaction (the tables made in ``?schema=``, not ``public``)."""
    dropped = ("jit", "search_path", "idle_in_transaction_session_timeout")
    with PgBouncer(postgres_dsn, ignore=dropped) as bouncer:
        async with fresh_schema(postgres_dsn) as schema:
            with capture_logs() as logs:
                async with opened(f"{bouncer.dsn()}?schema={schema}") as store:
                    (stored,) = await store.enqueue(delivery("d1"))
                    async with store._conn() as conn:
                        settings = tuple(await conn.fetchrow(SETTINGS) or ())
            rows = await sql(postgres_dsn, "SELECT id FROM events", schema=schema)
    assert settings == (f'"{schema}"', "off", "10s", "leadhub")
    assert rows == [(stored.id,)]
    (detected,) = [e for e in logs if e["event"] == "store_pooler_detected"]
    assert "did not reach the server" in detected["reason"]


async def test_a_direct_connection_keeps_its_settings_per_session(
    postgres_schema: tuple[str, str],
) -> None:
    """Without a pooler the settings stay in the startup packet: no round trip more per
    transaction, and named statements as before."""
    dsn, schema = postgres_schema
    with capture_logs() as logs:
        async with opened(f"{dsn}?schema={schema}") as store:
            assert store._begin == {}
    assert not [e for e in logs if e["event"] == "store_pooler_detected"]
    assert [e["settings"] for e in logs if e["event"] == "store_opened"] == ["per session"]


async def test_nothing_is_left_in_the_server_session(
    postgres_dsn: str, one_session: PgBouncer
) -> None:
    """Through one server session shared by every client, after the store's enqueues,
    claims, outcomes, rate slots and a replay's read of its ids: no prepared statement is
    left there. One left there is another client's to meet: a statement of the same name
    (asyncpg numbers them per process) is refused, or the store's own is missing on its next
    server session. (The read of a replay's ids is checked before the replay's next
    statement: asyncpg closes a named statement it is done with at its next one, which
    through a pooler may run on another server session.)"""
    async with fresh_schema(postgres_dsn) as schema:
        async with opened(f"{one_session.dsn()}?schema={schema}") as store:
            await store.enqueue(delivery("a1", "a2", "a3"))
            first, *rest = await store.claim(limit=3, lease=LEASE)
            await store.ack_many([Ack(e.id, "lead", True, e.lease) for e in rest])
            await store.dead(first.id, error="refused", lease=first.lease)
            await store.take_slots("acct", calls=5, window=5.0, hold=1.0)
            selection = Replayed(replayed_states(None), [first.id], None, None)
            assert list(await store._replay_ids(selection)) == [first.id]
            left = await sql(
                one_session.dsn(),
                "SELECT (SELECT count(*) FROM pg_prepared_statements), "
                "current_setting('search_path'), current_setting('jit')",
            )
            assert await store.replay(ids=[first.id]) == 1
    assert left == [(0, '"$user", public', "on")]


async def test_the_client_next_on_the_server_session_finds_none_of_the_store_s_settings(
    postgres_dsn: str, one_session: PgBouncer
) -> None:
    """The store's settings end with each of its transactions. Another client, waiting for
    the one server session while a transaction of the store runs there, is given it at the
    store's COMMIT, and finds the server's defaults: not the store's schema, its jit off nor
    its 10 s timeout. (Set for the session, with ``SET`` or ``set_config(..., false)``, they
    were there: asyncpg's ``RESET ALL``, as its pool takes the connection back, is a
    transaction of its own, which PgBouncer runs after the client already waiting, or on
    another server session; in transaction mode PgBouncer resets nothing itself, its
    ``server_reset_query`` being for session mode unless ``server_reset_query_always``. A
    client reading after that ``RESET ALL``, as ``test_nothing_is_left_in_the_server_session``
    does, saw nothing amiss.)"""
    async with fresh_schema(postgres_dsn) as schema:
        async with opened(f"{one_session.dsn()}?schema={schema}") as store:
            other = await asyncpg.connect(
                one_session.dsn(),
                statement_cache_size=0,
                server_settings={"application_name": "other"},
            )
            try:
                async with store._conn() as conn:  # on the one server session
                    inside = tuple(await conn.fetchrow(SETTINGS) or ())
                    read = asyncio.create_task(other.fetchrow(SETTINGS))
                    await until_a_client_waits(one_session)
                found = tuple(await read or ())
            finally:
                await other.close()
    assert found == ('"$user", public', "on", "0", "other")
    assert inside == (f'"{schema}"', "off", "10s", "leadhub")  # (what was not left)


def _transactions(bouncer: PgBouncer) -> tuple[int, int]:
    """(transactions, queries) PgBouncer has run for its database so far (``SHOW STATS``)."""
    (row,) = [r for r in bouncer.show("SHOW STATS") if r["database"] == bouncer.database]
    return int(row["total_xact_count"]), int(row["total_query_count"])


async def test_a_store_transaction_is_one_transaction_through_the_pooler(
    postgres_dsn: str, one_session: PgBouncer
) -> None:
    """Each enqueue is one transaction through PgBouncer, and the hub's clients keep their
    name there. asyncpg's reset as its pool takes a connection back (``RESET ALL`` and more)
    was one more transaction, and round trip, for each of the store's: 20 enqueues were 40
    through PgBouncer. Behind a pooler nothing of the store's outlives its transaction, so
    nothing is reset; its ``RESET ALL`` also cleared the ``application_name`` PgBouncer
    shows the hub's clients by."""
    async with fresh_schema(postgres_dsn) as schema:
        async with opened(f"{one_session.dsn()}?schema={schema}") as store:
            await store.enqueue(delivery("warm"))
            before = await asyncio.to_thread(_transactions, one_session)
            for n in range(20):
                await store.enqueue(delivery(f"e{n}"))
            after = await asyncio.to_thread(_transactions, one_session)
            clients = await asyncio.to_thread(one_session.show, "SHOW CLIENTS")
    assert after[0] - before[0] == 20
    names = {c["application_name"] for c in clients if c["database"] == one_session.database}
    assert "leadhub" in names


async def test_the_hub_s_connections_keep_its_name_between_transactions(
    postgres_dsn: str, one_session: PgBouncer
) -> None:
    """Between the store's transactions its clients are ``leadhub`` in PgBouncer's
    ``SHOW CLIENTS``, and so is the server session idle in PgBouncer's pool in
    ``pg_stat_activity``: the name is also a startup setting (PgBouncer tracks it, and sets
    it on the server session it gives the client). Set in each transaction only, the name
    ended at each ``COMMIT``: PgBouncer showed the hub's clients by no name, or by the last
    name set on the server session (another client's), and the server session was not the
    hub's in ``pg_stat_activity``."""
    async with fresh_schema(postgres_dsn) as schema:
        async with opened(f"{one_session.dsn()}?schema={schema}") as store:
            for n in range(3):
                await store.enqueue(delivery(f"n{n}"))
            clients = await asyncio.to_thread(one_session.show, "SHOW CLIENTS")
            servers = await asyncio.to_thread(one_session.show, "SHOW SERVERS")
            (pid,) = [
                int(s["remote_pid"]) for s in servers if s["database"] == one_session.database
            ]
            idle = await sql(
                postgres_dsn,
                "SELECT application_name, state FROM pg_stat_activity WHERE pid = $1",
                pid,
            )
    assert {c["application_name"] for c in clients if c["database"] == one_session.database} == {
        "leadhub"
    }
    assert idle == [("leadhub", "idle")]


@pytest.fixture(params=["pgbouncer", "direct"])
def pooled_or_not(request: pytest.FixtureRequest) -> tuple[str, str, bool]:
    """``(dsn, schema, pooled)``: a fresh schema through the transaction-mode PgBouncer
    (``pgbouncer_schema``), then on a direct connection (``postgres_schema``)."""
    pooled = request.param == "pgbouncer"
    dsn, schema = request.getfixturevalue("pgbouncer_schema" if pooled else "postgres_schema")
    return dsn, schema, pooled


async def test_a_transaction_has_the_isolation_and_access_asked(
    pooled_or_not: tuple[str, str, bool],
) -> None:
    """Behind PgBouncer as on a direct connection, a repeatable-read transaction (the
    store's reads of several statements, as ``blockers`` and ``list``) keeps one snapshot
    while an enqueue commits, a read-committed one sees it, and a read-only one refuses a
    write (the ``BEGIN`` of :func:`hub.store.postgres_pooler.begin` says both)."""
    dsn, schema, pooled = pooled_or_not
    seen = {}
    async with opened(f"{dsn}?schema={schema}") as store:
        assert bool(store._begin) == pooled
        for isolation in ("repeatable_read", "read_committed"):
            async with store._conn(isolation=isolation, readonly=True) as conn:
                before = await conn.fetchval("SELECT count(*) FROM events")
                await store.enqueue(delivery(f"{isolation}-1"))  # (another connection)
                seen[isolation] = (before, await conn.fetchval("SELECT count(*) FROM events"))
                with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                    await conn.execute("DELETE FROM events")
        async with store._conn() as conn:  # (read-write, by default)
            assert await conn.execute("DELETE FROM events") == "DELETE 2"
    assert seen == {"repeatable_read": (0, 0), "read_committed": (1, 2)}


async def test_a_transaction_that_fails_is_ended_by_the_store(
    pgbouncer_schema: tuple[str, str],
) -> None:
    """A store call that fails behind PgBouncer rolls its transaction back itself: an
    outcome for an event not in the store, and the first transaction of an open whose URL
    gives a value the server refuses (``?idle_in_transaction_session_timeout=soon``, set in
    the ``BEGIN``'s round trip). Left to asyncpg's pool, which rolls back a connection it
    takes back in a transaction, each was an asyncio error line ("Resetting connection with
    an active transaction"): the refused value's always, as its ``BEGIN`` ran."""
    dsn, schema = pgbouncer_schema
    with loop_errors() as seen:
        async with opened(f"{dsn}?schema={schema}") as store:
            with pytest.raises(StoreError, match="No event with id 404"):
                await store.ack(404, lead_id="lead", created=True)
            assert not any((await store.counts()).values())  # (the store goes on)
        refused = open_store(f"{dsn}?schema={schema}&idle_in_transaction_session_timeout=soon")
        with pytest.raises(StoreError, match='"idle_in_transaction_session_timeout": "soon"'):
            await refused.open()
    assert seen == []


async def test_a_value_in_the_url_is_one_value_whatever_its_quotes(
    pooled_or_not: tuple[str, str, bool],
) -> None:
    """A URL's ``idle_in_transaction_session_timeout`` with quotes in it is refused by the
    server as the value it is, behind PgBouncer (set in each transaction's ``BEGIN``) as on
    a direct connection (a startup setting). Put in the ``BEGIN`` unescaped, this one closed
    its string and set jit on: the store opened."""
    dsn, schema, _ = pooled_or_not
    value = "0', true), set_config('jit', 'on"
    given = urllib.parse.quote(value)
    store = open_store(f"{dsn}?schema={schema}&idle_in_transaction_session_timeout={given}")
    with pytest.raises(StoreError, match="invalid value for parameter") as caught:
        await store.open()
    assert f'"{value}"' in str(caught.value)
    assert not isinstance(caught.value, StoreUnavailable)


async def test_instances_through_pgbouncer_claim_side_by_side(
    pgbouncer_schema: tuple[str, str],
) -> None:
    """Four instances (three connections each) enqueue, claim and ack at once through
    PgBouncer: their transactions take turns on its server sessions. Every event is
    claimed once and delivered. (With named prepared statements, statements prepared on one
    server session were missing on the next: "prepared statement ... does not exist".)"""
    dsn, schema = pgbouncer_schema
    url = f"{dsn}?schema={schema}&pool=3"
    async with contextlib.AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(opened(url)) for _ in range(4)]

        async def enqueue(store: PostgresStore, n: int) -> list[int]:
            ids = []
            for k in range(10):
                (result,) = await store.enqueue(delivery(f"s{n}-{k}"))
                ids.append(result.id)
            return ids

        async def drain(store: PostgresStore) -> list[int]:
            taken: list[int] = []
            while claimed := await store.claim(limit=4, lease=LEASE):
                await store.ack_many([Ack(e.id, f"lead-{e.id}", True, e.lease) for e in claimed])
                taken += [e.id for e in claimed]
            return taken

        stored = await asyncio.gather(*(enqueue(s, n) for n, s in enumerate(stores * 3)))
        taken = await asyncio.gather(*(drain(s) for s in stores for _ in range(3)))
        delivered = await stores[0].counts()
    every = sorted(i for part in taken for i in part)
    assert every == sorted(i for part in stored for i in part)  # all claimed, none twice
    assert sum(delivered.values()) == len(every) == 120
    assert sum(1 for part in taken if part) > 1


async def test_a_frozen_transaction_is_ended_by_the_url_s_timeout(
    pgbouncer_schema: tuple[str, str],
) -> None:
    """``?idle_in_transaction_session_timeout=`` is a startup setting PgBouncer refuses: it
    applies to each transaction instead, so a transaction left idle (a frozen instance) is
    ended by the server and the store finds itself unavailable, then goes on."""
    dsn, schema = pgbouncer_schema
    url = f"{dsn}?schema={schema}&idle_in_transaction_session_timeout=300ms"
    async with opened(url) as store:
        async with store._conn() as conn:
            settings = tuple(await conn.fetchrow(SETTINGS) or ())
        assert settings[2] == "300ms"
        with pytest.raises(StoreUnavailable):
            async with store._conn() as conn:
                await conn.execute("SELECT 1")
                await asyncio.sleep(1.5)  # five times the timeout, idle in the transaction
                await conn.execute("SELECT 2")
        await store.ping()


async def test_a_setting_in_the_url_that_pgbouncer_refuses_is_named_with_the_fix(
    pgbouncer_schema: tuple[str, str],
) -> None:
    """Another server setting in the URL (asyncpg sends it at connect) is refused by
    PgBouncer in any case: open says so, as an error to fix, not an outage to wait out."""
    dsn, schema = pgbouncer_schema
    store = open_store(f"{dsn}?schema={schema}&lock_timeout=5s")
    with pytest.raises(StoreError, match="ignore_startup_parameters") as caught:
        await store.open()
    assert not isinstance(caught.value, StoreUnavailable)
    assert "lock_timeout" in str(caught.value)


async def test_pgbouncer_in_statement_mode_is_refused_naming_the_mode_to_set(
    postgres_dsn: str,
) -> None:
    """PgBouncer in statement mode runs no transaction of several statements (it ends the
    connection at the first ``BEGIN``): open says which pool_mode to set, as an error to fix,
    not as a server to wait for ("cannot be reached")."""
    with PgBouncer(postgres_dsn, pool_mode="statement") as bouncer:
        async with fresh_schema(postgres_dsn) as schema:
            store = open_store(f"{bouncer.dsn()}?schema={schema}")
            with pytest.raises(StoreError, match="pool_mode = transaction") as caught:
                await store.open()
    assert not isinstance(caught.value, StoreUnavailable)


async def test_a_pooler_without_a_client_connection_left_is_named_with_its_setting(
    postgres_dsn: str,
) -> None:
    """PgBouncer at its max_client_conn refuses the next client ("no more connections allowed
    (max_client_conn)"): an outage (serve waits, webhooks get 503) that names the pooler's
    setting and ?pool=, as a server short of connections does; it read "cannot be reached
    ... check that PostgreSQL is running and the URL's host, port and database"."""
    with PgBouncer(postgres_dsn, max_client_conn=2) as bouncer:
        async with fresh_schema(postgres_dsn) as schema:
            held = [await asyncpg.connect(bouncer.dsn(), statement_cache_size=0) for _ in range(2)]
            try:
                store = open_store(f"{bouncer.dsn()}?schema={schema}")
                with pytest.raises(StoreUnavailable) as caught:
                    await store.open()
            finally:
                for conn in held:
                    await conn.close()
    text = str(caught.value)
    assert "max_client_conn" in text and "?pool=" in text, text
    assert "cannot be reached" not in text, text


async def test_a_pooler_without_a_server_connection_free_is_named_with_its_settings(
    postgres_dsn: str,
) -> None:
    """PgBouncer in session mode whose pool for the database and user is all held (one
    server connection here, a client holding it: another instance) ends the next client's
    connection after its query_wait_timeout: an outage that names the pooler's settings and
    ?pool=. It read "cannot be reached (ConnectionDoesNotExistError: ... query_wait_timeout);
    check that PostgreSQL is running", PostgreSQL up all along (every webhook that met it: a
    503 after the wait)."""
    settings = ("query_wait_timeout = 1",)
    with PgBouncer(postgres_dsn, pool_mode="session", pool_size=1, settings=settings) as bouncer:
        async with fresh_schema(postgres_dsn) as schema:
            other = await asyncpg.connect(bouncer.dsn(), statement_cache_size=0)
            try:
                await other.fetchval("SELECT 1")  # (session mode: the server connection is its)
                store = open_store(f"{bouncer.dsn()}?schema={schema}")
                with pytest.raises(StoreUnavailable) as caught:
                    await store.open()
            finally:
                await other.close()
    text = str(caught.value)
    assert "query_wait_timeout" in text and "default_pool_size" in text and "?pool=" in text
    assert "PostgreSQL itself is up" in text and "cannot be reached" not in text, text


async def test_a_statement_the_pooler_timed_out_is_named_with_its_setting(
    postgres_dsn: str,
) -> None:
    """PgBouncer's query_timeout (as a statement_timeout, but it ends the client's connection)
    shorter than a wait of the store's (here a table lock a DBA's session holds): an outage
    naming the setting to change. It read "cannot be reached (ConnectionDoesNotExistError:
    connection was closed in the middle of operation: query timeout); check that PostgreSQL
    is running", on every webhook's 503 line and every refused claim. Once the lock is gone,
    writes go on."""
    with PgBouncer(postgres_dsn, settings=("query_timeout = 1",)) as bouncer:
        async with fresh_schema(postgres_dsn) as schema:
            store = open_store(f"{bouncer.dsn()}?schema={schema}")
            await store.open()
            try:
                [first] = await store.enqueue(delivery("d1"))
                dba = await asyncpg.connect(postgres_dsn)  # on the server itself
                try:
                    async with dba.transaction():
                        await dba.execute(f'LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE')
                        with pytest.raises(StoreUnavailable) as ingest:
                            await store.enqueue(delivery("d2"))
                        with pytest.raises(StoreUnavailable) as claim:
                            await store.claim(limit=10, lease=60)
                finally:
                    await dba.close()
                [second] = await store.enqueue(delivery("d2"))
                assert not second.duplicate and second.id > first.id
            finally:
                await store.close()
    for refused in (ingest.value, claim.value):
        text = str(refused)
        assert "query timeout" in text and "query_timeout = 0" in text, text
        assert "cannot be reached" not in text, text
