"""``make bench``: run every bench in turn, then repeat their headline lines together.

Each bench runs as ``python -m bench.<name>`` from the repository root and prints its
table; its last line is its headline (``name: value``). Extra arguments are passed to
none of them: run a bench on its own for shorter variants (``--duration``, ``--events``).
Exits 1 if any bench failed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from bench.common import PYTHON, REPO, machine

BENCHES = ("ingest", "mapping", "drain", "backlog", "commit")
#: A headline line: ``name: number``.
HEADLINE = re.compile(r"^[a-z_]+: -?[\d.,]+$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=list(BENCHES), help="benches to run")
    args = parser.parse_args()
    headlines: list[str] = []
    failed: list[str] = []
    print(f"machine: {machine()}", flush=True)
    for name in args.names:
        print(f"\n=== bench.{name} ===", flush=True)
        start = time.monotonic()
        proc = subprocess.Popen(
            [PYTHON, "-m", f"bench.{name}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        found: list[str] = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            if HEADLINE.match(line.strip()):
                found.append(line.strip())
        code = proc.wait()
        took = time.monotonic() - start
        if code != 0:
            failed.append(name)
            headlines.append(f"{name}: FAILED (exit {code}) after {took:.0f} s")
        else:
            headlines += found or [f"{name}: no headline line"]
            headlines.append(f"  (bench.{name} took {took:.0f} s)")
    print("\n=== headlines ===")
    for line in headlines:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
