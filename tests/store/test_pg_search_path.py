"""serve never makes a new, empty store in front of the one the search path led to before.

Without ``?schema=`` the store is in the first schema of the role's search path that exists
(PostgreSQL's default path: ``"$user", public``). A schema named after the role, made later
(a DBA giving each application a schema of its own), comes first from then on: serve made new
tables there without a word, and the deliveries the store in ``public`` held, answered 200 and
not yet sent, were left behind for good. Now serve refuses, naming the ``?schema=`` that goes
on with that store. Real roles, databases and schemas.
"""

from __future__ import annotations

import pytest

from hub.store import open_store
from hub.store.base import StoreError
from tests.pg_server import sql
from tests.store.helpers import delivery


async def test_a_schema_made_first_on_the_search_path_does_not_hide_the_store(
    own_database: tuple[str, str, str],
) -> None:
    dsn, admin, role = own_database
    store = open_store(dsn)
    await store.open()
    try:
        [queued] = await store.enqueue(delivery("d1"))
    finally:
        await store.close()
    ((where,),) = await sql(
        admin, "SELECT relnamespace::regnamespace::text FROM pg_class WHERE relname = 'events'"
    )
    assert where == "public"
    await sql(admin, f"CREATE SCHEMA {role} AUTHORIZATION {role}")  # first on "$user", public

    again = open_store(dsn)
    with pytest.raises(StoreError) as refused:
        await again.open()
    text = str(refused.value)
    assert f'a new one would be made in schema "{role}"' in text, text
    assert 'schema "public" on that path holds the event store' in text, text
    assert "add ?schema=public to the URL" in text, text
    ((made,),) = await sql(admin, "SELECT count(*) FROM pg_class WHERE relname = 'events'")
    assert made == 1  # nothing made in the new schema

    kept = open_store(f"{dsn}?schema=public")  # as the refusal says: the store, its delivery
    await kept.open()
    try:
        assert [event.id for event in await kept.list()] == [queued.id]
    finally:
        await kept.close()
