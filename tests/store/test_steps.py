"""A large replay or purge works in short steps that leave the store to the other writers.

Replay was one statement: on SQLite its write lock was held for as long as it ran (0.6 s
for 100,000 dead events, every webhook waiting that long). It now reads its selection once
and requeues it a step at a time (``replay_step`` events, each step its own transaction);
a step takes only the events still in a selected state. And a SQLite writer waiting for the
lock tries every millisecond instead of by SQLite's busy handler, whose sleeps grow to 100
ms: against a writer that takes the lock in steps it kept missing the gaps between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.clock import ManualClock
from hub.store import EventStore, open_store
from hub.store.base import BatchedStore
from hub.store.models import State

from .conftest import opened, sqlite_url, sqlite_writer_url
from .helpers import delivery, python_child


async def dead_events(store: EventStore, n: int) -> list[int]:
    """``n`` dead events (one delivery carrying them all), their ids in order."""
    results = await store.enqueue(delivery(*(f"d{i}" for i in range(n))))
    ids = [r.id for r in results]
    await asyncio.gather(*(store.dead(i, error="MX boom") for i in ids))
    return ids


def stepped(store: EventStore, *, step: int, pause: float) -> None:
    """Replay ``step`` events per transaction, ``pause`` s apart (attributes of every store)."""
    assert isinstance(store, BatchedStore)
    store.replay_step = step
    store.step_pause = pause


async def until(check: object, what: str, timeout: float = 10.0) -> None:
    """Wait (polling) until the coroutine function ``check`` answers true."""
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.001)


async def test_a_replay_requeues_in_steps_between_which_other_writes_commit(
    store: EventStore, other_process: EventStore
) -> None:
    """Once a replay of 2,000 events has requeued its first step, another process's write
    commits while most of them are still dead: the replay holds no lock between its steps.
    (One statement took them all at once: nothing was seen half done, and the write came
    after it.) Every event is requeued in the end, and the count says so."""
    ids = await dead_events(store, 2000)
    stepped(store, step=50, pause=0.01)
    replay = asyncio.create_task(store.replay(state=State.DEAD))

    async def started() -> bool:
        return (await other_process.counts())[State.QUEUED] > 0

    await until(started, "the replay's first step never showed")
    (written,) = await other_process.enqueue(delivery("during-the-replay"))
    counts = await other_process.counts()
    assert 100 < counts[State.DEAD] < len(ids), counts  # committed between steps
    assert await replay == len(ids)
    counts = await store.counts()
    assert (counts[State.DEAD], counts[State.QUEUED]) == (0, len(ids) + 1)
    event = await store.get(written.id)
    assert event is not None and event.state is State.QUEUED


async def test_a_step_takes_only_events_still_selected_and_none_that_came_later(
    store: EventStore, other_process: EventStore, clock: ManualClock
) -> None:
    """A replay of dead events, one per step: an event another replay requeued and a
    worker claimed meanwhile stays claimed (not put back under the worker, which would send
    it twice), an event that died after the replay began is not taken, and the count is of
    the events this replay requeued."""
    first, second, taken = await dead_events(store, 3)
    (late,) = [r.id for r in await store.enqueue(delivery("late"))]
    stepped(store, step=1, pause=0.2)
    replay = asyncio.create_task(store.replay(state=State.DEAD))

    async def first_step() -> bool:
        event = await other_process.get(first)
        return event is not None and event.state is State.QUEUED

    await until(first_step, "the replay's first step never showed")
    assert await other_process.replay(ids=[taken]) == 1  # another operator's replay
    claimed = await other_process.claim(limit=10, lease=60)  # and a worker
    assert taken in {e.id for e in claimed}
    await other_process.dead(late, error="died while the replay ran")
    assert await replay == 2
    states = {i: e.state for i in (first, second, taken, late) if (e := await store.get(i))}
    assert states[second] is State.QUEUED
    assert (states[taken], states[late]) == (State.SENDING, State.DEAD)
    assert states[first] is (State.SENDING if first in {e.id for e in claimed} else State.QUEUED)


async def test_a_dry_run_counts_the_whole_selection_in_one_read(store: EventStore) -> None:
    """A dry run changes nothing, whatever the step, and counts what the replay then takes."""
    ids = await dead_events(store, 120)
    stepped(store, step=7, pause=0.0)
    assert await store.replay(state=State.DEAD, dry_run=True) == len(ids)
    assert (await store.counts())[State.DEAD] == len(ids)
    assert await store.replay(ids=ids[::2]) == len(ids[::2])  # 60 ids: 9 steps
    assert (await store.counts())[State.DEAD] == len(ids) - len(ids[::2])


# -- SQLite: a writer waiting for the lock takes the first gap ---------------------------


@pytest.fixture(params=["sqlite", "sqlite-process"])
def sqlite_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite store's URL, enqueues written by its thread or (as serve) its child process."""
    return sqlite_writer_url(request.param, tmp_path)


