"""Backlog: a million events waiting in SQLite, what they cost on disk and in memory.

1. Enqueue: ``--events`` signed-and-verified-looking Typeform deliveries (the compact body of
   ``tests/fixtures/typeform/form_response_full.json`` with a distinct ``event_id`` each, and
   the headers ingest keeps) go through the store API (``hub.store.open_store(...).enqueue``)
   from ``--writers`` concurrent tasks, at the store's default durability
   (``synchronous=FULL``, group commit). Reports events/s and bytes on disk per event
   (database + WAL, after close).
2. Hold: ``leadhub serve --role all`` opens that database with the shipped configuration,
   its ``default`` target pointed at a ``leadhub sandbox`` that does not accept the target's
   keys, so every send gets a 401 and the target is paused (its events wait, none die). For
   ``--hold`` seconds the bench scrapes ``/metrics`` and ``/readyz`` every few seconds and
   samples the process's RSS. Reports its peak RSS (VmHWM) and what the dispatcher did.
3. Claim: after the hub stopped, ``store.claim(limit=--batch, lease=300)`` in a loop until
   ``--claims`` events are claimed. Reports claimed events/s (first and last 10% apart, so
   a claim that slows down as leased events pile up shows).
Headline: ``backlog_peak_rss_mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import (
    PYTHON,
    REPO,
    free_port,
    machine,
    peak_rss_mb,
    process,
    quiet_logs,
    rss_mb,
    table,
)
from bench.drain import EMAIL, PHONE, TARGET_YAML
from bench.ingest import DEMO_ENV, FIXTURE, TEMPLATE_ID
from hub.store import open_store
from hub.store.models import EventIn, IncomingDelivery

#: What ingest keeps of a typical Typeform delivery's headers.
HEADERS = {
    "content-type": "application/json",
    "user-agent": "Typeform Webhooks",
    "x-forwarded-for": "203.0.113.7",
}


async def enqueue_all(db: Path, events: int, writers: int) -> float:
    """Enqueue ``events`` deliveries from ``writers`` tasks; events/s."""
    template = json.dumps(json.loads(FIXTURE.read_bytes()), separators=(",", ":"))
    store = open_store(f"sqlite:///{db}")
    await store.open()
    done = 0

    async def writer(k: int) -> None:
        nonlocal done
        for i in range(k, events, writers):
            event_id = f"backlog{i:019d}"
            text = template.replace(TEMPLATE_ID, event_id).replace(EMAIL, f"lead{i}@example.com")
            body = text.replace(PHONE, f"+1555{i:07d}").encode()
            delivery = IncomingDelivery(
                endpoint="typeform",
                received_at=time.time(),
                body=body,
                content_type="application/json",
                headers=HEADERS,
                # as ingest hands a Typeform delivery over: its document is the body itself
                events=(EventIn(event_id, None, document_is_body=True),),
            )
            await store.enqueue(delivery)
            done += 1
            if done % 100_000 == 0:
                print(f"  enqueued {done:,}", flush=True)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(writer(k) for k in range(writers)))
    finally:
        await store.close()
    return events / (time.perf_counter() - start)


def disk_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def space_by_object(db: Path, events: int) -> list[list[object]]:
    """Bytes per event of each table and index (SQLite's dbstat), largest first."""
    query = (
        "SELECT name, sum(pgsize), sum(payload), sum(unused) FROM dbstat "
        "GROUP BY name ORDER BY 2 DESC"
    )
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            found = conn.execute(query).fetchall()
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            return []
    return [[name, *(v / events for v in values)] for name, *values in found]


def states(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())


def hold(db: Path, tmp: Path, seconds: float) -> dict[str, object]:
    """Serve the backlog with the target paused; peak RSS and what the logs say."""
    config = tmp / "config"
    shutil.copytree(REPO / "mappings", config)
    sandbox_port, port = free_port(), free_port()
    (config / "targets.yaml").write_text(
        TARGET_YAML.format(url=f"http://127.0.0.1:{sandbox_port}", limit="25/5s")
    )
    env = {**DEMO_ENV, "LSQ_ACCESS_KEY": "bench-wrong-key", "LSQ_SECRET_KEY": "bench-wrong"}
    sandbox = [PYTHON, "-m", "hub", "sandbox", "--port", str(sandbox_port)]
    sandbox += ["--access-key", "bench-right-key", "--secret-key", "bench-right"]
    serve = [PYTHON, "-m", "hub", "serve", "--role", "all", "--port", str(port)]
    serve += ["--config-dir", str(config), "--db", f"sqlite:///{db}"]
    base = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    samples: list[float] = []
    scrapes = 0
    with (
        process(sandbox, ready_url=f"http://127.0.0.1:{sandbox_port}/_sandbox/faults"),
        process(serve, ready_url=f"{base}/healthz", env=env, log=log) as proc,
    ):
        started = time.monotonic()
        ready_after = None
        next_scrape = 0.0
        while (now := time.monotonic() - started) < seconds:
            samples.append(rss_mb(proc.pid))
            if now >= next_scrape:
                ready = httpx.get(f"{base}/readyz", timeout=30).status_code == 200
                if ready and ready_after is None:
                    ready_after = now
                httpx.get(f"{base}/metrics", timeout=30).raise_for_status()
                scrapes += 1
                next_scrape = now + 5
            time.sleep(0.25)
        peak = peak_rss_mb(proc.pid)
    lines = log.read_text(errors="replace").splitlines()
    events = [_event(line) for line in lines]
    return {
        "peak": peak,
        "last": samples[-1] if samples else float("nan"),
        "scrapes": scrapes,
        "ready_after": ready_after,
        "paused": sum(1 for e in events if "paus" in e),
        "sent": sum(1 for e in events if e == "lead_sent"),
        "dispatcher": importlib.util.find_spec("hub.dispatch.worker") is not None,
        "events": sorted(set(events) - {""}),
    }


def _event(line: str) -> str:
    try:
        return str(json.loads(line).get("event", ""))
    except (ValueError, AttributeError):
        return ""


async def claim_rate(db: Path, claims: int, batch: int) -> tuple[float, float, float]:
    """Overall, first-10% and last-10% claimed events/s."""
    store = open_store(f"sqlite:///{db}")
    await store.open()
    marks: list[tuple[int, float]] = [(0, time.perf_counter())]
    got = 0
    try:
        while got < claims:
            taken = await store.claim(limit=batch, lease=300)
            if not taken:
                break
            got += len(taken)
            marks.append((got, time.perf_counter()))
    finally:
        await store.close()

    def between(a: float, b: float) -> float:
        lo = next(m for m in marks if m[0] >= a * got)
        hi = next(m for m in marks if m[0] >= b * got)
        return (hi[0] - lo[0]) / (hi[1] - lo[1]) if hi[1] > lo[1] else float("nan")

    return between(0, 1), between(0, 0.1), between(0.9, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to queue")
    parser.add_argument("--writers", type=int, default=64, help="concurrent enqueue tasks")
    parser.add_argument("--hold", type=float, default=60, help="seconds to serve the backlog")
    parser.add_argument("--claims", type=int, default=100_000, help="events to claim")
    parser.add_argument("--batch", type=int, default=100, help="events per claim")
    args = parser.parse_args()
    quiet_logs()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="leadhub-backlog-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "backlog.db"
        print(f"enqueueing {args.events:,} events ...", flush=True)
        enqueue = asyncio.run(enqueue_all(db, args.events, args.writers))
        size = disk_bytes(db)
        space = space_by_object(db, args.events)
        body = len(json.dumps(json.loads(FIXTURE.read_bytes()), separators=(",", ":")))
        print(f"holding the backlog in leadhub serve for {args.hold:.0f} s ...", flush=True)
        held = hold(db, tmp, args.hold)
        after_hold = states(db)
        print(f"claiming {args.claims:,} events, {args.batch} per claim ...", flush=True)
        claim, claim_first, claim_last = asyncio.run(claim_rate(db, args.claims, args.batch))
    rows: list[list[object]] = [
        ["events queued", args.events],
        ["body bytes per event (compact Typeform)", body],
        ["bytes on disk per event", size / args.events],
        ["enqueue events/s (store API, FULL)", enqueue],
        [f"claim events/s ({args.batch} per claim)", claim],
        ["  claim events/s, first 10%", claim_first],
        ["  claim events/s, last 10%", claim_last],
        ["serve: peak RSS MB (VmHWM)", held["peak"]],
        ["serve: RSS MB at the end", held["last"]],
        ["serve: readyz 200 after s", held["ready_after"] or "never"],
        ["serve: /metrics scrapes", held["scrapes"]],
        ["dispatcher in this build", "yes" if held["dispatcher"] else "NO"],
        ["serve: log lines about pausing", held["paused"]],
        ["serve: leads sent (must be 0)", held["sent"]],
    ]
    print()
    print(table(["figure", "value"], rows))
    print(f"log events seen: {', '.join(held['events'])}")  # type: ignore[arg-type]
    print(f"event states after the hold: {after_hold}")
    if space:
        print()
        print(table(["table or index", "bytes/event", "payload", "unused"], space))
    if not held["dispatcher"]:
        print("note: no dispatcher yet; the RSS is of a serving process holding the backlog")
    print(f"backlog_peak_rss_mb: {held['peak']:.1f}")


if __name__ == "__main__":
    main()
