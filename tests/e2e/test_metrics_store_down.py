"""``/metrics`` of a running ``leadhub serve`` while its store cannot be read: the event
gauges are left out rather than shown at their last counts, and come back with the store;
while it can be read but not written (a full disk, a stopped writer), ``leadhub_store_up`` is
0 as ``/readyz`` is 503, the counts (current) still shown."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.e2e.test_stalled_writer import _lines, _writer_child
from tests.support.disks import small_disk
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


def _fill(disk: Path) -> Path:
    """A file taking every byte left on ``disk`` (a tmpfs): writes there fail with ENOSPC."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_a_store_that_reads_but_cannot_write_is_not_up(tmp_path: Path) -> None:
    """The SQLite store's disk full: every webhook is refused (503) and /readyz says so, and
    ``leadhub_store_up`` is 0 too (it was 1 throughout, the event counts being readable: the
    alert the README names never fired while every lead was refused), with the counts still
    shown. Space again: 1."""
    with small_disk(tmp_path / "disk", "3m") as disk:
        args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, db=f"sqlite:///{disk}/hub.db")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV):
            lead = {"email": "a@example.com"}
            assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 200
            assert _scrape(base)[1] == 1
            filler = _fill(disk)
            lead = {"email": "b@example.com"}
            refused = httpx.post(f"{base}/hooks/forms", json=lead, headers=auth)
            assert refused.status_code == 503, refused.text

            def down() -> bool:
                counts, up = _scrape(base)
                ready = httpx.get(f"{base}/readyz", timeout=30).status_code
                # the counts read, and current: the one lead stored, the refused one not
                return (ready, up, sum(counts.values())) == (503, 0, 1)

            wait_until(down, timeout=60, what="store_up 0 with the counts shown")
            filler.unlink()
            wait_until(lambda: _scrape(base)[1] == 1, timeout=60, what="store_up 1 again")


def test_a_stopped_writer_process_is_not_up(tmp_path: Path) -> None:
    """The SQLite store's writer process stopped (SIGSTOP: a hung mount): webhooks wait for
    it and /readyz is 503; so is ``leadhub_store_up`` 0, where the counts read beside it kept
    it 1. Going on again: 1."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        assert _scrape(base)[1] == 1
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGSTOP)
        try:
            counts, up = _scrape(base)
            assert (counts.get("dead"), up) == (0, 0)
        finally:
            os.kill(writer, signal.SIGCONT)
        wait_until(lambda: _scrape(base)[1] == 1, timeout=60, what="store_up 1 again")


def test_a_store_down_for_many_scrapes_logs_its_first_failure_and_its_end(
    tmp_path: Path,
) -> None:
    """Scrapes while the store cannot be read log the failure once (then once a minute), not
    at every scrape: two Prometheus servers every 15 s against a store down for hours wrote
    a line each scrape. Back, the next scrape logs ``metrics_store_recovered`` with how many
    scrapes failed."""
    args, base, db = serve_args(tmp_path, {"forms.yaml": CONFIG})
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        assert _scrape(base)[1] == 1
        away = tmp_path / "away"
        away.mkdir()
        moved = [suffix for suffix in SUFFIXES if Path(f"{db}{suffix}").exists()]
        for suffix in moved:
            Path(f"{db}{suffix}").rename(away / f"hub.db{suffix}")
        db.mkdir()
        for _ in range(4):
            assert _scrape(base) == ({}, 0)
        failing = 4
        db.rmdir()
        for suffix in moved:
            (away / f"hub.db{suffix}").rename(f"{db}{suffix}")

        def up() -> bool:
            nonlocal failing
            if _scrape(base)[1] == 1:
                return True
            failing += 1
            return False

        wait_until(up, timeout=60, what="the store to be up again")
        # logged as that scrape is answered, the line is written at the end of the hub's loop
        # iteration: after the answer, which a loaded machine can bring here first
        wait_until(
            lambda: any(line["event"] == "metrics_store_recovered" for line in _lines(proc)),
            what="the recovery's line",
        )
        lines = _lines(proc)
    failed = [line for line in lines if line["event"] == "metrics_counts_failed"]
    assert len(failed) == 1, failed
    assert str(db) in str(failed[0]["detail"])  # which store, and why
    assert len([line for line in lines if line["event"] == "metrics_ping_failed"]) <= 1
    [recovered] = [line for line in lines if line["event"] == "metrics_store_recovered"]
    # The scrapes that failed, each once: its counts and its ping both failed, and it said
    # twice as many.
    assert recovered["failed"] == failing
