"""A SQLite store gives the space of purged events back to the filesystem (incremental vacuum).

Real SQLite files, the store's own writers (thread and process); sizes read off the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.store import open_store
from hub.store.backup import copy_store
from hub.store.base import EventStore
from hub.store.models import Ack
from hub.store.retention import retention_lifespan
from hub.store.sqlite import GIVE_BACK_STEP, SQLiteStore
from tests.dispatch.support import wait_for

from .conftest import sqlite_url
from .helpers import delivery
from .test_retention import metered_app

DAY = 86400.0
#: A body of about 4 KB: each event of :func:`fill` takes a page or so.
BODY = b'{"notes": "%s"}' % (b"x" * 64 + os.urandom(1900).hex().encode())

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stores"
#: A store an earlier leadhub wrote (auto_vacuum NONE), exactly as it left it.
OLD_STORE = FIXTURES / "sqlite-schema3-966a566.store"


async def fill(store: EventStore, count: int, prefix: str = "d") -> None:
    """``count`` delivered events of about 4 KB each, received and finished at the store's
    clock's time."""

    async def one(i: int) -> int:
        (res,) = await store.enqueue(delivery(f"{prefix}{i}", body=BODY))
        return res.id

    ids = await asyncio.gather(*(one(i) for i in range(count)))
    for start in range(0, len(ids), 500):  # (one write per 500, as a busy dispatcher acks)
        acks = [Ack(event_id, "L", True) for event_id in ids[start : start + 500]]
        assert await store.ack_many(acks) == []


def auto_vacuum(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])


