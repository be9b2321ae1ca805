"""``leadhub vacuum``'s work: a stopped SQLite event store compacted, and made to shrink.

A store made by an earlier leadhub has ``auto_vacuum = NONE``: SQLite reuses the pages a purge
frees for new events, but the file keeps its largest size for good (a backlog of a million
events purged leaves gigabytes of free pages). The mode cannot change without a full VACUUM,
which holds the store for the whole copy (minutes for gigabytes: the hub's writes would wait,
and its webhooks get 503), so it is done only on a store no process has open (asked of the
file's locks, as ``leadhub backup`` asks: :func:`hub.store.backup.in_use`).

The compacted copy is written beside the store under a hidden name (``VACUUM INTO``, with
``auto_vacuum = INCREMENTAL``: no free page, and the mode that lets ``serve`` give pages back
after each purge), checked, given the store's permission bits and owner, made durable, then
renamed over the store once the store's last connection (this one) has closed: the store is
the old file or the new one, whole, whatever stops the command. It needs free space beside the
store for the copy: about the size of what the store holds (its file less its free pages),
checked first. A store already made with incremental vacuum is only given its free pages back,
in place (:func:`hub.store.sqlite_conn.give_back_step`), as ``serve`` does after a purge.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from hub import sqlite_file
from hub.logs import get_logger
from hub.store.backup import in_use, pid_alive
from hub.store.base import StoreError
from hub.store.sqlite_conn import (
    AUTO_VACUUM_INCREMENTAL,
    SCHEMA_VERSION,
    connect,
    give_back_step,
    unavailable,
    write_transaction,
)

log = get_logger(__name__)

#: Free pages given back per transaction on a store already made with incremental vacuum (the
#: automatic checkpoint after each commit keeps the ``-wal`` about this size).
STEP = 1000
#: Room asked for on top of the copy's size when checking the free space beside the store (a
#: tenth of it more, and this many bytes): the ``-wal`` its last checkpoint writes, and a
#: margin for the filesystem's own use.
SPARE = 4 * 1024 * 1024


#: SQLite virtual machine steps between two calls of the copy's progress handler (a few
#: milliseconds' work).
PROGRESS_EVERY = 100_000


@dataclass(frozen=True)
class Compacted:
    """What a vacuum did: the store's size before and after (bytes: its file and its
    ``-wal``, :func:`on_disk`), and whether it was converted (made by an earlier leadhub,
    ``auto_vacuum = NONE``) or only compacted; ``migrated_from``: the schema version it was
    migrated from on the way (an older leadhub's store: a vacuum's open migrates it as every
    command that writes does), else None."""

    size_before: int
    size_after: int
    converted: bool
    migrated_from: int | None = None


class InUse(StoreError):
    """A process (a running hub, another command) has the store open."""


class ShortOfSpace(StoreError):
    """The filesystem beside the store has too little room for the compacted copy."""


def in_use_message(path: Path, *, during: bool = False) -> str:
    """Why a store a process has open is not vacuumed, and what to do."""
    when = "opened it while it was being compacted" if during else "has it open"
    return (
        f"a process {when} (a running `leadhub serve`, or another leadhub command): the "
        f"event store {str(path)!r} is left as it was. Vacuuming holds the store for the whole "
        "copy (minutes for a large file), and the hub's webhooks would get 503 meanwhile; "
        "stop every hub on this file, then run `leadhub vacuum` again."
    )


def compact(path: Path) -> Compacted:
    """Compact the stopped SQLite store at ``path`` and make it give space back from now on.

    Raises:
        InUse: a process has the store open (before, or when the copy was done).
        ShortOfSpace: too little free space beside the store for the copy.
        StoreError: the store cannot be opened or written, or the copy failed its check.
    """
    if in_use(path):
        raise InUse(in_use_message(path))
    _sweep(path)
    size_before = on_disk(path)
    version = _version(path)
    try:
        conn = connect(path, synchronous="FULL", writer=True)
    except (sqlite3.Error, OSError) as exc:
        raise unavailable(path, exc) from exc
    try:
        mode, pages, free, page_size = conn.execute(
            "SELECT * FROM pragma_auto_vacuum, pragma_page_count, pragma_freelist_count, "
            "pragma_page_size"
        ).fetchone()
        if mode == AUTO_VACUUM_INCREMENTAL:
            _give_back(conn, path)
            converted = False
        else:
            _check_space(path, (pages - free) * page_size)
            partial = path.with_name(f".{path.name}.{os.getpid()}.vacuum")
            try:
                _copy(conn, path, partial)
                conn.close()  # the last connection: the -wal checkpointed in, and removed
                _put_in_place(path, partial)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
            converted = True
    except sqlite3.Error as exc:
        raise unavailable(path, exc) from exc
    finally:
        conn.close()
    migrated = version if version is not None and version < SCHEMA_VERSION else None
    return Compacted(
        size_before=size_before,
        size_after=on_disk(path),
        converted=converted,
        migrated_from=migrated,
    )


def _version(path: Path) -> int | None:
    """The store's schema version before the open migrates it (None: not to be read; nor
    read where reading would leave a -shm behind: the open refuses that file anyway)."""
    if sqlite_file.index_left_behind(path):
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(sqlite_file.uri(path, "mode=ro"), uri=True)
        ) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])
    except (sqlite3.Error, TypeError, ValueError):
        return None


def on_disk(path: Path) -> int:
    """The bytes the store at ``path`` takes: its file and its ``-wal`` (one a hub killed
    left behind, megabytes of writes not yet checkpointed). The file's alone was reported:
    a store with 4 MB in its ``-wal`` said "1,351,680 bytes before, 1,351,680 now (it had
    no free space to give back)", though the vacuum took those 4 MB off the disk."""
    wal = sqlite_file.wal_of(path)
    try:
        in_wal = wal.stat().st_size
    except FileNotFoundError:
        in_wal = 0
    return path.stat().st_size + in_wal


