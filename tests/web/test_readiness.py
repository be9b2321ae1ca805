"""``/readyz`` against a real store made unreachable: what it answers, and what it logs."""

from __future__ import annotations

import os

from structlog.testing import capture_logs

from hub.web.app import READY_LOG_EVERY
from tests.web.conftest import Hub

#: Seconds between two probes, as a Kubernetes readiness probe might be set.
PROBE_EVERY = 2.0


def test_a_run_of_failed_probes_logs_its_start_one_line_a_minute_and_its_end(hub: Hub) -> None:
    """A store down for a minute under a probe every 2 s: ``readiness_failed`` at the first
    failed probe, again once :data:`READY_LOG_EVERY` has passed (with the probes left out
    counted), and one ``readiness_recovered`` at the first probe that passes, counting them
    all; nothing for probes that pass. (Every failed probe logged its line: 1,800 of them for
    a store down for an hour.)"""
    probes = int(READY_LOG_EVERY / PROBE_EVERY)
    moved = hub.db_dir.with_name("moved")
    with capture_logs() as logs:
        assert hub.client.get("/readyz").status_code == 200
        os.rename(hub.db_dir, moved)
        try:
            for _ in range(probes):
                assert hub.client.get("/readyz").status_code == 503
                hub.clock.advance(PROBE_EVERY)
            assert hub.client.get("/readyz").status_code == 503  # READY_LOG_EVERY later
        finally:
            os.rename(moved, hub.db_dir)
        hub.clock.advance(PROBE_EVERY)
        assert hub.client.get("/readyz").status_code == 200
        assert hub.client.get("/readyz").status_code == 200
    lines = [e for e in logs if e["event"].startswith("readiness")]
    assert [(e["event"], e["log_level"]) for e in lines] == [
        ("readiness_failed", "warning"),
        ("readiness_failed", "warning"),
        ("readiness_recovered", "warning"),
    ], lines
    first, again, recovered = lines
    assert "unlogged" not in first and again["unlogged"] == probes - 1
    assert first["error"] == again["error"] and first["detail"], first
    assert (recovered["failed"], recovered["seconds"]) == (probes + 1, READY_LOG_EVERY + 2.0)
