"""A consistent copy of a SQLite event store, taken while the hub writes to it.

Copying ``hub.db`` with ``cp`` while the hub runs gives a file that misses every write still
in ``hub.db-wal`` (up to about 1,000 pages: thousands of accepted deliveries), and may catch
the database half-way through a checkpoint. SQLite's online backup copies the database as one
read transaction sees it (the WAL's writes included): in WAL mode that reader holds no writer
back, so the hub goes on answering and committing while the copy is made.

A backup never changes what it copies. A stopped hub's store is not opened by SQLite at all:
opened for writing, the backup was its last connection, and closing it checkpointed the store
(the ``-wal``'s writes moved into the file, the ``-wal`` and ``-shm`` deleted); opened
read-only, it left a ``-wal`` and ``-shm`` made beside it. Its files are read as bytes instead
(the file, and its ``-wal`` or ``-journal`` where they hold something) into the copy, which
SQLite then recovers as it would the store: nothing of the store is written, made or removed.
Whether a hub has the store open is asked of the file's locks (every SQLite connection to a
WAL database holds a shared lock on it while open), and looked at again after the copy,
with the files' identities, sizes and times: a hub started meanwhile means the copy is made
again, from a running store.

The copy is written beside its destination under a hidden name, checked, made durable, then
given its name (never over an existing file): a backup that fails or is stopped leaves no
half-written file under the name a restore would look for. It is made with the store file's
permission bits (less the umask), never wider: the store holds the deliveries' bodies, and a
``chmod 600 hub.db`` must not come back as a world-readable copy. One killed (``kill -9``, the
machine down) leaves that hidden copy (``.NAME.PID.partial``, and what SQLite made beside it),
as large as the store: the next backup into that directory removes those of backups whose
process is gone, and says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import sqlite3
import stat
import struct
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from hub.logs import get_logger
from hub.store.base import StoreError

log = get_logger(__name__)


@dataclass(frozen=True)
class Copied:
    """What a backup copied: the events the copy holds, its size in bytes, and when the
    store was as the copy holds it (unix seconds)."""

    events: int
    size: int
    #: A running store's: just after the read the copy was made from began (it holds what
    #: was committed before, nothing after). A stopped store's: when its files were seen
    #: to be as they were before their copy (nothing wrote them meanwhile).
    as_of: float


def copy_store(source: Path, dest: Path) -> Copied:
    """Copy the SQLite event store at ``source`` to the new file ``dest``.

    The copy is one file in rollback-journal mode (no ``-wal`` or ``-shm`` beside it: it can
    be moved, archived or opened read-only as it is); a store opened on it turns it back to
    WAL. ``source`` is never changed: read through SQLite (read-only) while a hub has it open,
    as files while none has.

    Raises:
        StoreError: ``dest`` exists (a directory, say), its directory cannot be written,
            the source cannot be read, holds no event store (:class:`NoEventsTable`), or the
            copy failed SQLite's check; the message says which.
    """
    if dest.is_dir():  # (`leadhub backup /backups/`: "already exists" sent one looking for a file)
        example = dest / f"leadhub-{time.strftime('%Y-%m-%d', time.gmtime())}.db"
        msg = f"{str(dest)!r} is a directory; name the new file in it, e.g. {str(example)!r}."
        raise StoreError(msg)
    if _taken(dest):
        msg = f"{str(dest)!r} already exists; name a new file (a backup never overwrites one)."
        raise StoreError(msg)
    if (beside := _beside(source, dest)) is not None:
        msg = (
            f"{str(dest)!r} is where SQLite keeps the store's {beside} while it is open: the "
            "store's next open would take the copy for it and delete it; name another file."
        )
        raise StoreError(msg)
    _sweep(dest.parent)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        held = _make(partial, source)
    except BaseException:
        # Ctrl-C (KeyboardInterrupt) as the hidden copy was being made: it was left behind,
        # the file made and not yet under the removal below. (A failure to make it leaves
        # nothing to remove, and may fail the removal too: the error raised is its own.)
        for leftover in _files_of(partial):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    try:
        copied = _copy(source, partial)
        _sync(partial)
        _name(partial, dest)
        _sync_directory(dest.parent)
    finally:
        for leftover in _files_of(partial):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        os.close(held)
    return copied


class NoEventsTable(StoreError):
    """The SQLite database copied holds no events table: it is no event store."""


#: The files SQLite keeps beside a database file, by their suffix: what each holds.
_KEPT_BESIDE = {"-wal": "write-ahead log", "-shm": "WAL index", "-journal": "rollback journal"}
_BESIDE = tuple(_KEPT_BESIDE)


def _beside(source: Path, dest: Path) -> str | None:
    """What SQLite keeps in ``dest`` when it names a file beside ``source`` (its ``-wal``,
    ``-shm`` or ``-journal``), else None. With the hub stopped those files are gone, so
    ``dest`` is free: a backup written there (exit 0) was read as the store's log or index
    by the next command to open the store, found no such thing, and deleted."""
    where = os.path.realpath(dest)
    # (SQLite names them after the file a link to the store points to)
    names = {str(source), os.path.realpath(source)}
    for suffix, what in _KEPT_BESIDE.items():
        if any(where == os.path.realpath(f"{name}{suffix}") for name in names):
            return what
    return None


def _files_of(partial: Path) -> list[Path]:
    """``partial`` and the files SQLite may make beside it."""
    return [partial, *(Path(f"{partial}{suffix}") for suffix in _BESIDE)]


def _make(partial: Path, source: Path) -> int:
    """Make ``partial`` empty, with the permission bits of ``source`` (less the umask; read and
    write for its owner, who writes it now and may restore it), before SQLite writes a page
    into it (SQLite made it 0644 less the umask, whatever the store's own mode; its journal
    takes the mode made here). Returns it open, locked as this backup's (:func:`lock_partial`)
    until closed."""
    try:
        mode = stat.S_IMODE(os.stat(source).st_mode) & 0o666 | 0o600
    except OSError:
        mode = 0o600  # (the open of the source says what is wrong with it)
    try:
        for leftover in _files_of(partial):  # of a killed backup of this pid
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                log.warning("backup_leftover_removed", path=str(leftover), pid=os.getpid())
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:  # (a directory that is a file, or read-only, fails the unlink)
        msg = f"cannot write {str(partial.parent)!r}: {exc.strerror}; name a writable directory."
        raise StoreError(msg) from exc
    lock_partial(fd)
    return fd


#: How many times a stopped store is copied as files before the backup gives up, each copy
#: spoilt by a hub starting (or starting and stopping) on it meanwhile.
_ATTEMPTS = 3


def _copy(source: Path, partial: Path) -> Copied:
    """The backup itself, into ``partial`` (made empty): of a running store through SQLite's
    online backup, of a stopped one by reading its files (:func:`_copy_files`), until a
    copy of its files is known to be of one state of them."""
    for _ in range(_ATTEMPTS):
        if in_use(source) is not False:
            return _backup_online(source, partial)
        seen = _state(source)
        _copy_files(source, partial)
        if in_use(source) is False and _state(source) == seen:
            return _checked(source, partial, as_of=time.time())
        _empty(partial)  # a hub started on it meanwhile: again, from what it is now
    msg = (
        f"the event store {str(source)!r} changed while its files were copied, "
        f"{_ATTEMPTS} times (a hub starting and stopping on it?); nothing kept: run the "
        "backup again."
    )
    raise StoreError(msg)


def _backup_online(source: Path, partial: Path) -> Copied:
    """SQLite's online backup of ``source`` (a hub has it open) into ``partial``: one step,
    under one read transaction of the source, begun here first so that the time it began
    is known (the copy holds what was committed before it, nothing after)."""
    src = _open_source(source)
    try:
        out = _open_partial(partial)
        try:
            # (WAL: the snapshot is taken at the transaction's first read; the backup step
            # reads under the source's open read transaction rather than one of its own)
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
            as_of = time.time()
            # pages=-1 (the default): every page in one step, under that read transaction
            src.backup(out)
        except sqlite3.Error as exc:
            msg = f"backup of {str(source)!r} failed: {exc}."
            raise StoreError(msg) from exc
        finally:
            out.close()
    finally:
        src.close()
    return _checked(source, partial, as_of=as_of)


def _open_partial(partial: Path) -> sqlite3.Connection:
    """A connection to the copy being made, ``partial``; a directory the backup cannot
    write in is a :class:`StoreError` naming it."""
    try:
        return sqlite3.connect(partial)
    except sqlite3.Error as exc:
        msg = f"cannot write {str(partial.parent)!r}: {exc}; name a writable directory."
        raise StoreError(msg) from exc


def _checked(source: Path, partial: Path, *, as_of: float) -> Copied:
    """``partial``, a copy of ``source``'s pages (and of its ``-wal`` or ``-journal``,
    beside it), made one file in rollback-journal mode (a ``-wal`` checkpointed into it, a
    hot ``-journal`` rolled back), checked with ``quick_check``, its events counted."""
    out = _open_partial(partial)
    try:
        out.execute("PRAGMA journal_mode = DELETE")
        (check,) = out.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            msg = f"the copy of {str(source)!r} failed SQLite's check ({check}); nothing kept."
            raise StoreError(msg)
        (tables,) = out.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if not tables:
            raise NoEventsTable(f"{str(source)!r} holds no events table.")
        (events,) = out.execute("SELECT count(*) FROM events").fetchone()
    except sqlite3.Error as exc:
        msg = f"backup of {str(source)!r} failed: {exc}."
        raise StoreError(msg) from exc
    finally:
        out.close()
    return Copied(events=int(events), size=partial.stat().st_size, as_of=as_of)


def _copy_files(source: Path, partial: Path) -> None:
    """The bytes of the stopped store's file into ``partial``, and of its ``-wal`` and
    ``-journal`` (where they hold something) beside it, made with ``partial``'s mode: SQLite
    opening the copy reads them as it would the store's (the writes of a hub killed before
    it checkpointed them; a transaction to roll back)."""
    mode = stat.S_IMODE(partial.stat().st_mode)
    for suffix in ("", "-wal", "-journal"):
        origin, copy = Path(f"{source}{suffix}"), Path(f"{partial}{suffix}")
        try:
            reader = open(origin, "rb")  # (closed below)
        except FileNotFoundError:
            if suffix:
                continue
            raise StoreError(f"the event store {str(source)!r} went missing.") from None
        except OSError as exc:
            raise StoreError(f"cannot read {str(origin)!r}: {exc.strerror}.") from exc
        with reader:
            if suffix and os.fstat(reader.fileno()).st_size == 0:
                continue  # (SQLite leaves an empty -wal sometimes)
            flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT | os.O_EXCL if suffix else 0)
            try:
                with open(os.open(copy, flags, mode), "wb") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
            except OSError as exc:
                msg = f"cannot copy {str(origin)!r} to {str(copy)!r}: {exc.strerror}."
                raise StoreError(msg) from exc


def _empty(partial: Path) -> None:
    """``partial`` made empty again, nothing beside it."""
    os.truncate(partial, 0)
    for beside in _files_of(partial)[1:]:
        with contextlib.suppress(FileNotFoundError):
            beside.unlink()


def _state(source: Path) -> list[tuple[int, ...] | None]:
    """What changes when anything writes the store at ``source``: the identity, size and
    times of its file and of each file SQLite keeps beside it (None: not there)."""
    found: list[tuple[int, ...] | None] = []
    for suffix in ("", *_BESIDE):
        try:
            st = os.stat(f"{source}{suffix}")
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return found


#: The bytes of a database file SQLite locks (``os_unix.c``): PENDING, RESERVED and the
#: SHARED range, at 1 GiB (past the data of any but a large file; locks do not need data).
_LOCKED_BYTES = (0x40000000, 512)

#: ``struct flock`` as ``fcntl(F_GETLK)`` reads it, where known: its format and the order of
#: its fields (type, whence, start, length, pid on Linux; start, length, pid, type, whence on
#: macOS and the BSDs).
_FLOCK = {
    "linux": ("hhqqi", (0, 1, 2, 3, 4)),
    "darwin": ("qqihh", (3, 4, 0, 1, 2)),
}


def in_use(path: Path) -> bool | None:
    """Whether a process (not this one) holds a lock on the SQLite database file ``path``:
    a connection to a WAL database holds a shared one on it from its first read until it
    closes; a writer in rollback-journal mode holds one while it writes. Asked with
    ``F_GETLK``, which takes no lock (a hub starting meanwhile is not held back). None when
    it cannot be told (the file cannot be opened here, an unknown platform)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _locked(fd, fcntl.F_GETLK, *_LOCKED_BYTES)
    finally:
        os.close(fd)


