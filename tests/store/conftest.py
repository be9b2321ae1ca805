"""Fixtures for the store tests: a ManualClock and a contract ``store`` per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.clock import ManualClock
from hub.store import EventStore, open_store

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when a test says so."""
    return ManualClock()


def sqlite_url(tmp_path: Path, name: str = "events.db") -> str:
    """A ``sqlite:////abs/path`` URL for a file in ``tmp_path``."""
    return f"sqlite:///{tmp_path / name}"


@pytest.fixture(params=["sqlite", "sqlite-process"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[EventStore]:
    """An opened store of each backend and writer (PostgreSQL joins the params later).

    ``sqlite-process`` writes enqueues from its child process (``?writer=process``, as
    ``leadhub serve`` does); every other write still goes through the writer thread.
    """
    writer = {"sqlite": "thread", "sqlite-process": "process"}[request.param]
    s = open_store(sqlite_url(tmp_path), clock=clock, writer=writer)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def other_process(tmp_path: Path, clock: ManualClock) -> AsyncIterator[EventStore]:
    """A second store on the same database as ``store``: what another hub process sees."""
    s = open_store(sqlite_url(tmp_path), clock=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
