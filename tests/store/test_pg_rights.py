"""The PostgreSQL store under a role that does not own its tables (a DBA's usual setup: an owner
makes the schema, the hub runs as a role granted only what it does with it): open runs no DDL
when every table and index is there, and refuses at start, naming what is missing and the
GRANT, when the role lacks a privilege the hub's writes use (USAGE on the id sequences, which
every enqueue draws from with nextval). Real server, real roles, a real ``leadhub serve``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.clock import ManualClock
from hub.store import StoreError, open_store
from hub.store.models import Ack, Route
from tests.pg_server import sql
from tests.store.helpers import delivery
from tests.support.server import free_port, leadhub_process
from tests.web.test_serve import ENV, _failed_start, serve_args, signed
from tests.web.test_store_wait import lines

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("HUB_TEST_POSTGRES_DSN")),
    reason="needs the throwaway local server: a new role connecting without password",
)
TABLES = "SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA"


async def _made(dsn: str, schema: str) -> None:
    """The store's tables made in ``schema`` by the owner (the server's superuser)."""
    await _opened(f"{dsn}?schema={schema}")


async def _opened(url: str, *, ingest_only: bool = False) -> None:
    """The store at ``url`` opened, then closed (in one event loop: its pool's)."""
    store = open_store(url, ingest_only=ingest_only)
    await store.open()
    await store.close()


@contextlib.contextmanager
def app_role(dsn: str, schema: str, *grants: str) -> Iterator[tuple[str, str]]:
    """A new login role granted ``grants`` (each ``PRIVILEGES ON ... IN SCHEMA``, the schema
    and the role added); ``(role, store URL as that role)``; dropped on the way out."""
    role = f"app_{schema}"
    asyncio.run(sql(dsn, f'CREATE ROLE "{role}" LOGIN'))
    try:
        for grant in grants:
            asyncio.run(sql(dsn, f'GRANT {grant} "{schema}" TO "{role}"'))
        yield role, f"{dsn.replace('://postgres@', f'://{role}@', 1)}?schema={schema}"
    finally:
        asyncio.run(sql(dsn, f'DROP OWNED BY "{role}"'))
        asyncio.run(sql(dsn, f'DROP ROLE "{role}"'))


def _accepted(base: str) -> None:
    """A signed Typeform delivery to the hub at ``base`` is stored: 200, accepted."""
    _, body, sig = signed(1)
    answer = httpx.post(
        f"{base}/hooks/typeform",
        content=body,
        headers={"Typeform-Signature": sig, "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"


def test_serve_as_a_role_without_usage_on_the_sequences_refuses_to_start_naming_the_grant(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """Granted the tables but not their sequences, a role that does not own the tables
    opens the store (no DDL, see below), and without this check every webhook was a 503
    (``permission denied for sequence events_id_seq``: the writes draw the ids with nextval),
    the start saying nothing. Serve exits 1 at start naming the sequences and the GRANT; once
    granted, it starts and stores a webhook."""
    dsn, schema = postgres_schema
    asyncio.run(_made(dsn, schema))
    with app_role(dsn, schema, "USAGE ON SCHEMA", TABLES) as (role, url):
        port = free_port()
        args = serve_args(tmp_path, port, role="all", db=url)
        result, output = _failed_start(args)
        (failed,) = lines(result.stdout, "store_open_failed")
        error = failed["error"]
        assert f"The role {role!r} lacks privileges the hub needs" in error, output
        for table in ("events", "deliveries", "rate_slots"):
            assert f"USAGE on sequence {schema}.{table}_id_seq" in error, error
        assert f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"' in error, error

        asyncio.run(sql(dsn, f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"'))
        base = f"http://127.0.0.1:{port}"
        with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV):
            _accepted(base)


async def _every_step(url: str) -> None:
    """What serve does with the store, as the role of ``url``: a one-lead and a three-lead
    delivery, a claim, routes, an ack and a retry, the rate window's slots and turns, a ping."""
    store = open_store(url, clock=ManualClock())
    await store.open()
    try:
        one = await store.enqueue(delivery("a"))
        three = await store.enqueue(delivery("b", "c", "d"))
        assert [r.duplicate for r in [*one, *three]] == [False] * 4
        assert (await store.enqueue(delivery("a")))[0].duplicate
        claimed = await store.claim(limit=10, lease=30.0)
        assert len(claimed) == 4
        routes = [Route(e.id, "default", "m", (f"k{e.id}",)) for e in claimed]
        assert await store.set_routes(routes) == []
        assert await store.ack_many([Ack(claimed[0].id, "L1", True)]) == []
        await store.retry(claimed[1].id, at=0.0, error="later")
        slots = await store.take_slots("acct", calls=2, window=1.0, hold=5.0, want=3, waiter="w1")
        assert slots.slots
        await store.stop_waiting("acct", "w1")
        await store.end_slots("acct", [(slots.slots[0], store.clock.time())])
        await store.fill_window("acct", calls=2)
        await store.ping()
    finally:
        await store.close()


def test_a_role_granted_the_tables_and_sequences_runs_the_store_it_does_not_own(
    postgres_schema: tuple[str, str],
) -> None:
    """open made the tables at every start (CREATE ... IF NOT EXISTS), which only their owner
    may run even when they exist: a role granted every privilege the hub uses was refused
    ("must be owner of table events"). Now, every table and index there, it runs no DDL."""
    dsn, schema = postgres_schema
    asyncio.run(_made(dsn, schema))
    grants = ("USAGE ON SCHEMA", TABLES)
    with app_role(dsn, schema, *grants, "USAGE ON ALL SEQUENCES IN SCHEMA") as (_, url):
        asyncio.run(_every_step(url))


@pytest.mark.parametrize("grants", ["none", "schema"])
def test_a_role_that_may_not_use_or_make_the_store_is_told_the_grant(
    postgres_schema: tuple[str, str], grants: str
) -> None:
    """Without USAGE on the schema (its tables unseen, so made again: "permission denied for
    database"), or with it but no privilege on the tables: the refusal names the role, what
    it lacks and the GRANTs, rather than "the event store failed" with a server message."""
    dsn, schema = postgres_schema
    asyncio.run(_made(dsn, schema))
    usage = () if grants == "none" else ("USAGE ON SCHEMA",)
    with app_role(dsn, schema, *usage) as (role, url):
        store = open_store(url)
        with pytest.raises(StoreError) as refused:
            asyncio.run(store.open())
    said = str(refused.value)
    assert "failed:" not in said, said
    if grants == "none":
        assert f'may not use schema "{schema}" (no USAGE privilege' in said, said
        assert f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"' in said, said
    else:
        assert f"SELECT on table {schema}.events" in said, said
        assert f'GRANT {TABLES} "{schema}" TO "{role}"' in said, said


def test_a_role_that_may_not_delete_events_is_refused_at_start_not_at_each_purge(
    postgres_schema: tuple[str, str],
) -> None:
    """A purge (``--purge-after``, ``leadhub purge``) deletes events and their deliveries: a
    role granted all but DELETE passed the start's check, and every purge round then failed
    with "permission denied for table events". The start names both and the GRANT."""
    dsn, schema = postgres_schema
    asyncio.run(_made(dsn, schema))
    grants = ("USAGE ON SCHEMA", "SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA")
    with app_role(dsn, schema, *grants, "USAGE ON ALL SEQUENCES IN SCHEMA") as (role, url):
        store = open_store(url)
        with pytest.raises(StoreError) as refused:
            asyncio.run(store.open())
    said = str(refused.value)
    assert f"DELETE on table {schema}.events" in said, said
    assert f"DELETE on table {schema}.deliveries" in said, said
    assert f'GRANT {TABLES} "{schema}" TO "{role}"' in said, said


def test_an_upgrade_that_adds_a_table_asks_the_owner_then_the_grant_for_it(
    postgres_schema: tuple[str, str],
) -> None:
    """A store of a release before ``held_spans`` (the table dropped from a store made now),
    run by a role granted every table then: its start would have to make the table, which it
    may not, and is refused, told so (a web instance's is not: ingest never uses the table,
    and it is left unmade). Once a start as the owner made it, the role's start names the
    rights it lacks on it and the GRANT (ON ALL TABLES covers the tables there when it ran);
    granted, it opens. (What the README says to do.)"""
    dsn, schema = postgres_schema
    asyncio.run(_made(dsn, schema))
    asyncio.run(sql(dsn, f'DROP TABLE "{schema}".held_spans'))
    grants = ("USAGE ON SCHEMA", TABLES, "USAGE ON ALL SEQUENCES IN SCHEMA")
    with app_role(dsn, schema, *grants) as (role, url):
        with pytest.raises(StoreError) as unmade:
            asyncio.run(open_store(url).open())
        told = str(unmade.value)
        assert "this release adds held_spans to the store an earlier one made" in told, told
        assert "start this release once as the role owning them" in told, told
        asyncio.run(_opened(url, ingest_only=True))  # a web instance uses no such table
        missing = f"SELECT to_regclass('\"{schema}\".held_spans') IS NULL"
        assert asyncio.run(sql(dsn, missing)) == [(True,)]
        asyncio.run(_made(dsn, schema))  # the owner's start makes it
        with pytest.raises(StoreError) as refused:
            asyncio.run(open_store(url).open())
        said = str(refused.value)
        assert f"on table {schema}.held_spans" in said, said
        assert f'GRANT {TABLES} "{schema}" TO "{role}"' in said, said
        asyncio.run(sql(dsn, f'GRANT {TABLES} "{schema}" TO "{role}"'))
        asyncio.run(_opened(url))


def test_a_web_instance_starts_with_the_rights_of_ingest_alone(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """``serve --role web`` only takes deliveries in: a least-privilege role granted what
    that uses (SELECT, INSERT on deliveries and events, SELECT, INSERT, UPDATE on meta, USAGE
    on their sequences) was refused at start, listing the privileges of a worker's claims,
    rate window and purges. The web instance starts and stores a webhook; the same role
    under ``--role all`` is still refused, naming what a worker needs."""
    dsn, schema = postgres_schema
    asyncio.run(_made(dsn, schema))
    with app_role(dsn, schema, "USAGE ON SCHEMA") as (role, url):
        for grant in (
            f'SELECT, INSERT ON "{schema}".deliveries, "{schema}".events',
            f'SELECT, INSERT, UPDATE ON "{schema}".meta',
            f'USAGE ON SEQUENCE "{schema}".deliveries_id_seq, "{schema}".events_id_seq',
        ):
            asyncio.run(sql(dsn, f'GRANT {grant} TO "{role}"'))
        port = free_port()
        result, output = _failed_start(serve_args(tmp_path, port, role="all", db=url))
        (failed,) = lines(result.stdout, "store_open_failed")
        assert f"DELETE on table {schema}.events" in failed["error"], output
        assert f"SELECT on table {schema}.rate_slots" in failed["error"], output

        base = f"http://127.0.0.1:{port}"
        web = serve_args(tmp_path, port, role="web", db=url)
        with leadhub_process(web, ready_url=f"{base}/healthz", env=ENV):
            _accepted(base)
            ready = httpx.get(f"{base}/readyz", timeout=30)
            assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("schema", [None, "hub"])
async def test_a_first_start_as_a_role_that_may_not_make_the_store_names_the_right_and_its_grant(
    others_database: tuple[str, str, str], schema: str | None
) -> None:
    """A role that may connect but not make the store, on a first start: in schema public
    (no CREATE on it), or in a schema of the URL's that is not there (no CREATE on the
    database, to make it). It was told "GRANT CREATE on it" of a schema not made yet; now the
    right missing and the statement to run, which, run by the owner, lets the role start."""
    url, owner, role = others_database
    query = f"?schema={schema}" if schema else ""
    with pytest.raises(StoreError) as refused:
        await open_store(url + query).open()
    said = str(refused.value)
    if schema is None:
        assert 'may not make tables in schema "public" (no CREATE privilege on it' in said, said
        statement = f'GRANT CREATE ON SCHEMA "public" TO "{role}"'
    else:
        assert f'may not make its schema "hub" (no CREATE privilege on database "{role}")' in said
        assert f'GRANT CREATE ON DATABASE "{role}" TO "{role}"' in said, said
        statement = f'CREATE SCHEMA "hub" AUTHORIZATION "{role}"'
    assert f"run {statement}" in said, said
    assert "start `leadhub serve` once as the" in said, said
    await sql(owner, statement)  # (as the owner: what the message says to run)
    store = open_store(url + query)
    await store.open()
    try:
        await store.enqueue(delivery("d1"))
    finally:
        await store.close()