def _data_version(conn: sqlite3.Connection) -> int:
    """SQLite's count of the changes other connections committed to the store, as this one
    sees it: two readings differ when any process wrote between them."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _give_back(conn: sqlite3.Connection, path: Path) -> None:
    """Every free page of a store made with incremental vacuum given back, in steps, and the
    ``-wal`` checkpointed into the file (whose end is cut off then) and emptied."""
    while True:
        with write_transaction(conn):
            given = give_back_step(conn, STEP)
        if given < STEP:
            break
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise InUse(in_use_message(path, during=True))


def _sweep(path: Path) -> None:
    """Remove the hidden copies that vacuums of ``path`` killed before their end (``kill -9``,
    the machine down) left beside it, each as large as the store: those whose pid is no
    running process's (``vacuum_leftover_removed``)."""
    directory = path.absolute().parent
    leftover = re.compile(rf"\.{re.escape(path.name)}\.([0-9]{{1,10}})\.vacuum(?:-journal)?")
    for name in sorted(os.listdir(directory)):
        found = leftover.fullmatch(name)
        if found is None or int(found[1]) == os.getpid() or pid_alive(int(found[1])):
            continue
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
            log.warning("vacuum_leftover_removed", path=str(directory / name))


def _check_space(path: Path, needed: int) -> None:
    """Refuse (:class:`ShortOfSpace`) when the filesystem of ``path`` has less room than a
    copy of ``needed`` bytes, with a tenth more and :data:`SPARE`."""
    directory = path.absolute().parent
    available = shutil.disk_usage(directory).free
    needed += needed // 10 + SPARE
    if available >= needed:
        return
    msg = (
        f"about {needed:,} bytes must be free in {str(directory)!r} for the compacted "
        f"copy of the event store (written beside it, then put in its place), and only "
        f"{available:,} are: the store is left as it was. Free space there, or (the hub still "
        "stopped) copy the store to a disk with room, vacuum the copy and move it back."
    )
    raise ShortOfSpace(msg)


def _copy(conn: sqlite3.Connection, path: Path, partial: Path) -> None:
    """The store compacted into ``partial`` (made new, private), with incremental vacuum,
    checked, and made durable with the store's permission bits and owner."""
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, sqlite_file.FILE_MODE)
    os.close(fd)
    written = _data_version(conn)
    # (taken by VACUUM INTO for the copy: the store's own mode cannot change in place)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    # Python handles a signal only between its own steps, and the copy is one call of minutes
    # on gigabytes: a progress handler lets Ctrl-C (raised in it) stop SQLite ("interrupted").
    conn.set_progress_handler(_carry_on, PROGRESS_EVERY)
    try:
        conn.execute("VACUUM INTO ?", (str(partial),))
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
            raise KeyboardInterrupt from exc
        raise
    finally:
        conn.set_progress_handler(None, 0)
    (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
    with contextlib.closing(sqlite3.connect(partial)) as out:
        (check,) = out.execute("PRAGMA quick_check").fetchone()
        (mode,) = out.execute("PRAGMA auto_vacuum").fetchone()
        (copied,) = out.execute("SELECT count(*) FROM events").fetchone()
        # (in WAL mode, as the store was: VACUUM INTO writes a rollback-journal file)
        out.execute("PRAGMA journal_mode = WAL")
    _unwritten(conn, path, written)
    if check != "ok" or mode != AUTO_VACUUM_INCREMENTAL or copied != events:
        msg = (
            f"the compacted copy of {str(path)!r} failed its check ({check}; auto_vacuum "
            f"{mode}; {copied} of {events} events); the store is left as it was."
        )
        raise StoreError(msg)
    st = path.stat()
    with contextlib.suppress(PermissionError):  # (not root: the file is this user's already)
        os.chown(partial, st.st_uid, st.st_gid)
    os.chmod(partial, stat.S_IMODE(st.st_mode))
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _unwritten(conn, path, written)


def _unwritten(conn: sqlite3.Connection, path: Path, written: int) -> None:
    """Refuse (:class:`InUse`) when a process wrote to the store since ``written`` (its
    :func:`_data_version` before the copy): what it wrote is not in the copy. One that wrote
    and closed before the copy's end (a ``serve`` started and stopped, a ``leadhub replay``)
    held no lock by the rename (:func:`_put_in_place`), and its writes went with the old
    file: 20 events stored while the copy of 255 MB was being checked were lost so."""
    if _data_version(conn) != written:
        raise InUse(in_use_message(path, during=True))


def _carry_on() -> int:
    """SQLite's progress handler: 0, go on (a Ctrl-C is raised here, which stops it)."""
    return 0


def _put_in_place(path: Path, partial: Path) -> None:
    """``partial`` renamed over the store at ``path``, once nothing has the store open and
    no ``-wal`` with writes is beside it (SQLite would read it into the new file)."""
    wal = sqlite_file.wal_of(path)
    try:
        unwritten = wal.stat().st_size
    except FileNotFoundError:
        unwritten = 0
    if in_use(path) or unwritten:
        raise InUse(in_use_message(path, during=True))
    os.replace(partial, path)
    with contextlib.suppress(OSError):
        fd = os.open(path.absolute().parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
