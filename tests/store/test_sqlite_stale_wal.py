"""Another file put at the store's path while the old file's log is still there is refused.

A store file moved away or deleted while the hub runs leaves its write-ahead log at the path,
holding its last writes. Another file moved there (another store, a copy) was opened beside
that log: SQLite read it through the old store's log, so the events shown were the moved
store's, new deliveries took ids on from them, and the next checkpoint would have written
those pages over the new file. Now every write and read is refused, naming the log and both
ways out, until the file opened before is back, and then the store goes on with everything it
held. Both writers: the writer thread and the ingest writer process (a child started while
the other file is there included).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from hub.clock import ManualClock
from hub.store import StoreUnavailable

from .helpers import delivery
from .test_sqlite_process import child_pid
from .test_sqlite_vanished import back_whole, opened, stored_before

STALE = "write-ahead log"


async def make_other(db: Path) -> None:
    db.parent.mkdir()
    store = await opened(db, ManualClock(1_700_000_000.0), "thread")
    await store.enqueue(delivery("other-0"))
    await store.close()


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_another_file_beside_the_old_files_log_is_refused_then_the_file_back_resumes(
    tmp_path: Path, writer: str
) -> None:
    db = tmp_path / "hub.db"
    other = tmp_path / "other" / "hub.db"
    await make_other(other)
    assert not Path(f"{other}-wal").exists()
    store = await opened(db, ManualClock(1_700_000_000.0), writer)
    try:
        before = await stored_before(store)
        assert Path(f"{db}-wal").stat().st_size > 0
        aside = tmp_path / "aside.db"
        db.rename(aside)  # its log stays at the path, holding its writes
        other.rename(db)
        if writer == "process":  # a child started now finds the other file there too
            os.kill(child_pid(store), signal.SIGKILL)
            assert store._ingest is not None
            for _ in range(500):
                if not store._ingest.running:
                    break
                await asyncio.sleep(0.01)
        for attempt in (store.enqueue(delivery("new")), store.ping(), store.get(1)):
            with pytest.raises(StoreUnavailable, match=STALE) as caught:
                await attempt
            assert f"{db}-wal" in str(caught.value)
        # the other store's file is untouched: its one event, nothing of the first store's
        db.rename(other)
        db_other_events = await opened(other, ManualClock(1_700_000_000.0), "thread")
        try:
            listed = await db_other_events.list(limit=10)
            assert [e.delivery_id for e in listed] == ["other-0"]
        finally:
            await db_other_events.close()
        aside.rename(db)
        await back_whole(store, before)
    finally:
        await store.close()
