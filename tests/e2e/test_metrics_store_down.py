"""``/metrics`` of a running ``leadhub serve`` while its store cannot be read: the event
gauges are left out rather than shown at their last counts, and come back with the store."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.support.server import leadhub_process, serve_args

SUFFIXES = ("", "-wal", "-shm")


def _scrape(base: str) -> tuple[dict[str, float], float]:
    """``leadhub_events`` by state ({} when the scrape shows none) and ``leadhub_store_up``."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    events = {s.labels["state"]: s.value for s in families["leadhub_events"].samples}
    (up,) = families["leadhub_store_up"].samples
    return events, up.value


def test_a_store_that_cannot_be_read_shows_no_event_counts(tmp_path: Path) -> None:
    """The SQLite file taken away (a directory in its place: every open fails): /readyz says
    so, and a scrape exports no ``leadhub_events`` series, where it exported the counts of
    before as if read then (``dead`` 1 for as long as the outage lasted, whatever the store
    held), and ``leadhub_store_up`` 0 (1 before and after). With the file back, the next
    scrapes show the store's counts again."""
    args, base, db = serve_args(tmp_path, {"forms.yaml": CONFIG})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV):
        for lead in ({"email": "a@example.com"}, {"email": "b@example.com"}, {"name": "none"}):
            assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 200
        before = {"delivered": 2.0, "dead": 1.0}  # (no email: dead at its mapping)

        def settled() -> bool:
            counts, up = _scrape(base)
            return up == 1 and all(counts.get(state) == n for state, n in before.items())

        wait_until(settled, timeout=60, what="the three events to settle")

        away = tmp_path / "away"
        away.mkdir()
        moved = [suffix for suffix in SUFFIXES if Path(f"{db}{suffix}").exists()]
        for suffix in moved:
            Path(f"{db}{suffix}").rename(away / f"hub.db{suffix}")
        db.mkdir()
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
        assert _scrape(base) == ({}, 0)

        db.rmdir()
        for suffix in moved:
            (away / f"hub.db{suffix}").rename(f"{db}{suffix}")
        wait_until(settled, timeout=60, what="the counts to come back")
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
