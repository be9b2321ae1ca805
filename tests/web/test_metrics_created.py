"""/metrics of a real ``leadhub serve`` has no ``*_created`` series (prometheus_client's
creation timestamps, one more line per counter and histogram child), and still every series
the README tells operators to watch."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.support.server import leadhub_process, serve_args

#: The series the README lists (some only as ``# TYPE`` until something counts there).
README_SERIES = (
    "leadhub_deliveries_total",
    "leadhub_events",
    "leadhub_target_paused",
    "leadhub_lane_capacity",
    "leadhub_graph_fetch_errors_total",
    "leadhub_linkedin_fetch_errors_total",
    "leadhub_hubspot_fetch_errors_total",
    "leadhub_claim_loop_restarts_total",
    "leadhub_events_purged_total",
    "leadhub_config_reloads_total",
)


@pytest.mark.slow
def test_metrics_have_no_created_series(tmp_path: Path) -> None:
    """With a lead taken in and delivered (so the labelled counters and histograms have
    children), no line of /metrics holds ``_created``; the counts are all there, and the
    target's lane capacity."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--purge-after", "30d")
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV):
        answer = httpx.post(
            f"{base}/hooks/forms",
            json={"email": "created@example.com"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        # The call is counted as its answer comes, its event recorded delivered after (a
        # store write): a scrape between the two read leadhub_events without it.
        sent = 'leadhub_sends_total{outcome="delivered",target="default"} 1.0'
        recorded = 'leadhub_events{state="delivered"} 1.0'

        def delivered() -> bool:
            text = httpx.get(f"{base}/metrics", timeout=30).text
            return sent in text and recorded in text

        wait_until(delivered, what="the delivery, counted and recorded")
        lines = httpx.get(f"{base}/metrics", timeout=30).text.splitlines()
    assert [line for line in lines if "_created" in line] == []
    for name in README_SERIES:
        assert any(line.startswith(f"# TYPE {name} ") for line in lines), name
    assert 'leadhub_deliveries_total{endpoint="forms",outcome="accepted",reason=""} 1.0' in lines
    assert 'leadhub_events{state="delivered"} 1.0' in lines
    assert "leadhub_claim_loop_restarts_total 0.0" in lines
    assert 'leadhub_ingest_seconds_count{endpoint="forms"} 1.0' in lines
    # The lane's 16 senders each start a call at once and one more every 9 s (its smoothed
    # latency after one quick call: 10 s, the timeout, at first) within a third of the 60 s
    # lease, under what the embedded sandbox's 100 calls in 5 s let out in that time.
    assert 'leadhub_lane_capacity{target="default"} 48.0' in lines
