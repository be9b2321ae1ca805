"""A store outage that refuses every claim logs a few ``claim_failed`` lines, not one a second.

The dispatcher tries a refused claim again every second for as long as the store refuses it
(an hour of PostgreSQL down, a SQLite file on a failed disk): it logged ``claim_failed`` at
each, 3,600 identical error lines an hour. Now: the first at once, the same error again at most
once per ``CLAIM_FAILURE_EVERY`` (with ``unlogged``), another error at once, and one
``claim_recovered`` (``failed``, ``seconds``) at the first claim after.

A real dispatcher on a real SQLite store whose file goes away (its directory moved aside: the
store cannot open it), is then replaced by a file that is no database (another error), then
comes back. The dispatcher and the store share a ManualClock, so the interval passes when the
test advances it; the claims are still tried once a real second.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.dispatch.worker import CLAIM_FAILURE_EVERY
from hub.logs import Failures
from hub.store import open_store
from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    forms_config,
    running,
    sandbox_server,
    wait_for,
)
from tests.pg_server import PostgresServer, find_bindir

GONE = "unable to open database file"
NOT_A_DATABASE = "file is not a database"


def _claim_lines(entries: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in entries if e["event"] in ("claim_failed", "claim_recovered")]


async def _more_refusals(failures: Failures, more: int) -> None:
    """Wait until the dispatcher has had ``more`` refused claims since now. It returns just
    after one was refused: the next claim is a second away."""
    then = failures.count
    await wait_for(lambda: failures.count >= then + more, what=f"{more} more refused claims")


async def test_an_outage_logs_its_first_refused_claim_one_a_minute_each_new_error_and_its_end(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=time.time())
    data, aside = tmp_path / "data", tmp_path / "aside"
    data.mkdir()
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url)
        store = open_store(f"sqlite:///{data / 'hub.db'}", clock=clock)
        await store.open()
        try:
            ids = await enqueue(store, "forms", [{"email": "outage@example.com"}])
            data.rename(aside)  # the store's file is gone: every claim is refused
            with capture_logs() as entries:
                async with running(config, store, clock=clock) as dispatcher:
                    failures = dispatcher.claim_failures
                    await _more_refusals(failures, 3)
                    many = _claim_lines(entries)
                    refused = failures.count

                    clock.advance(CLAIM_FAILURE_EVERY)
                    await _more_refusals(failures, 1)
                    after_interval = _claim_lines(entries)

                    data.mkdir()  # a file that is no database where the store was
                    (data / "hub.db").write_bytes(b"this is no SQLite database\n" * 64)
                    await wait_for(
                        lambda: any(NOT_A_DATABASE in e.get("error", "") for e in entries),
                        what="the new error logged",
                    )
                    await _more_refusals(failures, 2)  # repeats of the new error
                    changed = _claim_lines(entries)

                    clock.advance(5.0)
                    await _more_refusals(failures, 1)
                    refused_in_all = failures.count
                    shutil.rmtree(data)
                    aside.rename(data)  # the store is back
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
                    recovered = _claim_lines(entries)
        finally:
            await store.close()

    assert refused >= 3
    assert [(e["event"], e["log_level"]) for e in many] == [("claim_failed", "error")]
    assert GONE in many[0]["error"] and "unlogged" not in many[0], many
    # once the interval has passed, the next refusal is logged, with those left out
    assert len(after_interval) == 2, after_interval
    assert after_interval[1]["error"] == many[0]["error"]
    assert after_interval[1]["unlogged"] == refused - 1
    # another error at once (the clock did not move), its repeats left out
    assert len(changed) == 3, changed
    assert NOT_A_DATABASE in changed[2]["error"] and "unlogged" not in changed[2], changed
    # one line at the first claim after: every refusal, and the time since the first
    assert recovered[3:] == [
        {
            "event": "claim_recovered",
            "log_level": "warning",
            "failed": refused_in_all,
            "seconds": CLAIM_FAILURE_EVERY + 5.0,
        }
    ], recovered
    assert [e["event"] for e in entries].count("lead_sent") == 1


@pytest.mark.slow
@pytest.mark.skipif(find_bindir() is None, reason="PostgreSQL is not installed")
async def test_a_stopped_postgresql_logs_each_error_of_its_refused_claims_once_then_its_end(
    tmp_path: Path,
) -> None:
    """A real PostgreSQL server stopped (``pg_ctl stop -m fast``) before the dispatcher starts:
    each of its errors (a refused connection) logged once, however many claims it refused
    within the interval; one ``claim_recovered`` once it is started again, then the event is
    delivered. (Its claims are tried while the server starts again: ``failed`` counts those
    refused meanwhile too.)"""
    clock = ManualClock(start=time.time())
    with PostgresServer() as server, sandbox_server() as (url, _):
        config = forms_config(tmp_path, url)
        store = open_store(server.dsn)
        await store.open()
        try:
            ids = await enqueue(store, "forms", [{"email": "pg-outage@example.com"}])
            await asyncio.to_thread(server.pause)
            with capture_logs() as entries:
                async with running(config, store, clock=clock) as dispatcher:
                    failures = dispatcher.claim_failures
                    await _more_refusals(failures, 4)
                    clock.advance(12.5)
                    await _more_refusals(failures, 1)
                    refused = failures.count
                    await asyncio.to_thread(server.resume)
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
                    lines = _claim_lines(entries)
        finally:
            await store.close()
    failed, recovered = lines[:-1], lines[-1]
    errors = [e["error"] for e in failed]
    assert 1 <= len(errors) == len(set(errors)) < refused, lines
    assert not [e for e in failed if "unlogged" in e], failed
    assert recovered["event"] == "claim_recovered", lines
    assert recovered["failed"] >= refused and recovered["seconds"] == 12.5, recovered
