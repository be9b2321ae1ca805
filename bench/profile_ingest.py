"""Profile ``leadhub serve --role web`` under the ingest bench's load with py-spy.

Not part of ``make bench``: needs py-spy (``.venv/bin/pip install py-spy``). Starts the hub
as :mod:`bench.ingest` does, loads it with wrk for ``--duration`` seconds, samples it with
``py-spy record --format raw`` (``--gil``: only the thread holding the GIL, so the figures
are shares of the interpreter's time), and prints the functions with the most samples,
inclusive and self. The raw stacks are kept at ``--out`` for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import REPO, ensure_wrk, free_port, process, table
from bench.ingest import DEMO_ENV, hub_command, run_wrk, write_pool


def frame_name(frame: str) -> str:
    """``func (path/to/module.py:line)`` → ``module.py:func``, lines dropped."""
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    parts = Path(path).parts
    for root in ("site-packages", "main", "python3.11"):
        if root in parts:
            parts = parts[parts.index(root) + 1 :]
            break
    return f"{'/'.join(parts)}:{name}"


def summarise(raw: Path, top: int) -> tuple[list[list[object]], list[list[object]], int]:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    inc = [[n, c, 100 * c / total] for n, c in inclusive.most_common(top)]
    slf = [[n, c, 100 * c / total] for n, c in own.most_common(top)]
    return inc, slf, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=20, help="seconds of load")
    parser.add_argument("--conns", type=int, default=64, help="wrk connections")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument("--out", default="/tmp/leadhub-ingest-profile.txt", help="raw stacks")
    parser.add_argument("--all-threads", action="store_true", help="sample every thread")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(REPO / ".venv" / "bin" / "py-spy"))
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="leadhub-profile-") as tmp_name:
        tmp = Path(tmp_name)
        pool = tmp / "pool.txt"
        write_pool(pool, 30_000 * (args.duration + 3))
        shutil.copytree(REPO / "mappings", tmp / "config")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = hub_command(port, tmp / "config", tmp / "hub.db")
        with process(cmd, ready_url=f"{base}/healthz", env=DEMO_ENV, log=tmp / "hub.log") as p:
            time.sleep(0.5)
            record = [spy, "record", "--pid", str(p.pid), "--format", "raw", "--rate", "250"]
            record += ["--duration", str(args.duration + 2), "--output", args.out, "--nonblocking"]
            if not args.all_threads:
                record.append("--gil")
            spy_proc = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1)
            stats = run_wrk(wrk, base, pool, args.conns, args.duration)
            spy_proc.wait(timeout=120)
    inc, slf, total = summarise(Path(args.out), args.top)
    print(f"load: {stats['rps']:,.0f} req/s, p99 {stats['p99']:.1f} ms; {total:,} samples")
    print("\ninclusive (function and what it calls):")
    print(table(["function", "samples", "%"], inc))
    print("\nself (time in the function's own code):")
    print(table(["function", "samples", "%"], slf))


if __name__ == "__main__":
    main()
