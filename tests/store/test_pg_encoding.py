"""serve's store refuses a PostgreSQL database whose encoding cannot hold every character a
lead may carry (LATIN1 and the like), naming the fix: there, a lead whose name is in
Devanagari was answered 200 (its body is stored as bytes) and then failed at every attempt
(its identity keys are text: SQLSTATE 22P05) until it was dead. UTF8 and SQL_ASCII (bytes
kept as sent) hold them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from hub.store import open_store
from hub.store.base import StoreError
from hub.store.postgres import PostgresStore
from tests.pg_server import sql

NAME = "रमेश"


@pytest.fixture(params=["LATIN1", "WIN1252", "SQL_ASCII"])
async def database(request: pytest.FixtureRequest, postgres_dsn: str) -> AsyncIterator[str]:
    """A new database in the param's encoding on the session's server (dropped afterwards):
    its DSN."""
    name = f"enc_{uuid.uuid4().hex[:12]}"
    await sql(
        postgres_dsn,
        f"CREATE DATABASE {name} ENCODING '{request.param}' TEMPLATE template0 "
        "LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    try:
        yield f"{postgres_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        await sql(postgres_dsn, f"DROP DATABASE {name} WITH (FORCE)")


async def test_serve_refuses_a_database_that_cannot_hold_every_lead(database: str) -> None:
    ((encoding,),) = await sql(database, "SELECT current_setting('server_encoding')")
    store = open_store(f"{database}?schema=hub")
    assert isinstance(store, PostgresStore)
    if encoding == "SQL_ASCII":  # it keeps the bytes sent: a lead's text comes back as sent
        await store.open()
        try:
            async with store._conn() as conn:
                await conn.execute("INSERT INTO meta (key, value) VALUES ('name', $1)", NAME)
                assert await conn.fetchval("SELECT value FROM meta WHERE key = 'name'") == NAME
        finally:
            await store.close()
        return
    # (what the leads' text met there)
    with pytest.raises(Exception, match="has no equivalent in encoding"):
        await sql(database, "SELECT $1::text", NAME)
    with pytest.raises(StoreError) as refused:
        await store.open()
    message = str(refused.value)
    assert f"has encoding {encoding}, which cannot hold every character" in message
    assert "CREATE DATABASE leadhub ENCODING 'UTF8' TEMPLATE template0" in message
    assert database.rsplit("/", 1)[1] in message
    # nothing made in the wrong database
    ((schemas,),) = await sql(database, "SELECT count(*) FROM pg_namespace WHERE nspname = 'hub'")
    assert schemas == 0