def _locked(fd: int, command: int, start: int, length: int) -> bool | None:
    """``fcntl(fd, command)`` (a ``GETLK``: takes no lock) asked whether another holds a lock
    on ``length`` bytes of ``fd``'s file from ``start``; None when it cannot be told."""
    query = _flock(start, length)
    if query is None:
        return None
    layout, order, packed = query
    try:
        answer = fcntl.fcntl(fd, command, packed)
    except OSError:
        return None
    l_type = struct.unpack(layout, answer[: struct.calcsize(layout)])[order[0]]
    return bool(l_type != fcntl.F_UNLCK)


def _flock(start: int, length: int) -> tuple[str, tuple[int, ...], bytes] | None:
    """A ``struct flock`` for a write lock on ``length`` bytes from ``start`` (its layout,
    the order of its fields, its bytes), or None on an unknown platform."""
    known = next((f for name, f in _FLOCK.items() if sys.platform.startswith(name)), None)
    if known is None:
        return None
    layout, order = known  # order: where each of type, whence, start, len, pid goes
    fields = [0] * 5
    for value, at in zip((fcntl.F_WRLCK, os.SEEK_SET, start, length, 0), order, strict=True):
        fields[at] = value
    # (room past the struct for the padding the C layout may add at its end)
    return layout, order, struct.pack(layout, *fields) + bytes(16)


