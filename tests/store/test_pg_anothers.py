"""A PostgreSQL schema holding another application's ``events`` table (not the hub's): the
store refuses it at open, saying what it is and what to do, as SQLite's store refuses
another application's file. Real server."""

from __future__ import annotations

import asyncio

import pytest

from hub.store import StoreError, StoreUnavailable, open_store
from hub.store.postgres import PostgresStore
from tests.pg_server import sql


@pytest.mark.parametrize("create", [True, False])
def test_another_applications_events_table_is_refused_at_open_not_a_missing_column(
    postgres_schema: tuple[str, str], create: bool
) -> None:
    """serve (``create``) ran the schema script beside it, and its first index on
    ``events.state`` failed: 'failed: column "state" does not exist (SQLSTATE 42703)'; a
    command (not ``create``) read the version from a meta table that is not there. Both now
    say the schema holds another application's table and to give the hub a schema of its
    own; nothing is made beside that table."""
    dsn, schema = postgres_schema
    asyncio.run(sql(dsn, f'CREATE TABLE "{schema}".events (id serial PRIMARY KEY, name text)'))
    store = open_store(f"{dsn}?schema={schema}")
    assert isinstance(store, PostgresStore)
    store.create = create
    with pytest.raises(StoreError) as refused:
        asyncio.run(store.open())
    said = str(refused.value)
    assert isinstance(refused.value, StoreUnavailable), said
    assert "SQLSTATE" not in said, said
    assert f'"{schema}" holds another application\'s events table' in said, said
    assert "?schema=" in said, said
    made = asyncio.run(sql(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema))
    assert [r[0] for r in made] == ["events"]
