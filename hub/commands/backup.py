"""``leadhub backup``: a consistent copy of a SQLite event store, safe while the hub runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hub import EXIT_INTERRUPTED, logs
from hub.cli import variable_of
from hub.store import StoreError, is_postgres, open_store, safe_url
from hub.store.backup import NoEventsTable, copy_store
from hub.store.commands import (
    EXIT_FAILED,
    EXIT_USAGE,
    fail,
    no_events_table,
    no_file_at,
    plural,
    utc,
)
from hub.store.sqlite import SQLiteStore
from hub.store.sqlite_conn import foreign_wal


def dest_refused(dest: str) -> tuple[str, int] | None:
    """Why ``DEST``, as given, names no new file to copy to (and the exit code), or None.

    ``-`` made a file named ``-`` (exit 0), where tools that take ``-`` write to standard
    output; ``/backups/new/`` (a directory that is not there, a trailing slash) made a file
    named ``new`` in ``/backups``; an empty one said ``'.' is a directory``."""
    if not dest:
        return "DEST is empty; name the new file the copy goes to, e.g. 'leadhub.db'.", EXIT_USAGE
    if dest == "-":
        msg = (
            "DEST '-' is no standard output here: a backup is a SQLite file, written and "
            "checked in place; name the new file (./- for a file named '-')."
        )
        return msg, EXIT_USAGE
    if dest.endswith(("/", os.sep)) and not Path(dest).is_dir():
        msg = (
            f"{dest!r} ends in '/', naming a directory, and there is none; make it first "
            "(then name the new file in it), or give the file's name without the '/'."
        )
        return msg, EXIT_FAILED
    return None


def run(args: argparse.Namespace) -> int:
    """Copy the store at ``--db`` to ``DEST`` and say what the copy holds."""
    logs.configure(level="warning", stream=sys.stderr)
    if (refused := dest_refused(args.dest)) is not None:
        return fail("backup", *refused)
    if is_postgres(args.db):
        return fail(
            "backup",
            f"{safe_url(args.db)!r} is a PostgreSQL store: back it up with PostgreSQL's own "
            "tools, e.g. `pg_dump --format=custom --schema=SCHEMA` (the store's ?schema=, "
            "public by default), which copy it consistently while the hub runs.",
        )
    try:
        store = open_store(args.db)
    except StoreError as exc:
        variable = variable_of(args, "db")
        return fail("backup", f"{variable}: {exc}" if variable else str(exc))
    assert isinstance(store, SQLiteStore)  # (every other URL is PostgreSQL or refused)
    # (whether it holds an events table is asked of the copy: opening a stopped store to
    # look would change it, or leave files beside it)
    if missing := no_file_at(store.path):
        return fail("backup", missing, EXIT_FAILED)
    # A restored copy beside the log of the store it replaced: every other command refuses
    # it; a backup copied the two as a stopped store's file and log, and SQLite read that log
    # into the copy (the old store's pages over the restored one's), exit 0.
    if (foreign := foreign_wal(store.path)) is not None:
        return fail("backup", str(foreign), EXIT_FAILED)
    dest = Path(args.dest)
    try:
        copied = copy_store(store.path, dest)
    except KeyboardInterrupt:
        # (the copy under its hidden name is removed on the way out; once named it is whole)
        made = f"{str(dest)!r} was made before it stopped" if dest.exists() else "no copy made"
        return fail("backup", f"stopped: {made}.", EXIT_INTERRUPTED)
    except NoEventsTable:
        return fail("backup", no_events_table(store.path), EXIT_FAILED)
    except StoreError as exc:
        return fail("backup", str(exc), EXIT_FAILED)
    print(
        f"Backed up {copied.events} {plural(copied.events, 'event')} ({copied.size:,} bytes) "
        f"from {str(store.path)!r} to {str(dest)!r}: "
        f"the store as it was at {utc(copied.as_of)} UTC."
    )
    return 0
