"""A consistent copy of a SQLite event store, taken while the hub writes to it.

Copying ``hub.db`` with ``cp`` while the hub runs gives a file that misses every write still
in ``hub.db-wal`` (up to about 1,000 pages: thousands of accepted deliveries), and may catch
the database half-way through a checkpoint. SQLite's online backup copies the database as one
read transaction sees it (the WAL's writes included): in WAL mode that reader holds no writer
back, so the hub goes on answering and committing while the copy is made.

The copy is written beside its destination under a hidden name, checked, made durable, then
given its name (never over an existing file): a backup that fails or is stopped leaves no
half-written file under the name a restore would look for. It is made with the store file's
permission bits (less the umask), never wider: the store holds the deliveries' bodies, and a
``chmod 600 hub.db`` must not come back as a world-readable copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from hub.store.base import StoreError


@dataclass(frozen=True)
class Copied:
    """What a backup copied: the events the copy holds and its size in bytes."""

    events: int
    size: int


def copy_store(source: Path, dest: Path) -> Copied:
    """Copy the SQLite event store at ``source`` to the new file ``dest``.

    The copy is one file in rollback-journal mode (no ``-wal`` or ``-shm`` beside it: it can
    be moved, archived or opened read-only as it is); a store opened on it turns it back to
    WAL. ``source`` is opened read-only and never changed.

    Raises:
        StoreError: ``dest`` exists, its directory cannot be written, the source cannot be
            read, or the copy failed SQLite's check; the message says which.
    """
    if _taken(dest):
        msg = f"{str(dest)!r} already exists; name a new file (a backup never overwrites one)."
        raise StoreError(msg)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        _make(partial, source)
        copied = _copy(source, partial)
        _sync(partial)
        _name(partial, dest)
        _sync_directory(dest.parent)
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return copied


def _make(partial: Path, source: Path) -> None:
    """Make ``partial`` empty, with the permission bits of ``source`` (less the umask; read and
    write for its owner, who writes it now and may restore it), before SQLite writes a page
    into it (SQLite made it 0644 less the umask, whatever the store's own mode; its journal
    takes the mode made here)."""
    try:
        mode = stat.S_IMODE(os.stat(source).st_mode) & 0o666 | 0o600
    except OSError:
        mode = 0o600  # (the open of the source says what is wrong with it)
    for leftover in (partial, Path(f"{partial}-journal")):  # of a killed backup of this pid
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    except OSError as exc:
        msg = f"cannot write {str(partial.parent)!r}: {exc.strerror}; name a writable directory."
        raise StoreError(msg) from exc


def _copy(source: Path, partial: Path) -> Copied:
    """The backup itself, into ``partial``: one step, so one read snapshot of the source."""
    src = _open_source(source)
    try:
        try:
            out = sqlite3.connect(partial)
        except sqlite3.Error as exc:
            msg = f"cannot write {str(partial.parent)!r}: {exc}; name a writable directory."
            raise StoreError(msg) from exc
        try:
            # pages=-1 (the default): every page in one step, under one read transaction
            src.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")
            (check,) = out.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                msg = f"the copy of {str(source)!r} failed SQLite's check ({check}); nothing kept."
                raise StoreError(msg)
            (events,) = out.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.Error as exc:
            msg = f"backup of {str(source)!r} failed: {exc}."
            raise StoreError(msg) from exc
        finally:
            out.close()
    finally:
        src.close()
    return Copied(events=int(events), size=partial.stat().st_size)


def _open_source(source: Path) -> sqlite3.Connection:
    """``source`` opened to be read: for writing where it may be (never created), so that the
    last connection to close tidies its ``-wal`` and ``-shm`` away as SQLite does; read-only
    where it may not be (a read-only connection leaves them behind); and, where not even the
    WAL index can be made beside it (a read-only directory or mount without one: a stopped
    hub's store on read-only media, or a snapshot), as immutable, the file alone, as the
    reading commands do (``hub.store.commands``). Only when nothing of a WAL is there: a
    ``-shm`` (a hub may be writing) or a ``-wal`` holding writes (the copy would miss them)
    is refused instead."""
    file = f"file:{urllib.parse.quote(str(source.resolve()))}"
    try:
        return _connect(f"{file}?mode=rw")
    except sqlite3.Error:
        pass
    try:
        return _connect(f"{file}?mode=ro")
    except sqlite3.Error as exc:
        failed = exc
    if _no_wal(source):
        with contextlib.suppress(sqlite3.Error):
            return _connect(f"{file}?mode=ro&immutable=1")
        msg = f"cannot read the event store {str(source)!r}: {failed}."
        raise StoreError(msg) from failed
    msg = (
        f"cannot read the event store {str(source)!r}: {failed}; its WAL index cannot be "
        "made or read here (a read-only directory?), and a copy of the database file alone "
        f"would miss the writes in {str(source) + '-wal'!r}: copy the store's files "
        f"({source.name} and its -wal) to a writable directory and back up from there."
    )
    raise StoreError(msg) from failed


def _no_wal(source: Path) -> bool:
    """Whether nothing of a WAL is beside ``source``: no ``-shm``, and no ``-wal`` or an
    empty one (SQLite leaves one sometimes)."""
    if os.path.lexists(f"{source}-shm"):
        return False
    try:
        return os.stat(f"{source}-wal").st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _connect(uri: str) -> sqlite3.Connection:
    """A connection to ``uri`` that has read the schema (where opening can first fail)."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _taken(dest: Path) -> bool:
    """Whether ``dest``, or a WAL or rollback journal of an earlier database of that name, is
    there: a ``-wal`` left beside the copy would be read into it as its own when it is
    opened, and a ``-journal`` (hot: left by a process that died mid-commit) rolled back into
    it, the copy (a rollback-journal database) then malformed."""
    return any(os.path.lexists(p) for p in (dest, f"{dest}-wal", f"{dest}-journal"))


def _name(partial: Path, dest: Path) -> None:
    """Give the finished copy its name, never over a file made there meanwhile (a hard link
    fails on an existing name; where links are not supported, a rename after one more look)."""
    made_meanwhile = StoreError(f"{str(dest)!r} was made while the backup ran; name a new file.")
    try:
        os.link(partial, dest)
    except FileExistsError:
        raise made_meanwhile from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise StoreError(f"cannot write {str(dest)!r}: {exc.strerror}.") from exc
        if _taken(dest):
            raise made_meanwhile from None
        os.rename(partial, dest)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(path: Path) -> None:
    """Make the new name durable (a directory that cannot be opened to sync is left as is)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
