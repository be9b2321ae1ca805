"""``leadhub serve`` killed with its writer process (``kill -9`` of them all: a container
killed, the machine down), then its SQLite file moved away, its ``-wal`` left: the next
start exits saying what to do, no traceback, the log untouched; with the file back it starts
with every event it had accepted. An empty leftover ``-wal`` and ``-shm`` do not stop a
start.

Before, the start made a new, empty store and SQLite deleted the log, which held every
accepted event (never checkpointed into the file, the moved file held not even the schema):
serve answered 200 with ids from 1 again, and the accepted leads were lost.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import httpx
import orjson

from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.support.server import leadhub_process, leadhub_run, serve_args

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post(base: str, email: str) -> httpx.Response:
    lead = {"email": email, "name": email.split("@")[0]}
    return httpx.post(f"{base}/hooks/forms", json=lead, headers=AUTH, timeout=30)


def _kill_all(pid: int) -> None:
    """SIGKILL ``pid`` and its children, stopped first so none goes on alone (the writer
    process, outliving the server, would close the store: checkpoint and delete its log)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    pids = [pid, *map(int, children)]
    for each in pids:
        os.kill(each, signal.SIGSTOP)
    for each in pids:
        os.kill(each, signal.SIGKILL)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_log_left_without_its_file_stops_the_start_until_the_file_is_back(
    tmp_path: Path,
) -> None:
    """Three leads accepted, serve and its writer killed, the file moved away: the start
    exits 1 with store_open_failed naming the file and its log and both ways out, no
    traceback, no file made, the log as it was. The file back: serve starts, the three
    events there (a lead sent again is a duplicate of its id), a new one after them."""
    args, base, db = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--role", "web")
    aside = tmp_path / "aside"
    aside.mkdir()
    wal = Path(f"{db}-wal")
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        first = [_post(base, f"orphan{n}@example.com") for n in range(3)]
        assert [r.status_code for r in first] == [200] * 3
        ids = [r.json()["id"] for r in first]
        _kill_all(proc.pid)
        proc.wait(timeout=30)
    assert wal.stat().st_size > 0
    db.rename(aside / db.name)
    kept = _digest(wal)

    result = leadhub_run(args, env=ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "leadhub serve: startup failed (see the log above)" in result.stderr
    assert "Traceback" not in output
    (failed,) = [
        orjson.loads(line)
        for line in result.stdout.splitlines()
        if line.startswith("{") and orjson.loads(line)["event"] == "store_open_failed"
    ]
    error = failed["error"]
    assert f"{str(db)!r}" in error and f"{str(wal)!r}" in error, error
    assert "Put the database file back" in error and f"delete {str(wal)!r}" in error, error
    assert '"hub_ready"' not in output
    assert not db.exists()
    assert _digest(wal) == kept

    (aside / db.name).rename(db)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV):
        again = _post(base, "orphan0@example.com")
        assert (again.status_code, again.json()) == (200, {"status": "duplicate", "id": ids[0]})
        new = _post(base, "orphan3@example.com")
        assert new.status_code == 200 and new.json()["id"] > max(ids)


def test_an_empty_leftover_log_and_index_do_not_stop_a_start(tmp_path: Path) -> None:
    """No database file, an empty ``-wal`` and ``-shm`` at its path: serve starts a new
    store there and accepts (id 1)."""
    args, base, db = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--role", "web")
    Path(f"{db}-wal").write_bytes(b"")
    Path(f"{db}-shm").write_bytes(b"")
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV):
        response = _post(base, "fresh@example.com")
        assert (response.status_code, response.json()["id"]) == (200, 1)
    assert db.stat().st_size > 0
