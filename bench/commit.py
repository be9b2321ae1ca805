"""Commit: what one stored delivery costs the SQLite writer, with ordered and random ids.

The ingest bench's deliveries carry ids that sort in the order they arrive (``bench…0001``,
``…0002``, as Typeform's ULIDs and Facebook's lead ids do), so each commit appends to the
dedupe index (``events_dedupe``: endpoint, delivery id). Many senders' ids are random (UUIDs,
hashes): each delivery of a commit then lands on a leaf page of that index of its own, and
SQLite writes every page a commit changes to the WAL whole. This bench measures the
difference where it arises, without HTTP: ``--deliveries`` compact Typeform bodies, compressed
as the writer compresses them, are inserted through the writer's own code
(:func:`hub.store.bulk.insert`, ``BEGIN IMMEDIATE`` … ``COMMIT`` at the store's default
``synchronous=FULL``) into a fresh database, ``--batch`` per commit (16: about the mean
batch of the writer under the ingest bench's 64 connections), once with time-ordered ids and
once with random ones, alternating for ``--rounds`` rounds.

Per delivery: the process's CPU (user and system, from ``getrusage``), wall time, bytes and
write calls made (``/proc/self/io``: WAL frames and the checkpoints' copies), and bytes on
disk. Headline: ``random_id_commit_cost``, random ids' CPU per delivery over ordered ids'.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import tempfile
import time
from pathlib import Path

from bench.common import machine, median, table
from bench.ingest import FIXTURE
from hub.store import bulk
from hub.store.sqlite_conn import connect

HEADERS = (
    "ids",
    "round",
    "deliveries",
    "stored",
    "CPU µs/dl",
    "user µs/dl",
    "system µs/dl",
    "wall µs/dl",
    "written B/dl",
    "writes/dl",
    "on disk B/dl",
)


def ordered_ids(n: int) -> list[str]:
    """ULID-like ids: a millisecond clock (16 deliveries per ms), then random characters."""
    return [f"{i // 16:012x}{secrets.token_hex(10)}" for i in range(n)]


def random_ids(n: int) -> list[str]:
    """UUID-like ids in no order."""
    return [secrets.token_hex(16) for _ in range(n)]


def deliveries(ids: list[str]) -> list[bulk.Pending]:
    """One compact Typeform delivery per id, its body compressed as the writer stores it."""
    document = json.loads(FIXTURE.read_bytes())
    now = time.time()
    out = []
    for delivery_id in ids:
        document["event_id"] = delivery_id
        body, body_format = bulk.pack(json.dumps(document, separators=(",", ":")).encode())
        headers = b'{"content-type":"application/json"}'
        out.append(
            bulk.Pending(
                "typeform", now, "application/json", headers, body, body_format,
                [(delivery_id, None)], now,
            )
        )  # fmt: skip
    return out


def _io() -> tuple[int, int]:
    fields = dict(
        line.split(": ") for line in Path("/proc/self/io").read_text().splitlines() if line
    )
    return int(fields["wchar"]), int(fields["syscw"])


def one_run(kind: str, rnd: int, items: list[bulk.Pending], batch: int) -> list[str | int | float]:
    """Insert ``items`` into a fresh database, ``batch`` per commit; the table's row."""
    with tempfile.TemporaryDirectory(prefix="leadhub-bench-commit-") as tmp:
        path = Path(tmp) / "events.db"
        conn = connect(path, synchronous="full", writer=True, create=True)
        try:
            written, writes = _io()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            for at in range(0, len(items), batch):
                conn.execute("BEGIN IMMEDIATE")
                bulk.insert(conn, items[at : at + batch])
                conn.execute("COMMIT")
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            written_after, writes_after = _io()
            stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
        on_disk = sum(f.stat().st_size for f in Path(tmp).iterdir())
    n = len(items)
    user = after.ru_utime - usage.ru_utime
    system = after.ru_stime - usage.ru_stime
    return [
        kind,
        rnd,
        n,
        stored,
        1e6 * (user + system) / n,
        1e6 * user / n,
        1e6 * system / n,
        1e6 * wall / n,
        (written_after - written) / n,
        (writes_after - writes) / n,
        on_disk / n,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=100_000, help="per run")
    parser.add_argument("--batch", type=int, default=16, help="deliveries per commit")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    print(f"preparing {args.deliveries:,} deliveries of each kind ...", flush=True)
    kinds = {
        "ordered": deliveries(ordered_ids(args.deliveries)),
        "random": deliveries(random_ids(args.deliveries)),
    }
    print(table(HEADERS, []), flush=True)
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    for rnd in range(1, args.rounds + 1):
        order = ("ordered", "random") if rnd % 2 else ("random", "ordered")
        for kind in order:
            row = one_run(kind, rnd, kinds[kind], args.batch)
            cpu[kind].append(float(row[4]))
            print(table(HEADERS, [row]).splitlines()[-1], flush=True)
    ordered, random = median(cpu["ordered"]), median(cpu["random"])
    print(f"\nmedians of {args.rounds} rounds, {args.batch} deliveries per commit:")
    print(f"  ordered ids {ordered:.1f} µs CPU per delivery, random ids {random:.1f}")
    print(f"random_id_commit_cost: {random / ordered:.2f}")


if __name__ == "__main__":
    main()