@pytest.fixture
async def sqlite_store(sqlite_store_url: str, clock: ManualClock) -> AsyncIterator[EventStore]:
    async with opened(sqlite_store_url, clock) as s:
        yield s


def hold_with_a_gap(
    path: Path, *, first: float, gap: float, second: float | threading.Event
) -> threading.Thread:
    """Another writer on ``path`` (a connection of its own, as another process's): it holds
    the write lock ``first`` s, leaves it free ``gap`` s, then holds it ``second`` s more
    (or until that event is set, a minute at most)."""
    taken = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(first)
            conn.execute("COMMIT")
            time.sleep(gap)
            conn.execute("BEGIN IMMEDIATE")  # (waits here while the store's writer has it)
            if isinstance(second, threading.Event):
                second.wait(60)
            else:
                time.sleep(second)
            conn.execute("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert taken.wait(10)
    return thread


async def test_a_writer_waiting_for_the_lock_takes_a_short_gap_in_another_writer_s(
    sqlite_store: EventStore, sqlite_store_url: str, tmp_path: Path
) -> None:
    """Another process holds the write lock 0.4 s, frees it for 8 ms, then holds it again
    until the test lets go: a delivery waiting meanwhile is committed in that gap, while the
    second hold still runs, not after it. (SQLite's busy handler, waiting a third of a
    second already, tried every 100 ms and missed the gap: the delivery waited for the
    second hold's end, as webhooks did during a stepped purge.) Told by the order of
    events, not by a time: the second hold ends only once the delivery is committed."""
    await sqlite_store.enqueue(delivery("warm-up"))  # the writer (thread or child) is open
    let_go = threading.Event()
    holder = hold_with_a_gap(tmp_path / "events.db", first=0.4, gap=0.008, second=let_go)
    try:
        await sqlite_store.enqueue(delivery("waits-for-the-gap"))
        in_second_hold = holder.is_alive() and not let_go.is_set()
    finally:
        let_go.set()
        await asyncio.to_thread(holder.join, 10)
    assert in_second_hold, "the delivery was committed only once the second hold ended"


async def test_stepped_writes_leave_the_lock_free_between_steps(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    """Between two steps of a replay the write lock stays free for a moment (the store's
    ``step_pause``, 5 ms): a connection that tries for it without waiting gets it there
    again and again while the replay runs."""
    ids = await dead_events(sqlite_store, 400)
    assert isinstance(sqlite_store, BatchedStore)
    sqlite_store.replay_step = 20
    replay = asyncio.create_task(sqlite_store.replay(state=State.DEAD))
    got = 0
    conn = sqlite3.connect(tmp_path / "events.db", isolation_level=None, timeout=0)
    try:
        while not replay.done():
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                pass
            else:
                conn.execute("COMMIT")
                got += 1
            await asyncio.sleep(0.002)
    finally:
        conn.close()
    assert await replay == len(ids)
    assert got >= 5, got


# -- Ctrl-C: a stopped replay or purge says what it did ------------------------------------


async def until_waiting_for_the_lock(proc: subprocess.Popen[str]) -> None:
    """Return once a thread of ``proc`` (a leadhub command) sleeps in nanosleep: in hub/ only
    begin_immediate sleeps so, between its tries for another connection's write lock, so
    the command has started and its first step waits for the lock. (A fixed 2.5 s was not
    always enough on a loaded machine, where the interpreter's start and imports alone took
    1.3 s: a SIGINT before the step is a KeyboardInterrupt elsewhere, or no step done.)"""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the command ended before its first step waited"
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            try:
                if "nanosleep" in (task / "wchan").read_text():
                    return
            except OSError:  # (a thread that ended meanwhile)
                continue
        assert time.monotonic() < deadline, "no thread waited for the lock within 60 s"
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Children started in the block take SIGINT as a Ctrl-C (Python's KeyboardInterrupt),
    whatever started the test run: one run in the background of a script (``pytest ... &``)
    ignores SIGINT, as do its children, and a command that inherits the ignore goes on to
    its end (exit 0) as it should. A signal handled here is reset to its default in a child
    at its exec; an ignored one stays ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize(
    ("argv", "line", "said", "left"),
    [
        (
            ["replay", "--status", "dead"],
            '"requeued":1000,"selected":3000',
            "leadhub replay: stopped before the end: requeued 1000 events (whole steps), which "
            "stay queued; the same command again requeues the rest, only those still in the "
            "state it takes.",
            State.QUEUED,
        ),
        (
            ["purge", "--older-than", "3d", "--status", "dead"],
            '"events":1000,',
            "leadhub purge: stopped before the end: purged 1000 events and 0 deliveries "
            "(whole steps), which stay purged; the same command again purges the rest.",
            None,
        ),
    ],
    ids=["replay", "purge"],
)
async def test_a_command_stopped_by_ctrl_c_says_how_far_it_went_and_exits_130(
    tmp_path: Path,
    clock: ManualClock,
    argv: list[str],
    line: str,
    said: str,
    left: State | None,
) -> None:
    """``leadhub replay`` and ``purge`` stopped by SIGINT half way (here while their first
    step waits for another writer's lock) finish the step they handed to the store, log how
    many events they did (the number written), say in their last line how many that was and
    that the rest is left to the same command run again (the number was only in the log line
    above it), and exit 130 without a traceback. (A stopped one-statement replay was all or
    nothing; a stepped one is not, so it has to say.)"""
    url = sqlite_url(tmp_path)
    store = open_store(url, clock=clock)  # events last changed in 2023: purge takes them
    await store.open()
    try:
        ids = await dead_events(store, 3000)
    finally:
        await store.close()
    holder = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with (
            interruptible(),
            python_child("-m", "hub", *argv, "--db", url, stderr=subprocess.PIPE) as proc,
        ):
            await until_waiting_for_the_lock(proc)
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(0.5)
            holder.execute("COMMIT")
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        holder.close()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert line in err, err
    assert err.splitlines()[-1] == said, err
    conn = sqlite3.connect(tmp_path / "events.db")
    try:
        found = dict(conn.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())
    finally:
        conn.close()
    if left is None:  # purged
        assert found == {"dead": len(ids) - 1000}
    else:
        assert found == {"dead": len(ids) - 1000, left.value: 1000}


async def test_after_a_slow_step_the_lock_stays_free_as_long_as_the_step_took(
    sqlite_store: EventStore, tmp_path: Path
) -> None:
    """A step that took long (here its lock held 0.3 s by another writer first; on a loaded
    machine or a slow disk, its own work) is followed by a wait as long, not by the 5 ms
    pause alone: the other writers get at least half the time."""
    await dead_events(sqlite_store, 30)
    assert isinstance(sqlite_store, BatchedStore)
    sqlite_store.replay_step = 10
    holder = hold_with_a_gap(tmp_path / "events.db", first=0.3, gap=0.0, second=0.0)
    started = time.monotonic()
    assert await sqlite_store.replay(state=State.DEAD) == 30
    took = time.monotonic() - started
    await asyncio.to_thread(holder.join, 10)
    assert took > 0.55, f"replay took {took:.3f} s"
