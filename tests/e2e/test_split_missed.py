"""A ``split`` path that misses a delivery is a 422 the sender sees, not a 200 that stores
nothing: with a typo in ``split`` (or a sender's new envelope) every delivery was answered
``{"status":"accepted","ids":[]}`` and dropped, and only an info line with ``events=0``
said so. An empty batch (the list is there, and empty) is still a 200 with no event."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import leads, stored_events, wait_until
from tests.e2e.test_reload import Log
from tests.support.server import leadhub_process, serve_args

TOKEN = "bulk-token"
ENV = {"BULK_TOKEN": TOKEN}
#: ``$.data.lead[*]``: the typo of ``$.data.leads[*]``.
TYPO = """kind: endpoint
name: bulk
source: token
token: ${BULK_TOKEN}
split: $.data.lead[*]
---
kind: mapping
name: bulk-map
endpoint: bulk
fields:
  EmailAddress: { path: $.email, required: true }
"""
BATCH = {"data": {"leads": [{"email": "a@example.com"}, {"email": "b@example.com"}]}}
REASON = (
    "split path $.data.lead[*] finds no lead in this delivery, nor an empty list of them; "
    "nothing was stored: fix the endpoint's split or what is posted, then send it again"
)


@pytest.mark.slow
def test_a_split_path_that_misses_is_a_422_and_a_fixed_one_takes_the_retry(
    tmp_path: Path,
) -> None:
    """A real ``leadhub serve``: a batch its split path misses is answered 422 with the
    reason naming the path, stores nothing, is one ``delivery_received`` warning line
    (``rejected``, ``split_found_nothing``) and counts as a rejected delivery in /metrics;
    an empty batch under the same path (``{"data": {"lead": []}}``) is still accepted with
    no event. Once the path is fixed and the hub reloaded, the sender's retry of the same
    bytes is accepted and its leads delivered (a 200 that had stored nothing would have made
    it a duplicate of nothing, or never been retried)."""
    args, base, sqlite = serve_args(tmp_path, {"bulk.yaml": TYPO})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        missed = httpx.post(f"{base}/hooks/bulk", json=BATCH, headers=auth)
        empty = httpx.post(f"{base}/hooks/bulk", json={"data": {"lead": []}}, headers=auth)
        metrics = httpx.get(f"{base}/metrics").text
        wait_until(lambda: len(log.events("delivery_received")) == 2, what="two lines")
        refused, accepted = log.events("delivery_received")
        assert stored_events(f"sqlite:///{sqlite}") == []

        (tmp_path / "cfg" / "bulk.yaml").write_text(TYPO.replace("lead[*]", "leads[*]"))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        retried = httpx.post(f"{base}/hooks/bulk", json=BATCH, headers=auth)
        wait_until(lambda: len(leads(base)) == 2, what="the retried batch's two leads")
        sent = sorted(lead["EmailAddress"] for lead in leads(base))

    assert missed.status_code == 422
    assert missed.headers["content-type"] == "application/json"
    assert missed.json() == {"error": REASON}
    assert (empty.status_code, empty.json()) == (200, {"status": "accepted", "ids": []})
    assert {k: refused.get(k) for k in ("level", "outcome", "reason", "status", "detail")} == {
        "level": "warning",
        "outcome": "rejected",
        "reason": "split_found_nothing",
        "status": 422,
        "detail": REASON,
    }
    assert TOKEN not in str(refused)
    assert (accepted["level"], accepted["outcome"], accepted["events"]) == ("info", "accepted", 0)
    assert (
        'leadhub_deliveries_total{endpoint="bulk",outcome="rejected",'
        'reason="split_found_nothing"} 1.0'
    ) in metrics.splitlines()
    assert retried.status_code == 200
    assert retried.json() == {"status": "accepted", "id": 1, "ids": [1, 2]}
    assert sent == ["a@example.com", "b@example.com"]


#: A page subscription whose filter has a typo (``feild``), and a batch of groups of leads.
NOTED = """kind: endpoint
name: page
source: token
token: ${BULK_TOKEN}
split: "$.entry[*].changes[?(@.feild=='leadgen')].value"
---
kind: endpoint
name: groups
source: token
token: ${BULK_TOKEN}
split: $.groups[*].leads[*]
---
kind: mapping
name: groups-map
endpoint: groups
fields:
  EmailAddress: { path: $.email, required: true }
"""
CHANGES = {
    "entry": [
        {"changes": [{"field": "leadgen", "value": {"email": "a@example.com"}}]},
        {"changes": [{"field": "feed"}, {"field": "leadgen", "value": {"email": "b@example.com"}}]},
    ]
}
GROUPS = {
    "groups": [
        {"id": 1, "leads": [{"email": "a@example.com"}]},
        {"id": 2},
        {"id": 3, "leads": None},
        {"id": 4, "leads": [{"email": "b@example.com"}]},
    ]
}


@pytest.mark.slow
def test_a_filter_that_keeps_none_and_groups_without_leads_are_said(tmp_path: Path) -> None:
    """A real ``leadhub serve``. Every delivery to a split path whose filter has a typo
    is accepted with no event, as an empty batch is (a page posting changes that are no
    leads is legitimate), but its ``delivery_received`` line says the filter kept none and
    how many items it left out, and ``leadhub_split_kept_none_total`` counts it, where an
    empty list is neither. A batch where two groups have no leads list is stored and
    delivered lead by lead from the others, its line a warning naming how many missed."""
    args, base, sqlite = serve_args(tmp_path, {"noted.yaml": NOTED})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        kept_none = [httpx.post(f"{base}/hooks/page", json=CHANGES, headers=auth) for _ in "ab"]
        empty = httpx.post(f"{base}/hooks/page", json={"entry": [{"changes": []}]}, headers=auth)
        partial = httpx.post(f"{base}/hooks/groups", json=GROUPS, headers=auth)
        metrics = httpx.get(f"{base}/metrics").text.splitlines()
        wait_until(lambda: len(log.events("delivery_received")) == 4, what="four lines")
        wait_until(lambda: len(leads(base)) == 2, what="the two leads found")
        lines = log.events("delivery_received")
        sent = sorted(lead["EmailAddress"] for lead in leads(base))

    for answer in [*kept_none, empty]:
        assert (answer.status_code, answer.json()) == (200, {"status": "accepted", "ids": []})
    for line in lines[:2]:
        assert {k: line.get(k) for k in ("endpoint", "level", "outcome", "events")} == {
            "endpoint": "page",
            "level": "info",
            "outcome": "accepted",
            "events": 0,
        }
        assert (line["split_kept_none"], line["split_left_out"], line["split_filter"]) == (
            True,
            3,
            "[?@.feild == 'leadgen']",
        )
    assert (lines[2]["level"], lines[2]["events"]) == ("info", 0)
    assert not any(key.startswith("split_") for key in lines[2])
    assert 'leadhub_split_kept_none_total{endpoint="page"} 2.0' in metrics
    assert not any(m.startswith('leadhub_split_kept_none_total{endpoint="groups"') for m in metrics)

    assert partial.status_code == 200
    assert partial.json() == {"status": "accepted", "id": 1, "ids": [1, 2]}
    assert {k: lines[3].get(k) for k in ("endpoint", "level", "outcome", "split_partial_miss")} == {
        "endpoint": "groups",
        "level": "warning",
        "outcome": "accepted",
        "split_partial_miss": 2,
    }
    assert [e.document for e in reversed(stored_events(f"sqlite:///{sqlite}"))] == [
        {"email": "a@example.com"},
        {"email": "b@example.com"},
    ]
    assert sent == ["a@example.com", "b@example.com"]
