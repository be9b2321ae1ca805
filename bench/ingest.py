"""Ingest throughput: ``leadhub serve --role web`` against a bare Starlette app, side by side.

wrk sends signed Typeform deliveries, each with a distinct ``event_id``, from a pre-signed
pool, for ``--duration`` seconds at 16 and 64 connections (one wrk thread: the server gets
the other core). The targets alternate, and so does which goes first in a round: (a) the
bare app of :mod:`bench.bare_app`, (b) the hub with the shipped configuration directory
(``mappings/``), the SQLite store at its default durability (``synchronous=FULL``), JSON
logs and metrics on as in production. After each hub run the events stored are counted:
they must equal the 200s the hub counted (its ``leadhub_deliveries_total``), and wrk's 200s
can only fall short of that by requests in flight when wrk stopped. Headline:
``ingest_ratio`` = median hub req/s / median bare req/s at the highest connection count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import (
    PYTHON,
    REPO,
    cpu_seconds,
    descendants,
    ensure_wrk,
    free_port,
    machine,
    median,
    peak_rss_mb,
    process,
    table,
)
from tests.mappings.cases import demo_env

#: Every variable the shipped configuration directory needs (the Makefile's demo values).
DEMO_ENV = demo_env()
SECRET = DEMO_ENV["TYPEFORM_SECRET"]
FIXTURE = REPO / "tests" / "fixtures" / "typeform" / "form_response_full.json"
TEMPLATE_ID = "01JBQ7ZK3M9X2R4T6V8W0Y1A2B"
HEADERS = [
    "target",
    "conns",
    "round",
    "req/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "peak RSS MB",
    "CPU µs/req",
    "writer µs/req",
    "cores",
    "200s (wrk)",
    "200s (server)",
    "stored",
    "check",
]
_DELIVERIES = re.compile(r"^leadhub_deliveries_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_OUTCOME = re.compile(r'outcome="(\w+)"')


def signed(event: str) -> tuple[bytes, str]:
    """The fixture as a compact Typeform delivery with ``event`` as its id, and its
    signature header's value."""
    body = json.dumps(json.loads(FIXTURE.read_bytes()), separators=(",", ":"))
    one = body.replace(TEMPLATE_ID, event).encode()
    return one, _signature(SECRET.encode(), one)


def _signature(key: bytes, body: bytes) -> str:
    """Typeform's ``Typeform-Signature`` value for ``body``."""
    return "sha256=" + base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def settle(base: str) -> None:
    """Send one delivery of the bench's own and wait for its 200: the hub answers each once
    its batch is committed, and counts it then, in the order received, so every delivery
    wrk's last requests brought is counted by now. (Read at once after wrk exits, /metrics
    could miss one still being committed, and the stored count was one more: MISMATCH.)"""
    body, signature = signed("bench-settle")
    answer = httpx.post(
        f"{base}/hooks/typeform",
        content=body,
        headers={"Content-Type": "application/json", "Typeform-Signature": signature},
        timeout=30,
    )
    answer.raise_for_status()


def write_pool(path: Path, size: int) -> None:
    """``size`` compact Typeform deliveries with distinct ids, each with its signature.

    The file (about 1.4 GB for a 20 s run) is then flushed to disk. Left dirty, the kernel
    wrote it back some 30 s later, in the middle of the first hub run, and the hub's commits
    (each an fsync) waited behind it: p99 of 120–180 ms in that one run, 5–14 ms in the others.
    """
    body = json.dumps(json.loads(FIXTURE.read_bytes()), separators=(",", ":"))
    key = SECRET.encode()
    with path.open("w") as out:
        for i in range(size):
            one = body.replace(TEMPLATE_ID, f"bench{i:021d}").encode()
            out.write(f"{_signature(key, one)}\t{one.decode()}\n")
    os.sync()


