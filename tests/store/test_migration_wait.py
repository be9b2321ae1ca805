"""Schema 4's migration of a big SQLite store (it copies the events table): real processes on a
real schema-3 file (the one 966a566 wrote, grown to 150,000 events).

A process opening a store that another one is migrating waits for it to finish: the copy holds
the write lock for seconds per million events, and ``serve --role web`` and ``--role worker``
started together on a two-million-event store, the second ended its start after the busy
timeout (10 s) with "database is locked ... look for a transaction left open on the file". Here
the other process is a real ``leadhub events``, and the busy timeout is cut to 0.3 s so that
its copy outlasts it (not the wait for a migration's writes).

A migration stopped by a full disk or a file size limit says so, and leaves the store as it was.
"""

from __future__ import annotations

import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hub.store import sqlite_conn

from .test_sqlite import raw

STORES = Path(__file__).parents[1] / "fixtures" / "stores"
EVENTS = 150_000
#: The old store's events, cloned with new ids and delivery ids (each with a delivery).
GROW = f"""
BEGIN;
CREATE TEMP TABLE n (i INTEGER PRIMARY KEY);
WITH RECURSIVE c (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {EVENTS})
INSERT INTO n SELECT i FROM c;
INSERT INTO deliveries (id, endpoint, received_at, content_type, headers, body, body_format)
SELECT 100 + n.i, d.endpoint, d.received_at, d.content_type, d.headers, d.body, d.body_format
FROM n JOIN deliveries AS d ON d.id = 1 + n.i % 15;
INSERT INTO events (id, delivery, endpoint, delivery_id, document, state, next_attempt_at,
    updated_at)
SELECT 100 + n.i, 100 + n.i, e.endpoint, e.delivery_id || '-' || n.i, e.document, e.state,
    e.next_attempt_at, e.updated_at
FROM n JOIN events AS e ON e.id = 1 + n.i % 17;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
"""


def grown_schema_3_store(path: Path, events: int = EVENTS) -> None:
    shutil.copy(STORES / "sqlite-schema3-966a566.store", path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(GROW.replace(f"i < {EVENTS}", f"i < {events}"))
    finally:
        conn.close()


def test_a_store_another_process_is_migrating_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "hub.db"
    grown_schema_3_store(db)
    wal = Path(f"{db}-wal")
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    monkeypatch.setattr(sqlite_conn, "BUSY_TIMEOUT_MS", 300)
    # (the copy's writes a few ms apart; a loaded machine's pauses in them far shorter than this)
    monkeypatch.setattr(sqlite_conn, "MIGRATION_QUIET", 10.0)
    other = subprocess.Popen(
        [sys.executable, "-m", "hub", "events", "--limit", "1", "--db", f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        # its copy under way: the WAL holds a few MB of it
        while not (wal.exists() and wal.stat().st_size > 4_000_000):
            assert other.poll() is None, other.communicate()
            assert time.monotonic() < deadline, "the other process never began its migration"
            time.sleep(0.005)
        with capture_logs() as logs:
            conn = sqlite_conn.connect(db, synchronous="NORMAL", writer=True)
        assert [e["event"] for e in logs] == ["store_migration_waiting"]  # migrated by the other
        # a warning: a command waiting says so on stderr (test_a_command_says_it_is_migrating)
        assert logs[0]["log_level"] == "warning"
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            assert version.fetchone()[0] == "4"
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 17 + EVENTS
        finally:
            conn.close()
        _, err = other.communicate(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert other.returncode == 0, err
    assert raw(db, "SELECT seq FROM sqlite_sequence WHERE name = 'events'") == [(100 + EVENTS,)]
    indexes = {r[0] for r in raw(db, "SELECT name FROM sqlite_master WHERE tbl_name = 'events'")}
    assert {"events_dedupe", "events_due", "events_ready", "events_delivery"} <= indexes
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_migration_past_the_file_size_limit_says_so_and_keeps_the_store(tmp_path: Path) -> None:
    """The copy into the write-ahead log passes ``ulimit -f``; SQLite rolls the transaction back
    itself, and the migration's own ROLLBACK failed: "cannot rollback - no transaction is
    active; check that its directory exists and is writable" was all the operator read."""
    db = tmp_path / "hub.db"
    grown_schema_3_store(db, 20_000)
    limit = 2_000_000  # the database file is past it already: only its WAL grows
    events = ["events", "--limit", "1", "--db", f"sqlite:///{db}"]

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "hub", *events],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited,
    )
    assert done.returncode == 1, done.stdout
    assert "cannot rollback" not in done.stderr
    assert "disk I/O error" in done.stderr and "file size limit (`ulimit -f`" in done.stderr
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    assert raw(db, "SELECT count(*) FROM events") == [(17 + 20_000,)]
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]
    again = subprocess.run(
        [sys.executable, "-m", "hub", *events], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]


def test_the_migration_leaves_no_big_write_ahead_log_behind(tmp_path: Path) -> None:
    """The copy of the events went through the -wal file, which SQLite reuses but never
    shrinks while a connection is open: it stayed as big as the copy (0.7 GB per million
    events) beside the store while the hub that migrated it ran."""
    db = tmp_path / "hub.db"
    grown_schema_3_store(db, 20_000)
    with capture_logs() as logs:
        conn = sqlite_conn.connect(db, synchronous="FULL", writer=True)
    # said when it begins too: the copy takes seconds per million events, no webhook taken
    assert [e["event"] for e in logs] == ["store_migrating", "store_migrated"]
    assert logs[0]["from_version"] == 3 and logs[0]["to_version"] == 4
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 17 + 20_000
        wal = Path(f"{db}-wal").stat().st_size
    finally:
        conn.close()
    assert wal < 200_000, f"{wal:,} bytes"
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]


def test_a_command_says_it_is_migrating_the_store(tmp_path: Path) -> None:
    """`leadhub events --limit 1` run on a schema-3 store (as README says, to migrate a big one
    before the new serve starts) says on stderr that it is migrating it (and one beside it
    that it waits for that: test_a_store_another_process_is_migrating_is_waited_for): both
    were info lines, which the commands (warnings and worse to stderr) do not write, so they
    sat silent for the copy's seconds per million events (minutes at ten million). Its
    stdout is the listing alone."""
    db = tmp_path / "hub.db"
    grown_schema_3_store(db, 20_000)
    events = ["events", "--limit", "1", "--db", f"sqlite:///{db}"]
    done = subprocess.run(
        [sys.executable, "-m", "hub", *events], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    said = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [(e["event"], e["level"]) for e in said] == [("store_migrating", "warning")]
    assert (said[0]["from_version"], said[0]["to_version"]) == (3, 4)
    assert "store_migrating" not in done.stdout
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]
