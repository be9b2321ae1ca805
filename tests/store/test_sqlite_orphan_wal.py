"""A store's first open refuses a write-ahead log left beside no database file.

The hub killed with ``kill -9`` together with its writer (a container killed, the machine
down) leaves ``hub.db-wal`` holding the writes not yet checkpointed into ``hub.db``: on a
store that was never checkpointed, its schema and every event. With ``hub.db`` deleted or
moved away, the next first open made a new database at the path and SQLite, finding a log
beside an empty file, deleted it: the store opened empty (ids from 1) and those writes were
gone, or, while a process still had the old store open, the open failed with "disk I/O
error" after deleting the log all the same. Now the open refuses, naming both files and what
to do, and touches nothing; an empty leftover ``-wal`` (and ``-shm``) does not stop a new
store. Real SQLite files, written by a real process killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.clock import ManualClock
from hub.store import StoreUnavailable, open_store
from hub.store.sqlite import SQLiteStore
from tests.support.server import leadhub_run

from .helpers import delivery, python_child

#: A store in a child process: opened, ``n`` deliveries enqueued (each committed), then
#: "ready" and a wait to be killed. Never closed: a closed store checkpoints its log into the
#: file and deletes it.
CHILD = """
import asyncio, sys
from hub.store import open_store
from tests.store.helpers import delivery

async def main(url, n):
    store = open_store(url)
    await store.open()
    for i in range(n):
        await store.enqueue(delivery(f"old-{i}"))
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""
OLD = [f"old-{i}" for i in range(5)]