def run_wrk(wrk: str, url: str, pool: Path, conns: int, duration: int) -> dict[str, float]:
    """One wrk run; its totals, latencies in ms."""
    threads = 1
    env = {
        **os.environ,
        "POOL": str(pool),
        "PATHNAME": "/hooks/typeform",
        "SIGHEADER": "Typeform-Signature",
        "WRK_THREADS": str(threads),
    }
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s"]
    cmd += ["-s", str(REPO / "bench" / "pool.lua"), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    stats = json.loads(out.strip().splitlines()[-1])
    secs = stats["duration_us"] / 1e6
    errors = stats["connect"] + stats["read"] + stats["write"] + stats["timeout"]
    return {
        "requests": stats["requests"],
        "seconds": secs,
        "rps": stats["requests"] / secs,
        "ok": stats["requests"] - stats["status"],
        "errors": errors + stats["status"],
        "p50": stats["p50_us"] / 1000,
        "p99": stats["p99_us"] / 1000,
        "max": stats["max_us"] / 1000,
        "wrapped": stats["wrapped"],
    }


def cpu_figures(
    used: dict[int, float], children: list[int], stats: dict[str, float]
) -> tuple[float, float | str, float]:
    """The server's CPU per request (its processes together, in µs), the writer child's
    share of it ("-" without one), and the cores the server used over wrk's measured
    seconds. From ``/proc``, read just before wrk starts and just after it ends (the server
    idles while wrk loads its pool). A PostgreSQL server is not the hub's child: its CPU is
    not in these figures."""
    requests = max(stats["requests"], 1.0)
    writer: float | str = sum(used[c] for c in children) / requests * 1e6 if children else "-"
    total = sum(used.values())
    return total / requests * 1e6, writer, total / stats["seconds"]


def server_outcomes(base: str) -> dict[str, int]:
    """The hub's own count of typeform deliveries by outcome, from ``/metrics``."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    counts: dict[str, int] = {}
    for labels, value in _DELIVERIES.findall(text):
        outcome = _OUTCOME.search(labels)
        if 'endpoint="typeform"' in labels and outcome:
            counts[outcome.group(1)] = counts.get(outcome.group(1), 0) + int(float(value))
    return counts


def count_stored(db: Path) -> int:
    """Events in the hub's database (read with plain sqlite3, after the hub stopped)."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def count_stored_postgres(dsn: str, schema: str, *, drop: bool) -> int:
    """Events in the hub's schema of a PostgreSQL database; the schema dropped if ``drop``."""
    import asyncpg

    async def go() -> int:
        conn = await asyncpg.connect(dsn.split("?", 1)[0])
        try:
            count = int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".events'))
            if drop:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            return count
        finally:
            await conn.close()

    return asyncio.run(go())


def hub_command(port: int, config: Path, db: Path | str, db_query: str = "") -> list[str]:
    """``leadhub serve --role web`` on the SQLite file ``db``, or on the store URL ``db``."""
    url = f"sqlite:///{db}{db_query}" if isinstance(db, Path) else db
    return [
        PYTHON,
        "-m",
        "hub",
        "serve",
        "--role",
        "web",
        "--port",
        str(port),
        "--config-dir",
        str(config),
        "--db",
        url,
    ]


def one_run(
    target: str,
    conns: int,
    rnd: int,
    *,
    wrk: str,
    pool: Path,
    tmp: Path,
    duration: int,
    db_query: str = "",
    postgres: str = "",
) -> list[object]:
    """Start ``target``, load it with wrk, stop it; its table row."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp / f"hub-{rnd}-{conns}.db"
    schema = f"bench_ingest_{rnd}_{conns}"
    if target == "bare":
        cmd = [PYTHON, "-m", "bench.bare_app", "--port", str(port)]
    elif postgres:
        joint = "&" if "?" in postgres else "?"
        cmd = hub_command(port, tmp / "config", f"{postgres}{joint}schema={schema}")
    else:
        cmd = hub_command(port, tmp / "config", db, db_query)
    outcomes: dict[str, int] = {}
    with process(cmd, ready_url=f"{base}/healthz", env=DEMO_ENV, log=tmp / f"{target}.log") as p:
        time.sleep(0.5)
        children = descendants(p.pid)  # the hub's store writer process
        before = {pid: cpu_seconds(pid) for pid in (p.pid, *children)}
        stats = run_wrk(wrk, base, pool, conns, duration)
        used = {pid: cpu_seconds(pid) - start for pid, start in before.items()}
        rss = peak_rss_mb(p.pid)
        if target == "hub":
            settle(base)
            outcomes = server_outcomes(base)
            outcomes["accepted"] = outcomes.get("accepted", 0) - 1  # (settle's own)
    row: list[object] = [
        target,
        conns,
        rnd,
        stats["rps"],
        stats["p50"],
        stats["p99"],
        stats["max"],
        int(stats["errors"]),
        rss,
        *cpu_figures(used, children, stats),
        int(stats["ok"]),
    ]
    if target == "bare":
        return [*row, "-", "-", "-"]
    stored = count_stored_postgres(postgres, schema, drop=True) if postgres else count_stored(db)
    stored -= 1  # (settle's own)
    accepted = outcomes.get("accepted", 0)
    other = sum(v for k, v in outcomes.items() if k != "accepted")
    good = (
        stored == accepted
        and other == 0
        and stats["wrapped"] == 0
        and accepted - conns <= stats["ok"] <= accepted
    )
    if not postgres:
        db.unlink()
        for extra in ("-wal", "-shm"):
            Path(f"{db}{extra}").unlink(missing_ok=True)
    check = "ok" if good else f"MISMATCH(other={other},wrapped={int(stats['wrapped'])})"
    return [*row, accepted, stored, check]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=20, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--conns", default="16,64", help="connection counts")
    parser.add_argument("--pool", type=int, default=0, help="deliveries in the pool (auto)")
    parser.add_argument(
        "--db-query",
        default="",
        help="appended to the hub's store URL, for diagnosis only (e.g. ?synchronous=normal)",
    )
    parser.add_argument(
        "--postgres",
        default="",
        metavar="DSN",
        help="the hub's store in a fresh schema of this PostgreSQL database instead of a "
        "SQLite file (the password from PGPASSWORD); the ratio is then PostgreSQL's, not the "
        "goal's",
    )
    args = parser.parse_args()
    wrk = ensure_wrk()
    conn_list = [int(c) for c in args.conns.split(",")]
    rows: list[list[object]] = []
    results: dict[tuple[str, int], list[float]] = {}
    print(f"machine: {machine()}", flush=True)
    if args.db_query:
        print(f"DIAGNOSTIC RUN: hub store URL ends in {args.db_query!r}", flush=True)
    if args.postgres:
        print(f"POSTGRESQL RUN: the hub's store is {args.postgres!r}", flush=True)
    with tempfile.TemporaryDirectory(prefix="leadhub-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pool = tmp / "pool.txt"
        size = args.pool or 20_000 * (args.duration + 2)
        print(f"signing a pool of {size:,} deliveries ...", flush=True)
        write_pool(pool, size)
        shutil.copytree(REPO / "mappings", tmp / "config")
        print("  ".join(HEADERS), flush=True)
        for rnd in range(1, args.rounds + 1):
            order = ("bare", "hub") if rnd % 2 else ("hub", "bare")
            for conns in conn_list:
                for target in order:
                    row = one_run(
                        target,
                        conns,
                        rnd,
                        wrk=wrk,
                        pool=pool,
                        tmp=tmp,
                        duration=args.duration,
                        db_query=args.db_query,
                        postgres=args.postgres,
                    )
                    rows.append(row)
                    results.setdefault((target, conns), []).append(float(row[3]))  # type: ignore[arg-type]
                    print(table(HEADERS, [row]).splitlines()[-1], flush=True)
    print()
    print(table(HEADERS, rows))
    print()
    for conns in conn_list:
        hub, bare = median(results[("hub", conns)]), median(results[("bare", conns)])
        p99 = {
            t: median([float(r[5]) for r in rows if r[0] == t and r[1] == conns])  # type: ignore[arg-type]
            for t in ("hub", "bare")
        }
        print(
            f"median req/s at {conns} connections: hub {hub:,.0f}, bare {bare:,.0f}, "
            f"ratio {hub / bare:.2f}; median p99 ms: hub {p99['hub']:.1f}, "
            f"bare {p99['bare']:.1f}"
        )
    checks = [r[-1] for r in rows if r[0] == "hub"]
    print(f"hub runs where stored == the hub's 200s: {checks.count('ok')} of {len(checks)}")
    top = max(conn_list)
    ratio = median(results[("hub", top)]) / median(results[("bare", top)])
    print(f"ingest_ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
