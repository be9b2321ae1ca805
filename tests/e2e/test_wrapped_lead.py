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

from tests.e2e.support import leads, wait_until
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
#: The endpoint set as the reason says, for the wrapped lead.
SPLIT = ZAP.replace("dedupe:", "split: $[*]\ndedupe:")
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
        (config / "zap.yaml").write_text(SPLIT)
        hub.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        answer = httpx.post(hook, content=WRAPPED, headers=JSON)
        assert answer.json() == {"status": "accepted", "id": 2, "ids": [2]}
        wait_until(lambda: _settled(db, 2), what="the split lead's outcome")
        assert _events(db)[0]["state"] == "delivered"


@pytest.mark.slow
def test_a_lead_posted_unwrapped_to_a_split_endpoint_is_kept_whole(tmp_path: Path) -> None:
    """split: $[*] (set for Zapier's Wrap Request In Array) and a post of one lead without
    the wrapping: the wildcard opened the lead, each of its values was an event, and each
    died (no object). The lead is now one event, delivered, and a split_found_no_leads line
    says so; a wrapped post is split as before, and says nothing."""
    args, base, db = serve_args(tmp_path, {"zap.yaml": SPLIT})
    hook = f"{base}/hooks/zap-crm?token={TOKEN}"
    unwrapped = b'{"record_id": "r-1", "email": "Ann@Example.com", "company": "Annco", "n": 3}'
    wrapped = b'[{"record_id": "r-2", "email": "cy@example.com"}, {"email": "di@example.com"}]'
    with leadhub_process(args, ready_url=f"{base}/readyz", env={"ZAP_CRM_TOKEN": TOKEN}) as hub:
        log = Log(hub)
        one = httpx.post(hook, content=unwrapped, headers=JSON)
        two = httpx.post(hook, content=wrapped, headers=JSON)
        wait_until(lambda: _settled(db, 3), what="the three leads' outcomes")
        events = _events(db)
        found = {lead["EmailAddress"]: lead.get("Company") for lead in leads(base)}
        noted = log.events("split_found_no_leads")
    assert one.json() == {"status": "accepted", "id": 1, "ids": [1]}
    assert two.json() == {"status": "accepted", "id": 2, "ids": [2, 3]}
    assert [e["state"] for e in events] == ["delivered"] * 3
    assert found == {"ann@example.com": "Annco", "cy@example.com": None, "di@example.com": None}
    assert [
        {k: line[k] for k in ("endpoint", "split", "leads_at", "events")} for line in noted
    ] == [{"endpoint": "zap-crm", "split": "$[*]", "leads_at": "$", "events": 1}]


def test_try_takes_a_lead_posted_unwrapped_as_one_lead(tmp_path: Path) -> None:
    """`leadhub try` on the same endpoint tries an unwrapped lead as ingest keeps it (one
    lead, sent), with a note; a list of texts is still split, each item saying why it is
    no lead; the lead itself on an endpoint without split gets no such words."""
    (tmp_path / "zap.yaml").write_text(SPLIT)
    payload = tmp_path / "payload.json"
    payload.write_text('{"email": "bob@example.com", "record_id": 7}')
    done = leadhub_run(["try", "zap-crm", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert done.returncode == 0, done.stdout + done.stderr
    (sent,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (sent["status"], sent["body"]) == (
        "send",
        [{"Attribute": "EmailAddress", "Value": "bob@example.com"}],
    )
    assert done.stderr == (
        "note: split $[*] found no list of leads: its wildcard opened the values of a lead; "
        "the payload is tried as one lead, as ingest keeps it (one event)\n"
    )
    payload.write_text('["bob@example.com", 7]')
    done = leadhub_run(["try", "zap-crm", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert done.returncode == 1
    assert "note:" not in done.stderr
    reasons = [json.loads(line)["reason"] for line in done.stdout.splitlines()]
    why = (
        "not an object: when the endpoint has a split, its path found values rather than "
        "leads (a list of texts, or a path going on past the leads, like $.leads[*].email: "
        "end it at the leads); else the sender posted no JSON object"
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