@contextlib.contextmanager
def store_running(db: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process with the store at ``db`` open, :data:`OLD` committed in it."""
    with python_child("-c", CHILD, f"sqlite:///{db}", str(len(OLD))) as proc:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # (ends if the child dies: a hang guard)
            seen.append(line)
            if line.strip() == "ready":
                break
        assert seen and seen[-1].strip() == "ready", "".join(seen)
        yield proc


def killed(db: Path) -> None:
    """The store at ``db`` written by a process then killed with SIGKILL: its log left."""
    with store_running(db) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert Path(f"{db}-wal").stat().st_size > 0


def files(directory: Path) -> dict[str, str]:
    """Each file in ``directory`` and a digest of its bytes."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in directory.iterdir()}


async def refused(db: Path) -> str:
    """A first open of ``db`` refused saying why (both paths named, both ways out); nothing
    in its directory made, changed or deleted. Returns the message."""
    before = files(db.parent)
    store = open_store(f"sqlite:///{db}")
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert repr(str(db)) in message and repr(f"{db}-wal") in message, message
    assert "Put the database file back" in message, message
    assert f"delete '{db}-wal' and '{db}-shm'" in message, message
    assert files(db.parent) == before
    return message


async def holding(db: Path, clock: ManualClock) -> list[str]:
    """The delivery ids of the store at ``db``, opened, oldest first; checks that its file
    is sound."""
    store = open_store(f"sqlite:///{db}", clock=clock)
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        ids = [str(e.delivery_id) for e in reversed(await store.list(limit=100))]
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return ids


async def test_a_log_beside_a_moved_file_is_refused_then_opens_with_the_file_back(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The file moved away after the kill, its log left: refused (it opened an empty store
    and deleted the log); moved back, the store opens with every event, the moved file
    alone holding none of them."""
    data, aside = tmp_path / "data", tmp_path / "aside"
    aside.mkdir()
    db = data / "hub.db"
    killed(db)
    db.rename(aside / "hub.db")
    message = await refused(db)
    assert "has no database file" in message
    with contextlib.closing(sqlite3.connect(f"file:{aside / 'hub.db'}?mode=ro", uri=True)) as c:
        assert c.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    (aside / "hub.db").rename(db)
    assert await holding(db, clock) == OLD


async def test_a_log_beside_a_removed_file_is_refused_until_it_is_deleted(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The file deleted: refused, again at the next try; the log and the index deleted as
    the message says, a new, empty store opens there (ids from 1)."""
    db = tmp_path / "hub.db"
    killed(db)
    db.unlink()
    await refused(db)
    await refused(db)
    Path(f"{db}-wal").unlink()
    Path(f"{db}-shm").unlink()
    await _new_store_there(db, clock)


async def test_a_log_beside_an_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file (0 bytes) where the database was: SQLite deletes the log of an empty
    file as of a missing one; refused the same."""
    db = tmp_path / "hub.db"
    killed(db)
    db.write_bytes(b"")
    assert "has an empty database file (0 bytes)" in await refused(db)


async def test_a_log_of_a_store_still_open_elsewhere_is_refused(tmp_path: Path) -> None:
    """The file removed while another process still has the store open (a hub's writer
    process outliving it a moment): the open failed with "disk I/O error", after deleting
    the log; now refused the same, the other process's log untouched."""
    db, keep = tmp_path / "hub.db", tmp_path / "keep.db"
    with store_running(db):
        os.link(db, keep)
        db.unlink()
        message = await refused(db)
    assert "disk I/O error" not in message


async def test_an_empty_leftover_log_and_index_do_not_stop_a_new_store(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The file deleted, its ``-wal`` empty (0 bytes) beside the ``-shm`` of the killed
    store, as SQLite sometimes leaves them: nothing to lose, so a new, empty store opens
    there, sound, and a process opening it next sees what it holds. The same with the
    ``-wal`` alone."""
    db = tmp_path / "hub.db"
    killed(db)
    db.unlink()
    Path(f"{db}-wal").write_bytes(b"")
    assert Path(f"{db}-shm").stat().st_size > 0
    await _new_store_there(db, clock)
    assert await holding(db, clock) == ["new"]

    other = tmp_path / "other.db"
    Path(f"{other}-wal").write_bytes(b"")
    assert await holding(other, clock) == []


async def _new_store_there(db: Path, clock: ManualClock) -> None:
    """A new, empty store opens at ``db``: its first delivery gets id 1."""
    store = open_store(f"sqlite:///{db}", clock=clock)
    await store.open()
    try:
        (new,) = await store.enqueue(delivery("new"))
        assert (new.id, new.duplicate) == (1, False)
    finally:
        await store.close()


async def test_a_backup_restored_beside_the_log_of_the_store_it_replaced_is_refused(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A restore that skipped a step of the README's (move the ``-wal`` and ``-shm`` away):
    a copy `leadhub backup` made (one file, rollback-journal mode) put over the file of a
    store killed with its log left. The hub, turning the copy to WAL mode, took the old log
    as the copy's own: the old store's pages over the copy's (events of neither, "database
    disk image is malformed"; `leadhub events` listed that mix). Now every open (serve's,
    the commands', `leadhub backup`'s, which copied the two as a stopped store's file and log
    and made a copy of the old store, exit 0) refuses, naming both files and what to do, and
    touches nothing; the log deleted as it says, the copy opens as it was backed up."""
    source, db = tmp_path / "source.db", tmp_path / "data" / "hub.db"
    backup = tmp_path / "backup.db"
    store = open_store(f"sqlite:///{source}", clock=clock)
    await store.open()
    try:
        await store.enqueue(delivery("backed-up"))
    finally:
        await store.close()
    done = leadhub_run(["backup", "--db", f"sqlite:///{source}", str(backup)])
    assert done.returncode == 0, done.stderr
    killed(db)  # the store the backup replaces: its log holds OLD
    db.unlink()
    shutil.copyfile(backup, db)
    before = files(db.parent)
    store = open_store(f"sqlite:///{db}", clock=clock)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert repr(str(db)) in message and repr(f"{db}-wal") in message, message
    assert "rollback-journal mode" in message, message
    assert f"delete '{db}-wal' and '{db}-shm'" in message, message
    assert files(db.parent) == before
    for command in (["purge", "--older-than", "30d"], ["events"]):
        done = leadhub_run([*command, "--db", f"sqlite:///{db}"])
        assert done.returncode == 1 and "rollback-journal mode" in done.stderr, done.stderr
    # a backup of it copied the file and the log as a stopped store's, and made (exit 0) a
    # copy holding the old store's events, not the restored ones
    copy = tmp_path / "copy.db"
    done = leadhub_run(["backup", "--db", f"sqlite:///{db}", str(copy)])
    assert done.returncode == 1 and "rollback-journal mode" in done.stderr, done.stderr
    assert not copy.exists()
    assert files(db.parent) == before
    Path(f"{db}-wal").unlink()
    Path(f"{db}-shm").unlink()
    assert await holding(db, clock) == ["backed-up"]
