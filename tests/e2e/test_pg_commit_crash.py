"""A delivery answered 200 survives PostgreSQL killed right after, whatever its commit setting.

The database is tuned as many are for throughput, ``synchronous_commit = off``: a commit
returns before its WAL is written, and the WAL writer writes it a ``wal_writer_delay``
later (here 10 s). ``leadhub serve --role web`` takes webhooks on it, directly and through
PgBouncer in transaction mode; every process of the server is then killed at once (SIGKILL:
what its shared memory held is lost), the server started again (crash recovery), and every
delivery answered 200 must be in the store.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import FORMS_CONFIG
from tests.pg_server import PostgresServer, find_bindir, sql
from tests.pgbouncer import PgBouncer, find_pgbouncer
from tests.support.server import leadhub_process, serve_args

TOKEN = "durable-commit-token"
ENV = {"FORMS_TOKEN": TOKEN}
#: The server as tuned for throughput: commits return before their WAL is written, which the
#: WAL writer does only every 10 s (unless a page of WAL fills up).
ASYNC_COMMITS = ("synchronous_commit=off", "wal_writer_delay=10000ms")
SENDERS = 4
EACH = 40

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed"),
]


@pytest.fixture(params=["direct", "pgbouncer"])
def server_and_url(request: pytest.FixtureRequest) -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL server of its own with :data:`ASYNC_COMMITS`, and the store URL serve is
    given: the server itself, or a PgBouncer (transaction mode) in front of it."""
    if request.param == "pgbouncer" and find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed")
    with PostgresServer(settings=ASYNC_COMMITS) as server:
        if request.param == "direct":
            yield server, f"{server.dsn}?schema=hub"
            return
        with PgBouncer(server.dsn) as bouncer:
            yield server, f"{bouncer.dsn()}?schema=hub"


def _send(base: str, first: int) -> list[str]:
    """Post :data:`EACH` distinct leads; the emails answered 200."""
    accepted = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for n in range(first, first + EACH):
            email = f"lead{n}@example.com"
            answer = client.post("/hooks/forms", json={"email": email}, timeout=30)
            if answer.status_code == 200:
                accepted.append(email)
    return accepted


def _lines(output: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``event`` in serve's ``output``."""
    found = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [entry for entry in found if entry.get("event") == event]


def test_every_delivery_answered_200_is_stored_after_postgresql_is_killed(
    tmp_path: Path, server_and_url: tuple[PostgresServer, str]
) -> None:
    server, url = server_and_url
    args, base, _ = serve_args(tmp_path, {"forms.yaml": FORMS_CONFIG}, "--role", "web", db=url)
    with leadhub_process(args, ready_url=f"{base}/healthz", env=ENV) as proc:
        with ThreadPoolExecutor(SENDERS) as pool:
            sent = pool.map(lambda k: _send(base, k * EACH), range(SENDERS))
            accepted = sorted(email for emails in sent for email in emails)
        server.crash()  # at once: the last commits are a moment old
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.stdout is not None
        output = proc.stdout.read()
    server.resume()
    ((stored,),) = asyncio.run(sql(server.dsn, "SELECT count(*) FROM events", schema="hub"))
    assert len(accepted) == SENDERS * EACH
    assert stored == len(accepted)
    # (the test server runs with fsync and full_page_writes off too: serve warns of them)
    (unsafe,) = _lines(output, "store_not_crash_safe")
    assert unsafe["level"] == "warning" and unsafe["off"] == ["fsync", "full_page_writes"]
    assert "turn fsync and full_page_writes on in postgresql.conf" in unsafe["detail"]
    assert "://" in unsafe["db"] and "schema=hub" in unsafe["db"]
    (made,) = _lines(output, "store_commits_made_durable")
    assert made["synchronous_commit"] == "on"
