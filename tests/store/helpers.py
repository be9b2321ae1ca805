"""Builders of deliveries for the store tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson

from hub.store.models import EventIn, IncomingDelivery
from tests.pg_server import sql
from tests.support.server import REPO

#: The tables that hold a delivery and its events.
TABLES = ("deliveries", "events", "lead_keys")


def delivery(
    *delivery_ids: str,
    endpoint: str = "typeform",
    received_at: float = 1_700_000_000.0,
    body: bytes | None = None,
    content_type: str = "application/json",
    documents: list[Any] | None = None,
) -> IncomingDelivery:
    """A delivery carrying one event per delivery id (documents default to ``{"id": ...}``)."""
    docs = documents if documents is not None else [{"id": d} for d in delivery_ids]
    if body is None:
        body = orjson.dumps(docs[0] if len(docs) == 1 else docs)
    return IncomingDelivery(
        endpoint=endpoint,
        received_at=received_at,
        body=body,
        content_type=content_type,
        headers={"user-agent": "tests"},
        events=tuple(EventIn(d, doc) for d, doc in zip(delivery_ids, docs, strict=True)),
    )


@contextlib.contextmanager
def python_child(*args: str, stderr: int = subprocess.STDOUT) -> Iterator[subprocess.Popen[str]]:
    """``python ARGS`` from the repository root, its output piped as text (its errors with
    it, or apart with ``stderr=subprocess.PIPE``); killed and reaped on the way out (the test
    may have killed it already)."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


async def table_rows(url: str) -> dict[str, int]:
    """How many rows each of :data:`TABLES` holds, read from the database at the store URL
    ``url`` directly (not through the store)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    dsn, _, schema = url.partition("?schema=")
    counts = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    return {table: count for table, count in await sql(dsn, counts, schema=schema)}


async def waiting_for_locks(dsn: str, schema: str, count: int) -> None:
    """Until ``count`` backends wait for a lock while holding one on a table of ``schema``
    (asked on a connection of its own: within a transaction, pg_stat_activity keeps its first
    answer). Only the test's own: a wait of another test, running beside it on the same server
    in a schema of its own, once let a test go on before its own backend waited."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(3000):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' "
                "AND a.datname = current_database() AND EXISTS (SELECT 1 FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE l.pid = a.pid AND n.nspname = $1)",
                schema,
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise AssertionError(f"fewer than {count} backends waiting for a lock")
