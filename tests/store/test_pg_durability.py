"""The PostgreSQL store's commits reach the disk before they return, whatever the server's
``synchronous_commit``; what a session cannot mend (``fsync``, ``full_page_writes`` off) is
found at open, for serve to warn of. (That a delivery answered 200 survives the server
killed right after, and serve's warning: ``tests/e2e/test_pg_commit_crash.py``.)

The session's test server runs with ``fsync``, ``full_page_writes`` and
``synchronous_commit`` off (``tests.pg_server.FAST_SETTINGS``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from hub.store import open_store
from hub.store.postgres import PostgresStore
from tests.pg_server import PostgresServer, fresh_schema, sql
from tests.pgbouncer import PgBouncer, find_pgbouncer
from tests.store.helpers import delivery

COMMIT = "SELECT current_setting('synchronous_commit')"


Logs = list[MutableMapping[str, Any]]


async def _commit_setting(url: str) -> tuple[str, Logs, list[str]]:
    """What the store's transactions commit with once it is open at ``url`` (one written
    and one read-only), the lines its open logged, and its ``not_crash_safe``."""
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    with capture_logs() as logs:
        await store.open()
    try:
        await store.enqueue(delivery("d1"))
        async with store._conn() as conn:
            written = str(await conn.fetchval(COMMIT))
        async with store._conn(readonly=True) as conn:
            read = str(await conn.fetchval(COMMIT))
    finally:
        await store.close()
    assert written == read
    return written, logs, store.not_crash_safe


@pytest.fixture(params=["postgres", "pgbouncer"])
def pg_url(request: pytest.FixtureRequest) -> str:
    """A fresh schema's store URL: on the server itself, or through PgBouncer."""
    dsn, schema = request.getfixturevalue(f"{request.param}_schema")
    return f"{dsn}?schema={schema}"


async def test_commits_wait_for_the_disk_on_a_server_whose_commits_do_not(
    pg_url: str,
) -> None:
    """``synchronous_commit = off`` on the server: the store's sessions (each transaction's,
    behind PgBouncer) commit with ``on``, PostgreSQL's default, and its open says so."""
    setting, logs, _ = await _commit_setting(pg_url)
    assert setting == "on"
    (made,) = [e for e in logs if e["event"] == "store_commits_made_durable"]
    assert made["synchronous_commit"] == "on" and made["log_level"] == "info"


@pytest.mark.parametrize("given", ["on", "remote_apply", "remote_write", "local"])
async def test_a_commit_setting_that_waits_for_the_disk_is_kept(
    postgres_schema: tuple[str, str], given: str
) -> None:
    """A value that already writes each commit to disk (given in the URL here, as a role's
    or a database's would be) is the store's as it is: no weaker, no stronger."""
    dsn, schema = postgres_schema
    setting, logs, _ = await _commit_setting(f"{dsn}?schema={schema}&synchronous_commit={given}")
    assert setting == given
    assert not [e for e in logs if e["event"] == "store_commits_made_durable"]


@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
async def test_a_default_turned_off_while_the_store_runs_does_not_reach_it(through: str) -> None:
    """The database's default set to ``off`` after the store opened: the sessions it opens
    later keep the value it found (a session's own setting outranks every default)."""
    if through == "pgbouncer" and find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed")
    with PostgresServer(settings=("synchronous_commit=on",)) as server:
        async with fresh_schema(server.dsn) as schema:
            with contextlib.ExitStack() as stack:
                dsn = server.dsn
                if through == "pgbouncer":
                    dsn = stack.enter_context(PgBouncer(server.dsn)).dsn()
                store = open_store(f"{dsn}?schema={schema}&pool=4")
                assert isinstance(store, PostgresStore)
                await store.open()
                try:
                    await sql(server.dsn, "ALTER DATABASE postgres SET synchronous_commit = off")
                    ((default,),) = await sql(server.dsn, COMMIT)  # (a new session's)
                    assert default == "off"

                    async def one() -> str:
                        async with store._conn() as conn:
                            await asyncio.sleep(0.2)  # (the others meanwhile: new sessions)
                            return str(await conn.fetchval(COMMIT))

                    seen = set(await asyncio.gather(*(one() for _ in range(4))))
                    await store.enqueue(delivery("d1"))
                finally:
                    await store.close()
    assert seen == {"on"}


async def test_fsync_and_full_page_writes_off_are_found_at_open(
    postgres_schema: tuple[str, str],
) -> None:
    """Found, not logged: the store does not speak of them (a command's output is its
    own); serve warns of them."""
    dsn, schema = postgres_schema
    _, logs, off = await _commit_setting(f"{dsn}?schema={schema}")
    assert off == ["fsync", "full_page_writes"]
    assert [e["log_level"] for e in logs if e["log_level"] == "warning"] == []


async def test_a_server_with_its_defaults_is_neither_warned_of_nor_changed() -> None:
    """A server as installed (``fsync``, ``full_page_writes``, ``synchronous_commit`` on)."""
    defaults = ("fsync=on", "full_page_writes=on", "synchronous_commit=on")
    with PostgresServer(settings=defaults) as server:
        async with fresh_schema(server.dsn) as schema:
            setting, logs, off = await _commit_setting(f"{server.dsn}?schema={schema}")
    assert (setting, off) == ("on", [])
    events = {e["event"] for e in logs}
    assert "store_opened" in events and "store_commits_made_durable" not in events
