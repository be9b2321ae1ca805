"""Two hub processes on one PostgreSQL schema through a real PgBouncer in transaction mode
(tests.pgbouncer): webhooks in through both, leads out to a sandbox, once each. And serve
behind PgBouncer in statement mode, which it cannot work through."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from hub.store.models import State
from tests.dispatch.support import KEYS, flat_endpoint_yaml, target_yaml
from tests.e2e.support import stored_events, wait_until
from tests.pg_server import fresh_schema, sql
from tests.pgbouncer import PgBouncer
from tests.support.server import free_port, leadhub_process, leadhub_run, serve_args

WEBHOOKS = 40
#: The account's limit, the sandbox's and the target's: kept by the two processes together
#: (the shared rate window), the sandbox refuses none (a 429 would show as a second attempt).
LIMIT = "30/1s"
SANDBOX_HEADERS = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}


@pytest.mark.slow
def test_two_instances_through_pgbouncer_store_and_send_every_lead_once(
    tmp_path: Path, postgres_dsn: str, pgbouncer_schema: tuple[str, str]
) -> None:
    """Two ``serve`` processes (web and worker each) share a schema through PgBouncer in
    transaction mode, webhooks posted to both at once (8 at a time): every one is answered
    200, stored once, and sent once to the sandbox, within its limit together (the shared
    rate window: the sandbox refuses none, so no event takes a second attempt). Before,
    the hub's connections were refused ("unsupported startup parameter: jit"); given those
    settings, named prepared statements met other server sessions (18 of 20 webhooks 503)."""
    dsn, schema = pgbouncer_schema
    db = f"{dsn}?schema={schema}"
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    files = {
        "forms.yaml": flat_endpoint_yaml("forms", "default"),
        "targets.yaml": target_yaml("default", sandbox, rate_limit=LIMIT),
    }
    first, first_url, _ = serve_args(tmp_path, files, db=db)
    second, second_url, _ = serve_args(tmp_path, files, db=db)
    sandbox_args = ["sandbox", "--port", str(sandbox_port), "--rate-limit", LIMIT]
    sandbox_args += ["--access-key", KEYS["LSQ_ACCESS"], "--secret-key", KEYS["LSQ_SECRET"]]
    emails = [f"pooled{n}@example.com" for n in range(WEBHOOKS)]

    def post(n: int) -> int:
        base = (first_url, second_url)[n % 2]
        body = {"email": emails[n], "first_name": f"P{n}", "seq": n}
        return httpx.post(f"{base}/hooks/forms", json=body, timeout=30).status_code

    with (
        leadhub_process(sandbox_args, ready_url=f"{sandbox}/"),
        leadhub_process(first, ready_url=f"{first_url}/healthz", env=KEYS),
        leadhub_process(second, ready_url=f"{second_url}/healthz", env=KEYS),
    ):
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(WEBHOOKS)))
        assert answers == [200] * WEBHOOKS
        wait_until(
            lambda: all(e.state is State.DELIVERED for e in stored_events(db)),
            timeout=60,
            what="every event delivered",
        )
        found = httpx.get(f"{sandbox}/_sandbox/leads", headers=SANDBOX_HEADERS, timeout=10)
    events = stored_events(db)
    assert len(events) == WEBHOOKS
    assert [e.attempts for e in events] == [1] * WEBHOOKS, [e.last_error for e in events]
    # in ?schema='s tables, read on the server itself
    in_schema = asyncio.run(sql(postgres_dsn, "SELECT count(*) FROM events", schema=schema))
    assert in_schema == [(WEBHOOKS,)]
    assert sorted(lead["EmailAddress"] for lead in found.json()) == sorted(emails)


@pytest.mark.slow
async def test_serve_behind_pgbouncer_in_statement_mode_exits_1_at_once_naming_the_mode(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """PgBouncer in statement mode ends the hub's connection at its first ``BEGIN``: serve
    logs ``store_open_failed`` naming the ``pool_mode`` to set and exits 1, at once, with no
    ``store_waiting`` line (no 30 s of waiting for a server that is up), as for the other
    errors an open finds and waiting cannot fix (a wrong password, no such database). Exit 1,
    not 2: 2 is for serve's own input refused before it reaches anything (flags, the config
    directory, a --db it cannot parse); this is the pooler's setting, fixed there."""
    files = {"forms.yaml": flat_endpoint_yaml("forms", "default")}
    files["targets.yaml"] = target_yaml("default", f"http://127.0.0.1:{free_port()}")
    with PgBouncer(postgres_dsn, pool_mode="statement") as bouncer:
        async with fresh_schema(postgres_dsn) as schema:
            args, _, _ = serve_args(tmp_path, files, db=f"{bouncer.dsn()}?schema={schema}")
            done = await asyncio.to_thread(leadhub_run, args, env=KEYS)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    logged = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert not [e for e in logged if e["event"] == "store_waiting"], output
    (failed,) = [e for e in logged if e["event"] == "store_open_failed"]
    assert "pool_mode = transaction" in failed["error"], output
