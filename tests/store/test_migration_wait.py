"""A process opening a SQLite store that another one is migrating waits for it to finish.

Schema 4's migration copies the events table, the write lock held for seconds per million
events: ``serve --role web`` and ``--role worker`` started together on a two-million-event
store, the second ended its start after the busy timeout (10 s) with "database is locked ...
look for a transaction left open on the file". Here the other process is a real ``leadhub
events`` migrating a real schema-3 file (the one 966a566 wrote, grown to 150,000 events),
and the busy timeout is cut to 0.3 s so that its copy outlasts it.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.store import sqlite_threads

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


def grown_schema_3_store(path: Path) -> None:
    shutil.copy(STORES / "sqlite-schema3-966a566.store", path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(GROW)
    finally:
        conn.close()


def test_a_store_another_process_is_migrating_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "hub.db"
    grown_schema_3_store(db)
    wal = Path(f"{db}-wal")
    assert raw(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [("3",)]
    monkeypatch.setattr(sqlite_threads, "BUSY_TIMEOUT_MS", 300)
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
        conn = sqlite_threads.connect(db, synchronous="NORMAL", writer=True)
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
