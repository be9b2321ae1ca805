"""A purge that a full disk stops part way (a real tmpfs of a few megabytes): ``leadhub purge``
says what went before it stopped, and ``serve --purge-after`` tries again soon, not an hour
later, and purges the rest once there is room."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.store import open_store
from hub.store.retention import PURGE_EVERY, Schedule, retention_lifespan
from tests.dispatch.support import wait_for
from tests.support.disks import small_disk
from tests.support.server import leadhub_run

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
    done = leadhub_run(["purge", "--db", f"sqlite:///{db}", "--older-than", "30d"], timeout=120)
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


def test_after_a_failed_round_the_next_comes_sooner_and_bounded() -> None:
    """The automatic purge's schedule: hourly; after a round the store failed, a minute,
    doubled for each further failed round that purged nothing, never past the hour; a
    failed round that purged something keeps it at a minute; a round that ends, hourly."""
    schedule = Schedule()
    assert schedule.wait == PURGE_EVERY
    waits = [schedule.failed_after(0) for _ in range(8)]
    assert waits == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    assert schedule.failed_after(1000) == 60.0
    schedule.ended()
    assert schedule.wait == PURGE_EVERY
    assert schedule.failed_after(0) == 60.0


async def test_the_automatic_purge_tries_again_soon_and_finishes_once_there_is_room(
    disk: Path,
) -> None:
    """``serve --purge-after``'s rounds on a full disk: the round the disk stopped is tried
    again soon (here 0.05 s; a minute by default), not an hour later, and once there is
    room the rest goes, every event counted once in leadhub_events_purged_total."""
    db = disk / "hub.db"
    await seed(f"sqlite:///{db}", now=time.time())
    filler = fill(disk, leave=1_500_000)
    store = open_store(f"sqlite:///{db}")
    await store.open()
    app = Starlette()
    app.state.metrics = registry = CollectorRegistry()
    hook = retention_lifespan(store=store, clock=store.clock, keep=30 * DAY, retry=0.05)
    try:
        with capture_logs() as logs:
            async with hook(app):
                await wait_for(
                    lambda: any(e["event"] == "purge_failed" for e in logs),
                    timeout=60,
                    what="a round the full disk stopped",
                )
                filler.unlink()
                await wait_for(lambda: left(db) == 0, timeout=60, what="the rest purged")
                await wait_for(
                    lambda: registry.get_sample_value("leadhub_events_purged_total") == EVENTS,
                    timeout=10,
                    what="every event counted",
                )
    finally:
        await store.close()
    failed = [e for e in logs if e["event"] == "purge_failed"]
    assert "its filesystem is full; free space there" in failed[0]["error"]
    assert failed[0]["next_try_in"] == 0.05
    assert all(0.05 <= e["next_try_in"] <= PURGE_EVERY for e in failed)