def checkpointed_size(path: Path) -> int:
    """The file's size once its ``-wal`` is checkpointed into it (by another connection, as
    any process on the file could)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return os.path.getsize(path)


@contextlib.asynccontextmanager
async def opened(url: str, clock: ManualClock) -> AsyncIterator[SQLiteStore]:
    store = open_store(url, clock=clock)
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_purge_gives_the_space_back(tmp_path: Path, writer: str) -> None:
    """A new store is made with incremental vacuum (whichever writer enqueues); a purge of
    most of it leaves a file a fraction of its size, said in one line, counted in its stats."""
    clock = ManualClock()
    path = tmp_path / "events.db"
    async with opened(f"{sqlite_url(tmp_path)}?writer={writer}", clock) as store:
        assert auto_vacuum(path) == 2  # INCREMENTAL
        await fill(store, 3000)
        clock.advance(40 * DAY)
        await fill(store, 50, prefix="new")  # (kept: last changed now)
        before = checkpointed_size(path)
        assert before > 3000 * 4000
        with capture_logs() as logs:
            purged = await store.purge(before=clock.time() - 30 * DAY)
        assert purged.events == 3000
        after = os.path.getsize(path)  # (the store's own checkpoint, nothing else)
        assert after < before / 5
        (line,) = [e for e in logs if e["event"] == "store_space_given_back"]
        assert line["size_before"] == before
        assert line["size_after"] == after
        assert line["pages"] > GIVE_BACK_STEP  # (in several steps)
        assert line["bytes"] == line["pages"] * 4096 == store.stats.bytes_freed
        # what stayed is whole, and the store takes new events where the old ones were
        assert len(await store.list(limit=100)) == 50
        await fill(store, 10, prefix="later")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 60


async def test_a_dry_run_or_a_purge_of_nothing_gives_nothing_back(tmp_path: Path) -> None:
    clock = ManualClock()
    async with opened(sqlite_url(tmp_path), clock) as store:
        await fill(store, 200)
        with capture_logs() as logs:
            assert (await store.purge(before=clock.time() - 30 * DAY)).events == 0
            clock.advance(40 * DAY)
            assert (await store.purge(before=clock.time() - 30 * DAY, dry_run=True)).events == 200
        assert not [e for e in logs if e["event"] == "store_space_given_back"]
        assert store.stats.bytes_freed == 0


async def test_a_purge_of_nothing_gives_back_what_an_earlier_one_left(tmp_path: Path) -> None:
    """Free pages an earlier purge left in the file (its deletes committed, then its hub
    killed in the give-back, or the give-back failed: here rows deleted by another
    connection, which leaves the same file) are given back by the next purge, though it
    deletes nothing. They stayed until a purge deleted events: ``--purge-after`` later."""
    clock = ManualClock()
    path = tmp_path / "events.db"
    async with opened(sqlite_url(tmp_path), clock) as store:
        await fill(store, 3000)
        await fill(store, 50, prefix="kept")
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("DELETE FROM events WHERE id <= 3000")
            conn.execute(
                "DELETE FROM deliveries WHERE NOT EXISTS "
                "(SELECT 1 FROM events WHERE events.delivery = deliveries.id)"
            )
            conn.commit()
        before = checkpointed_size(path)
        with capture_logs() as logs:
            assert (await store.purge(before=clock.time() - 30 * DAY)).events == 0
        assert os.path.getsize(path) < before / 5
        (line,) = [e for e in logs if e["event"] == "store_space_given_back"]
        assert line["pages"] > GIVE_BACK_STEP
        assert len(await store.list(limit=100)) == 50
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_an_old_store_keeps_its_size_and_says_so(tmp_path: Path) -> None:
    """A store an earlier leadhub made (auto_vacuum NONE) opens as before, with a line naming
    the command that converts it; its purges reuse the pages and give nothing back."""
    path = tmp_path / "events.db"
    shutil.copyfile(OLD_STORE, path)
    clock = ManualClock()
    with capture_logs() as logs:
        async with opened(sqlite_url(tmp_path), clock) as store:
            await fill(store, 500)
            clock.advance(40 * DAY)
            before = checkpointed_size(path)
            assert (await store.purge(before=clock.time() - 30 * DAY)).events >= 500
            assert store.stats.bytes_freed == 0
    assert auto_vacuum(path) == 0
    assert checkpointed_size(path) == before
    (note,) = [e for e in logs if e["event"] == "store_keeps_size"]
    assert "leadhub vacuum --db" in note["note"]
    (line,) = [e for e in logs if e["event"] == "store_opened"]
    assert line["shrinks"] is False
    assert not [e for e in logs if e["event"] == "store_space_given_back"]


async def test_a_new_store_says_nothing_of_its_size(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with opened(sqlite_url(tmp_path), ManualClock()):
            pass
    (line,) = [e for e in logs if e["event"] == "store_opened"]
    assert line["shrinks"] is True
    assert not [e for e in logs if e["event"] == "store_keeps_size"]


async def test_a_backup_keeps_the_mode_and_its_restore_shrinks(tmp_path: Path) -> None:
    """``leadhub backup``'s copy of a store made with incremental vacuum is one too: restored,
    its purges give space back."""
    clock = ManualClock()
    copy = tmp_path / "backup.db"
    async with opened(sqlite_url(tmp_path), clock) as store:
        await fill(store, 1000)
        copy_store(store.path, copy)  # (of a running store)
    assert auto_vacuum(copy) == 2
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copyfile(copy, restored / "events.db")
    clock.advance(40 * DAY)
    async with opened(sqlite_url(restored), clock) as store:
        before = checkpointed_size(store.path)
        assert (await store.purge(before=clock.time() - 30 * DAY)).events == 1000
        assert os.path.getsize(store.path) < before / 5


async def test_the_automatic_purge_counts_the_bytes_given_back(tmp_path: Path) -> None:
    clock = ManualClock()
    async with opened(sqlite_url(tmp_path), clock) as store:
        await fill(store, 1000)
        clock.advance(40 * DAY)
        app, registry = metered_app()

        def freed() -> float | None:
            return registry.get_sample_value("leadhub_store_bytes_freed_total")

        async with retention_lifespan(store=store, clock=clock, keep=30 * DAY)(app):
            await wait_for(lambda: bool(freed()), timeout=30, what="the round's count")
        assert freed() == store.stats.bytes_freed > 1000 * 4000
