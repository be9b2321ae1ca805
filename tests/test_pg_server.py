"""The PostgreSQL test fixtures work for real: a server that stores rows, fresh schemas."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import asyncpg
import pytest

from tests import pg_server
from tests.pg_server import (
    PostgresServer,
    PostgresServerError,
    find_bindir,
    fresh_schema,
    sql,
)
from tests.support.server import free_port


async def _schemas(dsn: str, *names: str) -> set[str]:
    """Which of ``names`` exist as schemas at ``dsn``."""
    found = await sql(dsn, "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)", list(names))
    return {name for (name,) in found}


async def test_dsn_serves_postgresql(postgres_dsn: str) -> None:
    ((version,),) = await sql(postgres_dsn, "SELECT version()")
    assert str(version).startswith("PostgreSQL ")


async def test_a_table_in_the_fresh_schema_keeps_a_row(postgres_schema: tuple[str, str]) -> None:
    dsn, schema = postgres_schema
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        assert await conn.fetchval("SELECT current_schema()") == schema
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema) == 0
        ), "a fresh schema starts empty"
        await conn.execute("CREATE TABLE lead (id bigserial PRIMARY KEY, email text NOT NULL)")
        await conn.execute("INSERT INTO lead (email) VALUES ($1)", "ana@example.com")
        row = await conn.fetchrow("SELECT id, email FROM lead")
        # the table is in the fresh schema, not in public
        qualified = await conn.fetchval(f'SELECT email FROM "{schema}".lead WHERE id = $1', 1)
    finally:
        await conn.close()
    assert row is not None
    assert (row["id"], row["email"]) == (1, "ana@example.com")
    assert qualified == "ana@example.com"


async def test_each_fresh_schema_is_its_own_and_is_dropped_after(postgres_dsn: str) -> None:
    """The fixture's helper, used twice by hand: two different schemas, both gone after."""
    async with fresh_schema(postgres_dsn) as first, fresh_schema(postgres_dsn) as second:
        assert first != second
        assert first.startswith("t_") and second.startswith("t_")
        assert await _schemas(postgres_dsn, first, second) == {first, second}
        # a table in it must not keep the schema alive (CASCADE)
        await sql(postgres_dsn, f'CREATE TABLE "{first}".t (x int)')
    assert await _schemas(postgres_dsn, first, second) == set()


def test_find_bindir_has_initdb_and_pg_ctl() -> None:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    assert (bindir / "initdb").is_file()
    assert (bindir / "pg_ctl").is_file()


@pytest.mark.slow
async def test_server_start_and_stop() -> None:
    """A server of its own: serves its dsn once started; stopped, it is gone with its files."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer()
    server.start()
    try:
        data_dir = server.data_dir
        dsn = server.dsn
        assert dsn.startswith("postgresql://postgres@127.0.0.1:")
        settings = await sql(
            dsn, "SELECT current_setting('fsync'), current_setting('max_connections')"
        )
        assert settings == [("off", "200")]
    finally:
        server.stop()
    assert not data_dir.exists()
    with pytest.raises(OSError):
        await asyncpg.connect(dsn, timeout=5)
    server.stop()  # a second stop does nothing


def test_a_failed_start_says_what_failed_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    server = PostgresServer(bindir=tmp_path / "no-postgres-here")
    with pytest.raises(PostgresServerError, match="initdb"):
        server.start()
    assert list(temp.iterdir()) == []
    with pytest.raises(PostgresServerError, match="not started"):
        _ = server.dsn


@pytest.mark.slow
def test_a_port_taken_before_the_server_binds_it_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port: int = taken.getsockname()[1]
        ports = iter([taken_port])
        monkeypatch.setattr(pg_server, "free_port", lambda: next(ports, None) or free_port())
        with PostgresServer() as server:
            assert server.port not in (None, taken_port)
