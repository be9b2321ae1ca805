"""The sandbox's SQLite file gone from its path: never made again empty, its leads never lost.

As the event store's (``tests/store/test_sqlite_vanished.py``, ``test_sqlite_orphan_wal.py``),
checked by the same code (``hub.sqlite_file``). Before:

- the file deleted, moved away or hidden (a directory in its place, as a volume unmounted
  leaves its mount point) while ``leadhub sandbox --db`` ran: every capture was still answered
  200, written into a ``-wal`` beside no database;
- the next start (after ``kill -9``, or a clean stop: SQLite checkpoints no log into a file no
  longer at its path) made a new, empty sandbox there, and SQLite deleted that log, with every
  lead it held: the hub's leads sent since the last checkpoint were gone.

Now a call while the file is gone is a 503 (an outage, which the hub retries) saying so, no
file is made at the path, and once the file is back the sandbox goes on with every lead; a
start beside such a log exits 2 naming both files, touching nothing, as ``serve`` does for its
embedded sandbox. Real files, real ``leadhub sandbox`` and ``serve`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog.testing

from hub.clock import ManualClock
from hub.sandbox.db import SandboxDB
from hub.store import open_store
from tests.sandbox.helpers import CAPTURE, Lsq, body, sandbox_args
from tests.support.logs import logged
from tests.support.server import free_port, leadhub_process, leadhub_run
from tests.web.test_serve import ENV as SERVE_ENV
from tests.web.test_serve import serve_args

ACCESS = "file-access-key"
SECRET = "file-secret-value-5e21"
AUTH = {"accessKey": ACCESS, "secretKey": SECRET}
GONE = "went missing while the sandbox was running"
#: Seconds a process of these tests may take to start, refuse or stop: a hang guard, not a
#: measure. On two cores at a load of 40 (twelve of these tests at once beside other runs), a
#: refused start took up to 27 s and a clean stop 8 s, against guards of 30 s and 15 s: the
#: clean-stop test failed once in a loaded suite run, and its reruns passed.
HANG = 120.0
OLD = [f"old{n}@example.com" for n in range(3)]


def _args(db: Path, port: int) -> list[str]:
    return sandbox_args(port, ACCESS, SECRET, "--rate-limit", "off", "--db", str(db))


@contextlib.contextmanager
def sandbox_at(db: Path) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    """``leadhub sandbox --db DB`` running, and a client for it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        leadhub_process(_args(db, port), ready_url=base + "/") as proc,
        httpx.Client(base_url=base, params=AUTH, timeout=10.0) as client,
    ):
        yield proc, client


def capture(client: httpx.Client, email: str) -> httpx.Response:
    return client.post(CAPTURE, json=body(("EmailAddress", email)))


def emails(client: httpx.Client) -> list[str]:
    """The email of every lead, oldest first (control API)."""
    answer = client.get("/_sandbox/leads")
    assert answer.status_code == 200, answer.text
    return [lead["EmailAddress"] for lead in answer.json()]


def captured_old(client: httpx.Client) -> None:
    for email in OLD:
        answer = capture(client, email)
        assert answer.status_code == 200 and answer.json()["Message"]["IsCreated"], answer.text


