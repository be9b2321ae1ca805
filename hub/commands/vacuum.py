"""``leadhub vacuum``: compact a stopped SQLite event store, and make it shrink after purges."""

from __future__ import annotations

import argparse
import sys

from hub import EXIT_INTERRUPTED, logs
from hub.cli import variable_of
from hub.store import StoreError, is_postgres, open_store, safe_url
from hub.store.commands import (
    EXIT_FAILED,
    fail,
    no_sqlite_store,
)
from hub.store.sqlite import SQLiteStore
from hub.store.sqlite_conn import SCHEMA_VERSION, foreign_wal
from hub.store.vacuum import compact


def run(args: argparse.Namespace) -> int:
    """Compact the store at ``--db`` and say what it gave back."""
    logs.configure(level="warning", stream=sys.stderr)
    if is_postgres(args.db):
        # (nothing to convert: said, exit 0, so that a script running it on any store goes on)
        print(
            f"{safe_url(args.db)!r} is a PostgreSQL store: nothing to do. PostgreSQL's "
            "autovacuum makes the room of purged events reusable by itself; the tables' files "
            "shrink only with `VACUUM FULL` (or pg_repack), which locks each table while it "
            "runs: see PostgreSQL's documentation."
        )
        return 0
    try:
        store = open_store(args.db)
    except StoreError as exc:
        variable = variable_of(args, "db")
        return fail("vacuum", f"{variable}: {exc}" if variable else str(exc))
    assert isinstance(store, SQLiteStore)  # (every other URL is PostgreSQL or refused)
    if (foreign := foreign_wal(store.path)) is not None:
        return fail("vacuum", str(foreign), EXIT_FAILED)
    if missing := no_sqlite_store(store.path):
        return fail("vacuum", missing, EXIT_FAILED)
    where = str(store.path)
    try:
        done = compact(store.path)
    except KeyboardInterrupt:
        return fail("vacuum", f"stopped: {where!r} is left as it was.", EXIT_INTERRUPTED)
    except StoreError as exc:
        logs.flush()
        return fail("vacuum", str(exc), EXIT_FAILED)
    given = done.size_before - done.size_after
    back = f"{given:,} given back" if given > 0 else "it had no free space to give back"
    sizes = (
        f"{done.size_before:,} bytes before, {done.size_after:,} now (the file and its -wal; "
        f"{back})"
    )
    if done.migrated_from is not None:
        # (not refused: the new serve's first start migrates it all the same, as any command
        # that writes does; said, as releases before this one no longer open it)
        sizes += (
            f". Its schema was migrated from version {done.migrated_from} to {SCHEMA_VERSION} "
            "first (as this release's serve does at its first start): earlier releases no "
            "longer open it"
        )
    if done.converted:
        print(
            f"Vacuumed {where!r}: {sizes}. From now on its file shrinks after each purge "
            "(`leadhub purge`, `serve --purge-after`)."
        )
    else:
        print(
            f"Vacuumed {where!r}: {sizes}. It was made to shrink after each purge already "
            "(`serve --purge-after` gives the space back by itself)."
        )
    return 0
