"""A statement the PostgreSQL server cancels (a ``statement_timeout`` or ``lock_timeout`` shorter
than a wait of the store's: here a table lock a DBA's session holds) is an outage named as such,
with the setting to change.

Before, a statement_timeout read "cannot be reached (QueryCanceledError: canceling statement due
to statement timeout); check that PostgreSQL is running and the URL's host, port and database",
on every webhook's 503 line and every refused claim, while the server answered each statement;
a lock_timeout was a plain StoreError, which the dispatcher logs with a traceback, as a bug, and
counts as an attempt (seen with three instances taking turns at an account's calls).
"""

from __future__ import annotations

import time

import asyncpg
import orjson
import pytest

from hub.store import open_store
from hub.store.base import StoreUnavailable
from hub.store.models import EventIn, IncomingDelivery


def _delivery(n: int) -> IncomingDelivery:
    document = {"email": f"cancelled{n}@example.com"}
    return IncomingDelivery(
        endpoint="forms",
        received_at=time.time(),
        body=orjson.dumps(document),
        content_type="application/json",
        headers={},
        events=(EventIn(delivery_id=f"cancelled-{n}", document=document),),
    )


def _names_the_timeout(refused: StoreUnavailable, setting: str) -> None:
    text = str(refused)
    assert f"canceling statement due to {setting.replace('_', ' ')}" in text, text
    assert f"{setting}=0" in text, text
    assert "cannot be reached" not in text, text


@pytest.mark.parametrize("setting", ["statement_timeout", "lock_timeout"])
async def test_a_statement_cancelled_by_a_timeout_is_an_outage_naming_it(
    setting: str, postgres_schema: tuple[str, str]
) -> None:
    dsn, schema = postgres_schema
    store = open_store(f"{dsn}?schema={schema}&{setting}=300")
    await store.open()
    try:
        [first] = await store.enqueue(_delivery(0))
        dba = await asyncpg.connect(dsn)
        try:
            async with dba.transaction():  # a DBA's maintenance holding the table meanwhile
                await dba.execute(f'LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE')
                with pytest.raises(StoreUnavailable) as ingest:
                    await store.enqueue(_delivery(1))
                _names_the_timeout(ingest.value, setting)
                with pytest.raises(StoreUnavailable) as claim:
                    await store.claim(limit=10, lease=60)
                _names_the_timeout(claim.value, setting)
        finally:
            await dba.close()
        [second] = await store.enqueue(_delivery(1))  # the lock gone, writes go on
        assert not second.duplicate and second.id > first.id
    finally:
        await store.close()
