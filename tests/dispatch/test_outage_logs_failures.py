"""hub.logs.Failures, the lines of a run of failures and of its end, which the store's writers
(``store_write_failed``, ``store_write_recovered``) and the dispatcher's claims
(``claim_failed``, ``claim_recovered``) log through. Its time comes from a ManualClock."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from structlog.testing import capture_logs

from hub import logs
from hub.clock import ManualClock
from hub.store.sqlite_threads import FAILURE_EVERY, WriteFailures


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
    failures = logs.Failures("store_write_recovered", every=1.0, clock=clock.monotonic)
    with capture_logs() as entries:
        failures.failed("store_write_failed", "disk full", 3, jobs=3)
        failures.failed("store_write_failed", "disk full", 2, jobs=2)
        clock.advance(0.25)
        failures.succeeded()
        failures.failed("store_write_failed", "disk full", 4, jobs=4)  # within the second
        clock.advance(2.0)
        failures.succeeded()
    assert _lines(entries) == [
        {"event": "store_write_failed", "error": "disk full", "jobs": 3},
        {"event": "store_write_recovered", "failed": 5, "seconds": 0.25},
        {"event": "store_write_failed", "error": "disk full", "jobs": 4},
        {"event": "store_write_recovered", "failed": 4, "seconds": 2.0},
    ]


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
