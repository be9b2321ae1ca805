"""What only the PostgreSQL store does: its URL, a server it cannot reach, and several
instances on one database at once (the contract suite runs on it too, see conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import asyncpg
import orjson
import pytest
from structlog.testing import capture_logs

from hub.clock import SYSTEM_CLOCK, Clock, ManualClock
from hub.store import EventStore, StoreError, StoreUnavailable, open_store, postgres
from hub.store.base import Submits
from hub.store.models import Ack, Purged, Route, State
from hub.store.postgres import PostgresStore, Q
from tests.pg_server import PostgresServer, cut_connections, find_bindir, frozen, sql
from tests.store.helpers import delivery, table_rows, waiting_for_locks
from tests.support.server import free_port

LEASE = 30.0


def _with_password(dsn: str, password: str) -> str:
    return dsn.replace("postgres@", f"postgres:{password}@", 1)


@contextlib.asynccontextmanager
async def instances(
    postgres_schema: tuple[str, str],
    count: int = 1,
    *,
    options: str = "",
    clock: Clock | None = None,
) -> AsyncIterator[list[PostgresStore]]:
    """``count`` stores opened on the test's schema, each with its own pool (separate hub
    instances); closed on the way out."""
    dsn, schema = postgres_schema
    stores = []
    for _ in range(count):
        store = open_store(f"{dsn}?schema={schema}{options}", clock=clock or SYSTEM_CLOCK)
        assert isinstance(store, PostgresStore)
        stores.append(store)
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.close()


class TestUrl:
    def test_options_of_our_own_are_read_and_the_rest_go_to_the_driver(self) -> None:
        store = open_store(
            "postgres://hub:pw@db.example:5433/leads?schema=hub_1&pool=3&sslmode=require"
        )
        assert isinstance(store, PostgresStore)
        assert (store.schema, store.pool_size) == ("hub_1", 3)
        assert store.dsn == "postgresql://hub:pw@db.example:5433/leads?sslmode=require"
        assert "pw" not in store.shown and "pw" not in repr(store)

    def test_a_password_written_with_a_raw_slash_is_never_shown(self) -> None:
        """A password with a raw / (hub:5433/hunter2@...) ends the URL's host part there, so
        urllib finds no password in it; what the store shows of the URL (every message and
        log line quoting it) masks it all the same: it was shown as written."""
        store = open_store("postgres://hub:5433/hunter2@db.example/leads?schema=hub_1")
        assert isinstance(store, PostgresStore)
        assert "hunter2" not in store.shown and "hunter2" not in repr(store)
        assert store.shown.startswith("postgresql://hub:***@")

    @pytest.mark.parametrize(
        ("query", "says"),
        [
            ("writer=process", "SQLite options"),
            ("synchronous=full", "SQLite options"),
            ("pool=many", "?pool= in"),
            ("pool=0", "out of range"),
            ("schema=a-b", "not a plain identifier"),
            ("schema=x;drop", "not a plain identifier"),
            ("stall_after=0s", "?stall_after= in"),
            ("stall_after=soon", "?stall_after= in"),
        ],
    )
    def test_bad_options_are_refused_with_the_fix(self, query: str, says: str) -> None:
        with pytest.raises(StoreError, match=r".") as caught:
            open_store(f"postgresql://hub:s3cret@db.example/leads?{query}")
        assert says in str(caught.value)
        assert "s3cret" not in str(caught.value)


class TestServer:
    async def test_a_server_that_is_not_there_is_unavailable(self) -> None:
        store = open_store(f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres")
        with pytest.raises(StoreUnavailable) as caught:
            await store.open()
        text = str(caught.value)
        assert "check that PostgreSQL is running" in text
        assert "s3cret" not in text

    async def test_a_database_that_does_not_exist_is_a_clear_error(self, postgres_dsn: str) -> None:
        url = postgres_dsn.rsplit("/", 1)[0] + "/no_such_database"
        with pytest.raises(StoreError, match="no_such_database"):
            await open_store(url).open()

    async def test_the_password_never_reaches_a_log_line(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        dsn, schema = postgres_schema
        # The test server trusts every connection, so any password is accepted.
        url = f"{_with_password(dsn, 'hunter2-secret')}?schema={schema}"
        with capture_logs() as logs:
            store = open_store(url)
            await store.open()
            await store.ping()
            await store.close()
        assert any(e["event"] == "store_opened" for e in logs)
        assert "hunter2" not in repr(logs)

    async def test_a_schema_is_made_when_missing_and_opening_again_is_harmless(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        dsn, schema = postgres_schema
        url = f"{dsn}?schema={schema}_Inner"  # capitals: the name is used as written
        first = open_store(url)
        await first.open()
        (result,) = await first.enqueue(delivery("d1"))
        await first.close()
        # Two instances starting together both make sure of the schema.
        again = [open_store(url), open_store(url)]
        await asyncio.gather(*(s.open() for s in again))
        try:
            assert (await again[1].get(result.id)) is not None
        finally:
            for s in again:
                await s.close()
        await sql(dsn, f'DROP SCHEMA "{schema}_Inner" CASCADE')

    async def test_a_server_that_takes_no_writes_is_unavailable(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """A standby, or a primary being demoted by a failover (SQLSTATE 25006), is an outage
        to wait out: serve's start keeps trying (StoreUnavailable), and so do webhooks (503)
        and the dispatcher, which counted a StoreError as a failed attempt of each event."""
        async with instances(postgres_schema) as (store,):
            (stored,) = await store.enqueue(delivery("before"))
            await store.dead(stored.id, error="refused")
        dsn, schema = postgres_schema
        url = f"{dsn}?schema={schema}&default_transaction_read_only=on"
        with pytest.raises(StoreUnavailable, match="takes no writes"):
            await open_store(url).open()
        # opened as a command opens it (no tables made): reads work, writes wait
        reading = PostgresStore(
            f"{dsn}?default_transaction_read_only=on", schema=schema, create=False
        )
        await reading.open()
        try:
            assert (await reading.get(stored.id)) is not None
            # a dry run of a purge reads only (it locked the rows it counted: refused)
            counted = await reading.purge(before=2e9, states=[State.DEAD], dry_run=True)
            assert counted == Purged(1, 0)
            # a primary whose sessions begin read-only (here the URL's setting; a DBA's or a
            # managed service's guard of a nearly full disk): told as such, not as a standby
            with pytest.raises(StoreUnavailable) as refused:
                await reading.enqueue(delivery("during"))
            text = str(refused.value)
            assert "takes no writes" in text and "the server is a primary" in text, text
            assert "default_transaction_read_only is on" in text, text
            assert "standby" not in text and "target_session_attrs" not in text, text
            with pytest.raises(StoreUnavailable):
                await reading.claim(limit=1, lease=LEASE)
        finally:
            await reading.close()


class TestConnections:
    async def test_the_hub_s_connections_name_themselves_and_compile_nothing(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """application_name for pg_stat_activity; JIT off (compiling the ordering check took
        4-20 ms of a check that runs in under 1)."""
        async with instances(postgres_schema) as (store,), store._conn() as conn:
            settings = await conn.fetchrow(
                "SELECT current_setting('jit'), current_setting('application_name'), "
                "current_setting('search_path')"
            )
        assert tuple(settings or ()) == ("off", "leadhub", f'"{postgres_schema[1]}"')


class TestInstances:
    """Several stores on one schema, each with its own pool: separate instances of the hub."""

    async def test_instances_claiming_at_once_never_take_the_same_event(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        async with instances(postgres_schema, 4, options="&pool=3", clock=ManualClock()) as stores:
            ids = []
            for n in range(0, 300, 10):
                results = await stores[0].enqueue(delivery(*(f"d{n + k}" for k in range(10))))
                ids += [r.id for r in results]

            async def drain(store: EventStore) -> list[int]:
                taken: list[int] = []
                while claimed := await store.claim(limit=7, lease=LEASE):
                    taken += [e.id for e in claimed]
                    await asyncio.sleep(0)
                return taken

            # Three claimers per instance, so claims overlap inside and across instances.
            taken = await asyncio.gather(*(drain(s) for s in stores for _ in range(3)))
        every = [i for part in taken for i in part]
        assert sorted(every) == sorted(ids)  # all claimed, none twice
        assert sum(1 for part in taken if part) > 1  # and they really claimed side by side

    @pytest.mark.parametrize("leads", [1, 2])
    async def test_one_delivery_enqueued_by_several_instances_at_once_is_stored_once(
        self, postgres_schema: tuple[str, str], leads: int
    ) -> None:
        """One lead per delivery takes the one-statement path, two the general one; racing
        copies of a delivery store each event once and leave no delivery row without one."""
        dsn, schema = postgres_schema
        async with instances(postgres_schema, 3, options="&pool=2") as stores:
            for n in range(20):
                same = delivery(*(f"lead-{n}-{k}" for k in range(leads)))
                answers = await asyncio.gather(*(s.enqueue(same) for s in stores for _ in range(2)))
                for k in range(leads):
                    assert len({a[k].id for a in answers}) == 1
                    assert sum(not a[k].duplicate for a in answers) == 1
            counts = await stores[0].counts()
        assert sum(counts.values()) == 20 * leads
        orphans = await sql(
            dsn,
            f'SELECT count(*) FROM "{schema}".deliveries AS d WHERE NOT EXISTS '
            f'(SELECT 1 FROM "{schema}".events AS e WHERE e.delivery = d.id)',
        )
        assert orphans == [(0,)]

    async def test_a_purge_step_waits_for_another_instances_step(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """Another instance's purge step, still open, has deleted the dead leads of some
        two-lead deliveries; this instance purges their delivered leads meanwhile. Each
        step alone would see the other's events still there and keep the deliveries
        forever, so the steps take turns: this one waits, then deletes every delivery."""
        dsn, schema = postgres_schema
        clock = ManualClock()
        async with instances(postgres_schema, clock=clock) as (store,):
            for n in range(20):
                done, failed = (r.id for r in await store.enqueue(delivery(f"a{n}", f"b{n}")))
                await store.ack(done, lead_id="L", created=True)
                await store.dead(failed, error="MXInvalidEmail")
            clock.advance(60)
            other = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
            try:
                async with other.transaction():
                    await other.execute(Q["lock_purge"])
                    gone = await other.fetch(Q["purgeable_events"], 0, 10**9, ["dead"], 1e10, None)
                    assert len(gone) == 20
                    await other.execute(Q["delete_events"], [r[0] for r in gone])
                    purge = asyncio.create_task(
                        store.purge(before=clock.time(), states=[State.DELIVERED])
                    )
                    await asyncio.sleep(0.2)  # time enough to finish, were it not waiting
            finally:
                await other.close()
            assert await purge == Purged(events=20, deliveries=20)
        rows = await table_rows(f"{dsn}?schema={schema}")
        assert rows == {"deliveries": 0, "events": 0, "lead_keys": 0}

    async def test_claims_take_turns_so_none_commits_behind_a_later_ordering_check(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """While another instance's claim is open (it may hold an earlier event, not yet
        committed as sending), a claim waits its turn instead of skipping that event and
        taking a later one, whose ordering check would then not see the earlier claim."""
        dsn, schema = postgres_schema
        async with instances(postgres_schema) as (store,):
            first, second = await ids_of(store, 2)
            other = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
            try:
                async with other.transaction():
                    await other.execute(Q["lock_claims"])
                    taken = await other.fetch(Q["claimable_waiting"], 1e10, [], 1, [], None)
                    assert [r[0] for r in taken] == [first]
                    claim = asyncio.create_task(store.claim(limit=10, lease=LEASE))
                    await asyncio.sleep(0.3)  # time enough to claim, were it not waiting
                    assert not claim.done()
                    await other.execute(Q["mark_claimed"], [first], 1e10, 1.0)
            finally:
                await other.close()
            claimed = await claim
        assert [e.id for e in claimed] == [second]

    async def test_an_instance_frozen_inside_its_claim_holds_the_others_up_briefly(
        self, postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An instance whose machine stops answering mid-claim keeps the claims' turn (and
        its rows) for as long as the server keeps its session: with PostgreSQL's defaults,
        hours, and every other instance claimed nothing meanwhile. The server now ends a
        session idle in a transaction (IDLE_IN_TRANSACTION, 1 s here): the others claim,
        and the frozen one, back, finds its store unavailable (an outage), not broken."""
        monkeypatch.setattr(postgres, "IDLE_IN_TRANSACTION", 1.0, raising=False)
        async with instances(postgres_schema, 2) as (frozen, other):
            (queued,) = await ids_of(other, 1)
            taken, claimed = asyncio.Event(), asyncio.Event()

            async def freeze() -> None:
                async with frozen._conn() as conn:
                    await conn.execute(Q["lock_claims"])  # its claim's turn, then nothing
                    taken.set()
                    with contextlib.suppress(TimeoutError):  # (the others wait as long)
                        await asyncio.wait_for(claimed.wait(), timeout=10)
                    await conn.execute(Q["ping"], "back")

            stuck = asyncio.create_task(freeze())
            # Once the turn is taken, not after a pause: on a loaded machine the frozen one's
            # pooled connection and statement could outlast a 0.1 s sleep; the other then
            # claimed first, and it came back well within the idle limit (no StoreUnavailable).
            await asyncio.wait_for(taken.wait(), timeout=60)
            assert [e.id for e in await other.claim(limit=1, lease=LEASE)] == [queued]
            claimed.set()
            with pytest.raises(StoreUnavailable):
                await stuck
            await frozen.ping()  # its pool heals


