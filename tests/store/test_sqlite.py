"""What only the SQLite backend promises: group commit, durability, locking, self-healing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.clock import ManualClock
from hub.store import StoreError, StoreUnavailable, open_store
from hub.store.bulk import unpack_body
from hub.store.models import Ack, EventIn, IncomingDelivery, State
from hub.store.sqlite import SQLiteStore
from hub.store.sqlite_conn import Q
from tests.support.server import REPO

from .conftest import FIXTURES, sqlite_url
from .helpers import delivery, python_child


@pytest.fixture(params=["thread", "process"])
def writer(request: pytest.FixtureRequest) -> str:
    """Where enqueues are written: the store's writer thread, or its child process."""
    return str(request.param)


async def opened(
    tmp_path: Path, clock: ManualClock, name: str = "events.db", writer: str = "thread"
) -> SQLiteStore:
    """An opened SQLite store on a file in ``tmp_path``."""
    store = open_store(sqlite_url(tmp_path, name), clock=clock, writer=writer)
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store


def raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a fresh sqlite3 connection to ``path``; values as sqlite3 gives them."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


class TestGroupCommit:
    async def test_concurrent_enqueues_share_commits(
        self, tmp_path: Path, clock: ManualClock, writer: str
    ) -> None:
        """500 concurrent enqueues all succeed, each stored once, in far fewer than 500 commits."""
        store = await opened(tmp_path, clock, writer=writer)
        try:
            before = store.stats.commits
            results = await asyncio.gather(*(store.enqueue(delivery(f"g{i}")) for i in range(500)))
            commits = store.stats.commits - before
            ids = [r.id for (r,) in results]
            assert len(set(ids)) == 500 and not any(r.duplicate for (r,) in results)
            assert (await store.counts())[State.QUEUED] == 500
            assert 1 <= commits <= 50, commits
        finally:
            await store.close()
        assert raw(tmp_path / "events.db", "SELECT count(*) FROM events") == [(500,)]

    async def test_concurrent_duplicates_store_one(
        self, tmp_path: Path, clock: ManualClock, writer: str
    ) -> None:
        """The same delivery posted 20 times at once is stored once; 19 are duplicates of it."""
        store = await opened(tmp_path, clock, writer=writer)
        try:
            results = await asyncio.gather(*(store.enqueue(delivery("same")) for _ in range(20)))
        finally:
            await store.close()
        assert len({r.id for (r,) in results}) == 1
        assert sum(not r.duplicate for (r,) in results) == 1


class TestLayout:
    async def test_batch_body_stored_once(self, tmp_path: Path, clock: ManualClock) -> None:
        """A Facebook batch of three leads stores its raw body in one row, three events on it."""
        body = (FIXTURES / "facebook_leadgen_batched.json").read_bytes()
        store = await opened(tmp_path, clock)
        try:
            changes = [("1287634509898765", {"n": 1}), ("1287634509800001", {"n": 2})]
            changes.append(("5412398761234567", {"n": 3}))
            await store.enqueue(
                IncomingDelivery(
                    endpoint="facebook",
                    received_at=clock.time(),
                    body=body,
                    content_type="application/json",
                    headers={},
                    events=tuple(EventIn(d, doc) for d, doc in changes),
                )
            )
        finally:
            await store.close()
        db = tmp_path / "events.db"
        [(stored, fmt)] = raw(db, "SELECT body, body_format FROM deliveries")
        assert isinstance(stored, bytes) and isinstance(fmt, int)
        assert unpack_body(stored, fmt) == body
        assert raw(db, "SELECT count(*) FROM events") == [(3,)]

    async def test_typical_event_costs_under_3kb(self, tmp_path: Path, clock: ManualClock) -> None:
        """A delivered Typeform event costs well under 3 KB on disk beyond its raw body."""
        body = (FIXTURES / "typeform_form_response_full.json").read_bytes()
        document = orjson.loads(body)
        db = tmp_path / "events.db"
        store = await opened(tmp_path, clock)
        n = 300
        try:
            raw(db, "PRAGMA wal_checkpoint(TRUNCATE)")
            size_before = db.stat().st_size
            for i in range(n):
                (res,) = await store.enqueue(
                    IncomingDelivery(
                        endpoint="typeform",
                        received_at=clock.time(),
                        body=body,
                        content_type="application/json",
                        headers={"user-agent": "Typeform Webhooks", "content-type": "json"},
                        events=(EventIn(f"01HQ{i:022d}", document),),
                    )
                )
                await store.set_route(
                    res.id,
                    target="default",
                    mapping="typeform-demo-request",
                    lead_keys=[f"e:person{i}@example.com", f"p:91555010{i:04d}"],
                )
                lead_id = f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd"
                await store.ack(res.id, lead_id=lead_id, created=True)
        finally:
            await store.close()
        raw(db, "PRAGMA wal_checkpoint(TRUNCATE)")
        per_event = (db.stat().st_size - size_before - n * len(body)) / n
        assert per_event < 1500, per_event


