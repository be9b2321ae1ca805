"""A purge that a full disk stops part way (a real tmpfs of a few megabytes): ``leadhub purge``
says what went before it stopped, and ``serve --purge-after`` tries again soon, not an hour
later, and purges the rest once there is room."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.clock import ManualClock
from hub.store import open_store
from tests.support.disks import small_disk
from tests.support.server import REPO

from .helpers import delivery

DAY = 86400.0
#: Events of about 1 KB each: three purge steps (hub.store.base.PURGE_WINDOW) of them.
EVENTS = 3000
PAD = "x" * 800


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "32m") as mounted:
        yield mounted


async def seed(url: str, now: float) -> None:
    """:data:`EVENTS` events delivered 40 days before ``now``."""
    store = open_store(url, clock=ManualClock(now - 40 * DAY))
    await store.open()
    try:
        for n in range(EVENTS):
            doc = {"id": n, "pad": PAD}
            (res,) = await store.enqueue(delivery(f"d-{n}", documents=[doc]))
            await store.ack(res.id, lead_id=f"L-{n}", created=True)
    finally:
        await store.close()


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes: a purge's first step
    fits in what is left, not all of them."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, stat.f_bavail * stat.f_frsize - leave)
    return filler


def left(db: Path) -> int:
    """How many events the SQLite file ``db`` holds, read by another connection."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(count)


async def test_the_command_says_what_went_before_the_disk_filled(disk: Path) -> None:
    """The error alone ("its filesystem is full; free space there") left the operator to
    guess whether anything went; the last line now says how many, and they did go."""
    db = disk / "hub.db"
    await seed(f"sqlite:///{db}", now=time.time())
    fill(disk, leave=1_500_000)
    done = subprocess.run(
        [sys.executable, "-m", "hub", "purge", "--db", f"sqlite:///{db}", "--older-than", "30d"],
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    went = EVENTS - left(db)
    assert 0 < went < EVENTS, (went, done.stderr)  # the disk stopped it part way
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    *_, error, last = done.stderr.splitlines()
    assert "its filesystem is full; free space there" in error
    assert last.startswith(
        f"leadhub purge: stopped part way: purged {went} events and {went} deliveries before "
        "the error (delivered and skipped events last changed before "
    ), done.stderr
    assert last.endswith("the same command again, once the store can be written, purges the rest.")