def stopped(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """SIGTERM: the process exits 0; its log lines."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=HANG)
    out = proc.stdout.read() if proc.stdout else ""
    assert code == 0, out
    return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]


def holding(db: Path) -> list[str]:
    """The emails of the leads the sandbox at ``db`` starts with."""
    with sandbox_at(db) as (proc, client):
        found = emails(client)
        stopped(proc)
    return found


def files(directory: Path) -> dict[str, str]:
    """Each entry in ``directory`` and a digest of its bytes (``dir`` for a directory)."""
    return {
        f.name: "dir" if f.is_dir() else hashlib.sha256(f.read_bytes()).hexdigest()
        for f in directory.iterdir()
    }


def refused_start(db: Path) -> str:
    """``leadhub sandbox --db DB`` exits 2 naming the file and its log and both ways out,
    nothing in its directory made, changed or deleted; returns what it said."""
    before = files(db.parent)
    result = leadhub_run(_args(db, free_port()), timeout=HANG)
    said = result.stderr
    assert result.returncode == 2, result.stdout + said
    assert repr(str(db)) in said and repr(f"{db}-wal") in said, said
    assert "Put the database file back" in said, said
    assert f"delete '{db}-wal' and '{db}-shm'" in said, said
    assert files(db.parent) == before
    return said


def _hide(db: Path, aside: Path, how: str) -> None:
    if how == "removed":  # (a link kept aside, to put the same file back)
        os.link(db, aside)
        db.unlink()
    else:
        db.rename(aside)
        if how == "hidden":  # the mount point's own directory, its volume unmounted
            db.mkdir()


def _put_back(db: Path, aside: Path, how: str) -> None:
    if how == "hidden":
        db.rmdir()
    aside.rename(db)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["removed", "moved", "hidden"])
def test_a_file_gone_while_running_is_refused_not_written_then_resumes_once_back(
    tmp_path: Path, how: str
) -> None:
    """Gone: captures and reads are 503 (no MX envelope) saying the file went missing, and
    nothing is made at the path; back: the sandbox goes on with every lead (one captured again
    is known), and a restart finds them all."""
    db, aside = tmp_path / "sandbox.db", tmp_path / "aside.db"
    with sandbox_at(db) as (proc, client):
        captured_old(client)
        _hide(db, aside, how)
        for answer in (
            capture(client, "new@example.com"),
            client.get("/_sandbox/leads"),
            client.get(
                "/v2/LeadManagement.svc/Leads.GetByEmailaddress", params={"emailaddress": OLD[0]}
            ),
        ):
            assert answer.status_code == 503, answer.text
            assert GONE in answer.text and repr(str(db)) in answer.text, answer.text
            assert not answer.text.startswith("{")
        assert db.is_dir() if how == "hidden" else not db.exists()
        _put_back(db, aside, how)
        answer = capture(client, "new@example.com")
        assert answer.status_code == 200 and answer.json()["Message"]["IsCreated"], answer.text
        again = capture(client, OLD[0])
        assert again.status_code == 200 and not again.json()["Message"]["IsCreated"], again.text
        assert emails(client) == [*OLD, "new@example.com"]
        lines = stopped(proc)
    changed = [line for line in lines if line["event"] == "sandbox_file_changed"]
    assert changed and changed[0]["path"] == str(db), lines
    assert [line for line in lines if line["event"] == "sandbox_storage_failed"]
    assert holding(db) == [*OLD, "new@example.com"]


@pytest.mark.slow
def test_a_log_beside_a_moved_file_is_refused_then_opens_with_the_file_back(
    tmp_path: Path,
) -> None:
    """Killed (``kill -9``), its file then moved away: the next start refused (it made a new,
    empty sandbox and SQLite deleted the log); moved back, every lead is there, the moved file
    alone holding none of them."""
    data, aside = tmp_path / "data", tmp_path / "aside"
    data.mkdir()
    aside.mkdir()
    db = data / "sandbox.db"
    with sandbox_at(db) as (proc, client):
        captured_old(client)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert Path(f"{db}-wal").stat().st_size > 0
    db.rename(aside / "sandbox.db")
    assert "has no database file" in refused_start(db)
    (aside / "sandbox.db").rename(db)
    assert holding(db) == OLD


@pytest.mark.slow
def test_a_log_left_by_a_clean_stop_after_the_file_was_removed_is_refused_until_deleted(
    tmp_path: Path,
) -> None:
    """The file deleted while the sandbox ran, then a clean stop (exit 0): its log is left
    holding the leads (SQLite checkpoints none into a file no longer at its path). The next
    start is refused, again at the next try; with the log and its index deleted as the message
    says, a new, empty sandbox starts there."""
    db = tmp_path / "sandbox.db"
    with sandbox_at(db) as (proc, client):
        captured_old(client)
        db.unlink()
        stopped(proc)
    assert Path(f"{db}-wal").stat().st_size > 0
    refused_start(db)
    refused_start(db)
    Path(f"{db}-wal").unlink()
    Path(f"{db}-shm").unlink()
    assert holding(db) == []


@pytest.mark.slow
def test_serve_refuses_a_log_left_beside_its_embedded_sandbox(tmp_path: Path) -> None:
    """``serve``'s embedded sandbox (``<db>.sandbox.sqlite``) beside the log of a killed
    sandbox whose file was removed: serve made a new, empty one and SQLite deleted the log; now
    it exits 2 naming both files, nothing made (not even the hub's own store) or changed."""
    sandbox_db = tmp_path / "hub.db.sandbox.sqlite"
    with sandbox_at(sandbox_db) as (proc, client):
        captured_old(client)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    sandbox_db.unlink()
    config = serve_args(tmp_path, free_port(), role="all")  # (makes its config directory)
    before = files(tmp_path)
    result = leadhub_run(config, env=SERVE_ENV, timeout=HANG)
    said = result.stderr
    assert result.returncode == 2, result.stdout + said
    assert "embedded sandbox's database" in said, said
    assert repr(str(sandbox_db)) in said and repr(f"{sandbox_db}-wal") in said, said
    assert "Put the database file back" in said, said
    assert files(tmp_path) == before
    assert not (tmp_path / "hub.db").exists()


@pytest.mark.slow
def test_another_file_put_beside_the_log_of_the_moved_one_is_refused_not_read_through_it(
    tmp_path: Path,
) -> None:
    """The file moved away while the sandbox ran leaves its log at the path, holding its leads;
    another sandbox's file put there is refused (503 naming the log), not opened beside it: it
    read as the moved file (its leads hidden, those of the log shown, and written into it at
    the next checkpoint). The moved file put back, the sandbox goes on with every lead, and
    the other file is as it was."""
    db, aside, other = tmp_path / "sandbox.db", tmp_path / "aside.db", tmp_path / "other.db"
    with sandbox_at(other) as (proc, client):
        answer = capture(client, "other@example.com")
        assert answer.status_code == 200, answer.text
        stopped(proc)
    assert not Path(f"{other}-wal").exists()
    kept = other.read_bytes()
    with sandbox_at(db) as (proc, client):
        captured_old(client)
        assert Path(f"{db}-wal").stat().st_size > 0
        db.rename(aside)
        other.rename(db)
        for answer in (capture(client, "new@example.com"), client.get("/_sandbox/leads")):
            assert answer.status_code == 503, answer.text
            assert repr(f"{db}-wal") in answer.text, answer.text
        db.rename(other)
        aside.rename(db)
        answer = capture(client, "new@example.com")
        assert answer.status_code == 200, answer.text
        assert emails(client) == [*OLD, "new@example.com"]
        stopped(proc)
    assert other.read_bytes() == kept
    assert holding(db) == [*OLD, "new@example.com"]
    assert holding(other) == ["other@example.com"]


def test_sqlite_s_name_for_memory_is_memory_not_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--db :memory:`` (SQLite's name for a database in memory) keeps the sandbox in memory,
    as before the file checks: they made a file named ``:memory:`` in the working directory."""
    monkeypatch.chdir(tmp_path)
    db = SandboxDB(":memory:")
    try:
        assert asyncio.run(db.call(SandboxDB.all_leads)) == []
    finally:
        db.close()
    assert list(tmp_path.iterdir()) == []


def an_event_store(path: Path) -> None:
    """A file holding a hub's event store (its events and deliveries tables), closed."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE deliveries (id INTEGER PRIMARY KEY)")
        conn.commit()


@pytest.mark.parametrize("put", ["not_sqlite", "an_event_store"])
def test_an_unusable_file_put_at_the_path_is_refused_as_a_gone_one(
    tmp_path: Path, sandbox_factory: Callable[..., Lsq], put: str
) -> None:
    """The sandbox's files moved away while it runs and a file it cannot use put in their
    place (not SQLite; a hub's event store): each call is a 503 without the MX envelope naming
    the file and what to do, logged as a vanished file is, a line a second
    (``sandbox_storage_failed``, with ``unlogged``). It was a 500 ``MXUnexpectedException``
    (which makes the hub's event dead), with a traceback logged at every call. The sandbox's
    own files put back, it goes on with every lead."""
    db, aside = tmp_path / "sandbox.db", tmp_path / "aside"
    aside.mkdir()
    clock = ManualClock()
    lsq = sandbox_factory(db_path=str(db), clock=clock, rate_limit=None)
    for email in OLD:
        assert lsq.ok(("EmailAddress", email))["IsCreated"] is True
    own = [f"sandbox.db{suffix}" for suffix in ("", "-wal", "-shm")]
    for name in own:  # (its log with it: no log of another file is left at the path)
        (tmp_path / name).rename(aside / name)
    if put == "not_sqlite":
        db.write_bytes(b"name,email\nAda,ada@example.com\n" * 100)
    else:
        an_event_store(db)
    with structlog.testing.capture_logs() as logs:
        answers = [lsq.capture(("EmailAddress", "new@example.com")) for _ in range(5)]
        answers.append(lsq.http.get("/_sandbox/leads"))
        clock.advance(1.0)
        answers.append(lsq.capture(("EmailAddress", "new@example.com")))
        failed = logged(logs, "sandbox_storage_failed", 2)
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert not answer.text.startswith("{"), answer.text  # no MX envelope: not permanent
        assert repr(str(db)) in answer.text, answer.text
        assert "Put the file the sandbox opened back" in answer.text, answer.text
    assert not [line for line in logs if line["event"] == "sandbox_request_failed"]
    assert len(failed) == 2 and failed[1]["unlogged"] == 5, failed  # the 6 in the first second
    changed = [line for line in logs if line["event"] == "sandbox_file_changed"]
    assert len(changed) == 1 and changed[0]["missing"] is False, changed

    db.unlink()
    for name in own:
        if (aside / name).exists():
            (aside / name).rename(tmp_path / name)
    assert lsq.ok(("EmailAddress", "new@example.com"))["IsCreated"] is True
    assert [lead["EmailAddress"] for lead in lsq.leads()] == [*OLD, "new@example.com"]


def _store_of_a_newer_leadhub(db: Path) -> str:
    """An event store at ``db`` made by this leadhub, its schema version then set to 99 (as
    a later release's would be); its URL."""
    url = f"sqlite:///{db}"

    async def made() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(made())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        conn.commit()
    return url


def _sandbox_files(directory: Path) -> list[str]:
    return sorted(f.name for f in directory.iterdir() if ".sandbox.sqlite" in f.name)


@pytest.mark.slow
def test_serve_refused_by_its_store_at_start_leaves_no_sandbox_file(tmp_path: Path) -> None:
    """``serve`` makes its embedded sandbox's file before its store is opened, and a store it
    then refuses (here a newer leadhub's) ended the start with an empty
    ``<db>.sandbox.sqlite`` left beside it; now nothing is left. A sandbox file that was
    there before, with its leads, is kept as it was."""
    url = _store_of_a_newer_leadhub(tmp_path / "hub.db")
    args = serve_args(tmp_path, free_port(), role="all", db=url)
    result = leadhub_run(args, env=SERVE_ENV, timeout=HANG)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "schema version 99, newer than this leadhub's" in result.stdout + result.stderr
    assert _sandbox_files(tmp_path) == []

    kept = tmp_path / "hub.db.sandbox.sqlite"
    visitor = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    held = SandboxDB(str(kept))
    held.add_visitor(visitor)
    held.close()
    before = files(tmp_path)
    result = leadhub_run(args, env=SERVE_ENV, timeout=HANG)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _sandbox_files(tmp_path) == [kept.name]
    reopened = SandboxDB(str(kept))
    try:
        assert reopened.is_visitor(visitor)
    finally:
        reopened.close()
    assert files(tmp_path)[kept.name] == before[kept.name]


@pytest.mark.slow
def test_a_sandbox_that_cannot_listen_leaves_no_db_file(tmp_path: Path) -> None:
    """``leadhub sandbox --db`` on a port in use exits 1; the file it made for that start is
    not left behind (an empty sandbox nobody asked for), and one that was there is kept."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "sandbox.db"
        result = leadhub_run(_args(db, port), timeout=HANG)
        assert result.returncode == 1, result.stdout + result.stderr
        assert list(tmp_path.iterdir()) == []
        SandboxDB(str(db)).close()  # (an empty sandbox, made by an earlier start)
        before = files(tmp_path)
        result = leadhub_run(_args(db, port), timeout=HANG)
        assert result.returncode == 1, result.stdout + result.stderr
        assert files(tmp_path) == before


_ACCOUNT = "8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11"


def test_a_discarded_file_holding_a_row_is_kept(tmp_path: Path) -> None:
    """A file this start made but another process wrote to meanwhile (two hubs on one store)
    is not deleted by :meth:`SandboxDB.discard`; an untouched one is."""
    db = tmp_path / "sandbox.db"
    made = SandboxDB(str(db))
    other = SandboxDB(str(db))  # (opened after: it did not make the file)
    other.add_account(_ACCOUNT, "Acme")
    other.close()
    made.discard()
    assert db.exists()
    assert _holds_the_account(db)
    fresh = tmp_path / "fresh.db"
    SandboxDB(str(fresh)).discard()
    assert list(tmp_path.iterdir()) == [db]


def _holds_the_account(db: Path) -> bool:
    """Whether the sandbox file ``db`` holds the account the tests add, read anew."""
    kept = SandboxDB(str(db))
    try:
        return kept.account_exists(_ACCOUNT)
    finally:
        kept.close()


def test_a_discard_while_another_connection_writes_keeps_the_file(tmp_path: Path) -> None:
    """A file this start made, which another connection (two hubs on one store) is writing to
    when the start is given up, is kept with what that connection commits: the emptiness check
    read the file as empty (the other's row not yet committed), then the file was deleted, and
    the commit that followed went into the deleted file, the other hub's lead answered 200 and
    lost."""
    db = tmp_path / "sandbox.db"
    made = SandboxDB(str(db))
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO accounts (id, name) VALUES (?, ?)", (_ACCOUNT, "Acme"))
        made.discard()  # (between the other's write and its commit)
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert db.exists()
    assert _holds_the_account(db)


@pytest.mark.slow
def test_a_discarded_file_another_process_has_open_is_kept(tmp_path: Path) -> None:
    """A file this start made, and which another process opened meanwhile (two hubs started at
    once on one store, the other bound the port), is not deleted even while it holds no row:
    the other's sandbox lost its file under it and answered 503 to every call (a new, empty
    file is never made at the path) until it was restarted. It goes on capturing."""
    db = tmp_path / "sandbox.db"
    made = SandboxDB(str(db))
    with sandbox_at(db) as (_proc, client):
        made.discard()
        assert db.exists()
        response = capture(client, "kept@example.com")
        assert response.status_code == 200, response.text
        assert emails(client) == ["kept@example.com"]
    kept = SandboxDB(str(db))
    try:
        assert [lead.attrs["EmailAddress"] for lead in kept.all_leads()] == ["kept@example.com"]
    finally:
        kept.close()


@pytest.mark.slow
def test_a_sandbox_file_that_is_no_database_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    """A --db naming a text file (a typo), or serve's embedded sandbox's file holding one, was
    refused with SQLite's "file is not a database" and nothing more: each says what to do
    (the standalone's --db, the embedded one's file to move away), the file left as it was."""
    text = tmp_path / "notes.txt"
    text.write_text("not leads\n")
    result = leadhub_run(sandbox_args(free_port(), "a", "s", "--db", str(text)), timeout=HANG)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"leadhub sandbox: --db {str(text)!r} cannot be used: file is not a database; the file "
        "is no SQLite database, so not the sandbox's: check that --db names the sandbox's file "
        "(one it made), or give a new file's path (the sandbox makes it)"
    )
    embedded = tmp_path / "hub.db.sandbox.sqlite"
    embedded.write_text("not leads\n")
    config = serve_args(tmp_path, free_port(), role="all")
    result = leadhub_run(config, env=SERVE_ENV, timeout=HANG)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().endswith(
        "cannot be used: file is not a database; the file is no SQLite database, so not the "
        "sandbox's: move it away (the hub then makes the sandbox's file anew), or check that "
        "serve's --db names the event store"
    ), result.stderr
    assert text.read_text() == embedded.read_text() == "not leads\n"
