"""A hub writing to a terminal (structlog's console renderer) escapes the control characters
of the text it logs, C0 and C1 alike: a sender's text never reaches the operator's terminal
as an escape sequence. JSON lines keep the text as data."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from tests.support.server import REPO, serve_args, wait_http

OPEN = "kind: endpoint\nname: open\nsource: none\ndedupe: $.id\n"
#: A delivery id holding ESC [2J (clear the screen, C0) and U+009B 2J (the same as C1's CSI,
#: which a terminal reading C1 controls takes), with no space: the renderer wrote it raw.
HOSTILE = "a\x1b[2Jb\x9b2Jc"


def _read_until(fd: int, wanted: bytes, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """What the terminal ``fd`` shows until ``wanted`` appears (or the process ends, or
    ``timeout`` passes: the test then fails on what was read)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # (the terminal's other side closed)
                break
    return seen


def test_a_senders_control_characters_are_escaped_on_a_terminal(tmp_path: Path) -> None:
    """A sender's delivery id with ESC and CSI in it, logged to a terminal: the line shows
    them escaped (``\\x1b``, ``\\x9b``), never as the raw characters."""
    args, url, _ = serve_args(tmp_path, {"open.yaml": OPEN}, "--role", "web")
    main, side = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", *args],
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        stdout=side,
        stderr=side,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")},
    )
    os.close(side)
    try:
        shown = _read_until(main, b"hub_ready", proc, 60.0)
        assert b"hub_ready" in shown, shown
        wait_http(url + "/healthz", proc=proc)
        answer = httpx.post(
            url + "/hooks/open",
            content=orjson.dumps({"id": HOSTILE}),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        shown = _read_until(main, b"delivery_received", proc, 60.0)
        shown += _read_until(main, b"\n", proc, 5.0)
        line = shown[shown.index(b"delivery_received") :].split(b"\n")[0]
        assert b"outcome" in line, line
        assert b"a\\x1b[2Jb\\x9b2Jc" in line, line  # escaped, as repr writes it
        assert b"\x1b[2J" not in line, line
        assert HOSTILE[4:].encode() not in line, line  # U+009B as UTF-8 (0xc2 0x9b)
        assert b"\x9b" not in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(main)
