"""``leadhub vacuum`` and the space a running hub gives back: real ``python -m hub``
processes on real SQLite files, an old store exactly as an earlier release left it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from hub.clock import ManualClock
from hub.store import EventStore, open_store
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.store.test_give_back import OLD_STORE, auto_vacuum, checkpointed_size, fill
from tests.support.disks import small_disk
from tests.support.server import leadhub_process, leadhub_run, serve_args


def _fill_old(path: Path, count: int, prefix: str) -> None:
    """``count`` events of about 4 KB delivered in November 2023 (ManualClock's start) into
    the store at ``path``, through the store as the hub writes them."""

    async def go() -> None:
        store = open_store(f"sqlite:///{path}", clock=ManualClock())
        await store.open()
        try:
            await fill(store, count, prefix=prefix)
        finally:
            await store.close()

    asyncio.run(go())


def _events(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _freed(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(r"^leadhub_store_bytes_freed_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _purge(path: Path) -> subprocess.CompletedProcess[str]:
    result = leadhub_run(["purge", "--db", f"sqlite:///{path}", "--older-than", "30d"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Purged ")
    return result


def test_an_old_store_converted_by_the_command_shrinks_after_purges(tmp_path: Path) -> None:
    """A store an earlier release made keeps its size after a purge; ``leadhub vacuum``
    compacts it (its events, mode bits and WAL mode kept) and from then on a purge gives the
    space back."""
    path = tmp_path / "hub.db"
    shutil.copyfile(OLD_STORE, path)
    os.chmod(path, 0o640)
    _fill_old(path, 2000, "a")
    high = checkpointed_size(path)
    purged = _purge(path)
    assert "Gave " not in purged.stdout
    assert purged.stderr == (
        f"leadhub purge: note: the file of {str(path)!r} keeps its size (a store made by an "
        "earlier leadhub: the space is reused for new events); to give it back, stop the hub "
        "and run `leadhub vacuum` on it once.\n"
    )
    assert auto_vacuum(path) == 0
    assert checkpointed_size(path) == high  # (the old way: the pages kept for new events)
    kept = _events(path)

    result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Vacuumed {str(path)!r}: {high:,} bytes before, ")
    assert "From now on its file shrinks after each purge" in result.stdout
    compacted = os.path.getsize(path)
    assert compacted < high / 5
    assert auto_vacuum(path) == 2
    assert _events(path) == kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.db"]  # (no copy left)
    listed = leadhub_run(["events", "--db", f"sqlite:///{path}", "--json", "--limit", "100"])
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == kept

    _fill_old(path, 2000, "b")
    high = checkpointed_size(path)
    purged = _purge(path)
    low = os.path.getsize(path)
    assert low < high / 5
    gave = re.search(
        r"^Gave ([0-9,]+) bytes back to the filesystem: (.*) is ([0-9,]+) bytes now",
        purged.stdout,
        re.MULTILINE,
    )
    assert gave is not None, purged.stdout
    assert int(gave[1].replace(",", "")) >= (high - low) * 0.9
    assert (gave[2], int(gave[3].replace(",", ""))) == (repr(str(path)), low)
    assert purged.stderr == ""


def test_the_command_compacts_a_store_that_shrinks_already(tmp_path: Path) -> None:
    """A store made with incremental vacuum holding free pages (rows deleted by hand, say)
    is compacted in place: same file, smaller, its events kept."""
    path = tmp_path / "hub.db"
    _fill_old(path, 2000, "a")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM events WHERE id > 10")
        conn.execute("DELETE FROM deliveries WHERE id NOT IN (SELECT delivery FROM events)")
        conn.commit()
    high = checkpointed_size(path)
    inode = path.stat().st_ino
    result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Vacuumed {str(path)!r}: {high:,} bytes before, ")
    assert "It was made to shrink after each purge already" in result.stdout
    assert os.path.getsize(path) < high / 5
    assert (path.stat().st_ino, auto_vacuum(path), _events(path)) == (inode, 2, 10)


def test_the_command_refuses_a_store_a_hub_has_open(tmp_path: Path) -> None:
    """While ``serve`` runs on the store, ``leadhub vacuum`` exits 1 saying why and what to
    do, and leaves the store as it was; once the hub stopped, it converts it."""
    args, base, path = serve_args(tmp_path, {"forms.yaml": CONFIG})
    shutil.copyfile(OLD_STORE, path)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV):
        before = (path.stat().st_ino, auto_vacuum(path))
        result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
        assert result.returncode == 1
        assert result.stderr.startswith("leadhub vacuum: a process has it open (a running ")
        assert "stop every hub on this file, then run `leadhub vacuum` again" in result.stderr
        assert result.stdout == ""
        assert (path.stat().st_ino, auto_vacuum(path)) == before == (before[0], 0)
        answer = httpx.post(
            f"{base}/hooks/forms",
            json={"email": "during@example.com"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200
    assert not list(tmp_path.glob(".hub.db.*"))
    result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert result.returncode == 0, result.stderr
    assert auto_vacuum(path) == 2


def test_the_command_on_a_postgresql_store_says_there_is_nothing_to_do() -> None:
    """No connection made (the URL names no server): the answer is PostgreSQL's autovacuum,
    the password masked, exit 0."""
    for given in (["--db", "postgresql://hub:s3cret@127.0.0.1:1/leads"], []):
        env = {} if given else {"LEADHUB_DB": "postgresql://hub:s3cret@127.0.0.1:1/leads"}
        result = leadhub_run(["vacuum", *given], env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(
            "'postgresql://hub:***@127.0.0.1:1/leads' is a PostgreSQL store: nothing to do. "
            "PostgreSQL's autovacuum"
        )
        assert "s3cret" not in result.stdout + result.stderr
        assert result.stderr == ""


def test_the_command_says_when_the_disk_is_short_of_space(tmp_path: Path) -> None:
    """On a 36 MB filesystem holding a 17 MB store, the copy would not fit: exit 1 saying how
    much must be free, the store left as it was, no copy left beside it."""
    with small_disk(tmp_path / "disk", "36m") as disk:
        path = disk / "hub.db"
        shutil.copyfile(OLD_STORE, path)
        _fill_old(path, 4000, "a")
        size = checkpointed_size(path)
        result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
        assert result.returncode == 1
        assert result.stderr.startswith("leadhub vacuum: about ")
        assert f"bytes must be free in {str(disk)!r} for the compacted copy" in result.stderr
        assert "the store is left as it was" in result.stderr
        assert (os.path.getsize(path), auto_vacuum(path)) == (size, 0)
        assert sorted(p.name for p in disk.iterdir()) == ["hub.db"]


def test_ingest_answers_while_a_purge_gives_space_back(tmp_path: Path) -> None:
    """``serve --purge-after 30d`` on a store of 20,000 old events purges them and gives
    their space back at start while webhooks come in: each is answered 200 and stored, some
    of them between the purge's end and the give-back's (the log's order says so)."""
    args, base, path = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--log-json")
    _fill_old(path, 20000, "old")
    high = checkpointed_size(path)
    answers: list[int] = []
    stop = threading.Event()

    def post() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                answer = client.post(
                    f"{base}/hooks/forms",
                    json={"email": f"lead{len(answers)}@example.com"},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                answers.append(answer.status_code)
                time.sleep(0.005)  # (some hundreds a second: the give-back lasts longer)

    with leadhub_process(
        [*args, "--purge-after", "30d"], ready_url=f"{base}/healthz", env=ENV
    ) as proc:
        sender = threading.Thread(target=post)
        sender.start()
        try:
            wait_until(lambda: _freed(base) > 0, timeout=120, what="the space given back")
        finally:
            stop.set()
            sender.join()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None
        lines = [orjson.loads(line) for line in proc.stdout if line.startswith("{")]
    events = [line["event"] for line in lines]
    purged = events.index("events_purged")
    gave = events.index("store_space_given_back")
    during = events[purged:gave].count("delivery_received")
    assert during > 0, "no webhook came while the space was given back"
    (line,) = (line for line in lines if line["event"] == "store_space_given_back")
    assert isinstance(line["size_after"], int)
    assert line["size_after"] < high / 5
    assert answers and set(answers) == {200}

    async def stored(store: EventStore) -> int:
        return len(await store.list(limit=len(answers) + 100))

    assert on_store(f"sqlite:///{path}", stored) == len(answers)


def test_the_command_removes_the_copy_a_killed_vacuum_left(tmp_path: Path) -> None:
    """A vacuum killed (kill -9) mid-copy leaves its hidden copy beside the store, as large
    as the store: the next one removes it (its pid is no process's) and says so; another
    process's, alive, and other files are left alone."""
    path = tmp_path / "hub.db"
    shutil.copyfile(OLD_STORE, path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(gone.stdout)
    leftover = tmp_path / f".hub.db.{dead}.vacuum"
    leftover.write_bytes(b"\0" * 4096)
    alive = tmp_path / f".hub.db.{os.getpid()}.vacuum"
    alive.write_bytes(b"\0" * 4096)
    other = tmp_path / f".other.db.{dead}.vacuum"
    other.write_bytes(b"\0" * 4096)
    result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert result.returncode == 0, result.stderr
    assert not leftover.exists()
    assert alive.exists() and other.exists()
    (line,) = [orjson.loads(x) for x in result.stderr.splitlines() if "vacuum_leftover" in x]
    assert (line["event"], line["path"]) == ("vacuum_leftover_removed", str(leftover))


def test_the_compacted_store_keeps_its_owner(tmp_path: Path) -> None:
    """Run as root on the store of the user the hub runs as, the new file is still that
    user's (a root-owned one would refuse the hub's writes)."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the store another owner")
    path = tmp_path / "hub.db"
    shutil.copyfile(OLD_STORE, path)
    os.chown(path, 4321, 4322)
    result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert result.returncode == 0, result.stderr
    assert (path.stat().st_uid, path.stat().st_gid, auto_vacuum(path)) == (4321, 4322, 2)


def _lock_on(fd: int, start: int, length: int) -> int:
    """The lock another process holds on ``length`` bytes of ``fd``'s file from ``start``
    (``F_RDLCK``, ``F_WRLCK``, or ``F_UNLCK``: none), as Linux lays ``struct flock`` out."""
    query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
    return int(struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))[0])


def _checking_the_copy(directory: Path) -> bool:
    """Whether a vacuum is reading its copy back (its check, after it counted the store's
    events): the copy written, under SQLite's shared lock alone (a read lock on its shared
    bytes; VACUUM INTO writes it with its reserved byte locked too)."""
    for partial in directory.glob(".hub.db.*.vacuum"):
        try:
            fd = os.open(partial, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            reading = _lock_on(fd, 0x40000002, 510) == fcntl.F_RDLCK
            alone = reading and _lock_on(fd, 0x40000001, 1) == fcntl.F_UNLCK
            if alone and os.fstat(fd).st_size > 0:  # (not the empty file VACUUM INTO begins)
                return True
        finally:
            os.close(fd)
    return False


def test_the_command_refuses_a_store_written_during_the_copy(tmp_path: Path) -> None:
    """A process that opened the store while the copy ran, wrote and closed before its end (a
    ``serve`` started and stopped, a ``leadhub replay``) held no lock by the rename: its
    writes, not in the copy, went with the old file (20 events stored so while a copy of
    255 MB was checked: none left after). Now refused, the store left as it was, with them.
    The vacuum is stopped (SIGSTOP) in the check of its copy while they are written, then
    let go on. (Linux: the lock asked of the copy is read as Linux lays it out.)"""
    if not sys.platform.startswith("linux"):
        pytest.skip("struct flock read as Linux lays it out")
    path = tmp_path / "hub.db"
    shutil.copyfile(OLD_STORE, path)
    _fill_old(path, 30000, "old")
    before = _events(path)
    vacuum = subprocess.Popen(
        [sys.executable, "-m", "hub", "vacuum", "--db", f"sqlite:///{path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not _checking_the_copy(tmp_path):  # (for a fraction of a second: looked at often)
            assert vacuum.poll() is None, "the vacuum ended before its check was seen"
            time.sleep(0.001)  # (a spinning look took a core from the vacuum it waits for)
        vacuum.send_signal(signal.SIGSTOP)
        _fill_old(path, 20, "during")  # (this process: the store opened, written, closed)
        vacuum.send_signal(signal.SIGCONT)
        out, err = vacuum.communicate(timeout=120)
    finally:
        if vacuum.poll() is None:
            vacuum.send_signal(signal.SIGCONT)
            vacuum.kill()
            vacuum.wait()
    assert vacuum.returncode == 1, (out, err)
    assert "a process opened it while it was being compacted" in err, err
    assert _events(path) == before + 20
    assert auto_vacuum(path) == 0
    assert not list(tmp_path.glob(".hub.db.*"))


#: A process that writes to the store at argv[1] without checkpointing and dies before it
#: closes it (as a hub killed does): its writes left in the ``-wal``.
_DIES_WITH_A_WAL = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("DELETE FROM events WHERE id > 10")
conn.execute("DELETE FROM deliveries WHERE id NOT IN (SELECT delivery FROM events)")
os._exit(0)
"""


def test_the_command_counts_the_wal_in_the_sizes_it_reports(tmp_path: Path) -> None:
    """A store whose ``-wal`` holds megabytes (a hub killed before its checkpoint): the
    sizes said are the file's and the ``-wal``'s, before and after. The file's alone said
    "1,351,680 bytes before, 1,351,680 now (it had no free space to give back)" though the
    vacuum took the ``-wal``'s megabytes off the disk."""
    path = tmp_path / "hub.db"
    _fill_old(path, 2000, "a")
    checkpointed_size(path)
    died = subprocess.run([sys.executable, "-c", _DIES_WITH_A_WAL, str(path)], check=False)
    assert died.returncode == 0
    wal = path.with_name("hub.db-wal")
    assert wal.stat().st_size > 1_000_000
    before = path.stat().st_size + wal.stat().st_size
    result = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert result.returncode == 0, result.stderr
    assert not wal.exists()
    after = path.stat().st_size
    assert result.stdout.startswith(
        f"Vacuumed {str(path)!r}: {before:,} bytes before, {after:,} now (the file and its "
        f"-wal; {before - after:,} given back)"
    ), result.stdout
    assert _events(path) == 10


def test_the_command_says_it_migrated_an_older_store(tmp_path: Path) -> None:
    """A store of an earlier release's schema is migrated by the vacuum's open (as by any
    command that writes, and by this release's serve at its first start); its output says
    so, and that earlier releases no longer open it (said on stderr alone, as a log line).
    A vacuum of a current store says nothing of it."""
    path = tmp_path / "hub.db"
    shutil.copyfile(OLD_STORE, path)
    said = "Its schema was migrated from version 3 to 4 first"
    first = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert first.returncode == 0, first.stderr
    assert said in first.stdout and "earlier releases no longer open it" in first.stdout
    assert '"event":"store_migrating"' in first.stderr
    again = leadhub_run(["vacuum", "--db", f"sqlite:///{path}"])
    assert again.returncode == 0, again.stderr
    assert "migrated" not in again.stdout
