"""``leadhub serve --store-wait``: a store that cannot be reached at start is tried again for
a while (PostgreSQL started after the hub), errors waiting cannot fix end at once, and a
stop signal ends the wait. And what serve logs when PostgreSQL goes away under load and
comes back. Real processes and real PostgreSQL servers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog

from hub.commands.serve import StoppedWaiting, Stopping, open_waiting, store_wait_for
from hub.store import StoreError, StoreUnavailable
from hub.store.base import NotAFile, newer_schema
from tests.pg_server import PostgresServer, find_bindir, frozen, sql
from tests.support.server import free_port, leadhub_process, leadhub_run, wait_http
from tests.web.conftest import stored_events
from tests.web.test_serve import ENV, serve_args, signed

needs_postgres = pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed")


def lines(output: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``event`` in ``output``, whole lines only: the last may still be
    being written by a running process (and would not parse)."""
    whole = output[: output.rfind("\n") + 1]
    return [
        orjson.loads(line)
        for line in whole.splitlines()
        if line.startswith("{") and f'"{event}"' in line and orjson.loads(line)["event"] == event
    ]


def wait_for_line(proc: Any, event: str, timeout: float = 30.0) -> str:
    """The process's output once it holds an ``event`` line (fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen += str(proc.stdout.read())
        if lines(seen, event):
            return seen
        assert proc.poll() is None, seen
        time.sleep(0.05)
    raise AssertionError(f"no {event} line within {timeout} s:\n{seen}")


# -- the wait itself, on a fake store --------------------------------------------------------


class FlakyStore:
    """Fails ``open`` with each of ``errors`` in turn, then opens."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.attempts = 0

    async def open(self) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)

    async def commit_wait(self) -> None:
        return None


async def test_open_waiting_tries_again_while_unavailable_then_opens() -> None:
    store = FlakyStore(StoreUnavailable("down"), StoreUnavailable("starting up"))
    with structlog.testing.capture_logs() as logs:
        await open_waiting(store, wait=30, db_url="postgresql://u:pw@h/db")  # type: ignore[arg-type]
    assert store.attempts == 3
    waiting = [entry for entry in logs if entry["event"] == "store_waiting"]
    assert [w["attempt"] for w in waiting] == [1, 2]
    assert [w["error"] for w in waiting] == ["down", "starting up"]
    assert [w["retry_in"] for w in waiting] == [0.5, 1.0]  # doubling
    assert all(w["db"] == "postgresql://u:***@h/db" for w in waiting)


async def test_the_wait_counts_from_the_first_failure_not_the_first_attempt() -> None:
    """A first attempt longer than the wait (a host dropping packets: the 10 s connect
    timeout, or a loaded machine) is still followed by the wait: one store_waiting line and
    a try again. Counted from before that attempt, the wait was over when it failed, and
    serve gave up after one attempt, never saying it waited."""

    class SlowFirst(FlakyStore):
        async def open(self) -> None:
            if self.attempts == 0:
                await asyncio.sleep(0.5)  # longer than the wait
            await super().open()

    store = SlowFirst(StoreUnavailable("no answer"))
    with structlog.testing.capture_logs() as logs:
        await open_waiting(store, wait=0.2, db_url="postgresql://h/db")  # type: ignore[arg-type]
    assert store.attempts == 2
    waiting = [entry for entry in logs if entry["event"] == "store_waiting"]
    assert [(w["attempt"], w["waited"], w["retry_in"]) for w in waiting] == [(1, 0.0, 0.2)]


@pytest.mark.parametrize(
    "error",
    [
        StoreError("password authentication failed"),
        newer_schema(9, 2),
        NotAFile("the event store '/srv' cannot be opened or written; it is a directory"),
    ],
    ids=["not-unavailable", "newer-schema", "a-directory"],
)
async def test_open_waiting_ends_at_once_on_what_waiting_cannot_fix(error: StoreError) -> None:
    store = FlakyStore(error)
    with structlog.testing.capture_logs() as logs, pytest.raises(type(error)):
        await open_waiting(store, wait=30, db_url="postgresql://h/db")  # type: ignore[arg-type]
    assert store.attempts == 1
    assert not [entry for entry in logs if entry["event"] == "store_waiting"]


async def test_open_waiting_without_a_wait_tries_once() -> None:
    store = FlakyStore(StoreUnavailable("down"))
    with pytest.raises(StoreUnavailable):
        await open_waiting(store, wait=0, db_url="sqlite:///x.db")  # type: ignore[arg-type]
    assert store.attempts == 1


async def test_a_stop_ends_the_wait_and_a_hanging_attempt() -> None:
    class Hanging(FlakyStore):
        async def open(self) -> None:
            await asyncio.sleep(3600)

    stopping = Stopping()
    asyncio.get_running_loop().call_later(0.2, stopping.set)
    async with asyncio.timeout(10):
        with pytest.raises(StoppedWaiting):
            await open_waiting(Hanging(), wait=60, db_url="x", stopping=stopping)  # type: ignore[arg-type]


