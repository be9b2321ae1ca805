"""Another process holding the SQLite file's write lock for long (a `sqlite3` shell's open
transaction, a backup): what only reads the store does not wait for it.

Opening the store used to run the schema script, whose version ``INSERT OR IGNORE`` takes the
write lock even on a current file: every open, `leadhub events`' included, waited for the
other process's transaction and failed after the busy timeout (10 s) with "database is
locked". A current file now opens reading only; a write still waits, and fails as before,
saying what holds it up (it used to send the operator to check the directory's permissions,
as it did for a full disk).
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store.sqlite import SQLiteStore
from hub.store.sqlite_conn import unavailable
from tests.support.server import REPO, leadhub_run

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


def _failed_write(path: Path, *pragmas: str) -> sqlite3.Error:
    """The error SQLite gives a write to ``path`` on a connection that waits for no lock."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        for pragma in pragmas:
            conn.execute(pragma)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE filler (x BLOB)")
        for _ in range(100):
            conn.execute("INSERT INTO filler VALUES (zeroblob(100000))")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the write went through")


def test_a_write_refused_for_the_lock_says_another_process_holds_it(stored: Path) -> None:
    with held(stored):
        err = unavailable(stored, _failed_write(stored))
    assert "database is locked" in str(err)
    assert "another process held its write lock" in str(err)
    assert "directory exists" not in str(err)


def test_a_write_refused_for_space_says_the_filesystem_is_full(stored: Path) -> None:
    # A database at its page limit fails as a full disk does (SQLITE_FULL).
    limit = "PRAGMA max_page_count = 20"
    err = unavailable(stored, _failed_write(stored, limit))
    assert "database or disk is full" in str(err)
    assert "its filesystem is full; free space there" in str(err)


def test_a_process_out_of_file_descriptors_is_told_so(stored: Path) -> None:
    """Out of file descriptors (a real EMFILE, in a process whose limit is 32), the store's
    error said to check that the directory exists and is writable: it names the limit."""
    script = f"""
import resource, sys
from pathlib import Path
from hub.store.sqlite_conn import unavailable
resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
held = []
try:
    while True:
        held.append(open({str(stored)!r}, "rb"))
except OSError as exc:
    print(unavailable(Path({str(stored)!r}), exc))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert "Too many open files" in done.stdout
    assert "no file descriptor left (its limit, `ulimit -n`, is reached" in done.stdout
    assert "directory exists" not in done.stdout


def test_an_io_error_points_at_the_disk(stored: Path) -> None:
    # (a real one needs a failing disk, or ext4 turned read-only after an error)
    err = unavailable(stored, OSError(errno.EIO, "Input/output error"))
    assert "the disk failed to read or write it" in str(err)
    assert "dmesg" in str(err) and "directory exists" not in str(err)


def test_a_write_past_the_file_size_limit_says_so(stored: Path) -> None:
    """A hub started under a file size limit (``ulimit -f``, systemd's ``LimitFSIZE=``, a
    container's ulimits) whose store grows past it: SQLite's write fails with EFBIG, which it
    reports as a disk I/O error, and the hint sent the operator to the system log for a
    failing disk that is not there. It now names the limit too."""
    script = f"""
import asyncio, os, resource
from hub.store.sqlite import SQLiteStore
from hub.store.base import StoreUnavailable
from tests.store.helpers import delivery
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))

async def fill() -> None:
    store = SQLiteStore({str(stored)!r})
    await store.open()
    try:
        for n in range(100_000):
            noise = os.urandom(2000).hex()  # (bodies are compressed: random text is not)
            await store.enqueue(delivery(f"big-{{n}}", documents=[{{"notes": noise}}]))
    except StoreUnavailable as exc:
        print(exc)
    finally:
        await store.close()

asyncio.run(fill())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert "disk I/O error" in done.stdout, done.stdout + done.stderr
    assert "file size limit (`ulimit -f`: 262,144 bytes;" in done.stdout, done.stdout
