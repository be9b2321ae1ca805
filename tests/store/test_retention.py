"""The automatic purge (``--purge-after``): its setting, its rounds, and a store that fails."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.store import open_store
from hub.store.base import EventStore
from hub.store.retention import parse_retention, purge_now, retention_lifespan
from hub.store.sqlite import SQLiteStore
from hub.units import UnitError
from tests.dispatch.support import wait_for

from .conftest import sqlite_url
from .helpers import delivery
from .test_held_lock import held

DAY = 86400.0


def test_retention_is_at_least_what_senders_retry() -> None:
    assert parse_retention("30d") == 30 * DAY
    assert parse_retention("72h") == 3 * DAY
    with pytest.raises(UnitError, match=r"'2d' is shorter than senders retry.*at least '3d'"):
        parse_retention("2d")
    with pytest.raises(UnitError, match="not a duration"):
        parse_retention("a month")


async def delivered(store: EventStore, *names: str) -> None:
    for name in names:
        (res,) = await store.enqueue(delivery(name))
        await store.ack(res.id, lead_id=f"L-{name}", created=True)


def purged(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("leadhub_events_purged_total")


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[EventStore]:
    """An opened SQLite store on ``clock``."""
    store = open_store(sqlite_url(tmp_path), clock=clock)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def metered_app() -> tuple[Starlette, CollectorRegistry]:
    """An app whose registry the purge hook counts in, and that registry."""
    app = Starlette()
    app.state.metrics = registry = CollectorRegistry()
    return app, registry


async def test_rounds_purge_what_has_grown_old_since_the_last(
    sqlite_store: EventStore, clock: ManualClock
) -> None:
    """Each round deletes what became old since the one before, and the app's registry
    counts it."""
    store = sqlite_store
    app, registry = metered_app()
    await delivered(store, "a", "b")
    clock.advance(31 * DAY)
    await delivered(store, "c")
    hook = retention_lifespan(store=store, clock=clock, keep=30 * DAY, every=0.05)
    async with hook(app):
        await wait_for(lambda: purged(registry) == 2, what="the first round")
        assert [e.delivery_id for e in await store.list()] == ["c"]
        clock.advance(31 * DAY)  # now c is old too: the next round takes it
        await wait_for(lambda: purged(registry) == 3, what="the second round")
    assert await store.list() == []


async def test_a_failing_store_is_logged_and_the_next_round_tries_again(tmp_path: Path) -> None:
    clock = ManualClock()
    store = open_store(sqlite_url(tmp_path), clock=clock)
    await store.open()
    await store.close()
    with capture_logs() as logs:
        assert await purge_now(store, keep=30 * DAY, clock=clock) == 0
    (failed,) = (e for e in logs if e["event"] == "purge_failed")
    assert "not open" in failed["error"]
    await store.open()
    try:
        await delivered(store, "a")
        clock.advance(31 * DAY)
        assert await purge_now(store, keep=30 * DAY, clock=clock) == 1
    finally:
        await store.close()


class _BrokenPurge:
    """A store whose purge has a bug (anything but a StoreError), failing the first
    ``times`` calls and then purging for real."""

    def __init__(self, store: EventStore, times: int) -> None:
        self.store = store
        self.times = times

    async def purge(self, **kwargs: object) -> object:
        if self.times:
            self.times -= 1
            msg = "a bug in purge"
            raise RuntimeError(msg)
        return await self.store.purge(**kwargs)  # type: ignore[arg-type]


async def test_an_unexpected_error_is_logged_and_the_rounds_go_on(
    sqlite_store: EventStore, clock: ManualClock
) -> None:
    """A bug in one round is logged with its traceback; the task stays alive, and the next
    round purges."""
    store = sqlite_store
    app, registry = metered_app()
    await delivered(store, "a")
    clock.advance(31 * DAY)
    broken: Any = _BrokenPurge(store, times=2)
    hook = retention_lifespan(store=broken, clock=clock, keep=30 * DAY, every=0.05)
    with capture_logs() as logs:
        async with hook(app):
            await wait_for(
                lambda: purged(registry) == 1, timeout=10, what="a round after the failures"
            )
    failed = [e for e in logs if e["event"] == "purge_failed"]
    assert len(failed) == 2
    assert all(e["error"] == "RuntimeError('a bug in purge')" for e in failed)
    assert all(e["log_level"] == "error" and e.get("exc_info") for e in failed)
    assert await store.list() == []


def _left(path: Path) -> int:
    """How many events the SQLite file ``path`` holds, as another connection reads it."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(count)


async def test_a_round_failing_part_way_counts_what_its_steps_purged(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round whose store failed after some of its steps (here another process takes the
    write lock between two steps and holds it past the busy timeout; a full disk does the
    same) counted none of the events those steps had deleted: leadhub_events_purged_total
    fell short of what went, by a thousand per step. The steps done are counted now."""
    monkeypatch.setattr("hub.store.sqlite.PURGE_WINDOW", 2)  # ten events: five steps
    path = tmp_path / "events.db"
    store = SQLiteStore(path, clock=clock)
    store.step_pause = 1.0  # between two steps, time to take the write lock
    await store.open()
    try:
        await delivered(store, *(f"old-{n}" for n in range(10)))
        clock.advance(31 * DAY)
        app, registry = metered_app()
        hook = retention_lifespan(store=store, clock=clock, keep=30 * DAY)
        with capture_logs() as logs:
            async with hook(app):
                await wait_for(lambda: _left(path) < 10, what="the round's first step")
                with held(path):
                    await wait_for(
                        lambda: any(e["event"] == "purge_failed" for e in logs),
                        what="the round to fail on the held write lock",
                    )
                    left = _left(path)
                assert 0 < left < 10, "the round failed part way"
                assert purged(registry) == 10 - left
    finally:
        await store.close()
