"""Shared bench plumbing: processes on loopback, RSS, machine facts, tables, medians.

Every bench starts what it needs, runs bounded loads, stops everything it started, prints a
table, and ends with one ``name: value`` headline line. Only ratios measured in one run mean
anything: the machine is shared and noisy.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.server import free_port as free_port  # re-exported for the benches
from tests.support.server import wait_http

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def machine() -> str:
    """One line naming the machine: cores, CPU model, Python."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"nproc={os.cpu_count()}, cpu={model}, python={platform.python_version()}"


@contextlib.contextmanager
def process(
    args: Sequence[str],
    *,
    ready_url: str | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args``; wait for ``ready_url``; SIGTERM (then SIGKILL) on exit."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        list(args),
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    try:
        if ready_url:
            wait_http(ready_url, proc=proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs, as they are now."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size (VmHWM) of ``pid`` so far, in MB, with its child processes'.

    The peaks are summed (they need not have come at the same moment): an upper bound.
    The hub's web role counts its store writer process this way.
    """
    total = 0.0
    for one in [pid, *descendants(pid)]:
        try:
            lines = Path(f"/proc/{one}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:"))
    return total if total else float("nan")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time (user and system) ``pid`` has used so far, in seconds; 0.0 once it is gone.
    With ``thread`` (a thread id: ``pid`` itself for the main thread), that thread's alone."""
    stat = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The current resident set size of ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, columns padded."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install wrk) ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        msg = "wrk is not installed and could not be installed"
        raise RuntimeError(msg)
    return found


def quiet_logs() -> None:
    """Keep the hub's own info lines (``store_opened``) out of a bench's table."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
