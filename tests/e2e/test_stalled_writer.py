"""A stalled store writer (a hung disk, here a stopped process) answers 503, not never."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import orjson

from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.support.server import leadhub_process, serve_args


def _writer_child(pid: int) -> int:
    """The pid of ``pid``'s store writer process (``python -m hub.store.sqlite_child``)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"hub.store.sqlite_child" in command:
                return int(child)
    raise AssertionError("no store writer process")


def _request(email: str) -> bytes:
    """A webhook POST of ``email`` to ``forms``, as raw bytes."""
    body = orjson.dumps({"email": email})
    head = f"POST /hooks/forms HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {TOKEN}\r\n"
    head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _sent_and_read(base: str, request: bytes) -> socket.socket:
    """A connection to ``base`` that sent ``request``, once the hub has read all of it: the
    hub's end of the connection holds nothing unread (its receive queue in /proc/net/tcp)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(request)
    ours = sock.getsockname()[1]

    def read() -> bool:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, remote, _, queues = line.split()[1:5]
            if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16)) == (int(port), ours):
                return int(queues.split(":")[1], 16) == 0
        return False

    wait_until(read, timeout=20, what="the hub to read the request")
    return sock


def _web(tmp_path: Path, db_options: str = "") -> tuple[list[str], str, Path]:
    """``serve --role web`` arguments for the token endpoint ``forms`` on a SQLite file in
    ``tmp_path`` (with ``db_options`` on its URL); its base URL and the file."""
    db = f"sqlite:///{tmp_path / 'hub.db'}{db_options}"
    return serve_args(tmp_path, {"forms.yaml": CONFIG}, "--role", "web", db=db)


def test_a_stalled_writer_is_a_503_then_killed_and_replaced(tmp_path: Path) -> None:
    """With the writer process stopped (SIGSTOP, as a deadlock or a hung mount would hold it)
    a delivery is answered 503 once ``?stall_after=1s`` has passed, instead of waiting as
    long as the stall lasts; the stalled writer is killed, and the sender's retry is taken
    (200) by a new one at once, while the old one is still stopped, and stored once."""
    args, base, db = _web(tmp_path, "?stall_after=1s")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    lead = {"email": "stalled@example.com"}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        first = httpx.post(f"{base}/hooks/forms", json={"email": "a@example.com"}, headers=headers)
        assert first.status_code == 200, first.text
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGSTOP)
        answer = httpx.post(f"{base}/hooks/forms", json=lead, headers=headers, timeout=30)
        assert (answer.status_code, answer.json()) == (503, {"error": "store unavailable"})
        retry = httpx.post(f"{base}/hooks/forms", json=lead, headers=headers, timeout=30)
        assert (retry.status_code, retry.json()) == (200, {"status": "accepted", "id": 2})
        assert _writer_child(proc.pid) != writer
        assert not Path(f"/proc/{writer}").exists()  # killed, and reaped
        assert httpx.get(f"{base}/readyz").status_code == 200
        lines = _lines(proc)
    [stalled] = [line for line in lines if line["event"] == "store_writer_stalled"]
    assert (stalled["writer_pid"], stalled["failing"]) == (writer, 1)
    assert [line["event"] for line in lines].count("store_writer_started") == 2
    with sqlite3.connect(db) as conn:
        delivery_ids = [row[0] for row in conn.execute("SELECT delivery_id FROM events")]
    assert len(delivery_ids) == len(set(delivery_ids)) == 2  # the first lead, the stalled once


def test_sigterm_while_a_delivery_waits_for_the_writer_answers_it_first(tmp_path: Path) -> None:
    """SIGTERM while a delivery waits for its commit (the writer process stopped): the hub
    answers it 200 once the writer goes on, with ``connection: close``, and only then exits 0;
    the lead is stored. Nothing answered 200 is lost, and nothing in flight is dropped."""
    args, base, db = _web(tmp_path)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGSTOP)
        try:
            sock = _sent_and_read(base, _request("inflight@example.com"))
            proc.send_signal(signal.SIGTERM)  # (a request after it would find no listener)
            time.sleep(0.3)
            assert proc.poll() is None
            assert "delivery_received" not in _log(proc)  # nothing answered yet
        finally:
            os.kill(writer, signal.SIGCONT)
        with sock:
            sock.settimeout(30)
            answer = b"".join(iter(lambda: sock.recv(65536), b""))  # until the hub closes
        assert proc.wait(timeout=30) == 0
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *fields = head.decode().split("\r\n")
    headers = dict(field.lower().split(": ", 1) for field in fields)
    assert status.startswith("HTTP/1.1 200 "), answer
    assert orjson.loads(body) == {"status": "accepted", "id": 1}
    assert headers["connection"] == "close"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_sigterm_waits_for_a_delivery_whose_sender_has_gone(tmp_path: Path) -> None:
    """A delivery read in full, its sender gone, waiting for the stopped writer at SIGTERM:
    the hub stops its parts only once that delivery is settled (503 after
    ``?stall_after=2s``), as it waits for any request under way. (Once its sender was gone
    serve's protocol no longer held the stop: the store's close waited for the delivery
    with the stall watchdog cancelled, for as long as the writer stayed stopped.)"""
    args, base, _ = _web(tmp_path, "?stall_after=2s")
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGSTOP)
        try:
            with _sent_and_read(base, _request("gone@example.com")):
                pass  # read whole by the hub, which waits for the writer: the sender goes
            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: _received(proc) == [503], timeout=20, what="the 503")
        finally:
            with contextlib.suppress(ProcessLookupError):  # (killed once it had stalled)
                os.kill(writer, signal.SIGCONT)
        assert proc.wait(timeout=30) == 0
        events = [line["event"] for line in _lines(proc)]
    assert events.index("delivery_received") < events.index("hub_stopped")


def _lines(proc: subprocess.Popen[str]) -> list[dict[str, object]]:
    """``proc``'s JSON log lines so far (whole lines only: it may be writing one)."""
    lines = _log(proc).splitlines(keepends=True)
    return [orjson.loads(x) for x in lines if x.startswith("{") and x.endswith("\n")]


def _received(proc: subprocess.Popen[str]) -> list[object]:
    """The statuses of ``proc``'s ``delivery_received`` lines so far."""
    return [line["status"] for line in _lines(proc) if line["event"] == "delivery_received"]


def _log(proc: subprocess.Popen[str]) -> str:
    """What ``proc`` has written so far (its output file, read anew)."""
    assert proc.stdout is not None
    proc.stdout.seek(0)
    return proc.stdout.read()
