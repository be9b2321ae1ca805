"""The PostgreSQL store's advisory locks belong to one schema: two hubs on one database with
different ``?schema=`` (staging and production) never wait on each other's claims, purges,
rate-limit counts or schema creation, while instances on the same schema still take turns."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from hub.store.models import State
from hub.store.postgres import _SCHEMA_LOCK, PostgresStore, Q
from tests.pg_server import fresh_schema
from tests.store.helpers import delivery

#: Time enough for the store's call to finish, were it not waiting for the lock.
SETTLE = 0.3
#: Longer than any call here takes unless it waits for a lock nobody lets go of.
HUNG = 10.0

#: What a store does under each lock: ``(query, its arguments, the call under it)``. The
#: schema lock's argument is the schema name itself (the schema may not exist yet).
Call = Callable[[PostgresStore], Awaitable[Any]]
LOCKS: dict[str, tuple[str, tuple[str, ...], Call]] = {
    "claims": (Q["lock_claims"], (), lambda store: store.claim(limit=1, lease=30.0)),
    "purge": (
        Q["lock_purge"],
        (),
        lambda store: store.purge(before=time.time() + 3600, states=[State.DELIVERED]),
    ),
    "rate_slots": (
        Q["lock_account"],
        ("acct",),
        lambda store: store.take_slots("acct", calls=5, window=1.0, hold=1.0),
    ),
}


@contextlib.asynccontextmanager
async def holding(dsn: str, schema: str, query: str, *args: str) -> AsyncIterator[None]:
    """Another session, on ``schema``, holds the lock ``query`` takes until the block ends."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
    try:
        async with conn.transaction():
            await conn.execute(query, *args)
            yield
    finally:
        await conn.close()


async def store_on(dsn: str, schema: str) -> PostgresStore:
    """A store opened on ``schema``, with one event queued (a claim or a purge has work)."""
    store = PostgresStore(dsn, schema=schema)
    await store.open()
    await store.enqueue(delivery("e0"))
    return store


async def waits_for(
    work: Awaitable[Any], hold: contextlib.AbstractAsyncContextManager[None]
) -> None:
    """``work`` started while ``hold`` is held does not finish until it is let go of."""
    async with hold:
        task = asyncio.ensure_future(work)
        await asyncio.sleep(SETTLE)
        assert not task.done(), "the call did not wait for its own schema's lock"
    await asyncio.wait_for(task, HUNG)


@pytest.mark.parametrize("lock", sorted(LOCKS))
async def test_a_lock_held_on_another_schema_holds_nothing_up(
    postgres_schema: tuple[str, str], lock: str
) -> None:
    """A claim (a purge step, an account's rate-limit count) on schema A proceeds while a
    session on schema B holds B's lock of that kind, and still waits for A's own."""
    dsn, schema = postgres_schema
    query, args, call = LOCKS[lock]
    async with fresh_schema(dsn) as other:
        store = await store_on(dsn, schema)
        try:
            async with holding(dsn, other, query, *args):
                await asyncio.wait_for(call(store), HUNG)  # old code: waits for B, times out
            await waits_for(call(store), holding(dsn, schema, query, *args))
        finally:
            await store.close()


async def test_making_one_schema_does_not_wait_for_another_being_made(
    postgres_schema: tuple[str, str],
) -> None:
    """A hub making its tables in schema A starts while another is making schema B's (which
    holds B's schema lock), and waits while another instance is making A's."""
    dsn, schema = postgres_schema
    async with fresh_schema(dsn) as other:
        first = PostgresStore(dsn, schema=schema)
        try:
            async with holding(dsn, other, _SCHEMA_LOCK, other):
                await asyncio.wait_for(first.open(), HUNG)
        finally:
            await first.close()
        async with fresh_schema(dsn) as third:
            second = PostgresStore(dsn, schema=third)
            try:
                await waits_for(second.open(), holding(dsn, third, _SCHEMA_LOCK, third))
            finally:
                await second.close()


async def test_a_limiter_s_ends_and_give_backs_wait_for_their_account_s_lock(
    postgres_schema: tuple[str, str],
) -> None:
    """Writing calls' ends and giving slots back, each one statement, take the account's lock
    before any slot row (as a take does, and a claim moving the slots after a clock step):
    they wait while a session on this schema holds it, and not for another schema's."""
    dsn, schema = postgres_schema
    lock = Q["lock_account"]
    store = await store_on(dsn, schema)
    try:
        taken = await store.take_slots("acct", calls=5, window=1.0, hold=30.0, want=4)
        first, second, third, fourth = taken.slots
        await waits_for(
            store.end_slots("acct", [(first, time.time())]), holding(dsn, schema, lock, "acct")
        )
        await waits_for(store.give_back_slots("acct", [second]), holding(dsn, schema, lock, "acct"))
        async with fresh_schema(dsn) as other, holding(dsn, other, lock, "acct"):
            await asyncio.wait_for(store.end_slots("acct", [(third, time.time())]), HUNG)
            await asyncio.wait_for(store.give_back_slots("acct", [fourth]), HUNG)
        conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            rows = await conn.fetch("SELECT id, ends_at FROM rate_slots ORDER BY id")
        finally:
            await conn.close()
        assert [r[0] for r in rows] == [first, third]  # each written once let go of
        assert all(r[1] < time.time() + 1 for r in rows)  # ended, not at their 30 s hold
    finally:
        await store.close()