class TestDurability:
    @pytest.mark.slow
    def test_sigkill_loses_no_acknowledged_enqueue(self, tmp_path: Path, writer: str) -> None:
        """Every enqueue that returned before a SIGKILL is in the file afterwards."""
        url = sqlite_url(tmp_path) + f"?writer={writer}"
        acked: dict[int, str] = {}
        output = []
        with python_child(str(Path(__file__).parent / "child_enqueue.py"), url) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                output.append(line)
                if line.startswith("ok "):
                    _, eid, did = line.split()
                    acked[int(eid)] = did
                    if len(acked) >= 300:
                        break
            proc.send_signal(signal.SIGKILL)
            # Lines written before the kill are still in the pipe: they count too.
            for line in proc.stdout:
                if line.startswith("ok "):
                    _, eid, did = line.split()
                    acked[int(eid)] = did
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, "".join(output)
        assert len(acked) >= 300, "".join(output)

        async def check() -> None:
            store = open_store(url)
            await store.open()
            try:
                for eid, did in acked.items():
                    event = await store.get(eid)
                    assert event is not None, eid
                    assert (event.delivery_id, event.state) == (did, State.QUEUED)
            finally:
                await store.close()

        asyncio.run(check())

    async def test_reopened_store_sees_everything(self, tmp_path: Path, clock: ManualClock) -> None:
        """A store opened again on the same file finds the events and their states."""
        store = await opened(tmp_path, clock)
        (res,) = await store.enqueue(delivery("persist"))
        await store.dead(res.id, error="MX boom")
        await store.close()
        again = await opened(tmp_path, clock)
        try:
            event = await again.get(res.id)
            assert event is not None and (event.state, event.last_error) == (State.DEAD, "MX boom")
        finally:
            await again.close()


