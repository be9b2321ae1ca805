"""What is checked about a SQLite database FILE itself, by the two parts that keep one.

The event store (:mod:`hub.store.sqlite_conn`) and the embedded sandbox
(:mod:`hub.sandbox.db`) each keep one file at a path in WAL mode, and both lost writes the
same two ways:

- The file deleted, moved away or hidden (its volume unmounted) while a process had it open.
  The event store's re-open made a new, empty store at the path; the sandbox, which never
  re-opened, went on writing into a log beside no database, answering 200 for leads that
  its next start did not have. Only a process's first open may create the file
  (:data:`WRITE_MODES`); a path that no longer names the file opened (:func:`identity`) is
  opened again with ``mode=rw``, and a file that is not there (:func:`missing`) is refused,
  saying so (:func:`vanished_reason`), until it is back.
- A ``-wal`` holding writes left beside no database file (or an empty one): SQLite, making a
  new database there, deletes it and the writes with it. A first open refuses it
  (:func:`orphan_wal`). Nor may another file put at the path while the ``-wal`` of the
  file opened before is still there be opened beside it (:func:`stale_wal`), nor a backup
  restored beside the ``-wal`` of the store it replaced (:func:`foreign_wal`).

Each part words its own error (its exception type, the name it gives the file); the checks
and the sentences about the file are here, so that the two say the same.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

#: How a writer opens its file, by whether it may create it. Only a process's first open (a
#: fresh install) may: every later open is ``mode=rw``, so that a file deleted, moved away
#: or hidden while the process runs is refused rather than made again, new and empty.
WRITE_MODES = {True: "mode=rwc", False: "mode=rw"}


#: The permission bits of a database file a first open makes (SQLite gives its ``-wal`` and
#: ``-shm`` the database's): its owner's alone. The event store holds every delivery's body
#: (names, emails, phone numbers, and whatever a sender signs), the sandbox the leads; SQLite's
#: own default, 0644 less the umask, let every user of the machine read them. A file already
#: there keeps its mode.
FILE_MODE = 0o600


def make_private(path: Path) -> None:
    """Make the missing database file ``path`` empty with :data:`FILE_MODE`, just before
    the first open that may create it (``mode=rwc``), which then takes it as a new database
    (SQLite reads an empty file as one). A file already there is left as it is; a path that
    cannot be made is left to that open to report."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return
    os.close(fd)


def uri(path: Path, params: str) -> str:
    """The ``file:`` URI that opens ``path`` (resolved: a later change of working directory
    cannot move it) with ``params`` (e.g. a :data:`WRITE_MODES` value). The path's bytes
    as the filesystem has them (``os.fsencode``): under an ASCII locale Python holds a name
    outside ASCII with surrogate escapes, which encoding the str as UTF-8 refused (serve
    died at start in a directory named ``données``)."""
    return f"file:{urllib.parse.quote(os.fsencode(path.resolve()))}?{params}"


def identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at ``path``, or None when nothing is there: a
    connection whose file's identity is no longer the path's is on a file deleted, moved
    away or replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def missing(path: Path) -> bool:
    """Whether no database file is at ``path``: nothing there, a component of its directory
    missing or no directory, or a directory in its place (a mount point's own)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.ENOTDIR)


def vanished_reason(noun: str, runner: str) -> str:
    """What to do about a database file no longer at its path once it was open: ``noun`` is
    what the file holds (``store``), ``runner`` what had it open (``hub``)."""
    return (
        f"its database file went missing while the {runner} was running (deleted, moved away, "
        f"or hidden by its volume unmounted); a new, empty {noun} is not made in its place: put "
        f"the file back where it was (the {noun} resumes by itself), or restart the {runner} to "
        f"start a new {noun} there"
    )


def unusable_reason(noun: str, runner: str) -> str:
    """What to do about another file put at the path while the ``runner`` was running, one
    that cannot be opened as its database (not SQLite, another program's database): ``noun``
    is what the file held (``sandbox``)."""
    return (
        f"another file was put at its path while the {runner} was running, and it cannot be "
        f"used as the {noun}'s database. Put the file the {runner} opened back at that path "
        f"(the {noun} resumes by itself), or move that file away and restart the {runner} to "
        f"start a new {noun} there"
    )


def orphan_wal(path: Path, *, title: str, noun: str) -> str | None:
    """Why a first open must not go on, when it finds a write-ahead log holding something
    beside no database file (or an empty one) at ``path``; None when there is none.
    ``title`` names the file in the message (``The event store``), ``noun`` what it holds
    (``store``).

    What is left when the process that had the file open is killed (``kill -9``, a container
    killed, the machine down) after the file was deleted or moved away, or when only the
    file was moved, or (SQLite checkpoints no log into a file no longer at its path) when a
    process stops cleanly after that: the ``-wal`` holds the last writes not yet
    checkpointed into the file (on a file never checkpointed, the schema and every write).
    SQLite, making a new database there, deletes a log it finds beside an empty file: the
    file opened empty and the writes were gone, silently; or, with a process still using the
    old file, the open failed with "disk I/O error" after deleting it all the same. Looked
    at before SQLite touches anything; an empty ``-wal`` (SQLite leaves one sometimes) holds
    nothing and does not stop a new file.
    """
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    try:
        size = os.stat(wal).st_size
    except OSError:
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return None  # (the open says what is wrong with the path)
        what = "has no database file"
    else:
        if not stat.S_ISREG(st.st_mode) or st.st_size > 0:
            return None
        what = "has an empty database file (0 bytes)"
    if size == 0:
        return None
    return (
        f"{title} {str(path)!r} {what}, but its write-ahead log "
        f"{str(wal)!r} is there ({size} bytes): it holds the last writes of a {noun} whose "
        f"file was deleted or moved away, which opening a new {noun} there would discard. Put "
        f"the database file back at {str(path)!r} (the {noun} opens with those writes), or, "
        f"to start a new, empty {noun} there and lose them, delete {str(wal)!r} and "
        f"{str(shm)!r} (stop first any process still using the old {noun})."
    )


#: The start of a SQLite database file, and the bytes of its header (offsets 18 and 19, the
#: file format's write and read versions) that say rollback-journal mode (1) or WAL (2).
_MAGIC = b"SQLite format 3\x00"
_ROLLBACK = b"\x01\x01"


def foreign_wal(path: Path, *, title: str, noun: str) -> str | None:
    """Why nothing may open ``path``: a database file in rollback-journal mode (a copy
    ``leadhub backup`` made, restored there) beside a write-ahead log holding something;
    None when not. ``title`` names the file in the message, ``noun`` what it holds.

    A log beside such a file is not its own (a database in WAL mode has 2 at those bytes of
    its header from before its first log): it is the log of the file the copy replaced,
    left there by a process killed with the file open (the README's restore moves it away
    first). A writer turns the file to WAL mode, and SQLite then takes the log it finds as
    the file's: the old store's last writes over the copy's pages, events of neither, a
    database "malformed". SQLite reads a log it finds beside a file whatever the file's
    header says, so a reader would show that mix too. Looked at before SQLite touches
    anything, and only before this process opens the file with SQLite: the header is read
    through a descriptor of its own, whose close drops every POSIX lock the process holds
    on the file (those of SQLite's connections, which other processes rely on)."""
    wal, shm = wal_of(path), Path(f"{path}-shm")
    try:
        size = os.stat(wal).st_size
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return None  # (no log; or the open says what is wrong with the file)
    if size == 0 or not header.startswith(_MAGIC) or header[18:20] != _ROLLBACK:
        return None
    return (
        f"{title} {str(path)!r} is a database in rollback-journal mode (a copy `leadhub "
        f"backup` made, restored there?), but a write-ahead log {str(wal)!r} is beside it "
        f"({size} bytes): the log of the file it replaced, holding that file's last writes, "
        f"which opening this one would read into it as its own (the two mixed, a corrupt "
        f"{noun}). To use this file, delete {str(wal)!r} and {str(shm)!r} first (stop first "
        f"any process still using the {noun} it replaced); or put back at {str(path)!r} the "
        f"file they belong to."
    )


def index_left_behind(path: Path) -> bool:
    """Whether a read-only open of the database file at ``path`` (SQLite's ``mode=ro``)
    would leave files beside it: the file cannot be written here and has no ``-shm`` (its
    WAL index). SQLite makes that index (and an empty ``-wal``) in a directory it may write,
    read-only as the file is and this process's, and leaves both: once the file was made
    writable, the ``-shm`` left failed every write ("attempt to write a readonly
    database"). Such a file is read as immutable instead, as in a read-only directory."""
    return not os.access(path, os.W_OK) and not Path(f"{path}-shm").exists()


def wal_of(path: Path) -> Path:
    """The write-ahead log of the database file at ``path``."""
    return Path(f"{path}-wal")


def stale_wal(path: Path, wal: tuple[int, int] | None, *, title: str, runner: str) -> str | None:
    """Why another file now at ``path`` must not be opened yet: the ``-wal`` beside it is
    still ``wal`` (the :func:`identity` of the log of the file the ``runner`` had open),
    holding something; None when not. ``title`` names the file in the message.

    A file moved away or deleted leaves its log at the path (SQLite checkpoints none into a
    file no longer there, on close either), holding its last writes. Opened beside it,
    another file (a copy put back, another database moved there) is read through that log:
    the old file's pages over its own (its rows hidden, the old file's shown, new writes
    added to them), written over it at the next checkpoint, or a corrupt database. Measured
    on the sandbox: another sandbox's file moved in showed the moved file's leads, not its
    own, and took captures into them.
    """
    log, shm = wal_of(path), f"{path}-shm"
    try:
        st = os.stat(log)
    except OSError:
        return None
    if (st.st_dev, st.st_ino) != wal or st.st_size == 0:
        return None
    return (
        f"{title} {str(path)!r} is another file than the one the {runner} opened there, but "
        f"that one's write-ahead log {str(log)!r} is still beside it ({st.st_size} bytes), "
        f"holding its last writes, which opening the new file would read as its own. Put the "
        f"file the {runner} opened back at {str(path)!r} (the {runner} goes on with every "
        f"write), or, to use the new file and lose those writes, delete {str(log)!r} and "
        f"{shm!r}."
    )


#: Filesystems that SQLite's WAL mode, which the store and the sandbox use, does not work on:
#: "All processes using a database must be on the same host computer; WAL does not work over
#: a network filesystem" (sqlite.org/wal.html). Its index (the ``-shm`` file) is shared memory
#: mapped from the file, and its locks are byte-range locks: over NFS (AWS EFS), SMB (Azure
#: Files), 9P (WSL2's Windows drives, some containers' bind mounts) and network or object
#: stores under FUSE they fail or are not kept, and a database there can lose or corrupt
#: what it committed (an object store writes no part of a file in place either). Kubernetes
#: volumes of those kinds are common. A FUSE mount of no subtype is named here by its source
#: (:data:`NETWORK_FUSE_SOURCES`), as ``fuse.<source>``.
NETWORK_FILESYSTEMS = frozenset(
    {
        "9p",
        "afs",
        "ceph",
        "cifs",
        "davfs",
        "glusterfs",
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "smb3",
        "smbfs",
        "fuse.blobfuse",
        "fuse.blobfuse2",
        "fuse.cephfs",
        "fuse.gcsfuse",
        "fuse.glusterfs",
        "fuse.grpcfuse",
        "fuse.juicefs",
        "fuse.mountpoint-s3",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.sshfs",
    }
)
#: The sources (a FUSE program's ``fsname``) of FUSE mounts of type ``fuse``, no subtype, that
#: keep their files on a network or in an object store: Azure's blobfuse2 (the AKS Blob CSI
#: driver's; blobfuse before it) and AWS's Mountpoint for Amazon S3 (its CSI driver's) show
#: as ``blobfuse2 /mnt/blob fuse`` and ``mountpoint-s3 /mnt/s3 fuse``, so the type alone does
#: not tell them (gcsfuse, s3fs, rclone give a subtype: ``fuse.gcsfuse``).
NETWORK_FUSE_SOURCES = frozenset({"blobfuse", "blobfuse2", "mountpoint-s3"})
#: A FUSE mount of no subtype whose source is none of those: a program the hub cannot name
#: the nature of (a local one, or a network one it does not know).
OTHER_FUSE = frozenset({"fuse"})
#: Filesystems held in memory: what a file there holds is gone when the machine restarts (a
#: tmpfs volume: Kubernetes' ``emptyDir: {medium: Memory}``, Docker's ``--tmpfs``, /dev/shm,
#: and /tmp on many distributions), every delivery answered 200 and not yet sent with it.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
#: Filesystems of a container's own writable layer: what a file there holds is gone when the
#: container is replaced (a redeploy, a new image, Kubernetes restarting it: a Dockerfile's
#: VOLUME makes no volume there), unless a volume is mounted over its directory.
CONTAINER_LAYERS = frozenset({"overlay", "aufs", "fuse.fuse-overlayfs"})  # (rootless Podman's)
MOUNTINFO = Path("/proc/self/mountinfo")
#: How mountinfo writes a space, tab, newline or backslash in a path: its byte in octal.
_MOUNT_ESCAPE = re.compile(r"\\([0-7]{3})")


def mount_of(device: int, mountinfo: str) -> tuple[str, str, str] | None:
    """``(filesystem type, mount point, source)`` of the filesystem whose device number is
    ``device`` in ``mountinfo`` (the text of ``/proc/self/mountinfo``: one line per mount,
    ``ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS [FIELDS...] - TYPE SOURCE OPTIONS``,
    spaces in paths written ``\\040``); the last such mount (a later one hides an earlier
    one), else None. A FUSE mount of no subtype whose source is one of
    :data:`NETWORK_FUSE_SOURCES` has the type ``fuse.<source>``."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    found = None
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if sep and len(fields) >= 5 and rest and fields[2] == wanted:
            # Only the octal escapes decoded: a codec's decoding (unicode_escape) read the
            # UTF-8 of a name such as /mnt/données as Latin-1 (/mnt/donnÃ©es).
            point, source = (
                _MOUNT_ESCAPE.sub(lambda m: chr(int(m[1], 8)), text)
                for text in (fields[4], rest[1] if len(rest) > 1 else "")
            )
            kind = (
                f"fuse.{source}"
                if rest[0] == "fuse" and source in NETWORK_FUSE_SOURCES
                else rest[0]
            )
            found = (kind, point, source)
    return found


def mounted_on(
    path: Path, kinds: frozenset[str] = NETWORK_FILESYSTEMS
) -> tuple[str, str, str] | None:
    """``(type, mount point, source)`` (:func:`mount_of`) when the directory of the database
    file ``path`` is on a filesystem of ``kinds`` (:data:`NETWORK_FILESYSTEMS`), else None
    (also where the mounts cannot be read: not Linux).

    Both directories count when ``path`` is a symbolic link: the one it is in (where the
    embedded sandbox's file is made, beside it) and the one the file really is in, which
    SQLite opens (:func:`uri` resolves the path) and makes its ``-wal`` and ``-shm`` in. Only
    the first was looked at: a ``/data/leadhub.db`` linked to a file on an NFS volume was not
    warned of."""
    try:
        mounts = MOUNTINFO.read_text(errors="replace")
        for directory in dict.fromkeys((path.absolute().parent, path.resolve().parent)):
            mounted = mount_of(directory.stat().st_dev, mounts)
            if mounted is not None and mounted[0] in kinds:
                return mounted
    except (OSError, RuntimeError):  # (RuntimeError: a loop of links, before Python 3.13)
        return None
    return None


class Holder(NamedTuple):
    """What keeps a SQLite file, for the warnings of :data:`PLACES`: the start of their event
    names (``store``), and the words of their details."""

    name: str
    file: str  # (the file, as a sentence's subject)
    every: str  # (all the file holds, lost with it)
    written: str  # (what it answered for and can lose)
    elsewhere: str  # (another way than a local disk, or nothing)


#: serve's event store (and the embedded sandbox's file beside it).
STORE = Holder(
    "store",
    "the store's file",
    "every delivery it holds (answered 200, not yet sent)",
    "deliveries answered 200",
    ", or share a PostgreSQL store between machines",
)
#: ``leadhub sandbox --db``'s file.
SANDBOX = Holder("sandbox", "the sandbox's file", "every lead it holds", "leads it answered", "")

#: Where a SQLite file must not be (filesystems of these kinds), the warning given when it is
#: (an event of its own for each, after its :class:`Holder`'s name: ``store_in_memory``), and
#: why (a :class:`Holder`'s words put in): what the file holds (for serve's store, every
#: delivery answered 200 and not yet sent) can be lost there, and the start said nothing.
PLACES = (
    (
        NETWORK_FILESYSTEMS,
        "on_network_filesystem",
        "SQLite's WAL mode, which the store and the sandbox use, does not work over a network "
        "filesystem: {written} can be lost or the file corrupted. Keep the --db file on a "
        "local disk (a volume of the machine itself){elsewhere}.",
    ),
    (
        MEMORY_FILESYSTEMS,  # (a Kubernetes emptyDir of medium Memory, /tmp on many systems)
        "in_memory",
        "{file} is held in memory, not on a disk: {every} is lost when the machine restarts. "
        "Keep the --db file on a disk (a volume of the machine itself).",
    ),
    (
        CONTAINER_LAYERS,  # (Kubernetes makes no volume for the image's VOLUME /data)
        "in_container_layer",
        "{file} is in the container's own writable layer, not on a volume: {every} is lost "
        "when the container is replaced (a restart elsewhere, a redeploy, a new image). Mount "
        "a volume over the --db file's directory (/data in the image: a PersistentVolumeClaim "
        "in Kubernetes, docker run -v leadhub-data:/data).",
    ),
    (
        OTHER_FUSE,  # (a FUSE program of no subtype the hub does not know: see its source)
        "on_fuse",
        "{file} is on a FUSE filesystem whose program the hub does not know (its source "
        "names it). If it keeps its files on a network or in an object store (Azure Blob, S3, "
        "Cloud Storage), SQLite's WAL mode, which the store and the sandbox use, does not "
        "work there: {written} can be lost or the file corrupted; keep the --db file on a "
        "local disk (a volume of the machine itself). A FUSE filesystem of local files is "
        "fine.",
    ),
)


def warn_of_place(
    path: Path,
    places: Sequence[tuple[frozenset[str], str, str]] = PLACES,
    holder: Holder = STORE,
) -> None:
    """Warn when the SQLite file ``path`` of ``holder`` (for serve's store, the embedded
    sandbox's file beside it too) is on a filesystem of one of ``places`` (:data:`PLACES`), as
    that place's event, naming the file by its absolute path (a relative ``--db`` is the
    working directory's, which the log does not say) and the mount (type, point, source)."""
    for kinds, place, detail in places:
        if (found := mounted_on(path, kinds)) is not None:
            kind, mount, source = found
            import structlog  # (only to warn: the store's writer process imports no logging)

            structlog.get_logger().warning(
                f"{holder.name}_{place}",
                path=str(path.absolute()),
                filesystem=kind,
                mount=mount,
                source=source,
                detail=detail.format(**holder._asdict()),
            )
