"""A sender that wraps its lead in an array (Zapier's "Wrap Request In Array"), onboarded with
a mapping written for the lead itself: the event's reason says the document is an array and
that the endpoint needs ``split: $[*]``, not only that ``$.email`` found nothing (in a
delivery that visibly holds an email). Set so, and reloaded, the same post is delivered.

Real ``leadhub serve`` with its embedded sandbox, real HTTP, ``leadhub events`` and
``leadhub try`` as subprocesses.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import wait_until
from tests.e2e.test_reload import Log
from tests.support.server import leadhub_process, leadhub_run, serve_args

TOKEN = "zapcrm_tok_456"
ZAP = """\
kind: endpoint
name: zap-crm
source: token
token: ${ZAP_CRM_TOKEN}
dedupe: $.record_id
---
name: zap-crm-leads
endpoint: zap-crm
fields:
  EmailAddress: { path: $.email, transform: [trim, lower], required: true }
  Company: $.company
"""
WRAPPED = b'[{"record_id": "r-77", "email": "Bob@Example.com", "company": "Bobco"}]'
JSON = {"content-type": "application/json"}
HINT = (
    "; the document is a JSON array (1 item), not an object: for a sender that posts its "
    "leads in an array (Zapier's Wrap Request In Array), give the endpoint split: $[*] (each "
    "item is then one event; post this delivery again once it is set)"
)


def _events(db: Path) -> list[dict[str, object]]:
    """Every stored event, newest first, as ``leadhub events --json`` lists them."""
    done = leadhub_run(["events", "--db", f"sqlite:///{db}", "--json"])
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _settled(db: Path, count: int) -> bool:
    events = _events(db)
    return len(events) == count and all(e["state"] in ("dead", "delivered") for e in events)


@pytest.mark.slow
def test_a_lead_wrapped_in_an_array_says_to_split_it(tmp_path: Path) -> None:
    args, base, db = serve_args(tmp_path, {"zap.yaml": ZAP})
    config = tmp_path / "cfg"
    hook = f"{base}/hooks/zap-crm?token={TOKEN}"
    with leadhub_process(args, ready_url=f"{base}/readyz", env={"ZAP_CRM_TOKEN": TOKEN}) as hub:
        log = Log(hub)
        answer = httpx.post(hook, content=WRAPPED, headers=JSON)
        assert answer.json() == {"status": "accepted", "id": 1}
        wait_until(lambda: _settled(db, 1), what="the wrapped lead's outcome")
        (event,) = _events(db)
        assert event["state"] == "dead"
        assert event["last_error"] == (
            "mapping failed: required value missing in mapping 'zap-crm-leads': "
            "EmailAddress ($.email found nothing)" + HINT
        )
        payload = tmp_path / "payload.json"
        payload.write_bytes(WRAPPED)
        tried = leadhub_run(["try", "zap-crm", str(payload), "--config-dir", str(config)])
        assert tried.returncode == 1
        assert tried.stdout.rstrip("\n").endswith(HINT), tried.stdout

        # As the reason says: split: $[*], a reload, the delivery posted again.
        (config / "zap.yaml").write_text(ZAP.replace("dedupe:", "split: $[*]\ndedupe:"))
        hub.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        answer = httpx.post(hook, content=WRAPPED, headers=JSON)
        assert answer.json() == {"status": "accepted", "id": 2, "ids": [2]}
        wait_until(lambda: _settled(db, 2), what="the split lead's outcome")
        assert _events(db)[0]["state"] == "delivered"


def test_a_split_that_finds_the_values_of_one_lead_says_so(tmp_path: Path) -> None:
    """split: $[*] on a delivery that is one lead (the sender's wrapping turned off) makes
    each of its values a document: `leadhub try` says each is text, not an object, and why;
    the lead itself, an object, gets no such words."""
    (tmp_path / "zap.yaml").write_text(ZAP.replace("dedupe:", "split: $[*]\ndedupe:"))
    payload = tmp_path / "payload.json"
    payload.write_text('{"email": "bob@example.com", "record_id": 7}')
    done = leadhub_run(["try", "zap-crm", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert done.returncode == 1
    reasons = [json.loads(line)["reason"] for line in done.stdout.splitlines()]
    why = (
        "not an object: when the endpoint has a split, its path finds the values inside a "
        "lead rather than the leads (split: $[*] on a delivery that is one lead); else the "
        "sender posted no JSON object"
    )
    missing = "required value missing in mapping 'zap-crm-leads': EmailAddress ($.email found "
    assert reasons == [
        f"{missing}nothing); the document is 'bob@example.com', {why}",
        f"{missing}nothing); the document is 7, {why}",
    ]
    (tmp_path / "zap.yaml").write_text(ZAP)
    payload.write_text('{"mail": "bob@example.com"}')
    done = leadhub_run(["try", "zap-crm", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert json.loads(done.stdout)["reason"] == f"{missing}nothing)"


def test_an_unmatched_array_says_so_too(tmp_path: Path) -> None:
    """A mapping with a match: the wrapped lead is unmatched, its reason ending the same."""
    (tmp_path / "zap.yaml").write_text(ZAP.replace("fields:", "match: {$.kind: lead}\nfields:"))
    payload = tmp_path / "payload.json"
    payload.write_bytes(WRAPPED.replace(b'"email"', b'"kind": "lead", "email"'))
    done = leadhub_run(["try", "zap-crm", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert json.loads(done.stdout) == {
        "status": "unmatched",
        "mapping": None,
        "reason": "no mapping matched; tried 'zap-crm-leads': $.kind found nothing" + HINT,
        "warnings": [],
    }
