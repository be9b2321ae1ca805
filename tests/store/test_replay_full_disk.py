"""A replay that a full disk stops part way (a real tmpfs of a few megabytes): ``leadhub
replay`` says how many events it requeued before it stopped, as ``leadhub purge`` does."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import open_store
from tests.support.disks import small_disk
from tests.support.server import leadhub_run

from .helpers import delivery
from .test_purge_full_disk import EVENTS, PAD, fill


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "32m") as mounted:
        yield mounted


async def seed_dead(url: str) -> None:
    """:data:`EVENTS` dead events, each with a last error as long as its document."""
    store = open_store(url)
    await store.open()
    try:
        for n in range(EVENTS):
            doc = {"id": n, "pad": PAD}
            (res,) = await store.enqueue(
                delivery(f"d-{n}", received_at=time.time(), documents=[doc])
            )
            await store.dead(res.id, error=f"MXInvalidEmailException {PAD}")
    finally:
        await store.close()


def queued(db: Path) -> int:
    """How many events the SQLite file ``db`` holds queued, read by another connection."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events WHERE state = 'queued'").fetchone()
    return int(count)


async def test_the_command_says_how_many_it_requeued_before_the_disk_filled(disk: Path) -> None:
    """The error alone ("its filesystem is full; free space there") was the last line: the
    operator could not tell whether to run it again, nor that events were being sent."""
    db = disk / "hub.db"
    await seed_dead(f"sqlite:///{db}")
    fill(disk, leave=3_000_000)
    done = leadhub_run(["replay", "--db", f"sqlite:///{db}", "--status", "dead"], timeout=120)
    went = queued(db)
    assert 0 < went < EVENTS, (went, done.stderr)  # the disk stopped it part way
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    *_, error, last = done.stderr.splitlines()
    assert "its filesystem is full; free space there" in error
    assert last == (
        f"leadhub replay: stopped part way: requeued {went} events before the error; they "
        "stay queued, and the same command again, once the store can be written, requeues "
        "the rest (only those still in the state it takes)."
    ), done.stderr
