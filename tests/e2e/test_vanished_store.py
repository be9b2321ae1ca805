"""A running ``leadhub serve`` whose SQLite file is moved away answers 503, never 200, and
makes no new store in its place; with the file back it accepts again and every delivery it
accepted goes out once.

Before, the writer's re-open after ``store_file_changed`` created a new, empty database at
the path: the hub answered 200 into it (ids from 1 again, earlier deliveries forgotten),
``/readyz`` said ready, and what waited in the moved file was left behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.e2e.support import activities, leads, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.support.server import leadhub_process, serve_args

GONE = "went missing while the hub was running"


def _delivered(base: str) -> int:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(r'^leadhub_events\{state="delivered"\} (\S+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def test_a_store_file_moved_away_is_answered_503_until_it_is_back(tmp_path: Path) -> None:
    """Three leads accepted; the database file moved into another directory: the next three
    answered 503 (their senders retry), ``/readyz`` 503, no file at the path, the reason in
    the log; moved back: ``/readyz`` 200, the three retried accepted, an earlier one sent
    again a duplicate of its event. Every accepted lead reaches the embedded sandbox once
    (one lead, one capture each) and the store holds six events, ids distinct."""
    args, base, db = serve_args(tmp_path, {"forms.yaml": CONFIG})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    aside = tmp_path / "aside"
    aside.mkdir()
    emails = [f"vanish{n}@example.com" for n in range(6)]

    def post(email: str) -> httpx.Response:
        lead = {"email": email, "name": email.split("@")[0]}
        return httpx.post(f"{base}/hooks/forms", json=lead, headers=auth, timeout=30)

    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        first = [post(email) for email in emails[:3]]
        assert [r.status_code for r in first] == [200] * 3
        ids = [r.json()["id"] for r in first]

        db.rename(aside / db.name)
        during = [post(email) for email in emails[3:]]
        assert [r.status_code for r in during] == [503] * 3, [r.text for r in during]
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503
        assert not db.exists()

        (aside / db.name).rename(db)
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
        retried = [post(email) for email in emails[3:]]
        assert [r.status_code for r in retried] == [200] * 3
        assert [r.json()["status"] for r in retried] == ["accepted"] * 3
        assert min(r.json()["id"] for r in retried) > max(ids)
        again = post(emails[0])
        assert (again.status_code, again.json()) == (200, {"status": "duplicate", "id": ids[0]})

        wait_until(lambda: _delivered(base) == 6, timeout=90, what="every event delivered")
        found = leads(base)
        captures = {
            lead["EmailAddress"]: len(activities(base, lead["ProspectID"])) for lead in found
        }
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        log = proc.stdout.read()

    assert sorted(lead["EmailAddress"] for lead in found) == sorted(emails)
    assert captures == dict.fromkeys(emails, 1)
    assert "store_file_changed" in log
    assert GONE in log and str(db) in log