def test_the_default_wait_is_for_postgresql_only() -> None:
    assert store_wait_for("postgresql://h/db", None) == 30.0
    assert store_wait_for("postgres://h/db", None) == 30.0
    assert store_wait_for("sqlite:///hub.db", None) == 0.0
    assert store_wait_for("sqlite:///hub.db", 5.0) == 5.0
    assert store_wait_for("postgresql://h/db", 0.0) == 0.0


# -- serve as a real process -----------------------------------------------------------------


@pytest.mark.slow
@needs_postgres
async def test_serve_waits_for_a_postgresql_started_later_then_stores_a_webhook(
    tmp_path: Path,
) -> None:
    """Started before its database: serve logs store_waiting, refuses connections meanwhile,
    becomes ready once PostgreSQL runs, and stores a webhook."""
    pg_port, port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
    server = PostgresServer()
    try:
        with leadhub_process(serve_args(tmp_path, port, role="web", db=url), env=ENV) as proc:
            seen = wait_for_line(proc, "store_waiting")
            with pytest.raises(httpx.ConnectError):  # bound, not listening: refused
                httpx.get(f"{base}/healthz", timeout=2)
            assert not lines(seen, "hub_ready")
            server.start(port=pg_port)
            wait_http(f"{base}/healthz", timeout=60, proc=proc)
            seen += wait_for_line(proc, "hub_ready")
            event_id, body, sig = signed(1)
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.post(
                    f"{base}/hooks/typeform",
                    content=body,
                    headers={"content-type": "application/json", "typeform-signature": sig},
                )
            assert response.status_code == 200, response.text
        waiting = lines(seen, "store_waiting")
        assert waiting[0]["attempt"] == 1
        assert "check that PostgreSQL is running" in waiting[0]["error"]
        assert not lines(seen, "store_open_failed")
        assert [e.delivery_id for e in await stored_events(url)] == [event_id]
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_gives_up_after_the_store_wait(tmp_path: Path) -> None:
    """--store-wait 1s against nothing: store_waiting, then store_open_failed and exit 1."""
    url = f"postgresql://hub:hunter2-secret@127.0.0.1:{free_port()}/leads"
    result = leadhub_run(
        [*serve_args(tmp_path, free_port(), role="all", db=url), "--store-wait", "1s"], env=ENV
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    waiting = lines(result.stdout, "store_waiting")
    assert waiting, output
    assert waiting[0]["db"] == url.replace("hunter2-secret", "***")
    # It waited the 1 s given, not the 30 s default, as serve's own clock tells: every try
    # again was planned within the wait (waited rounded to 0.1 s, retry_in to 0.01 s).
    assert all(w["store_wait"] == 1.0 for w in waiting), waiting
    assert all(w["waited"] + w["retry_in"] <= 1.0 + 0.06 for w in waiting), waiting
    failed = lines(result.stdout, "store_open_failed")
    assert len(failed) == 1, output
    assert "Traceback" not in output
    assert "hunter2" not in output
    assert not lines(result.stdout, "hub_ready")


@pytest.mark.parametrize(
    "query", ["password=hunter2-secret&user=hub", "sslpassword=hunter2-secret"]
)
def test_a_password_in_the_store_urls_query_is_in_no_line(tmp_path: Path, query: str) -> None:
    """libpq and asyncpg take the password from ``?password=`` as well as from
    ``user:password@``: a store that cannot be reached showed it whole in
    ``store_open_failed`` (its ``db`` and its ``error``) and in serve's last words."""
    url = f"postgresql://127.0.0.1:{free_port()}/leads?{query}"
    result = leadhub_run(
        [*serve_args(tmp_path, free_port(), role="all", db=url), "--store-wait", "0s"], env=ENV
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    (failed,) = lines(result.stdout, "store_open_failed")
    assert failed["db"] == url.replace("hunter2-secret", "***"), failed
    assert "hunter2" not in output, output


@pytest.mark.slow
def test_a_stop_signal_while_waiting_stops_serve_at_once(tmp_path: Path) -> None:
    """SIGTERM during the (default, 30 s) wait for PostgreSQL: exit 0 within seconds."""
    url = f"postgresql://hub@127.0.0.1:{free_port()}/leads"
    with leadhub_process(serve_args(tmp_path, free_port(), db=url), env=ENV) as proc:
        seen = wait_for_line(proc, "store_waiting")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        seen += proc.stdout.read() if proc.stdout else ""
    assert lines(seen, "hub_stopped"), seen
    assert not lines(seen, "hub_ready")
    assert "startup failed" not in seen.lower(), seen
    assert "Traceback" not in seen


@contextlib.contextmanager
def password_server() -> Iterator[str]:
    """A PostgreSQL server asking TCP clients for a password (``right``); its password-less
    DSN."""
    server = PostgresServer()
    server.start()
    try:
        dsn = server.dsn
        asyncio.run(sql(dsn, "ALTER ROLE postgres PASSWORD 'right'"))
        (server.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        asyncio.run(sql(dsn, "SELECT pg_reload_conf()"))
        yield dsn
    finally:
        server.stop()


@pytest.mark.slow
@needs_postgres
def test_what_waiting_cannot_fix_fails_at_once(tmp_path: Path) -> None:
    """A wrong password, a database that does not exist, an option of the URL the driver
    refuses (?sslmode=bogus, which was told as the server not reached, after 30 s of
    store_waiting), or an sslmode=require the server cannot meet (it has no SSL: told as not
    reached too, "check that PostgreSQL is running", after the same wait): store_open_failed
    and exit 1 with no store_waiting line, well before the 30 s default wait."""
    with password_server() as dsn:
        good = dsn.replace("postgres@", "postgres:right@")
        wrong = dsn.replace("postgres@", "postgres:wrong-hunter2@")
        missing = good.rsplit("/", 1)[0] + "/no_such_db"
        refused = f"{good}?sslmode=bogus"
        no_ssl = f"{good}?sslmode=require"
        cases = (
            (wrong, "password"),
            (missing, "no_such_db"),
            (refused, "sslmode"),
            (no_ssl, "the server does not offer SSL"),
        )
        for url, says in cases:
            result = leadhub_run(serve_args(tmp_path, free_port(), db=url), env=ENV)
            output = result.stdout + result.stderr
            assert result.returncode == 1, output
            # at once: no try again (each would log store_waiting), so no wait at all
            assert not lines(result.stdout, "store_waiting"), output
            (failed,) = lines(result.stdout, "store_open_failed")
            assert says in failed["error"], output
            assert "hunter2" not in output
            assert ":right@" not in output


@pytest.mark.slow
@needs_postgres
async def test_a_postgresql_outage_under_load_logs_no_traceback(tmp_path: Path) -> None:
    """PostgreSQL stopped (pg_ctl stop -m fast) and started again while serve takes webhooks:
    503s meanwhile, 200s again after, and every line of serve's output is a JSON line
    without a traceback (asyncpg's pool retries: error and detail only)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = PostgresServer()
    server.start()
    codes: dict[int | str, int] = {}
    try:
        args = serve_args(tmp_path, port, role="all", db=server.dsn)
        with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV) as proc:
            phase = {"n": 0, "stop": False}

            async def sender(client: httpx.AsyncClient, first: int) -> None:
                i = first
                while not phase["stop"]:
                    i += 8
                    _, body, sig = signed(i)
                    try:
                        response = await client.post(
                            f"{base}/hooks/typeform",
                            content=body,
                            headers={"content-type": "application/json", "typeform-signature": sig},
                        )
                        key: int | str = response.status_code
                    except httpx.TransportError as exc:
                        key = type(exc).__name__
                    codes[key] = codes.get(key, 0) + 1
                    await asyncio.sleep(0.002)

            async def outage() -> dict[int | str, int]:
                await asyncio.sleep(1.5)
                await asyncio.to_thread(server.pause)
                await asyncio.sleep(3)
                during = dict(codes)
                await asyncio.to_thread(server.resume)
                before = codes.get(200, 0)
                deadline = time.monotonic() + 30
                while codes.get(200, 0) < before + 50 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                phase["stop"] = True
                return during

            async with httpx.AsyncClient(timeout=30) as client:
                tasks = [asyncio.create_task(sender(client, k)) for k in range(4)]
                during = await outage()
                await asyncio.gather(*tasks)
            after_restart = codes.get(200, 0) - during.get(200, 0)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            output = proc.stdout.read() if proc.stdout else ""
    finally:
        server.stop()
    assert during.get(503, 0) > 0, codes
    assert after_restart >= 50, codes
    assert "Traceback" not in output
    bad = [line for line in output.splitlines() if line and not line.startswith("{")]
    assert not bad, bad[:5]
    for entry in lines(output, "Failed to restore the pool connection floor; retrying"):
        assert entry["error"] and "exception" not in entry


@pytest.mark.slow
@needs_postgres
def test_a_hangup_while_waiting_is_a_reload_once_started(tmp_path: Path) -> None:
    """SIGHUP (the reload signal) while serve waits for its store used to end it at once,
    without a line (exit 129: the signal's default action, no handler yet). Now serve keeps
    waiting, and once started reads its directory again: an endpoint added meanwhile is
    served. SIGHUP while it stops (no reload hook any more) does not cut the stop short."""
    pg_port, port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"
    args = serve_args(tmp_path, port, role="all", db=url)
    server = PostgresServer()
    try:
        with leadhub_process(args, env=ENV) as proc:
            seen = wait_for_line(proc, "store_waiting")
            (tmp_path / "cfg" / "late.yaml").write_text(
                "kind: endpoint\nname: late\nsource: token\ntoken: ${TF_SECRET}\n"
            )
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert proc.poll() is None, "a SIGHUP while waiting ended serve"
            server.start(port=pg_port)
            wait_http(f"{base}/healthz", timeout=60, proc=proc)
            seen += wait_for_line(proc, "config_reloaded")
            answer = httpx.post(f"{base}/hooks/late", json={}, timeout=10)
            assert answer.status_code == 401  # known (no token given), not 404
            for _ in range(20):  # while it stops, as often as a watcher might
                proc.send_signal(signal.SIGTERM if _ == 0 else signal.SIGHUP)
            assert proc.wait(timeout=30) == 0
            seen += proc.stdout.read() if proc.stdout else ""
        # the first: the one asked for while waiting (a SIGHUP sent as it stops may be another)
        assert lines(seen, "config_reloaded")[0]["endpoints_added"] == ["late"]
        assert lines(seen, "hub_stopped"), seen
        assert "Traceback" not in seen
    finally:
        server.stop()


@pytest.mark.slow
@needs_postgres
def test_readyz_and_metrics_answer_in_time_while_postgresql_hangs(tmp_path: Path) -> None:
    """With PostgreSQL hanging, /readyz answers 503 within its 3 s and /metrics answers 200
    within a scrape's 10 s: /readyz took as long as asyncpg's cancellation of the ping (over
    20 s, a liveness or readiness probe timed out instead of reading 503), and /metrics as
    long as the count query's own timeout."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = PostgresServer()
    server.start()
    try:
        args = serve_args(tmp_path, port, role="web", db=server.dsn)
        with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV) as proc:
            assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
            # Each answers while the server still hangs (it does until its block ends),
            # having given up on its own budget (3 s) as its line says. The 30 s are hang
            # guards, not a measure of speed: waiting for the cancellation, each took as long
            # as the driver's 60 s command timeout (63 s measured). One freeze each, so that
            # each hangs in a query on the pool's idle connection: in one freeze, the scrape
            # came second and passed with its fix undone (the hung ping held that connection,
            # so the scrape waited for a new one, and that wait is cut at once).
            with frozen(server):
                ready = httpx.get(f"{base}/readyz", timeout=30)
                assert ready.status_code == 503
                (failed, *_) = lines(wait_for_line(proc, "readiness_failed"), "readiness_failed")
                assert (failed["error"], failed["detail"]) == (
                    "TimeoutError",
                    "no answer within 3s",
                )
            assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
            with frozen(server):
                metrics = httpx.get(f"{base}/metrics", timeout=30)
                assert metrics.status_code == 200
                assert "leadhub_deliveries_total" in metrics.text
                assert lines(wait_for_line(proc, "metrics_counts_failed"), "metrics_counts_failed")
            assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
    finally:
        server.stop()


@pytest.mark.slow
@needs_postgres
def test_a_webhook_waiting_on_a_hung_postgresql_is_answered_503(tmp_path: Path) -> None:
    """With PostgreSQL hanging (every process stopped), a webhook waiting for its commit is
    answered 503 after the URL's ?stall_after= (the sender retries) instead of waiting as long
    as the hang lasts (over 70 s before); once the server is back, the retry is stored."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = PostgresServer()
    server.start()
    try:
        args = serve_args(tmp_path, port, role="web", db=f"{server.dsn}?stall_after=2s")
        event_id, body, sig = signed(7)
        headers = {"content-type": "application/json", "typeform-signature": sig}
        with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV) as proc:
            with frozen(server):
                # Answered while the server still hangs (it does until this block ends). The
                # 60 s are a hang guard, not a measure of speed: unwatched, the webhook
                # waited over 70 s.
                answer = httpx.post(
                    f"{base}/hooks/typeform", content=body, headers=headers, timeout=60
                )
                (stalled, *_) = lines(wait_for_line(proc, "store_stalled"), "store_stalled")
            assert answer.status_code == 503, answer.text
            # the 503 came from the watchdog, after ?stall_after= (2 s)
            assert (stalled["waited"], stalled["failing"]) == (2.0, 1), stalled
            retry = httpx.post(f"{base}/hooks/typeform", content=body, headers=headers, timeout=30)
            assert retry.status_code == 200, retry.text
            assert retry.json()["status"] in ("accepted", "duplicate")
        assert [e.delivery_id for e in asyncio.run(stored_events(server.dsn))] == [event_id]
    finally:
        server.stop()