#: Locks of an open file description, not of the process (Linux 3.15 and later), where known.
_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None) if sys.platform.startswith("linux") else None
_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", None) if sys.platform.startswith("linux") else None


def lock_partial(fd: int) -> None:
    """Lock the first byte of the partial copy open as ``fd``, for as long as ``fd`` is
    open, where open-file-description locks exist (Linux): another backup then leaves it
    alone even when it cannot see this process (another PID namespace: a container sharing
    the directory), see :func:`_sweep`. Such a lock is the open file's, not the process's
    (SQLite closing its own descriptor of the file keeps it), and SQLite locks no byte below
    1 GiB."""
    query = _flock(0, 1)
    if _OFD_SETLK is None or query is None:
        return
    with contextlib.suppress(OSError):  # (then its pid alone keeps it)
        fcntl.fcntl(fd, _OFD_SETLK, query[2])


#: A backup's hidden partial copy, and the files SQLite makes beside it, by name: the
#: destination's name and the backup's pid (``.NAME.PID.partial``, see :func:`copy_store`).
_PARTIAL = re.compile(
    r"(?P<partial>\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.partial)(?:-wal|-shm|-journal)?"
)


def _sweep(directory: Path) -> list[Path]:
    """Remove from ``directory`` what backups killed before their end (``kill -9``, the
    machine down) left there: their hidden partial copies and the ``-wal``, ``-shm`` and
    ``-journal`` beside them, each logged (``backup_leftover_removed``). Only files of that
    pattern whose pid is no running process's, and whose partial (if there) no backup holds
    locked (:func:`lock_partial`); nothing else is touched. Returns what was removed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []  # (making the partial there says what is wrong with it)
    left: dict[tuple[int, str], list[Path]] = {}
    for name in names:
        found = _PARTIAL.fullmatch(name)
        if found is not None and (pid := int(found["pid"])) != os.getpid():
            left.setdefault((pid, found["partial"]), []).append(directory / name)
    removed: list[Path] = []
    for (pid, partial), paths in sorted(left.items()):
        if pid_alive(pid) or held_by_a_backup(directory / partial) is not False:
            continue
        for path in sorted(paths):
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # (a directory, a link: no backup's)
                path.unlink()
            except FileNotFoundError:
                continue  # (another backup removed it first)
            except OSError as exc:
                log.warning("backup_leftover_kept", path=str(path), pid=pid, error=exc.strerror)
                continue
            log.warning("backup_leftover_removed", path=str(path), pid=pid)
            removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` may be a running process's (another user's included): only a pid no
    process has is not."""
    if pid <= 0:
        return True  # (no backup's: not to be looked at as one)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # (another user's process; a number no pid can be: no backup's)
    return True


def held_by_a_backup(partial: Path) -> bool | None:
    """Whether a backup holds ``partial`` locked (:func:`lock_partial`): False when it is not
    there, or not held where such locks exist; None when it cannot be told (it cannot be
    opened here, or is no regular file)."""
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if _OFD_GETLK is None:
            return False  # (no such lock here: its pid alone tells)
        return _locked(fd, _OFD_GETLK, 0, 1)
    finally:
        os.close(fd)


def _open_source(source: Path) -> sqlite3.Connection:
    """``source``, which a hub has open, opened to be read: read-only (a connection that may
    write checkpoints the store when it closes last, as it would were the hub to stop
    meanwhile); where not even its WAL index can be made or read (a read-only directory or
    mount without one: only when :func:`in_use` cannot tell), as immutable, the file alone,
    as the reading commands do (``hub.store.commands``). Only when nothing of a WAL is
    there: a ``-shm`` (a hub may be writing) or a ``-wal`` holding writes (the copy would
    miss them) is refused instead."""
    file = f"file:{urllib.parse.quote(str(source.resolve()))}"
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
