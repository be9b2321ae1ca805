"""``Log`` (tests.e2e.test_reload), the reader of a running process's JSON lines: a line the
process is still writing is read once it is whole, never half."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.support import wait_until
from tests.e2e.test_reload import Log

#: Writes a whole line and the start of another, then the rest of it once told to.
WRITER = """
import sys
sys.stdout.write('{"event": "whole"}\\n{"event": "ha')
sys.stdout.flush()
sys.stdin.readline()
sys.stdout.write('lf"}\\n')
sys.stdout.flush()
"""


def test_a_line_half_written_is_read_once_it_is_whole(tmp_path: Path) -> None:
    """The process's output goes to a file, as ``leadhub_process`` sends it: read while the
    process is between two writes of a line (as one write spanning a page boundary is seen
    half done), the half line is left for later; it was parsed, and the read failed."""
    out = tmp_path / "out.log"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER], stdin=subprocess.PIPE, stdout=sink, text=True
        )
    proc.stdout = out.open(encoding="utf-8")  # as leadhub_process reads it
    try:
        log = Log(proc)
        wait_until(lambda: bool(log.events("whole")), what="the whole line")
        assert log.events("half") == []
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        wait_until(lambda: bool(log.events("half")), what="the rest of the line")
        assert log.events("half") == [{"event": "half"}]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()
