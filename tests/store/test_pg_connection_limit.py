"""A CONNECTION LIMIT of the hub's role or database, reached while the server has connections
left, is an outage that names that limit and how to raise it. It read "the server has no
connection left: lower ?pool= on the instances, or raise the server's max_connections",
sending its operator to a server setting that was not the cause (seen: a role limited to 2
connections, a hub whose pool grew under load: every webhook past them a 503). Real roles and
databases.
"""

from __future__ import annotations

import asyncpg
import pytest

from hub.store import open_store
from hub.store.base import StoreUnavailable
from tests.pg_server import sql


@pytest.mark.parametrize("kind", ["role", "database"])
async def test_a_connection_limit_of_the_role_or_database_is_named(
    kind: str, own_database: tuple[str, str, str]
) -> None:
    dsn, admin, name = own_database
    await sql(admin, f"ALTER {kind.upper()} {name} CONNECTION LIMIT 1")
    held = await asyncpg.connect(dsn)  # (another instance's connection: the one allowed)
    try:
        store = open_store(f"{dsn}?schema=hub&pool=4")
        with pytest.raises(StoreUnavailable) as refused:
            await store.open()
    finally:
        await held.close()
    text = str(refused.value)
    assert f'too many connections for {kind} "{name}"' in text, text
    assert f'the {kind} "{name}" has a CONNECTION LIMIT' in text, text
    assert f'ALTER {kind.upper()} "{name}" CONNECTION LIMIT n' in text, text
    assert "up to ?pool= each, 4 here" in text, text
    assert "max_connections" not in text, text
