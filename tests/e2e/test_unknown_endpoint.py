"""Two ``leadhub serve --role worker`` on one store, one of them without an endpoint (a rolling
deploy that adds it): the one without leaves that endpoint's events for the other, which
sends every one of them; none ends ``unmatched`` (the audit: 8 of 30 Typeform leads were
marked so by an instance without typeform.yaml). Real processes, a real sandbox."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from hub.store.models import State
from tests.dispatch.support import KEYS, target_yaml
from tests.e2e.support import queue_leads, stored_events, wait_until
from tests.e2e.test_crash import CONFIG
from tests.support.server import free_port, leadhub_process, leadhub_run, serve_args

LATE = """kind: endpoint
name: late
source: token
token: ${FORMS_TOKEN}
---
kind: mapping
name: late-map
endpoint: late
fields:
  EmailAddress: { path: $.email, required: true }
  FirstName: $.name
"""
LEADS = 30


def _lines(output: str, event: str) -> list[dict[str, object]]:
    found = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [entry for entry in found if entry.get("event") == event]


@pytest.mark.slow
def test_an_instance_without_an_endpoint_leaves_its_events_to_one_that_has_it(
    tmp_path: Path, hub_db_url: str
) -> None:
    """The worker without endpoint ``late`` runs alone first: it takes every ``late`` event
    once and puts it back untried, saying why, and delivers the ``forms`` ones. Then the
    worker with ``late`` starts, and delivers every ``late`` event at its first attempt."""
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    target = target_yaml("default", sandbox)
    db = hub_db_url
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, _, _ = serve_args(
        tmp_path / "old", {"forms.yaml": CONFIG, "targets.yaml": target}, "--role", "worker", db=db
    )
    new_files = {"forms.yaml": CONFIG, "late.yaml": LATE, "targets.yaml": target}
    new, _, _ = serve_args(tmp_path / "new", new_files, "--role", "worker", db=db)
    env = {**KEYS, "FORMS_TOKEN": "unused"}
    # room for every call at once: a 429 would be retried and show as a second attempt
    sandbox_args = ["sandbox", "--port", str(sandbox_port), "--rate-limit", "1000/1s"]
    sandbox_args += ["--access-key", KEYS["LSQ_ACCESS"], "--secret-key", KEYS["LSQ_SECRET"]]
    with (
        leadhub_process(sandbox_args, ready_url=f"{sandbox}/"),
        leadhub_process(old, env=env) as without,
    ):
        stdout = without.stdout
        assert stdout is not None
        output = ""

        def started() -> bool:
            nonlocal output
            output += stdout.read()
            return bool(_lines(output, "dispatcher_started"))

        wait_until(started, what="the worker without late started")
        queue_leads(db, "late", LEADS, prefix="late")
        queue_leads(db, "forms", 5, prefix="forms")
        wait_until(
            lambda: (
                all(e.state is not State.QUEUED or e.last_error for e in stored_events(db))
                and all(
                    e.state is State.DELIVERED for e in stored_events(db) if e.endpoint == "forms"
                )
            ),
            timeout=60,
            what="every late event looked at by the worker without it, forms delivered",
        )
        left = [e for e in stored_events(db) if e.endpoint == "late"]
        shown = leadhub_run(["events", "--db", db, "--endpoint", "late", "--json"], env=env)
        with leadhub_process(new, env=env):
            wait_until(
                lambda: all(e.state is State.DELIVERED for e in stored_events(db)),
                timeout=60,
                what="every event delivered",
            )
        headers = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}
        found = httpx.get(f"{sandbox}/_sandbox/leads", headers=headers, timeout=10).json()
        output += stdout.read()
    assert {e.state for e in left} == {State.QUEUED}, [(e.state, e.last_error) for e in left]
    assert {e.attempts for e in left} == {0}
    assert all("'late' is not in this hub's configuration" in (e.last_error or "") for e in left)
    listed = [orjson.loads(line) for line in shown.stdout.splitlines()]
    assert len(listed) == LEADS, shown.stdout + shown.stderr
    for entry in listed:  # what `leadhub events` shows an operator: why each one waits
        assert entry["state"] == "queued"
        assert entry["last_error"] == (
            "endpoint not configured: 'late' is not in this hub's configuration; waiting for "
            "an instance that has it, or put it back (leadhub replay needs nothing: it is "
            "sent once configured)"
        )
    events = stored_events(db)
    assert [e.attempts for e in events] == [1] * (LEADS + 5), [
        (e.endpoint, e.last_error) for e in events
    ]
    emails = sorted(lead["EmailAddress"] for lead in found)
    expected = [f"late{n}@example.com" for n in range(LEADS)]
    assert emails == sorted(expected + [f"forms{n}@example.com" for n in range(5)])
    (line,) = _lines(output, "event_left")  # one line for the endpoint, not one per event
    assert line["endpoint"] == "late"
