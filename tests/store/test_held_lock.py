"""Another process holding the SQLite file's write lock for long (a `sqlite3` shell's open
transaction, a backup): what only reads the store does not wait for it.

Opening the store used to run the schema script, whose version ``INSERT OR IGNORE`` takes the
write lock even on a current file: every open, `leadhub events`' included, waited for the
other process's transaction and failed after the busy timeout (10 s) with "database is
locked". A current file now opens reading only; a write still waits, and fails as before.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store.sqlite import SQLiteStore
from tests.support.server import leadhub_run

from .helpers import delivery

#: Holds a write transaction on the file argv[1] until its stdin closes.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@pytest.fixture
async def stored(tmp_path: Path) -> Path:
    """A store file at the current schema, holding one event (id 1)."""
    path = tmp_path / "hub.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.enqueue(delivery("held-1"))
    finally:
        await store.close()
    return path


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """The write lock of ``path`` held by another process while the block runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    with holder.stdin, holder.stdout:
        try:
            assert holder.stdout.readline().strip() == "locked"
            yield
        finally:
            holder.stdin.close()
            holder.wait(timeout=10)


async def test_a_current_store_opens_and_reads_while_another_process_holds_the_write_lock(
    stored: Path,
) -> None:
    with held(stored):
        store = SQLiteStore(stored)
        await store.open()
        try:
            events = await store.list()
        finally:
            await store.close()
    assert [e.delivery_id for e in events] == ["held-1"]


def test_leadhub_events_lists_while_another_process_holds_the_write_lock(stored: Path) -> None:
    with held(stored):
        done = leadhub_run(["events", "--db", f"sqlite:///{stored}"])
    assert done.returncode == 0, done.stderr
    assert "held-1" in done.stdout
    assert "locked" not in done.stderr
