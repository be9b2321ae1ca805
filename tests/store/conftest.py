"""Fixtures for the store tests: a ManualClock and a contract ``store`` per backend."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.clock import ManualClock
from hub.store import EventStore, open_store
from tests.pg_server import schema_url, sql

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when a test says so."""
    return ManualClock()


def sqlite_url(tmp_path: Path, name: str = "events.db") -> str:
    """A ``sqlite:////abs/path`` URL for a file in ``tmp_path``."""
    return f"sqlite:///{tmp_path / name}"


#: Where every test of a store (the ``store_url`` fixture) runs.
BACKENDS = ("sqlite", "sqlite-process", "postgres")
#: The contract classes that also run through a transaction-mode PgBouncer (``pgbouncer``):
#: what the hub does on every webhook and every send (enqueue, claim, outcomes, ordering,
#: replay, the shared rate window), not all of it, to keep the suite's time.
THROUGH_PGBOUNCER = frozenset(
    {
        "TestEnqueue",
        "TestSubmit",
        "TestClaim",
        "TestOutcomes",
        "TestLeases",
        "TestRouteAndOrdering",
        "TestReplay",
        "TestRateSlots",
        "TestRateTurns",
        "TestFillWindow",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``store_url`` on each of :data:`BACKENDS`, and through PgBouncer for the classes of
    :data:`THROUGH_PGBOUNCER`."""
    if "store_url" in metafunc.fixturenames:
        pooled = metafunc.cls is not None and metafunc.cls.__name__ in THROUGH_PGBOUNCER
        backends = [*BACKENDS, "pgbouncer"] if pooled else list(BACKENDS)
        metafunc.parametrize("store_url", backends, indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh database of each backend and writer.

    ``sqlite-process`` writes enqueues from its child process (``?writer=process``, as
    ``leadhub serve`` does); every other write still goes through the writer thread.
    ``postgres`` is a fresh schema on the test server (``postgres_schema``); ``pgbouncer``
    one there too, through a PgBouncer in transaction mode (``pgbouncer_schema``).
    """
    if request.param == "postgres":
        return schema_url(request)
    if request.param == "pgbouncer":
        dsn, schema = request.getfixturevalue("pgbouncer_schema")
        return f"{dsn}?schema={schema}"
    return sqlite_writer_url(request.param, tmp_path)


def sqlite_writer_url(writer: str, tmp_path: Path) -> str:
    """The URL of a SQLite file in ``tmp_path`` whose enqueues are written by its thread
    (``sqlite``) or, as serve writes them, its child process (``sqlite-process``)."""
    url = sqlite_url(tmp_path)
    return f"{url}?writer=process" if writer == "sqlite-process" else url


@contextlib.asynccontextmanager
async def opened(url: str, clock: ManualClock) -> AsyncIterator[EventStore]:
    """The store at ``url``, opened, and closed when the block ends."""
    s = open_store(url, clock=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def store(store_url: str, clock: ManualClock) -> AsyncIterator[EventStore]:
    """An opened store of each backend and writer (see ``store_url``)."""
    async with opened(store_url, clock) as s:
        yield s


@pytest.fixture
async def other_process(store_url: str, clock: ManualClock) -> AsyncIterator[EventStore]:
    """A second store on the same database as ``store``: what another hub process sees."""
    async with opened(store_url.removesuffix("?writer=process"), clock) as s:
        yield s


@contextlib.asynccontextmanager
async def new_database(
    postgres_dsn: str, prefix: str, *, owned: bool
) -> AsyncIterator[tuple[str, str, str]]:
    """A new login role and a new database, which the role owns (``owned``) or the superuser
    does, the role then granted nothing on it (PostgreSQL 15 and later: no CREATE on its
    schema public either): ``(the role's DSN, the superuser's DSN, the name of both)``;
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await sql(postgres_dsn, f"CREATE ROLE {name} LOGIN")
    await sql(postgres_dsn, f"CREATE DATABASE {name}" + (f" OWNER {name}" if owned else ""))
    server = postgres_dsn.rsplit("/", 1)[0]
    try:
        yield server.replace("://postgres@", f"://{name}@") + f"/{name}", f"{server}/{name}", name
    finally:
        await sql(postgres_dsn, f"DROP DATABASE {name} WITH (FORCE)")
        await sql(postgres_dsn, f"DROP ROLE {name}")


@pytest.fixture
async def own_database(postgres_dsn: str) -> AsyncIterator[tuple[str, str, str]]:
    """A new role and a database it owns (:func:`new_database`)."""
    async with new_database(postgres_dsn, "own", owned=True) as made:
        yield made


@pytest.fixture
async def others_database(postgres_dsn: str) -> AsyncIterator[tuple[str, str, str]]:
    """A new role and a database the superuser owns, the role granted nothing on it
    (:func:`new_database`)."""
    async with new_database(postgres_dsn, "app", owned=False) as made:
        yield made
