"""A SQLite file that goes missing while the store is open is never made again empty.

Only the store's first open creates the database file. Removed, moved away or hidden (its
volume unmounted) while the hub runs, the writers' re-open (``store_file_changed``) made a
new, empty store at the path and went on: ids from 1 again, earlier deliveries forgotten,
the events waiting in the old file orphaned. Now every write and ping is refused with
:class:`StoreUnavailable` saying the file went missing, no file appears at the path, and
once the file is back the store goes on by itself with everything it held. Both writers:
the writer thread and the ingest writer process (a child restarted meanwhile included).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.store import StoreUnavailable, open_store
from hub.store.models import EnqueueResult
from hub.store.sqlite import SQLiteStore

from .helpers import delivery
from .test_sqlite_process import child_pid

GONE = "went missing while the hub was running"


@pytest.fixture(params=["thread", "process"])
def writer(request: pytest.FixtureRequest) -> str:
    """Where enqueues are written: the store's writer thread, or its child process."""
    return str(request.param)


async def opened(db: Path, clock: ManualClock, writer: str) -> SQLiteStore:
    store = open_store(f"sqlite:///{db}", clock=clock, writer=writer)
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store


async def refused(store: SQLiteStore, db: Path, name: str) -> None:
    """A write, a ping and a read each refused, saying the file at ``db`` went missing; no
    file made at ``db``."""
    for attempt in (store.enqueue(delivery(name)), store.ping(), store.get(1)):
        with pytest.raises(StoreUnavailable, match=GONE) as caught:
            await attempt
        assert str(db) in str(caught.value)
    assert not db.exists()


async def stored_before(store: SQLiteStore) -> list[EnqueueResult]:
    results = [(await store.enqueue(delivery(f"before-{n}")))[0] for n in range(3)]
    assert [r.duplicate for r in results] == [False] * 3
    return results


async def back_whole(store: SQLiteStore, before: list[EnqueueResult]) -> None:
    """The store goes on with what it held: the earlier events there, their deliveries still
    known (a retry is a duplicate), new ones after them."""
    await store.ping()
    for result in before:
        event = await store.get(result.id)
        assert event is not None and event.delivery_id == result.delivery_id
    (again,) = await store.enqueue(delivery("before-0"))
    assert again.duplicate and again.id == before[0].id
    (after,) = await store.enqueue(delivery("after"))
    assert not after.duplicate and after.id > max(r.id for r in before)
    events = await store.list(limit=100)
    assert sorted(str(e.delivery_id) for e in events) == sorted(
        [*(str(r.delivery_id) for r in before), "after"]
    )
    assert len({e.id for e in events}) == len(events)


async def test_a_removed_file_is_refused_not_made_again_then_resumes_once_back(
    tmp_path: Path, clock: ManualClock, writer: str
) -> None:
    """``rm`` of the database file (its content kept by a second link, as a backup would):
    every write, ping and read refused naming the file, ``store_file_changed`` and
    ``store_unavailable`` logged with the reason, no file made; the file linked back, the
    store resumes with all it held."""
    db, keep = tmp_path / "data" / "hub.db", tmp_path / "keep.db"
    store = await opened(db, clock, writer)
    try:
        before = await stored_before(store)
        os.link(db, keep)
        with capture_logs() as logs:
            db.unlink()
            await refused(store, db, "during")
            await refused(store, db, "during")  # and again: still not made
        events = [e["event"] for e in logs]
        assert "store_file_changed" in events
        if writer == "thread":  # (the writer process logs in its own process)
            (failed,) = [e for e in logs if e["event"] == "store_unavailable"]
            assert GONE in failed["error"] and str(db) in failed["error"]
        os.link(keep, db)
        await back_whole(store, before)
    finally:
        await store.close()


async def test_a_file_moved_aside_is_refused_not_made_again_then_resumes_once_back(
    tmp_path: Path, clock: ManualClock, writer: str
) -> None:
    """The database file moved into another directory (its -wal and -shm left where they
    are): refused, no file made at the path; moved back, the store resumes."""
    db, aside = tmp_path / "data" / "hub.db", tmp_path / "aside"
    store = await opened(db, clock, writer)
    try:
        before = await stored_before(store)
        aside.mkdir()
        db.rename(aside / "hub.db")
        await refused(store, db, "during")
        (aside / "hub.db").rename(db)
        await back_whole(store, before)
    finally:
        await store.close()


async def test_a_hidden_file_is_refused_not_made_again_then_resumes_once_back(
    tmp_path: Path, clock: ManualClock, writer: str
) -> None:
    """Its volume unmounted: the directory holding the file, -wal and -shm replaced by an
    empty one (the mount point's own). Refused, nothing made in that directory; the
    directory back, the store resumes."""
    data, volume = tmp_path / "data", tmp_path / "volume"
    db = data / "hub.db"
    store = await opened(db, clock, writer)
    try:
        before = await stored_before(store)
        data.rename(volume)
        data.mkdir()
        await refused(store, db, "during")
        assert list(data.iterdir()) == []
        data.rmdir()
        volume.rename(data)
        await back_whole(store, before)
    finally:
        await store.close()


async def test_a_writer_process_restarted_while_the_file_is_missing_does_not_make_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The ingest writer process killed while the file is gone: the next enqueue starts a new
    one, which refuses the write saying the file went missing rather than creating it; the
    file back, the same child writes."""
    db, aside = tmp_path / "data" / "hub.db", tmp_path / "aside"
    aside.mkdir()
    store = await opened(db, clock, "process")
    try:
        before = await stored_before(store)
        first = child_pid(store)
        db.rename(aside / "hub.db")
        with capture_logs() as logs:
            os.kill(first, signal.SIGKILL)
            for _ in range(500):  # (a hang guard: it is noticed at once)
                if any(e["event"] == "store_writer_lost" for e in logs):
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(StoreUnavailable, match=GONE):
                await store.enqueue(delivery("during"))
        assert [e["event"] for e in logs].count("store_writer_started") == 1
        second = child_pid(store)
        assert second != first
        assert not db.exists()
        with pytest.raises(StoreUnavailable, match=GONE):
            await store.enqueue(delivery("during"))  # the new child, asked again
        assert not db.exists()
        (aside / "hub.db").rename(db)
        await back_whole(store, before)
        assert child_pid(store) == second
    finally:
        await store.close()


async def test_a_removed_file_is_made_anew_by_the_next_first_open(
    tmp_path: Path, clock: ManualClock, writer: str
) -> None:
    """Removed for good: refused while the store stays open; a store opened on the path
    afterwards (the hub restarted) makes a new, empty one there, as a fresh install does."""
    db = tmp_path / "data" / "hub.db"
    store = await opened(db, clock, writer)
    try:
        await stored_before(store)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        await refused(store, db, "during")
    finally:
        await store.close()
    assert not db.exists()
    store = await opened(db, clock, writer)
    try:
        (first,) = await store.enqueue(delivery("new"))
        assert first.id == 1 and not first.duplicate
        assert [e.delivery_id for e in await store.list(limit=10)] == ["new"]
    finally:
        await store.close()
    assert db.is_file()
