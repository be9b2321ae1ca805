"""The PostgreSQL store on a full disk says so, and takes writes again once there is room.

A real PostgreSQL server whose tables are in a tablespace on a small tmpfs (root only: the
test is skipped elsewhere, and with ``HUB_TEST_POSTGRES_DSN``, a server that may not see
this machine's disks). Before, a full disk was reported as "cannot be reached ... check that
PostgreSQL is running and the URL's host, port and database".
"""

from __future__ import annotations

import os
import pwd
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import pytest

from hub.store import open_store
from hub.store.base import StoreUnavailable
from hub.store.models import EventIn, IncomingDelivery
from tests.pg_server import sql
from tests.support.disks import resize, small_disk

pytestmark = pytest.mark.slow


def _delivery(n: int) -> IncomingDelivery:
    document = {"email": f"full{n}@example.com", "notes": uuid.uuid4().hex * 64}
    return IncomingDelivery(
        endpoint="forms",
        received_at=time.time(),
        body=orjson.dumps(document),
        content_type="application/json",
        headers={},
        events=(EventIn(delivery_id=f"full-{n}", document=document),),
    )


async def test_a_full_disk_is_named_and_writes_resume_once_it_has_room(
    postgres_dsn: str,
) -> None:
    if os.environ.get("HUB_TEST_POSTGRES_DSN"):
        pytest.skip("needs the throwaway local server: a tablespace on a disk of this machine")
    name = f"t_{uuid.uuid4().hex[:12]}"
    # under /tmp, not tmp_path: the server's user must reach it (pytest's base is root's own)
    where = Path(tempfile.mkdtemp(prefix="hub-test-tablespace-"))
    try:
        with small_disk(where, "1m") as disk:
            if os.geteuid() == 0:  # the server runs as postgres and makes its files there
                owner = pwd.getpwnam("postgres")
                os.chown(disk, owner.pw_uid, owner.pw_gid)
            await sql(postgres_dsn, f"CREATE TABLESPACE {name} LOCATION '{disk}'")
            await sql(postgres_dsn, f'CREATE SCHEMA "{name}"')
            store = open_store(f"{postgres_dsn}?schema={name}&default_tablespace={name}")
            try:
                await store.open()
                refused: StoreUnavailable | None = None
                for n in range(2_000):
                    try:
                        await store.enqueue(_delivery(n))
                    except StoreUnavailable as exc:
                        refused = exc
                        break
                assert refused is not None, "1 MB never filled"
                assert "disk is full" in str(refused), refused
                assert "cannot be reached" not in str(refused)
                resize(disk, "64m")
                [stored] = await store.enqueue(_delivery(n))
                assert not stored.duplicate
            finally:
                await store.close()
                await sql(postgres_dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                await sql(postgres_dsn, f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        where.rmdir()