class TestConcurrentClaimers:
    async def test_two_stores_never_claim_the_same_event(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """Two store instances on one file claiming in parallel split the events, no overlap."""
        one = await opened(tmp_path, clock)
        two = await opened(tmp_path, clock)
        try:
            await asyncio.gather(*(one.enqueue(delivery(f"c{i}")) for i in range(400)))

            async def worker(store: SQLiteStore) -> list[int]:
                got: list[int] = []
                while batch := await store.claim(limit=3, lease=60):
                    got.extend(e.id for e in batch)
                    for e in batch:
                        await store.ack(e.id, lead_id="L", created=True)
                    # A pause between claims, as a real worker sending leads has, so the
                    # other store's writer gets the lock too and the claims really interleave.
                    await asyncio.sleep(0.002)
                return got

            results = await asyncio.gather(worker(one), worker(two), worker(one), worker(two))
        finally:
            await one.close()
            await two.close()
        claimed = [eid for got in results for eid in got]
        assert len(claimed) == 400 and len(set(claimed)) == 400
        assert results[0] + results[2] and results[1] + results[3], "both stores should claim"

    @pytest.mark.slow
    def test_worker_processes_never_claim_the_same_event(self, tmp_path: Path) -> None:
        """Three worker processes draining one file take every event exactly once."""
        url = sqlite_url(tmp_path)

        async def fill() -> None:
            store = open_store(url)
            await store.open()
            try:
                await asyncio.gather(*(store.enqueue(delivery(f"p{i}")) for i in range(600)))
            finally:
                await store.close()

        asyncio.run(fill())
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        script = str(Path(__file__).parent / "child_claim.py")
        procs = [
            subprocess.Popen(
                [sys.executable, script, url],
                cwd=str(REPO),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        claimed = [
            int(line.split()[1])
            for out in outputs
            for line in out.splitlines()
            if line.startswith("claimed ")
        ]
        assert len(claimed) == 600 and len(set(claimed)) == 600


class TestAvailability:
    async def test_ping_fails_and_recovers(
        self, tmp_path: Path, clock: ManualClock, writer: str
    ) -> None:
        """ping raises StoreUnavailable while the path cannot be opened and heals once fixed."""
        home = tmp_path / "data"
        home.mkdir()
        store = await opened(home, clock, writer=writer)
        try:
            (res,) = await store.enqueue(delivery("before"))
            moved = tmp_path / "moved"
            home.rename(moved)
            home.write_text("not a directory")  # the db's parent is now a regular file
            with pytest.raises(StoreUnavailable, match="cannot be opened"):
                await store.ping()
            with pytest.raises(StoreUnavailable):
                await store.enqueue(delivery("during"))
            home.unlink()
            moved.rename(home)
            await store.ping()
            (later,) = await store.enqueue(delivery("after"))
            assert not later.duplicate
            event = await store.get(res.id)
            assert event is not None and event.delivery_id == "before"
        finally:
            await store.close()

    async def test_open_on_unopenable_path(self, tmp_path: Path, clock: ManualClock) -> None:
        """Opening a store under a regular file fails with StoreUnavailable naming the path."""
        (tmp_path / "afile").write_text("x")
        store = open_store(f"sqlite:///{tmp_path / 'afile' / 'events.db'}", clock=clock)
        with pytest.raises(StoreUnavailable, match="afile"):
            await store.open()

    async def test_open_makes_missing_directories(self, tmp_path: Path, clock: ManualClock) -> None:
        """The first open creates the database's missing parent directories."""
        store = open_store(f"sqlite:///{tmp_path / 'a' / 'b' / 'events.db'}", clock=clock)
        await store.open()
        try:
            await store.ping()
        finally:
            await store.close()
        assert (tmp_path / "a" / "b" / "events.db").is_file()

    async def test_unopened_store_says_so(
        self, tmp_path: Path, clock: ManualClock, writer: str
    ) -> None:
        """Using a store before open() raises a StoreError telling to open it."""
        store = open_store(sqlite_url(tmp_path), clock=clock, writer=writer)
        with pytest.raises(StoreError, match="open"):
            await store.enqueue(delivery("x"))
        with pytest.raises(StoreError, match="open"):
            await store.get(1)

    async def test_open_twice_and_use_after_close(
        self, tmp_path: Path, clock: ManualClock, writer: str
    ) -> None:
        """A second open() is harmless; after close() every call says the store is not open."""
        store = await opened(tmp_path, clock, writer=writer)
        await store.open()
        (res,) = await store.enqueue(delivery("once"))
        await store.close()
        await store.close()
        with pytest.raises(StoreError, match="not open"):
            await store.enqueue(delivery("late"))
        with pytest.raises(StoreError, match="not open"):
            await store.get(res.id)

    async def test_awkward_path_characters(
        self, tmp_path: Path, clock: ManualClock, writer: str
    ) -> None:
        """A percent-encoded path with spaces, '#' and '?' works for writes and reads alike."""
        home = tmp_path / "my data #1?"
        home.mkdir()
        url = f"sqlite:///{urllib.parse.quote(str(home / 'events.db'))}?writer={writer}"
        store = open_store(url, clock=clock)
        await store.open()
        try:
            (res,) = await store.enqueue(delivery("odd"))
            event = await store.get(res.id)
            assert event is not None and event.delivery_id == "odd"
        finally:
            await store.close()
        assert (home / "events.db").exists()


class TestSettings:
    async def test_wal_and_full_sync_by_default(self, tmp_path: Path, clock: ManualClock) -> None:
        """The file is in WAL mode and commits with synchronous=FULL unless told otherwise."""
        store = await opened(tmp_path, clock)
        try:
            level = await store._writer.submit(
                lambda c: c.execute("PRAGMA synchronous").fetchone()[0]
            )
        finally:
            await store.close()
        assert level == 2  # FULL
        assert raw(tmp_path / "events.db", "PRAGMA journal_mode") == [("wal",)]

    async def test_synchronous_normal_from_url(self, tmp_path: Path, clock: ManualClock) -> None:
        """?synchronous=normal in the URL lowers the sync level to NORMAL."""
        store = open_store(sqlite_url(tmp_path) + "?synchronous=normal", clock=clock)
        assert isinstance(store, SQLiteStore)
        await store.open()
        try:
            level = await store._writer.submit(
                lambda c: c.execute("PRAGMA synchronous").fetchone()[0]
            )
        finally:
            await store.close()
        assert level == 1  # NORMAL


class TestOpenStore:
    def test_relative_and_absolute_paths(self, tmp_path: Path) -> None:
        """Three slashes give a relative path, four an absolute one."""
        rel = open_store("sqlite:///data/leadhub.db")
        absolute = open_store(f"sqlite:///{tmp_path}/x.db")
        assert isinstance(rel, SQLiteStore) and isinstance(absolute, SQLiteStore)
        assert rel.path == Path("data/leadhub.db")
        assert absolute.path == tmp_path / "x.db"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("sqlite:///:memory:", "in-memory"),
            ("sqlite://", "three slashes"),
            ("sqlite://host/x.db", "three slashes"),
            ("postgresql://u:hunter2@db/leadhub?writer=process", "SQLite options"),
            ("mysql://db/leadhub", "Unknown event store URL"),
            ("sqlite:///x.db?synchronous=off", "synchronous"),
            ("sqlite:///x.db?cache=shared", "cache"),
            ("sqlite:///x.db?writer=fork", "writer"),
            ("sqlite:///my data #1/x.db", "%23"),
            ("sqlite:///x.db?stall_after=0s", "above zero, like 30s"),
            ("sqlite:///x.db?stall_after=soon", "stall_after"),
        ],
    )
    def test_bad_urls(self, url: str, message: str) -> None:
        """Unusable store URLs raise StoreError saying what to write instead."""
        with pytest.raises(StoreError, match=message) as info:
            open_store(url)
        assert "hunter2" not in str(info.value)


async def _delivered(store: SQLiteStore, first: int, count: int) -> None:
    """``count`` delivered events, named ``e<first>`` on, a thousand to a delivery."""
    for start in range(first, first + count, 1000):
        names = [f"e{n}" for n in range(start, min(start + 1000, first + count))]
        results = await store.enqueue(delivery(*names))
        await store.ack_many([Ack(r.id, f"L-{r.id}", True) for r in results])


def _step_work(path: Path, before: float) -> int:
    """The instructions SQLite's virtual machine runs to select the events a purge step of
    the window of ids 1 to 1000 takes (its progress handler, told every instruction: a count
    of work, not a time)."""
    ran = 0

    def tick() -> int:
        nonlocal ran
        ran += 1
        return 0  # go on

    params = {
        "after": 0,
        "upto": 1000,
        "states": orjson.dumps(["delivered", "skipped"]).decode(),
        "before": before,
        "endpoint": None,
    }
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.set_progress_handler(tick, 1)
        assert len(conn.execute(Q["purgeable_events"], params).fetchall()) == 1000
    return ran


class TestPurgeSteps:
    async def test_a_step_reads_its_window_not_every_event_of_the_purged_states(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        """A purge step selected its window's events (a thousand ids) through events_due,
        the state index: it read every delivered event of the store, for each step, and a
        purge was quadratic (a dry run of 1,000,000 events took 82 s; a step of a real one
        held the write lock 0.2 s, webhooks waiting that long). The step's work no longer
        grows with the events beyond its window."""
        store = await opened(tmp_path, clock)
        try:
            await _delivered(store, 0, 2000)
            small = _step_work(store.path, clock.time() + 1)
            await _delivered(store, 2000, 18000)  # ten times as many delivered events
            large = _step_work(store.path, clock.time() + 1)
        finally:
            await store.close()
        assert large < 1.5 * small, (small, large)
