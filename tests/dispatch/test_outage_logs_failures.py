"""hub.logs.Failures, the lines of a run of failures and of its end, which the store's writers
(``store_write_failed``, ``store_write_recovered``) and the dispatcher's claims
(``claim_failed``, ``claim_recovered``) log through. Its time comes from a ManualClock."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from structlog.testing import capture_logs

from hub import logs
from hub.clock import ManualClock
from hub.store.sqlite_conn import FAILURE_EVERY, WriteFailures


def _lines(entries: list[MutableMapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "log_level"} for e in entries]


def test_a_run_logs_its_first_failure_each_new_error_one_line_per_interval_and_its_end() -> None:
    clock = ManualClock()
    failures = logs.Failures("claim_recovered", every=60.0, clock=clock.monotonic)
    with capture_logs() as entries:
        failures.failed("claim_failed", "disk I/O error")  # the first: at once
        for _ in range(9):  # a try a second: left out
            clock.advance(1.0)
            failures.failed("claim_failed", "disk I/O error")
        failures.failed("claim_failed", "database is locked")  # another error: at once
        failures.failed("claim_failed", "database is locked")
        clock.advance(51.0)  # 60 s after the first
        failures.failed("claim_failed", "disk I/O error")
        failures.failed("claim_failed", "disk I/O error")
        clock.advance(4.5)
        assert failures.count == 14
        failures.succeeded()
        failures.succeeded()  # no run under way: nothing
    assert _lines(entries) == [
        {"event": "claim_failed", "error": "disk I/O error"},
        {"event": "claim_failed", "error": "database is locked"},
        {"event": "claim_failed", "error": "disk I/O error", "unlogged": 9},
        {"event": "claim_recovered", "failed": 14, "seconds": 64.5},
    ]
    assert [e["log_level"] for e in entries] == ["error", "error", "error", "warning"]
    assert failures.count == 0


def test_a_failure_after_the_end_of_a_run_starts_another_logged_at_once() -> None:
    clock = ManualClock()
    failures = logs.Failures("claim_recovered", every=60.0, clock=clock.monotonic)
    with capture_logs() as entries:
        failures.failed("claim_failed", "disk full")
        clock.advance(0.25)
        failures.succeeded()
        clock.advance(1.0)  # 1.25 s after the last line: not a relapse (at 60 s a line)
        failures.failed("claim_failed", "disk full")
        clock.advance(2.0)
        failures.succeeded()
    assert _lines(entries) == [
        {"event": "claim_failed", "error": "disk full"},
        {"event": "claim_recovered", "failed": 1, "seconds": 0.25},
        {"event": "claim_failed", "error": "disk full"},
        {"event": "claim_recovered", "failed": 1, "seconds": 2.0},
    ]


def test_runs_that_flap_log_two_lines_a_second_and_count_the_quiet_ones_in_the_next() -> None:
    """A store at the edge of a full disk: fails, commits a smaller batch, fails again. A
    run begun less than a second after a line of the same error is quiet until a second has
    passed; one that ends before is not logged, and its failures are counted in the next
    lines (``unlogged``, ``failed``, and ``seconds`` from the first of them)."""
    clock = ManualClock()
    failures = logs.Failures("store_write_recovered", every=1.0, clock=clock.monotonic)
    with capture_logs() as entries:
        failures.failed("store_write_failed", "disk full", 3, jobs=3)  # logged
        clock.advance(0.002)
        failures.succeeded()  # logged: the run that was told ends
        for _ in range(4):  # runs of 2 failures each, a tenth of a second apart: quiet
            clock.advance(0.1)
            failures.failed("store_write_failed", "disk full", 5, jobs=5)
            failures.failed("store_write_failed", "disk full", 1, jobs=1)
            failures.succeeded()
        assert failures.count == 24
        clock.advance(0.5)  # 0.9 s after the first line: still quiet
        failures.failed("store_write_failed", "disk full", 2, jobs=2)
        clock.advance(0.1)  # 1.0 s after it: due, with the 9 left out
        failures.failed("store_write_failed", "disk full", 1, jobs=1)
        clock.advance(0.5)
        failures.succeeded()
        failures.succeeded()
    assert _lines(entries) == [
        {"event": "store_write_failed", "error": "disk full", "jobs": 3},
        {"event": "store_write_recovered", "failed": 3, "seconds": 0.002},
        {"event": "store_write_failed", "error": "disk full", "jobs": 1, "unlogged": 9},
        {"event": "store_write_recovered", "failed": 27, "seconds": 1.4},
    ]
    assert failures.count == 0


def test_a_quiet_run_long_before_is_not_counted_in_the_next_runs_end() -> None:
    """A quiet run (a scrape failed within a minute of the last line) followed by hours of
    success is no part of a later outage: its end line says that outage's seconds and
    failures. The quiet run was carried: a 30 s outage hours later ended "seconds: 18030",
    read as a store down for five hours."""
    clock = ManualClock()
    failures = logs.Failures(
        "metrics_store_recovered", every=60.0, relapse=60.0, clock=clock.monotonic
    )
    with capture_logs() as entries:
        failures.failed("metrics_counts_failed", "StoreUnavailable")  # told
        clock.advance(15.0)
        failures.succeeded()  # told ended
        clock.advance(15.0)
        failures.failed("metrics_counts_failed", "StoreUnavailable")  # quiet: a relapse
        clock.advance(15.0)
        failures.succeeded()  # a quiet run ends: no line
        clock.advance(5 * 3600.0)
        failures.failed("metrics_counts_failed", "StoreUnavailable")  # told
        clock.advance(15.0)
        failures.failed("metrics_counts_failed", "StoreUnavailable")
        clock.advance(15.0)
        failures.succeeded()
    assert _lines(entries) == [
        {"event": "metrics_counts_failed", "error": "StoreUnavailable"},
        {"event": "metrics_store_recovered", "failed": 1, "seconds": 15.0},
        {"event": "metrics_counts_failed", "error": "StoreUnavailable", "unlogged": 1},
        {"event": "metrics_store_recovered", "failed": 2, "seconds": 30.0},
    ]


def test_a_quiet_run_of_a_new_error_is_logged_at_once() -> None:
    """The relapse interval is per error: another error's first failure is logged."""
    clock = ManualClock()
    failures = logs.Failures("store_write_recovered", every=1.0, clock=clock.monotonic)
    with capture_logs() as entries:
        failures.failed("store_write_failed", "disk full")
        failures.succeeded()
        clock.advance(0.1)
        failures.failed("store_write_failed", "disk I/O error")
        failures.succeeded()
    assert [e["event"] for e in entries] == ["store_write_failed", "store_write_recovered"] * 2
    assert entries[2]["error"] == "disk I/O error"


def test_the_store_writers_lines_keep_their_names_and_fields() -> None:
    """WriteFailures (the SQLite writers') is Failures at one line a second per error."""
    clock = ManualClock()
    failures = WriteFailures(clock=clock.monotonic)
    full = OSError("database or disk is full")
    with capture_logs() as entries:
        failures.failed("store_write_failed", full, 3)
        clock.advance(0.5)
        failures.failed("store_write_failed", full, 2)
        failures.failed("store_unavailable", full, 1)
        clock.advance(0.5)
        failures.failed("store_write_failed", full, 1)
        clock.advance(0.25)
        failures.committed()
    assert _lines(entries) == [
        {"component": "hub.store", "event": "store_write_failed", "error": str(full), "jobs": 3},
        {"component": "hub.store", "event": "store_unavailable", "error": str(full), "jobs": 1},
        {
            "component": "hub.store",
            "event": "store_write_failed",
            "error": str(full),
            "jobs": 1,
            "unlogged": 1,
        },
        {"component": "hub.store", "event": "store_write_recovered", "failed": 7, "seconds": 1.25},
    ]
    assert FAILURE_EVERY == 1.0
