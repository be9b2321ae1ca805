"""Drain: how fully the dispatcher uses a target's rate limit, and how fast it sends at ``off``.

``--events`` Typeform deliveries, each with its own email and phone (so per-lead ordering
never holds one back), are queued with the store API; then ``leadhub serve --role worker``
drains them into a ``leadhub sandbox`` process (a fresh in-memory one per run) with the
target's ``rate_limit`` and the sandbox's set alike:

* at ``--limit`` (500/5s): utilisation = the time an ideal limiter needs for the events
  (a full window's worth per window, the first at once) / the time from the first ack to
  the last; and the 429s seen (events that needed more than one attempt, plus what the
  dispatcher's metrics count as sends not delivered; a 429 is one of those): must be 0.
* at ``off``: the dispatcher's sends/s (acks over the same span), against three plain loops
  posting the same Lead.Capture bodies at the same concurrency to a fresh sandbox:
  ``httpx.AsyncClient()`` on its default transport, the hub's own client stack
  (``hub.dispatch.leadsquared.LeadSquaredClient`` over the client the dispatcher builds),
  and ``aiohttp.ClientSession`` (the ceiling).
Headline: ``drain_utilisation``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    PYTHON,
    REPO,
    cpu_seconds,
    free_port,
    machine,
    median,
    process,
    quiet_logs,
    table,
)
from bench.ingest import DEMO_ENV, FIXTURE, TEMPLATE_ID
from hub.config import load
from hub.config.models import Target
from hub.dispatch.leadsquared import CAPTURE_PATH, LeadSquaredClient
from hub.mapping import CaptureRequest, map_document
from hub.secrets import Secret
from hub.store import open_store
from hub.store.models import EventIn, IncomingDelivery
from hub.units import parse_rate_limit

KEYS = ("bench-access-key", "bench-secret-key")
EMAIL, PHONE = "jordan.lee@example.com", "+15555550187"
TARGET_YAML = """\
kind: target
name: default
url: {url}
access_key: ${{LSQ_ACCESS_KEY}}
secret_key: ${{LSQ_SECRET_KEY}}
rate_limit: "{limit}"
timeout: 10s
"""
Request = tuple[dict[str, str], list[dict[str, str]]]


def bodies(n: int) -> list[bytes]:
    """``n`` Typeform deliveries with distinct event ids, emails and phones."""
    template = json.dumps(json.loads(FIXTURE.read_bytes()), separators=(",", ":"))
    out = []
    for i in range(n):
        text = template.replace(TEMPLATE_ID, f"drain{i:021d}")
        text = text.replace(EMAIL, f"lead{i}@example.com").replace(PHONE, f"+1555555{i:04d}")
        out.append(text.encode())
    return out


def capture_requests(raw: list[bytes]) -> list[Request]:
    """The Lead.Capture query and body each delivery maps to with the shipped mapping."""
    config = load(REPO / "mappings", {**os.environ, **DEMO_ENV})
    mappings = config.mappings_for("typeform")
    out: list[Request] = []
    for body in raw:
        result = map_document(mappings, orjson.loads(body))
        if not isinstance(result, CaptureRequest):
            msg = f"the bench's document does not map: {result}"
            raise SystemExit(msg)
        out.append((dict(result.query), list(result.body)))
    return out


async def enqueue(url: str, raw: list[bytes]) -> None:
    store = open_store(url)
    await store.open()
    try:
        for i, body in enumerate(raw):
            delivery = IncomingDelivery(
                endpoint="typeform",
                received_at=time.time(),
                body=body,
                content_type="application/json",
                headers={"content-type": "application/json"},
                events=(EventIn(f"drain{i:021d}", orjson.loads(body)),),
            )
            await store.enqueue(delivery)
    finally:
        await store.close()


def sandbox_cmd(port: int, limit: str) -> list[str]:
    cmd = [PYTHON, "-m", "hub", "sandbox", "--port", str(port), "--rate-limit", limit]
    return [*cmd, "--access-key", KEYS[0], "--secret-key", KEYS[1], "--log-level", "warning"]


_PROGRESS = "SELECT state, count(*) FROM events GROUP BY state"
_ACK_TIMES = "SELECT updated_at FROM events WHERE state = 'delivered'"
_EXTRA = "SELECT coalesce(sum(attempts - 1), 0) FROM events"


class Queued:
    """The queue one run drains: a copy of the queued SQLite file, or with ``--postgres`` a
    fresh schema of that database, filled again. Read with plain SQL, never a store."""

    def __init__(self, tmp: Path, template: Path, name: str, postgres: str, raw: list[bytes]):
        self.postgres = postgres
        if postgres:
            self.schema = f"bench_drain_{name}"
            joint = "&" if "?" in postgres else "?"
            self.url = f"{postgres}{joint}schema={self.schema}"
            asyncio.run(enqueue(self.url, raw))
        else:
            self.db = tmp / f"drain-{name}.db"  # fresh: no stale -wal beside it
            shutil.copy(template, self.db)
            self.url = f"sqlite:///{self.db}"

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.postgres:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as conn:
                return conn.execute(sql).fetchall()
        import asyncpg

        async def go() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.postgres.split("?", 1)[0])
            try:
                await conn.execute(f'SET search_path = "{self.schema}"')
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def progress(self) -> tuple[int, int]:
        """(delivered, still pending) events."""
        rows = dict(self._query(_PROGRESS))
        pending = sum(rows.get(s, 0) for s in ("queued", "sending", "retrying"))
        return rows.get("delivered", 0), pending

    def ack_times(self) -> tuple[list[float], int]:
        """Sorted ack times of delivered events, and attempts beyond the first, summed."""
        times = sorted(float(r[0]) for r in self._query(_ACK_TIMES))
        return times, int(self._query(_EXTRA)[0][0])

    def drop(self) -> None:
        if self.postgres:
            self._query(f'DROP SCHEMA "{self.schema}" CASCADE')


_SENDS = re.compile(r"^leadhub_sends_total\{([^}]*)\} (\S+)$", re.MULTILINE)
_OUTCOME = re.compile(r'outcome="(\w+)"')


def dispatch_run(tmp: Path, queued: Queued, limit: str, n: int, stall: float) -> dict[str, Any]:
    """Drain ``queued`` at ``limit``; what it took."""
    sandbox_port, port = free_port(), free_port()
    config = tmp / "config"
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(REPO / "mappings", config)
    (config / "targets.yaml").write_text(
        TARGET_YAML.format(url=f"http://127.0.0.1:{sandbox_port}", limit=limit)
    )
    env = {**DEMO_ENV, "LSQ_ACCESS_KEY": KEYS[0], "LSQ_SECRET_KEY": KEYS[1]}
    serve = [PYTHON, "-m", "hub", "serve", "--role", "worker", "--port", str(port)]
    # at the production log level: JSON lines for each claim and each send
    serve += ["--config-dir", str(config), "--db", queued.url, "--log-level", "info"]
    base = f"http://127.0.0.1:{port}"
    metrics = ""
    stalled = False
    with (
        process(
            sandbox_cmd(sandbox_port, limit), ready_url=f"http://127.0.0.1:{sandbox_port}/"
        ) as sandbox,
        process(serve, ready_url=f"{base}/healthz", env=env, log=tmp / f"serve-{port}.log") as w,
    ):
        # The worker's CPU from when it is ready (start-up left out) to the last ack, over
        # the events delivered meanwhile; also its event loop's thread (the main thread)
        # alone, and the sandbox's.
        cpu_from, done_from = cpu_seconds(w.pid), queued.progress()[0]
        loop_from, sandbox_from = cpu_seconds(w.pid, w.pid), cpu_seconds(sandbox.pid)
        last_change, seen = time.monotonic(), -1
        while True:
            delivered, pending = queued.progress()
            if pending == 0:
                break
            if delivered != seen:
                last_change, seen = time.monotonic(), delivered
            elif time.monotonic() - last_change > stall:
                stalled = True
                break
            time.sleep(0.25)
        cpu = cpu_seconds(w.pid) - cpu_from
        loop_cpu = cpu_seconds(w.pid, w.pid) - loop_from
        sandbox_cpu = cpu_seconds(sandbox.pid) - sandbox_from
        with_metrics = httpx.get(f"{base}/metrics", timeout=30)
        if with_metrics.status_code == 200:
            metrics = with_metrics.text
    times, extra_attempts = queued.ack_times()

    def per_event(seconds: float) -> float:
        """µs of ``seconds`` per event delivered while they were counted."""
        done = len(times) - done_from
        return seconds / done * 1e6 if done > 0 else float("nan")

    sends: dict[str, int] = {}
    for labels, value in _SENDS.findall(metrics):
        outcome = _OUTCOME.search(labels)
        if 'target="default"' in labels and outcome:
            sends[outcome.group(1)] = int(float(value))
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "delivered": len(times),
        "stalled": stalled,
        "span": span,
        "sends_per_s": (len(times) - 1) / span if len(times) > 1 else float("nan"),
        "extra_attempts": extra_attempts,
        # A 429 is classified Retry: the sends not delivered bound the 429s from above.
        "not_delivered": sum(v for k, v in sends.items() if k != "delivered"),
        "sends": sends,
        "max_in_window": _max_in_window(times, parse_rate_limit(limit)),
        "cpu_per_event": per_event(cpu),
        "loop_cpu_per_event": per_event(loop_cpu),
        "sandbox_cpu_per_event": per_event(sandbox_cpu),
    }


def _max_in_window(times: list[float], limit: Any) -> int:
    if limit is None or not times:
        return 0
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= limit.window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def ideal_span(n: int, limit: Any) -> float:
    """Seconds from first to last send for an ideal limiter: a full window's calls at once."""
    return float(((n - 1) // limit.calls) * limit.window)


# -- plain loops at `off` ----------------------------------------------------------------------

Sender = Callable[[Request], Awaitable[bool]]


async def plain_loop(
    requests: list[Request], concurrency: int, send: Sender
) -> tuple[float, float]:
    """Send every request from ``concurrency`` workers; sends/s (all must succeed), and
    this process's CPU per send in µs."""
    todo = iter(requests)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for request in todo:
            if not await send(request):
                failures += 1

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    if failures:
        msg = f"{failures} of {len(requests)} plain sends failed"
        raise RuntimeError(msg)
    return len(requests) / took, cpu / len(requests) * 1e6


def hub_http_client() -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` the dispatcher builds, when it names a factory."""
    try:
        worker = importlib.import_module("hub.dispatch.worker")
    except ImportError:
        return httpx.AsyncClient()
    for name in ("make_http_client", "http_client", "build_http_client", "new_http_client"):
        factory = getattr(worker, name, None)
        if callable(factory):
            client = factory()
            if isinstance(client, httpx.AsyncClient):
                return client
    # No factory to call: mirror what Dispatcher.start() builds today.
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))


async def run_loop(
    kind: str, url: str, requests: list[Request], concurrency: int
) -> tuple[float, float]:
    headers = {"x-LSQ-AccessKey": KEYS[0], "x-LSQ-SecretKey": KEYS[1]}
    headers["Content-Type"] = "application/json"
    capture = url + CAPTURE_PATH
    if kind == "httpx default":
        async with httpx.AsyncClient() as client:

            async def send(req: Request) -> bool:
                r = await client.post(
                    capture, params=req[0], content=orjson.dumps(req[1]), headers=headers
                )
                return r.status_code == 200 and b'"Success"' in r.content

            return await plain_loop(requests, concurrency, send)
    if kind == "hub stack":
        target = Target(
            name="default",
            url=url,
            access_key=Secret(KEYS[0]),
            secret_key=Secret(KEYS[1]),
            rate_limit=None,
        )
        async with hub_http_client() as http:
            lsq = LeadSquaredClient(http)

            async def send(req: Request) -> bool:
                attempt = await lsq.capture(target, query=req[0], body=req[1])
                return attempt.status == 200

            return await plain_loop(requests, concurrency, send)
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def send(req: Request) -> bool:
            async with session.post(
                capture, params=req[0], data=orjson.dumps(req[1]), headers=headers
            ) as r:
                content = await r.read()
                return r.status == 200 and b'"Success"' in content

        return await plain_loop(requests, concurrency, send)


def loop_run(kind: str, requests: list[Request], concurrency: int) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(sandbox_cmd(port, "off"), ready_url=f"{url}/"):
        return asyncio.run(run_loop(kind, url, requests, concurrency))


def dispatcher_concurrency(default: int) -> int:
    """The dispatcher's sends in flight per target, when its module names it."""
    try:
        worker = importlib.import_module("hub.dispatch.worker")
    except ImportError:
        return default
    for name in ("SEND_CONCURRENCY", "CONCURRENCY", "MAX_IN_FLIGHT", "DEFAULT_CONCURRENCY"):
        value = getattr(worker, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


LOOPS = ("httpx default", "hub stack", "aiohttp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="events queued")
    parser.add_argument("--limit", default="500/5s", help="the rate limit of the first run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every run")
    parser.add_argument("--concurrency", type=int, default=0, help="plain loops' (auto)")
    parser.add_argument("--stall", type=float, default=60, help="give up after no progress")
    parser.add_argument(
        "--postgres",
        default="",
        metavar="DSN",
        help="drain from a fresh schema of this PostgreSQL database (filled for each run) "
        "instead of a SQLite file",
    )
    args = parser.parse_args()
    quiet_logs()
    print(f"machine: {machine()}", flush=True)
    concurrency = args.concurrency or dispatcher_concurrency(16)
    raw = bodies(args.events)
    requests = capture_requests(raw)
    limit = parse_rate_limit(args.limit)
    assert limit is not None
    ideal = ideal_span(args.events, limit)
    runs: list[list[object]] = []
    utilisations: list[float] = []
    off_rates: list[float] = []
    off_cpu: list[float] = []
    off_loop_cpu: list[float] = []
    worst_window, retries = 0, 0
    loops: dict[str, list[float]] = {k: [] for k in LOOPS}
    loops_cpu: dict[str, list[float]] = {k: [] for k in LOOPS}
    with tempfile.TemporaryDirectory(prefix="leadhub-drain-") as tmp_name:
        tmp = Path(tmp_name)
        template = tmp / "queued.db"
        if args.postgres:
            print(f"POSTGRESQL RUN: each run drains a fresh schema of {args.postgres!r}")
        else:
            asyncio.run(enqueue(f"sqlite:///{template}", raw))
            print(f"queued {args.events:,} events", flush=True)
        for rnd in range(1, args.rounds + 1):
            limits = (args.limit, "off") if rnd % 2 else ("off", args.limit)
            for run_limit in limits:
                name = f"{rnd}_{'off' if run_limit == 'off' else 'limited'}"
                queued = Queued(tmp, template, name, args.postgres, raw)
                try:
                    got = dispatch_run(tmp, queued, run_limit, args.events, args.stall)
                finally:
                    queued.drop()
                limited = run_limit != "off"
                if limited:
                    utilisations.append(ideal / got["span"])
                    worst_window = max(worst_window, got["max_in_window"])
                    retries += max(got["extra_attempts"], got["not_delivered"])
                else:
                    off_rates.append(got["sends_per_s"])
                    off_cpu.append(got["cpu_per_event"])
                    off_loop_cpu.append(got["loop_cpu_per_event"])
                runs.append(
                    [
                        f"dispatcher at {run_limit}",
                        rnd,
                        got["delivered"],
                        got["stalled"],
                        got["span"],
                        got["sends_per_s"],
                        ideal / got["span"] if limited else "-",
                        got["max_in_window"] if limited else "-",
                        got["extra_attempts"],
                        got["not_delivered"],
                        got["cpu_per_event"],
                        got["loop_cpu_per_event"],
                        got["sandbox_cpu_per_event"],
                    ]
                )
                print(table(RUN_HEADERS, runs[-1:]).splitlines()[-1], flush=True)
            for kind in LOOPS if rnd % 2 else LOOPS[::-1]:
                rate, cpu = loop_run(kind, requests, concurrency)
                loops[kind].append(rate)
                loops_cpu[kind].append(cpu)
                print(
                    f"  plain loop {kind}: {rate:,.0f} sends/s, {cpu:,.0f} µs CPU each", flush=True
                )
    print()
    print(table(RUN_HEADERS, runs))
    print()
    hub_loop = median(loops["hub stack"])
    dispatcher_off = median(off_rates)
    rows: list[list[object]] = [
        ["dispatcher (off)", dispatcher_off, dispatcher_off / hub_loop, median(off_cpu)]
    ]
    rows += [
        [f"plain loop, {k}", median(v), median(v) / hub_loop, median(loops_cpu[k])]
        for k, v in loops.items()
    ]
    print(f"medians of {args.rounds} rounds, at off, {concurrency} sends in flight:")
    print(table(["sender", "sends/s", "/ hub stack loop", "CPU µs/send"], rows))
    print()
    print(
        f"at off, the worker's event loop thread alone used {median(off_loop_cpu):,.0f} µs of "
        f"CPU per event; the hub stack loop {median(loops_cpu['hub stack']):,.0f} per send"
    )
    print(f"ideal first→last at {args.limit}: {ideal:.1f} s (a full window at once)")
    print(f"most acks in any {limit.window:g} s window at {args.limit}: {worst_window}")
    print(f"429s seen at {args.limit} (at most: retries of any kind, all rounds): {retries}")
    print(f"dispatcher_vs_hub_stack_loop: {dispatcher_off / hub_loop:.2f}")
    print(f"hub_stack_vs_httpx_default: {hub_loop / median(loops['httpx default']):.2f}")
    print(f"drain_utilisation: {median(utilisations):.2f}")


RUN_HEADERS = [
    "run",
    "round",
    "delivered",
    "stalled",
    "first→last ack s",
    "sends/s",
    "utilisation",
    "max in a window",
    "extra attempts",
    "sends not delivered",
    "worker CPU µs/event",
    "loop thread µs/event",
    "sandbox µs/lead",
]

if __name__ == "__main__":
    main()
