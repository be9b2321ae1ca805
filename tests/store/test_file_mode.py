"""The database files the hub makes are its owner's alone: they hold every delivery's body."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.sandbox.db import SandboxDB
from hub.store import open_store

from .helpers import delivery


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most open umask: what SQLite's own default (0644) would then give is readable by all."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_new_event_store_and_its_wal_are_the_owners_alone(tmp_path: Path, writer: str) -> None:
    db = tmp_path / "hub.db"

    async def go() -> None:
        store = open_store(f"sqlite:///{db}?writer={writer}")
        await store.open()
        try:
            await store.enqueue(delivery("d1"))
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                assert mode(path) == 0o600, path
        finally:
            await store.close()

    asyncio.run(go())


@pytest.mark.usefixtures("open_umask")
def test_a_store_file_already_there_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"

    async def make() -> None:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        await store.close()

    asyncio.run(make())
    db.chmod(0o640)  # the operator's choice, e.g. a group that reads backups
    asyncio.run(make())
    assert mode(db) == 0o640


@pytest.mark.usefixtures("open_umask")
def test_a_new_sandbox_file_is_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.db"
    sandbox = SandboxDB(str(path))
    try:
        assert mode(path) == 0o600
        assert mode(Path(f"{path}-wal")) == 0o600
    finally:
        sandbox.close()