class TestSharedLeadsInAnotherOrder:
    """Two writes holding the same delivery ids in other orders, on two instances, each
    waited for the other's uncommitted event: the server aborted one to break the deadlock,
    and its deliveries were answered 503 though the store was up. Every write now inserts in
    the order of the delivery ids: the later waits for the earlier's commit and finds the
    leads stored. A lock the test holds on the middle id (an uncommitted event of its own)
    lines both writes up at it; when it is let go, each held an id the other went on to
    insert."""

    @staticmethod
    async def _racing(
        postgres_schema: tuple[str, str], first: Any, second: Any
    ) -> list[dict[str, Any]]:
        """The results of ``first`` and ``second`` (each given a store, on two instances, and
        called while the test holds the middle id), by delivery id, once both have waited
        for a lock and the test has let its own go."""
        dsn, schema = postgres_schema
        async with instances(postgres_schema, 2) as (one, two):
            blocker = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
            try:
                tx = blocker.transaction()
                await tx.start()
                row = await blocker.fetchval(
                    "INSERT INTO deliveries (endpoint, received_at, content_type, headers, body) "
                    "VALUES ('typeform', 1, 'application/json', '{}', '') RETURNING id"
                )
                await blocker.execute(
                    "INSERT INTO events (delivery, endpoint, delivery_id, state, attempts, "
                    "next_attempt_at, updated_at) VALUES ($1, 'typeform', 'm', 'queued', 0, 1, 1)",
                    row,
                )
                a = asyncio.ensure_future(first(one))
                await waiting_for_locks(dsn, schema, 1)
                b = asyncio.ensure_future(second(two))
                await waiting_for_locks(dsn, schema, 2)
                await tx.rollback()
                results = await asyncio.gather(a, b, return_exceptions=True)
            finally:
                await blocker.close()
        written = [r for r in results if not isinstance(r, BaseException)]
        assert len(written) == 2, results  # (a deadlock's victim: a StoreError)
        return [{r.delivery_id: r for r in result} for result in written]

    @staticmethod
    def _stored_once(first: dict[str, Any], second: dict[str, Any]) -> None:
        """The first write stored every lead, the second found each of them stored."""
        assert not any(r.duplicate for r in first.values())
        assert all(r.duplicate for r in second.values())
        assert {d: r.id for d, r in first.items()} == {d: r.id for d, r in second.items()}

    async def test_two_batches_sharing_leads_in_another_order(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """Two deliveries of several leads; the events keep the order of their leads."""

        def batch(*ids: str) -> Any:
            return lambda store: store.enqueue(delivery(*ids))

        first, second = await self._racing(
            postgres_schema, batch("z", "m", "a"), batch("a", "m", "z")
        )
        self._stored_once(first, second)
        assert first["z"].id < first["m"].id < first["a"].id  # drawn in the leads' order

    async def test_gathered_one_lead_deliveries_sharing_leads_in_another_order(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """One-lead deliveries gathered into one statement on each instance; the events keep
        the order of their deliveries."""
        first, second = await self._racing(
            postgres_schema, _gathered("z", "m", "a"), _gathered("a", "m", "z")
        )
        self._stored_once(first, second)
        assert first["z"].id < first["m"].id < first["a"].id  # drawn in their order

    async def test_a_batch_and_gathered_deliveries_sharing_leads_in_another_order(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        first, second = await self._racing(
            postgres_schema,
            lambda store: store.enqueue(delivery("z", "m", "a")),
            _gathered("a", "m", "z"),
        )
        self._stored_once(first, second)


def _gathered(*ids: str) -> Any:
    """A write of one one-lead delivery per id, gathered into one statement: its results."""

    async def enqueue(store: EventStore) -> list[Any]:
        answers = await asyncio.gather(*(store.enqueue(delivery(d)) for d in ids))
        return [answer[0] for answer in answers]

    return enqueue


class TestMigration:
    async def test_a_version_1_store_is_migrated_by_serve_and_by_a_command(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """Tables made before the replay time and the read mark existed get both columns when
        opened, by `serve` (create) or a command such as `leadhub replay` (no create), their
        events kept."""
        dsn, schema = postgres_schema
        downgrade = (
            "ALTER TABLE events DROP COLUMN requeued_at, DROP COLUMN awaits_read",
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
        )
        for create in (True, False):
            async with instances(postgres_schema) as (store,):
                (eid,) = await ids_of(store, 1, prefix=f"m{create}")
                await store.dead(eid, error="boom")
            for statement in downgrade:
                await sql(dsn, statement, schema=schema)
            reopened = PostgresStore(dsn, schema=schema, create=create)
            await reopened.open()
            try:
                assert await reopened.replay(ids=[eid]) == 1
                event = await reopened.get(eid)
            finally:
                await reopened.close()
            assert event is not None and event.requeued_at is not None
            assert await sql(dsn, Q["schema_version"], schema=schema) == [("2",)]

    async def test_a_store_made_before_the_delivery_index_gets_it_from_a_command(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """A version 1 store made before the schema script had ``events_delivery``
        (c5a8bb9): a command's migration (no create: `leadhub purge`, `events`) makes the
        index too. Only serve's open made it (with any missing object), so such a store,
        migrated by a command, purged without it until a serve opened it."""
        dsn, schema = postgres_schema
        async with instances(postgres_schema) as (store,):
            await ids_of(store, 1, prefix="i")
        for statement in (
            "DROP INDEX events_delivery",
            "ALTER TABLE events DROP COLUMN requeued_at, DROP COLUMN awaits_read",
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
        ):
            await sql(dsn, statement, schema=schema)
        index = "SELECT to_regclass('events_delivery') IS NOT NULL"
        assert await sql(dsn, index, schema=schema) == [(False,)]
        reopened = PostgresStore(dsn, schema=schema, create=False)
        await reopened.open()
        try:
            assert await reopened.counts()
        finally:
            await reopened.close()
        assert await sql(dsn, index, schema=schema) == [(True,)]
        assert await sql(dsn, Q["schema_version"], schema=schema) == [("2",)]


async def ids_of(store: EventStore, n: int, *, prefix: str = "e") -> list[int]:
    """Enqueue ``n`` one-lead deliveries; their event ids in order."""
    return [(await store.enqueue(delivery(f"{prefix}{k}")))[0].id for k in range(n)]


@contextlib.asynccontextmanager
async def own_server(
    query: str = "", clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[tuple[PostgresServer, EventStore]]:
    """A PostgreSQL server of the test's own (it may be stopped or frozen) and a store opened
    on it with the URL options ``query`` (and ``clock``); both ended on the way out."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("needs PostgreSQL installed here (initdb, pg_ctl): it stops its server")
    server = PostgresServer(bindir)
    server.start()
    store = open_store(f"{server.dsn}{query}", clock=clock)
    try:
        await store.open()
        yield server, store
    finally:
        await store.close()
        server.stop()


class TestConnectionsLost:
    async def test_connections_cut_by_the_server_are_unavailable_then_heal(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        async with instances(postgres_schema, options="&pool=4") as (store,):
            stored = [r.id for r in await store.enqueue(delivery("before"))]
            assert await cut_connections(postgres_schema[0]) >= 1
            outcomes = []
            for n in range(3):
                try:
                    stored += [r.id for r in await store.enqueue(delivery(f"after-{n}"))]
                    outcomes.append("ok")
                except StoreUnavailable:
                    outcomes.append("unavailable")  # never a bare driver error or a 500
            # Here the first use of a cut connection fails (asyncpg meets the server's goodbye
            # mid-protocol); a store that heals sends the next ones on new connections.
            assert outcomes[1:] == ["ok", "ok"], outcomes
            listed = await store.list(limit=10)
        assert sorted(e.id for e in listed) == sorted(stored)

    async def test_a_server_that_went_away_is_unavailable(self) -> None:
        async with own_server() as (server, store):
            await store.enqueue(delivery("kept"))
            server.stop()
            with pytest.raises(StoreUnavailable, match="check that PostgreSQL is running"):
                await store.enqueue(delivery("lost-server"))
            with pytest.raises(StoreUnavailable):
                await store.ping()


def _stalled(logs: list[MutableMapping[str, Any]]) -> list[object]:
    """The writes each ``store_stalled`` line in ``logs`` told of (its ``failing``)."""
    return [e["failing"] for e in logs if e["event"] == "store_stalled"]


async def _all_stalled_told(logs: list[MutableMapping[str, Any]], answered: int) -> None:
    """Wait (30 s at most) until the ``store_stalled`` lines in ``logs`` have told of
    ``answered`` writes answered unavailable; fail if they tell of more."""

    def told() -> int:
        return sum(int(str(e["failing"])) for e in logs if e["event"] == "store_stalled")

    async with asyncio.timeout(30):
        while told() < answered:
            await asyncio.sleep(0.05)
    assert told() == answered, logs


class TestHungServer:
    """A server that hangs rather than refusing (every process stopped): what waits for a
    commit is answered StoreUnavailable after ``?stall_after=`` instead of for as long as the
    hang lasts (a webhook then gets 503, and the sender retries), and closing ends."""

    async def test_deliveries_waiting_on_a_hung_server_are_unavailable_then_heal(self) -> None:
        told: list[object] = []
        async with own_server("?stall_after=1s") as (server, store):
            await store.enqueue(delivery("before"))
            with frozen(server), capture_logs() as logs:
                assert isinstance(store, Submits)
                store.submit(delivery("told"), told.append)
                waiting = [
                    store.enqueue(delivery("one-lead")),
                    store.enqueue(delivery("lead-a", "lead-b")),  # the general path
                ]
                # Answered while the server still hangs (it does until this block ends). The
                # 30 s are a hang guard, not a measure of speed: unwatched, the writes would
                # wait for the driver's 60 s command timeout, and fail with other words.
                outcomes = await asyncio.wait_for(
                    asyncio.gather(*waiting, return_exceptions=True), timeout=30
                )
                # (inside the capture: answers of a later pass are told a second after the
                # first line, which a capture closed as soon as the answers came missed)
                await _all_stalled_told(logs, 3)
            assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
            # the watchdog's answer (after ?stall_after=), not the driver's timeout
            assert all("has not answered for 1 s" in str(o) for o in outcomes), outcomes
            assert len(told) == 1 and isinstance(told[0], StoreUnavailable), told
            assert "has not answered for 1 s" in str(told[0])
            # told: each answer in a store_stalled line (one, or a second a second later
            # for answers asked a loop turn after the first), and no other error
            assert {e["event"] for e in logs if e["log_level"] == "error"} == {"store_stalled"}
            # (a hung server: no cause known, so no kind of one)
            assert not [
                e
                for e in logs
                if e["event"] == "store_stalled" and ("cause" in e or "waits_for" in e)
            ], logs
            # The server back, the senders' retries are stored, or are duplicates of writes
            # that committed once it came back; every one is stored exactly once.
            again = [await store.enqueue(delivery(name)) for name in ("one-lead", "told", "after")]
            assert [r.delivery_id for rs in again for r in rs] == ["one-lead", "told", "after"]
            listed = {e.delivery_id for e in await store.list(limit=20)}
            assert {"before", "one-lead", "told", "after"} <= listed

    async def test_answers_of_one_hang_asked_apart_are_told_a_line_a_second(self) -> None:
        """A write answered by the watchdog's next pass, less than a second after the line
        that told the first write's answer (same hang), is told in a line once that second
        has passed, not in a line of its own at once (README: one line for those answered
        so, not one per pass).

        The second is asked once the first is answered (so a later pass answers it), and the
        lines are timed by the store's clock, moved by the test: asked 0.3 s apart by the
        real clock, a loaded machine's late watchdog answered both in one pass ([2]), or a
        late end of the test's sleep asked the second a second after the first ([1, 1] at
        once)."""
        clock = ManualClock()
        async with own_server("?stall_after=1s", clock) as (server, store):
            await store.enqueue(delivery("before"))
            with frozen(server), capture_logs() as logs:
                with pytest.raises(StoreUnavailable):
                    await asyncio.wait_for(store.enqueue(delivery("first")), timeout=30)
                assert _stalled(logs) == [1]
                clock.advance(0.5)
                with pytest.raises(StoreUnavailable):
                    await asyncio.wait_for(store.enqueue(delivery("second")), timeout=30)
                assert _stalled(logs) == [1], logs  # not yet: half a second after the first
                clock.advance(0.5)  # a second after the first line: the second's is due
                await _all_stalled_told(logs, 2)
            assert _stalled(logs) == [1, 1]

    async def test_closing_while_the_server_hangs_ends(self) -> None:
        async with own_server("?stall_after=1s") as (server, store):
            await store.enqueue(delivery("before"))
            with frozen(server), capture_logs() as logs:
                pending = asyncio.ensure_future(store.enqueue(delivery("hung")))
                await asyncio.sleep(0.2)  # its statement is sent and waits on the server
                # Closed while the server still hangs (it does until this block ends): about
                # stall_after for the hung write, then the pool's own close timeout (10 s).
                # The 60 s are a hang guard, not a measure of speed: a close that waited for
                # the server would wait as long as it hangs.
                await asyncio.wait_for(store.close(), timeout=60)
                with pytest.raises(StoreUnavailable):
                    await pending
            # close gave up on the hung write instead of waiting for it
            assert "store_writes_abandoned" in [e["event"] for e in logs], logs


class TestGatheredEnqueues:
    async def test_concurrent_one_lead_deliveries_share_statements(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        async with instances(postgres_schema) as (store,):
            answers = await asyncio.gather(*(store.enqueue(delivery(f"g{n}")) for n in range(200)))
            again = await asyncio.gather(
                *(store.enqueue(delivery(f"g{n}")) for n in range(0, 200, 7))
            )
            events = await store.list(limit=1000)
        assert [a[0].delivery_id for a in answers] == [f"g{n}" for n in range(200)]
        assert not any(a[0].duplicate for a in answers)
        assert len({a[0].id for a in answers}) == 200
        assert all(a[0].duplicate for a in again)
        assert [a[0].id for a in again] == [answers[n][0].id for n in range(0, 200, 7)]
        assert store.stats.jobs == 200 + len(again)
        assert store.stats.commits < 20  # written together, not one statement each
        by_id = {e.id: e for e in events}
        assert len(by_id) == 200
        for n, (result,) in enumerate(answers):
            assert by_id[result.id].delivery_id == f"g{n}"
            assert by_id[result.id].document == {"id": f"g{n}"}  # each its own delivery row

    async def test_one_delivery_id_twice_in_one_statement_is_stored_once(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        async with instances(postgres_schema) as (store,):
            first, second, other = await asyncio.gather(
                store.enqueue(delivery("twice")),
                store.enqueue(delivery("twice")),
                store.enqueue(delivery("once")),
            )
            counts = await store.counts()
        assert first[0].id == second[0].id
        assert [first[0].duplicate, second[0].duplicate] == [False, True]
        assert not other[0].duplicate
        assert sum(counts.values()) == 2

    async def test_close_answers_every_enqueue_waiting(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        dsn, schema = postgres_schema
        store = open_store(f"{dsn}?schema={schema}")
        await store.open()
        waiting = [asyncio.ensure_future(store.enqueue(delivery(f"c{n}"))) for n in range(50)]
        await asyncio.sleep(0)  # every enqueue has gathered its delivery
        await store.close()
        assert all(w.done() for w in waiting)
        assert len({w.result()[0].id for w in waiting}) == 50
        async with instances(postgres_schema) as (reopened,):
            assert sum((await reopened.counts()).values()) == 50


class TestBatchRoundTrips:
    async def test_a_delivery_of_1000_leads_is_written_in_a_few_round_trips(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """A delivery of several leads was written event by event, two round trips a lead:
        1,000 leads took 2 s with the database 1 ms away, 20 s at 10 ms, near the watchdog's
        30 s and past most senders' timeouts. It is one statement now: a proxy in front of the
        server counts what the store sends while it writes (each query is one write of its
        messages; a large one may come in a few reads): 4, where it was 2,005. Stored again,
        every lead is a duplicate of its event, in order."""
        dsn, schema = postgres_schema
        url = urllib.parse.urlsplit(dsn)
        sent = 0
        counting = False

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, outgoing: bool
        ) -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    sent += outgoing and counting
                    writer.write(data)
                    await writer.drain()
            writer.close()

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        proxy = await asyncio.start_server(forward, "127.0.0.1", 0)
        port = proxy.sockets[0].getsockname()[1]
        proxied = dsn.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{port}", 1)
        ids = [f"lead-{n}" for n in range(1000)]
        try:
            async with instances((proxied, schema), options="&pool=1") as (store,):
                await store.enqueue(delivery("warm", "up"))  # the connection, its statements
                counting = True
                first = await store.enqueue(delivery(*ids))
                counting = False
                again = await store.enqueue(delivery(*reversed(ids)))
        finally:
            proxy.close()
        assert sent < 20, sent
        assert [r.delivery_id for r in first] == ids and not any(r.duplicate for r in first)
        assert [r.id for r in first] == sorted(r.id for r in first)  # in the leads' order
        assert [(r.id, r.duplicate) for r in again] == [(r.id, True) for r in reversed(first)]


class TestPlans:
    async def test_the_ordering_check_walks_the_lead_s_keys_not_the_table(
        self, postgres_schema: tuple[str, str]
    ) -> None:
        """With thousands of delivered events, checking a batch reads lead_keys by its
        primary key; it never scans events or lead_keys whole (that grew with the table)."""
        dsn, schema = postgres_schema
        async with instances(postgres_schema) as (store,):
            for n in range(0, 3000, 100):
                await store.enqueue(delivery(*(f"p{n + k}" for k in range(100))))
            while claimed := await store.claim(limit=500, lease=LEASE):
                keys = [(f"mail{e.id}", f"phone{e.id}") for e in claimed]
                routes = [
                    Route(e.id, "default", "m", k) for e, k in zip(claimed, keys, strict=True)
                ]
                await store.set_routes(routes)
                await store.ack_many([Ack(e.id, "L", True, e.lease) for e in claimed[:-5]])
        await sql(dsn, f'ANALYZE "{schema}".events')
        await sql(dsn, f'ANALYZE "{schema}".lead_keys')
        asked = orjson.dumps([[2990 + k, [f"mail{2000 + k}", "phone7"]] for k in range(10)])
        plan = await sql(
            dsn, f"EXPLAIN (FORMAT JSON) {Q['blockers']}", asked.decode(), 0.0, schema=schema
        )
        text = orjson.dumps(plan)
        assert b"lead_keys_pkey" in text
        assert b"Seq Scan" not in text
