"""``leadhub backup``: a copy of a running hub's SQLite store holds every delivery it had
acknowledged (the ones still in the WAL too), is one self-contained file, and restores."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.cli import main
from hub.store.backup import held_by_a_backup, in_use, lock_partial
from hub.store.commands import utc
from tests.store.test_commands import read_only
from tests.support.disks import small_disk
from tests.support.server import REPO, free_port, leadhub_process, leadhub_run
from tests.web.test_serve import ENV, serve_args, signed

#: Few enough that SQLite's automatic checkpoint (at 1,000 WAL pages) has not run: the
#: deliveries are in ``hub.db-wal`` alone, which a copy of ``hub.db`` misses.
BEFORE = 10


def post(client: httpx.Client, i: int) -> dict[str, object]:
    _, body, sig = signed(i)
    response = client.post("/hooks/typeform", content=body, headers={"typeform-signature": sig})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def listed(db: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every event of the store at ``db``, through ``leadhub events --json``."""
    capsys.readouterr()
    assert main(["events", "--db", f"sqlite:///{db}", "--json", "--limit", "100000"]) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


def immutable_count(db: Path) -> int:
    """The events in the database file ``db`` alone (its WAL, if any, unread; 0 when even
    the table is still in the WAL)."""
    uri = f"file:{db}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        if ("events",) not in tables:
            return 0
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
def test_a_backup_of_a_running_hub_holds_every_acknowledged_delivery_and_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "hub.db"
    copy = tmp_path / "backups" / "hub-copy.db"
    copy.parent.mkdir()
    with (
        leadhub_process(serve_args(tmp_path, port), ready_url=f"{base}/healthz", env=ENV),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        acked = {signed(i)[0] for i in range(BEFORE) if post(client, i)["status"] == "accepted"}
        assert len(acked) == BEFORE
        # What `cp hub.db` would keep: the accepted deliveries are not all in the file yet.
        naive = tmp_path / "naive.db"
        shutil.copyfile(db, naive)
        assert immutable_count(naive) < BEFORE
        assert in_use(db) is True  # (read through SQLite's online backup, not as files)

        # The hub goes on answering while the copy is taken.
        during: list[dict[str, object]] = []
        sender = threading.Thread(
            target=lambda: during.extend(post(client, i) for i in range(BEFORE, BEFORE + 40))
        )
        sender.start()
        done = leadhub_run(["backup", "--db", f"sqlite:///{db}", str(copy)])
        sender.join()
        assert done.returncode == 0, done.stderr
        assert [a["status"] for a in during] == ["accepted"] * 40
        source = {e["id"]: e["delivery_id"] for e in listed(db, capsys)}

    assert done.stdout.startswith("Backed up "), done.stdout
    assert f"to {str(copy)!r}" in done.stdout
    assert sorted(p.name for p in copy.parent.iterdir()) == ["hub-copy.db"]  # no partial left
    # one self-contained file: a rollback-journal database (header bytes 18-19), no WAL
    assert copy.read_bytes()[18:20] == b"\x01\x01"
    events = listed(copy, capsys)
    ids = sorted(e["id"] for e in events)
    assert ids == list(range(1, len(ids) + 1))  # a consistent snapshot: no gaps
    assert f"Backed up {len(ids)} events " in done.stdout
    assert acked <= {e["delivery_id"] for e in events}
    assert all(source[e["id"]] == e["delivery_id"] for e in events)
    assert immutable_count(copy) == len(ids)  # all in the file itself

    # Restored (the hub stopped, its files moved away, the copy put in their place), the
    # store goes on from the copy: a delivery it held is a duplicate, the next id follows.
    for name in ("hub.db", "hub.db-wal", "hub.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).rename(tmp_path / f"old-{name}")
    shutil.copyfile(copy, db)
    with (
        leadhub_process(serve_args(tmp_path, port), ready_url=f"{base}/healthz", env=ENV),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        assert post(client, 0) == {"status": "duplicate", "id": 1}
        assert post(client, 1000) == {"status": "accepted", "id": len(ids) + 1}


def test_backup_never_overwrites_and_refuses_what_is_no_sqlite_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "hub.db"
    with sqlite3.connect(db) as conn:  # a store enough for the command: an events table
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO events DEFAULT VALUES")
    conn.close()
    url = f"sqlite:///{db}"

    taken = tmp_path / "taken.db"
    taken.write_bytes(b"an earlier backup")
    assert main(["backup", "--db", url, str(taken)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert taken.read_bytes() == b"an earlier backup"

    # a directory, as `leadhub backup /backups/` names one: "already exists" misled
    (tmp_path / "backups").mkdir()
    assert main(["backup", "--db", url, str(tmp_path / "backups")]) == 1
    err = capsys.readouterr().err
    where = str(tmp_path / "backups")
    said = f"leadhub backup: {where!r} is a directory; name the new file in it, e.g. "
    assert err.startswith(said), err
    assert re.fullmatch(
        rf"'{re.escape(where)}/leadhub-\d{{4}}-\d\d-\d\d\.db'\.\n", err[len(said) :]
    )
    assert list((tmp_path / "backups").iterdir()) == []

    # a -wal left of an earlier database by that name would be read into the copy as its own
    (tmp_path / "walled.db-wal").write_bytes(b"x" * 100)
    assert main(["backup", "--db", url, str(tmp_path / "walled.db")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "walled.db").exists()

    assert (
        main(["backup", "--db", f"sqlite:///{tmp_path / 'none.db'}", str(tmp_path / "a.db")]) == 1
    )
    assert "no event store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "a.db").exists()

    other = tmp_path / "leads.sqlite"  # another SQLite database, e.g. the sandbox's
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE leads (id INTEGER PRIMARY KEY)")
    conn.close()
    assert main(["backup", "--db", f"sqlite:///{other}", str(tmp_path / "b.db")]) == 1
    assert "no events table" in capsys.readouterr().err
    assert not (tmp_path / "b.db").exists()

    assert main(["backup", "--db", url, str(tmp_path / "no-dir" / "c.db")]) == 1
    assert "name a writable directory" in capsys.readouterr().err

    pg = "postgresql://hub:secret-pw@127.0.0.1:1/leads"
    assert main(["backup", "--db", pg, str(tmp_path / "d.db")]) == 2
    err = capsys.readouterr().err
    assert "pg_dump" in err and "secret-pw" not in err
    assert not (tmp_path / "d.db").exists()

    assert main(["backup", "--db", url, str(tmp_path / "e.db")]) == 0
    assert "Backed up 1 event (" in capsys.readouterr().out
    before = sorted(p.name for p in tmp_path.iterdir())
    assert "hub.db-wal" not in before and not any(n.endswith(".partial") for n in before)


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_destination_naming_a_file_sqlite_keeps_beside_the_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """``leadhub backup --db sqlite:///hub.db hub.db-wal`` with the hub stopped (no -wal
    there then) made the copy under that name and said so (exit 0); the next command to open
    the store (``leadhub events``) took it for the store's log, index or journal, found none,
    and deleted it: a backup reported made and gone. It is refused, naming the file's role."""
    db = tmp_path / "hub.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO events DEFAULT VALUES")
    conn.close()
    dest = tmp_path / f"hub.db{suffix}"
    assert main(["backup", "--db", f"sqlite:///{db}", str(dest)]) == 1
    err = capsys.readouterr().err
    assert f"{str(dest)!r} is where SQLite keeps the store's" in err
    assert "name another file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.db"]
    # the same file reached through a link to its directory is the same file
    (tmp_path / "link").symlink_to(tmp_path)
    assert main(["backup", "--db", f"sqlite:///{db}", str(tmp_path / "link" / dest.name)]) == 1
    assert "is where SQLite keeps" in capsys.readouterr().err
    # a store given by a link to it: SQLite keeps its files beside the file linked to
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "store.db").symlink_to(db)
    assert main(["backup", "--db", f"sqlite:///{tmp_path / 'other' / 'store.db'}", str(dest)]) == 1
    assert "is where SQLite keeps" in capsys.readouterr().err
    assert not dest.exists()


def _partials(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".partial")]


def test_a_backup_stopped_by_ctrl_c_says_so_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Ctrl-C during ``leadhub backup`` (a large store takes a while) ended in a Python
    traceback (KeyboardInterrupt) and a death by SIGINT, where ``events``, ``replay`` and
    ``purge`` say they stopped and exit 130. It says so now, and that no copy was made; the
    hidden copy under way is removed as before. The backup is caught part way through its
    copy: frozen (SIGSTOP) once its hidden copy exists, then sent SIGINT and let go."""
    db = tmp_path / "hub.db"
    with sqlite3.connect(db) as conn:  # a store enough for the command, 200 MB of free pages
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO events DEFAULT VALUES")
        conn.execute("CREATE TABLE pad (b BLOB)")
        conn.execute("INSERT INTO pad VALUES (zeroblob(200 * 1024 * 1024))")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE pad")
    conn.close()
    backups = tmp_path / "backups"
    backups.mkdir()
    for attempt in range(5):  # (a copy that got past its copying before the freeze: again)
        dest = backups / f"copy-{attempt}.db"
        argv = [sys.executable, "-m", "hub", "backup", "--db", f"sqlite:///{db}", str(dest)]
        proc = subprocess.Popen(
            argv, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not _partials(backups) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGSTOP)
        copying = bool(_partials(backups)) and not dest.exists()
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
        if copying:
            break
        dest.unlink(missing_ok=True)
    else:
        pytest.fail("the backup was never caught while copying")
    assert (proc.returncode, out) == (130, ""), err
    assert err == "leadhub backup: stopped: no copy made.\n"
    assert list(backups.iterdir()) == []


#: ``leadhub backup`` (its arguments after ``python -c INT_ONCE_THE_COPY_IS_MADE``) that gets
#: SIGINT (Ctrl-C) the moment its hidden copy has been made: at the first ``fcntl`` call once
#: a ``.partial`` file is in the destination's directory (the lock it takes on it), an audit
#: hook, Python's own event at that point of the real command.
INT_ONCE_THE_COPY_IS_MADE = """
import os, signal, sys
from pathlib import Path

folder = Path(sys.argv[-1]).parent

def hook(event, args):
    if event.startswith("fcntl.") and not hook.done:
        if any(p.name.endswith(".partial") for p in folder.iterdir()):
            hook.done = True  # (a hook cannot be removed: it acts once)
            os.kill(os.getpid(), signal.SIGINT)

hook.done = False
sys.addaudithook(hook)
from hub.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_backup_stopped_by_ctrl_c_as_it_makes_its_hidden_copy_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Ctrl-C the moment the hidden copy's file has been made, before the backup had it under
    its removal: the file was left behind (the test above caught a backup there once in CI,
    under load), where the command said no copy was made. It is removed as well."""
    db = tmp_path / "hub.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.commit()
    backups = tmp_path / "backups"
    backups.mkdir()
    dest = backups / "copy.db"
    argv = ["-c", INT_ONCE_THE_COPY_IS_MADE, "backup", "--db", f"sqlite:///{db}", str(dest)]
    done = subprocess.run(
        [sys.executable, *argv], cwd=str(REPO), capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (130, ""), done.stderr
    assert done.stderr == "leadhub backup: stopped: no copy made.\n"
    assert list(backups.iterdir()) == []


@pytest.mark.parametrize("where", ["under a file", "read-only mount"])
def test_a_destination_that_cannot_be_written_is_refused_saying_so(
    tmp_path: Path, where: str
) -> None:
    """A destination whose directory is a file, or on a file system mounted read-only (a
    backup volume), is exit 1 naming the directory: the removal of a killed backup's
    leftovers, looked for first, ended the command with a traceback (NotADirectoryError; a
    read-only file system refuses even the removal of a file that is not there, EROFS)."""
    db = tmp_path / "hub.db"
    small_store(db)
    place = tmp_path / "backups"
    with contextlib.ExitStack() as stack:
        if where == "under a file":
            place.write_text("not a directory")
        else:
            stack.enter_context(small_disk(place, "1m"))
            subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True)
        result = leadhub_run(["backup", "--db", f"sqlite:///{db}", str(place / "copy.db")])
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert f"cannot write {str(place)!r}" in result.stderr
        assert "name a writable directory" in result.stderr
        assert not place.is_dir() or list(place.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "hub.db"]


def small_store(db: Path) -> None:
    """A store enough for the command (an events table, one event), closed: checkpointed,
    in WAL mode as the hub leaves it, no -wal or -shm beside it."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO events DEFAULT VALUES")
        conn.commit()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_a_copy_is_never_more_readable_than_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    """The copy holds what the store holds (the deliveries' bodies): it takes the store
    file's permission bits, less the umask. SQLite made it 0644 less the umask whatever the
    store's mode: a store kept 0600 was copied readable by every user."""
    db = tmp_path / "hub.db"
    small_store(db)
    db.chmod(mode)
    umask = os.umask(0o022)
    try:
        assert main(["backup", "--db", f"sqlite:///{db}", str(tmp_path / "copy.db")]) == 0
    finally:
        os.umask(umask)
    assert "Backed up 1 event (" in capsys.readouterr().out
    assert stat.S_IMODE((tmp_path / "copy.db").stat().st_mode) == (mode | 0o600) & ~0o022


def test_a_stopped_store_on_read_only_media_is_copied_its_wal_included(
    tmp_path: Path,
) -> None:
    """A store in a directory that cannot be written, with no WAL index beside it (a
    stopped hub's store on a read-only mount or snapshot): the copy is taken from its files
    (SQLite's read-only mode needs that index and failed: 'unable to open database file').
    With a -wal holding writes and no index, the copy holds them too (it was refused: the
    file alone, read as immutable, would miss them); nothing is made or changed there."""
    media = tmp_path / "media"
    media.mkdir()
    small_store(media / "hub.db")
    out = tmp_path / "out"
    out.mkdir()
    read_only(media, "read_only_modes")
    argv = ["backup", "--db", f"sqlite:///{media / 'hub.db'}"]
    done = leadhub_run([*argv, str(out / "copy.db")], unprivileged=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Backed up 1 event ("), done.stdout
    assert immutable_count(out / "copy.db") == 1
    assert sorted(p.name for p in media.iterdir()) == ["hub.db"]

    # a copy of a store taken while a hub wrote to it: its file and -wal, not its WAL index
    small_store(tmp_path / "live.db")
    walled = tmp_path / "walled"
    walled.mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "live.db")) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("INSERT INTO events DEFAULT VALUES")
        conn.commit()
        for name in ("", "-wal"):
            (walled / f"hub.db{name}").write_bytes((tmp_path / f"live.db{name}").read_bytes())
    assert immutable_count(walled / "hub.db") == 1  # the second event is in the -wal alone
    assert (walled / "hub.db-wal").stat().st_size > 0
    assert not (walled / "hub.db-shm").exists()
    read_only(walled, "read_only_modes")
    before = as_it_is(walled)
    argv = ["backup", "--db", f"sqlite:///{walled / 'hub.db'}", str(out / "walled.db")]
    done = leadhub_run(argv, unprivileged=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Backed up 2 events ("), done.stdout
    assert immutable_count(out / "walled.db") == 2
    assert as_it_is(walled) == before
    assert sorted(p.name for p in out.iterdir()) == ["copy.db", "walled.db"]


def hot_journal(path: Path) -> bytes:
    """A rollback journal as a process that died mid-commit leaves it: synced, its records
    counted (the transaction spilled pages to the database file), never deleted."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA cache_size = 5")
        conn.execute("CREATE TABLE t (x BLOB)")
        conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(900),) for _ in range(2000)])
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET x = randomblob(900)")  # spills: the journal is synced
        journal = Path(f"{path}-journal").read_bytes()
        conn.execute("ROLLBACK")
    return journal


def test_a_journal_left_beside_the_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hot ``-journal`` of an earlier database of the destination's name (its process died
    mid-commit, the database file deleted since) is refused as a ``-wal`` is: the copy, a
    rollback-journal database, would have it rolled back into it at its first open. It was
    not: the backup said 'Backed up 1 event' and the copy opened malformed."""
    db = tmp_path / "hub.db"
    small_store(db)
    dest = tmp_path / "copy.db"
    journal = hot_journal(tmp_path / "earlier.db")
    Path(f"{dest}-journal").write_bytes(journal)
    assert main(["backup", "--db", f"sqlite:///{db}", str(dest)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert not dest.exists()
    assert Path(f"{dest}-journal").read_bytes() == journal


def as_it_is(where: Path) -> dict[str, tuple[bytes, int]]:
    """Each file in ``where``: its bytes and modification time (ns)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(where.iterdir())}


@pytest.mark.slow
def test_a_backup_of_a_stopped_store_leaves_its_files_as_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup never changes what it copies. A stopped hub's store was opened for writing,
    and the backup, its last connection, checkpointed it on closing: the -wal's writes moved
    into the file (its bytes and mtime changed) and the -wal and -shm deleted. Now a stopped
    store (here one whose hub was killed: its acknowledged deliveries in the -wal alone) is
    left byte for byte, mtime for mtime, nothing made or removed beside it, and the copy
    holds every delivery, the -wal's included."""
    store = tmp_path / "store"
    store.mkdir()
    db = store / "hub.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = serve_args(tmp_path, port, db=f"sqlite:///{db}?writer=thread")  # one process
    with (
        leadhub_process(args, ready_url=f"{base}/healthz", env=ENV) as proc,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        acked = {signed(i)[0] for i in range(BEFORE) if post(client, i)["status"] == "accepted"}
        assert in_use(db) is True  # (what tells a running store from a stopped one)
        proc.kill()  # SIGKILL: no checkpoint on the way out
        proc.wait()
    assert len(acked) == BEFORE
    assert in_use(db) is False
    assert immutable_count(db) < BEFORE  # the -wal holds writes the file does not
    before = as_it_is(store)
    assert {"hub.db", "hub.db-wal"} <= before.keys()

    copy = tmp_path / "copy.db"
    done = leadhub_run(["backup", "--db", f"sqlite:///{db}", str(copy)])
    assert done.returncode == 0, done.stderr
    assert as_it_is(store) == before
    assert f"Backed up {BEFORE} events " in done.stdout, done.stdout
    assert acked == {e["delivery_id"] for e in listed(copy, capsys)}
    assert immutable_count(copy) == BEFORE  # all in the file itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "copy.db", "store"]

    # a cleanly stopped store: checkpointed, nothing beside it; nothing made beside it either
    clean = tmp_path / "clean"
    clean.mkdir()
    small_store(clean / "hub.db")
    before = as_it_is(clean)
    assert main(["backup", "--db", f"sqlite:///{clean / 'hub.db'}", str(tmp_path / "c.db")]) == 0
    assert "Backed up 1 event (" in capsys.readouterr().out
    assert as_it_is(clean) == before


def big_store(db: Path, megabytes: int) -> None:
    """A stopped store of about ``megabytes`` MB (one event, and padding): its backup takes
    long enough to be killed part-way through."""
    small_store(db)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE padding (x BLOB)")
        conn.executemany("INSERT INTO padding VALUES (randomblob(?))", [(1 << 20,)] * megabytes)
        conn.commit()


def removals(stderr: str) -> list[str]:
    """The names of the files a backup said it removed (``backup_leftover_removed``)."""
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return sorted(
        Path(line["path"]).name for line in lines if line["event"] == "backup_leftover_removed"
    )


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_what_a_killed_backup_left_is_removed_by_the_next(tmp_path: Path) -> None:
    """``kill -9`` of a backup part-way through leaves its hidden partial copy (and what SQLite
    made beside it) in the destination's directory, which nothing removed: a backup of a
    large store left that much litter per kill. The next backup to that directory removes
    it, saying so, and makes its copy."""
    db = tmp_path / "hub.db"
    big_store(db, 300)
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "hub", "backup", "--db", f"sqlite:///{db}"]
    for attempt in range(3):  # (until a backup is killed before its end)
        dest = out / f"copy-{attempt}.db"
        proc = subprocess.Popen([*argv, str(dest)], cwd=str(REPO), stderr=subprocess.DEVNULL)
        partial = out / f".{dest.name}.{proc.pid}.partial"
        while proc.poll() is None and size_of(partial) == 0:  # until the copy is under way
            time.sleep(0.001)
        held = held_by_a_backup(partial)
        proc.kill()
        if proc.wait() == -signal.SIGKILL and not dest.exists():
            break
        for made in out.iterdir():
            made.unlink()
    else:
        pytest.fail("every backup ended before it could be killed")
    # (held by the running backup, were its pid another namespace's; the lock gone with it)
    assert held is sys.platform.startswith("linux")
    assert held_by_a_backup(partial) is False
    left = sorted(p.name for p in out.iterdir())
    assert partial.name in left, left
    assert all(name.startswith(partial.name) for name in left), left

    done = leadhub_run(["backup", "--db", f"sqlite:///{db}", str(out / "copy.db")])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Backed up 1 event ("), done.stdout
    assert removals(done.stderr) == left
    assert sorted(p.name for p in out.iterdir()) == ["copy.db"]


def test_only_leftovers_of_dead_backups_are_removed(tmp_path: Path) -> None:
    """Of the files in the destination's directory, a backup removes only those named as a
    backup's partial copy (``.NAME.PID.partial``, and its ``-wal``, ``-shm``, ``-journal``)
    whose pid is no process's and whose partial no backup holds locked (one whose process
    this one cannot see: another PID namespace); nothing else, whatever its name."""
    db = tmp_path / "hub.db"
    small_store(db)
    out = tmp_path / "out"
    out.mkdir()
    dead, alive = dead_pid(), os.getpid()
    gone = [f".a.db.{dead}.partial{s}" for s in ("", "-wal", "-shm", "-journal")]
    gone += [f".b.db.{dead}.partial-journal"]  # (its partial removed, its journal not yet)
    kept = [
        f".a.db.{alive}.partial",  # a backup running
        f".a.db.{alive}.partial-journal",
        f".a.db.{dead}.partial.bak",  # names of other files
        f"a.db.{dead}.partial",
        ".a.db.partial",
        f".a.db.{dead}x.partial",
        "a.db",
    ]
    if sys.platform.startswith("linux"):  # (where a partial is held by its open file)
        kept += [f".held.db.{dead}.partial", f".held.db.{dead}.partial-journal"]
    else:  # (no such lock: its pid alone tells)
        gone += [f".held.db.{dead}.partial"]
    for name in [*gone, *kept]:
        (out / name).write_bytes(name.encode())
    (out / f".dir.db.{dead}.partial").mkdir()  # no backup's
    (out / f".link.db.{dead}.partial").symlink_to(out / "a.db")
    held = os.open(out / f".held.db.{dead}.partial", os.O_RDWR)
    try:
        lock_partial(held)
        done = leadhub_run(["backup", "--db", f"sqlite:///{db}", str(out / "copy.db")])
    finally:
        os.close(held)
    assert done.returncode == 0, done.stderr
    assert removals(done.stderr) == sorted(gone)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*kept, "copy.db", f".dir.db.{dead}.partial", f".link.db.{dead}.partial"]
    )
    assert all((out / name).read_bytes() == name.encode() for name in kept)
    assert (out / f".link.db.{dead}.partial").is_symlink()


#: A "hub" on the store: commits one event, says when (unix seconds), and keeps the store
#: open (a shared lock on its file, as a running hub's connections hold) until its stdin ends.
HUB_WRITES = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
conn.execute("INSERT INTO events DEFAULT VALUES")
conn.commit()
print(repr(time.time()), flush=True)
sys.stdin.read()
"""


def test_the_time_a_backup_gives_is_when_the_store_was_as_the_copy_holds_it(
    tmp_path: Path,
) -> None:
    """ "The store as it was at T" took T before the copy began; the copy is the store as one
    read sees it, and that read can begin well after: here a stopped store's files were
    being copied when a hub started on it and committed an event, so the copy was made again
    from the running store, the event in it, and T was before that event. T is now when the
    read the copy was made from began. (The backup is frozen with SIGSTOP during its copy of
    the files; the hub commits in a later second than the freeze.)"""
    db = tmp_path / "hub.db"
    big_store(db, 150)
    backups = tmp_path / "backups"
    backups.mkdir()
    for attempt in range(5):  # (a backup frozen once past its copy of the files: again)
        dest = backups / f"copy-{attempt}.db"
        argv = [sys.executable, "-m", "hub", "backup", "--db", f"sqlite:///{db}", str(dest)]
        proc = subprocess.Popen(
            argv, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.stat().st_size for p in _partials(backups) if p.exists()):
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.05 - time.time() % 1)  # the hub's commit in a later second
        hub = subprocess.Popen(
            [sys.executable, "-c", HUB_WRITES, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert hub.stdout is not None
            committed = float(hub.stdout.readline())
            proc.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=120)
        finally:
            hub.communicate(input="", timeout=30)
        assert proc.returncode == 0, err
        with contextlib.closing(sqlite3.connect(dest)) as conn:
            (held,) = conn.execute("SELECT count(*) FROM events").fetchone()
        if held == 2:  # frozen in its copy of the files: made again, from the running store
            break
        with contextlib.closing(sqlite3.connect(db)) as conn:  # the hub's event gone: again
            conn.execute("DELETE FROM events WHERE id > 1")
            conn.commit()
    else:
        pytest.fail("the backup was never caught copying the stopped store's files")
    assert out.startswith("Backed up 2 events ("), out
    (when,) = re.findall(r"the store as it was at (.+) UTC\.$", out.strip())
    assert when >= utc(committed), (when, utc(committed))


@pytest.mark.parametrize(
    ("dest", "code", "said"),
    [
        ("-", 2, "DEST '-' is no standard output here: a backup is a SQLite file"),
        ("new/", 1, "'new/' ends in '/', naming a directory, and there is none; make it first"),
        ("", 2, "DEST is empty; name the new file the copy goes to"),
    ],
)
def test_a_dest_that_names_no_new_file_is_refused(
    tmp_path: Path, dest: str, code: int, said: str
) -> None:
    """``leadhub backup -`` made a file named ``-`` (exit 0), where a tool taking ``-``
    writes to standard output; ``backup new/`` (a directory not made yet) made a file named
    ``new``; an empty DEST said ``'.' is a directory``. Each is refused saying what to give,
    and nothing is made. A real process, in a directory of its own."""
    db = tmp_path / "hub.db"
    with sqlite3.connect(db) as conn:  # a store enough for the command: an events table
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
    conn.close()
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "hub", "backup", "--db", f"sqlite:///{db}", dest],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stderr.startswith(f"leadhub backup: {said}"), done.stderr
    assert list(work.iterdir()) == []
