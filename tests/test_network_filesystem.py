"""A SQLite store on a network filesystem, where its WAL mode does not work, is warned of; so
is one on a filesystem held in memory (a tmpfs), which a restart of the machine empties.

The mounts are read from ``/proc/self/mountinfo`` and matched by the device number of the
database file's directory. No network filesystem can be mounted where the suite runs: the
matching is shown on the mounts of real machines (AWS EFS, Azure Files, WSL2's Windows drive)
and, for the lookup itself, on this machine's real mounts with their own type taken as one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hub import sqlite_file
from hub.sqlite_file import (
    CONTAINER_LAYERS,
    MEMORY_FILESYSTEMS,
    NETWORK_FILESYSTEMS,
    PLACES,
    mount_of,
    mounted_on,
    warn_of_place,
)
from tests.e2e.support import FORMS_CONFIG
from tests.sandbox.helpers import sandbox_args
from tests.support.server import free_port, leadhub_process, serve_args, wait_http

#: /proc/self/mountinfo of a Kubernetes pod with an EFS volume, an Azure Files one, a WSL2
#: Windows drive and a local disk (two mounts of one device: the later one counts).
MOUNTINFO = """\
1405 1229 0:233 / / rw,relatime master:447 - overlay overlay rw,lowerdir=/var/lib/l
1406 1405 0:236 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1489 1405 0:312 / /data rw,relatime - nfs4 fs-0a1b2c3d.efs.eu-west-1.amazonaws.com:/ rw,vers=4.1
1490 1405 0:313 / /mnt/azure\\040files rw,relatime - cifs //acct.file.core.windows.net/hub rw
1491 1405 0:92 / /mnt/c rw,noatime - 9p drvfs rw,dirsync,aname=drvfs;path=C:\\
1492 1405 259:1 /var/lib/kubelet/pods/x /local rw,relatime - ext4 /dev/nvme0n1p1 rw
1493 1405 259:1 /var/lib/other /local rw,relatime shared:5 - xfs /dev/nvme0n1p1 rw
1494 1405 0:314 / /srv/données\\011partagées\\134hub rw,relatime - nfs nas:/d rw
1495 1405 0:315 / /mnt/blob rw,nosuid,nodev,relatime - fuse blobfuse2 rw,user_id=0,group_id=0
1496 1405 0:316 / /mnt/s3 rw,nosuid,nodev,noatime - fuse mountpoint-s3 rw,user_id=0,group_id=0
1497 1405 0:317 / /mnt/gcs rw,nosuid,nodev,relatime - fuse.gcsfuse my-bucket rw,user_id=0
1498 1405 0:318 / /mnt/own rw,nosuid,nodev,relatime - fuse myfs rw,user_id=0,group_id=0
1499 1405 0:319 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0
1500 1405 0:320 / /podman rw,nodev,relatime - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0
a line that is not a mount
"""


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ((0, 312), ("nfs4", "/data", "fs-0a1b2c3d.efs.eu-west-1.amazonaws.com:/")),
        ((0, 313), ("cifs", "/mnt/azure files", "//acct.file.core.windows.net/hub")),
        ((0, 92), ("9p", "/mnt/c", "drvfs")),
        ((259, 1), ("xfs", "/local", "/dev/nvme0n1p1")),
        ((0, 233), ("overlay", "/", "overlay")),
        # (a name in UTF-8 as the kernel writes it, with a tab and a backslash escaped)
        ((0, 314), ("nfs", "/srv/données\tpartagées\\hub", "nas:/d")),
        # (FUSE of no subtype: an object store's program is named by its source)
        ((0, 315), ("fuse.blobfuse2", "/mnt/blob", "blobfuse2")),
        ((0, 316), ("fuse.mountpoint-s3", "/mnt/s3", "mountpoint-s3")),
        ((0, 318), ("fuse", "/mnt/own", "myfs")),
        ((0, 317), ("fuse.gcsfuse", "/mnt/gcs", "my-bucket")),
        ((8, 3), None),
    ],
)
def test_a_device_is_found_among_the_mounts(
    device: tuple[int, int], expected: tuple[str, str, str] | None
) -> None:
    assert mount_of(os.makedev(*device), MOUNTINFO) == expected


def test_the_network_filesystems_are_those_of_common_volumes() -> None:
    """EFS and NFS, Azure Files (SMB), WSL2's drives (9P), sshfs and object stores under FUSE;
    not a local disk, an overlay (a container's own files) or tmpfs."""
    for kind in ("nfs", "nfs4", "cifs", "smb3", "9p", "fuse.sshfs", "fuse.s3fs", "ceph"):
        assert kind in NETWORK_FILESYSTEMS
    for kind in ("ext4", "xfs", "btrfs", "overlay", "tmpfs", "zfs"):
        assert kind not in NETWORK_FILESYSTEMS


@pytest.mark.parametrize(
    ("device", "place"),
    [
        # Azure Blob (blobfuse2: the AKS Blob CSI driver's), S3 (Mountpoint for Amazon S3),
        # Cloud Storage (gcsfuse): network, as NFS is
        ((0, 315), "store_on_network_filesystem"),
        ((0, 316), "store_on_network_filesystem"),
        ((0, 317), "store_on_network_filesystem"),
        # a FUSE program of no subtype the hub does not know: a milder word, naming it
        ((0, 318), "store_on_fuse"),
        # a FUSE program that names its subtype, not a network one (lxcfs): nothing
        ((0, 319), None),
        # rootless Podman's container layer (fuse-overlayfs), as an overlay is
        ((0, 320), "store_in_container_layer"),
    ],
)
def test_fuse_mounts_of_object_stores_are_warned_of_as_network_filesystems(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    device: tuple[int, int],
    place: str | None,
) -> None:
    """The mount of the real file's directory, its line of mountinfo's given: blobfuse2 and
    mountpoint-s3 show as plain ``fuse`` with the program as the source, and were not
    warned of (their objects take no lock nor a write into a part of a file)."""
    (line,) = [line for line in MOUNTINFO.splitlines() if f" {device[0]}:{device[1]} " in line]
    here = os.stat(tmp_path).st_dev
    ours = line.replace(f" {device[0]}:{device[1]} ", f" {os.major(here)}:{os.minor(here)} ")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(ours + "\n")
    monkeypatch.setattr(sqlite_file, "MOUNTINFO", mountinfo)
    with capture_logs() as logs:
        warn_of_place(tmp_path / "hub.db")
    assert [entry["event"] for entry in logs] == ([place] if place else [])
    if place is not None:
        (warned,) = logs
        expected = mount_of(os.makedev(*device), MOUNTINFO)
        assert expected is not None
        assert (warned["filesystem"], warned["mount"], warned["source"]) == expected
        assert warned["path"] == str(tmp_path / "hub.db")
    if place == "store_on_fuse":
        assert "does not know" in logs[0]["detail"] and "local disk" in logs[0]["detail"]


def _real_mount(path: Path) -> tuple[str, str]:
    """``(type, mount point)`` of ``path`` as util-linux's findmnt tells it (the last line:
    /dev/shm, mounted twice over itself, is told twice)."""
    done = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,TARGET", "--target", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    kind, target = done.stdout.strip().splitlines()[-1].split(maxsplit=1)
    return kind, target


def test_a_file_on_this_machine_s_disk_is_found_on_its_real_mount(tmp_path: Path) -> None:
    kind, target = _real_mount(tmp_path)
    assert mounted_on(tmp_path / "hub.db") is None
    found = mounted_on(tmp_path / "hub.db", frozenset({kind}))
    assert found is not None and found[:2] == (kind, target)


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on a filesystem of another type than ``tmp_path``'s (/dev/shm's tmpfs)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or _real_mount(shm)[0] == _real_mount(tmp_path)[0]:
        pytest.skip("no filesystem of another type than the temporary directory's to link to")
    with tempfile.TemporaryDirectory(dir=shm, prefix="hub-test-") as directory:
        yield Path(directory)


def test_a_database_file_linked_to_another_filesystem_is_found_on_that_one(
    tmp_path: Path, other_filesystem: Path
) -> None:
    """``hub.db`` a symbolic link to a file on another filesystem: SQLite opens that file (the
    store resolves the path) and makes its ``-wal`` and ``-shm`` beside it, so that is the
    filesystem that counts; the link's own directory, where the embedded sandbox's file
    goes, counts too."""
    real = other_filesystem / "hub.db"
    real.touch()
    link = tmp_path / "hub.db"
    link.symlink_to(real)
    there, here = _real_mount(other_filesystem), _real_mount(tmp_path)
    assert mounted_on(link) is None
    assert (mounted_on(link, frozenset({there[0]})) or ())[:2] == there
    assert (mounted_on(link, frozenset({here[0]})) or ())[:2] == here


def test_the_warning_names_the_file_the_filesystem_and_what_to_do(tmp_path: Path) -> None:
    kind, target = _real_mount(tmp_path)
    network = PLACES[0]  # (this machine's own filesystem taken as a network one)
    with capture_logs() as logs:
        warn_of_place(tmp_path / "hub.db", [network])
        assert logs == []
        warn_of_place(tmp_path / "hub.db", [(frozenset({kind}), *network[1:])])
    (line,) = logs
    assert line["event"] == "store_on_network_filesystem" and line["log_level"] == "warning"
    assert (line["path"], line["filesystem"], line["mount"]) == (
        str(tmp_path / "hub.db"),
        kind,
        target,
    )
    assert "does not work over a network filesystem" in line["detail"]
    assert "local disk" in line["detail"] and "PostgreSQL" in line["detail"]


def test_serve_on_a_local_disk_says_nothing_of_it(tmp_path: Path) -> None:
    events = {line["event"] for line in _serve_output(tmp_path)}
    assert "store_opened" in events
    assert "store_on_network_filesystem" not in events
    if _real_mount(tmp_path)[0] not in MEMORY_FILESYSTEMS:  # (a /tmp that is a tmpfs is one)
        assert "store_in_memory" not in events
    if _real_mount(tmp_path)[0] not in CONTAINER_LAYERS:  # (nor the suite run in a container)
        assert "store_in_container_layer" not in events


def _serve_output(home: Path) -> list[dict[str, object]]:
    """The JSON lines of a real serve with its files in ``home``, started and stopped."""
    args, base, _ = serve_args(home, {"forms.yaml": FORMS_CONFIG})
    with leadhub_process(args, ready_url=f"{base}/healthz", env={"FORMS_TOKEN": "t"}) as proc:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.stdout is not None
        output = proc.stdout.read()
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_serve_with_its_store_in_memory_warns_that_a_restart_loses_it() -> None:
    """``--db`` on a tmpfs (/dev/shm here; a Kubernetes emptyDir of medium Memory, Docker's
    --tmpfs, /tmp on many distributions): every delivery the file holds is gone when the
    machine restarts. serve started without a word of it."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or _real_mount(shm)[0] not in MEMORY_FILESYSTEMS:
        pytest.skip("no tmpfs at /dev/shm")
    with tempfile.TemporaryDirectory(dir=shm, prefix="hub-test-") as directory:
        lines = _serve_output(Path(directory))
    (line,) = [entry for entry in lines if entry.get("event") == "store_in_memory"]
    assert line["level"] == "warning"
    assert (line["path"], line["filesystem"]) == (f"{directory}/hub.db", _real_mount(shm)[0])
    assert line["mount"] == _real_mount(shm)[1]
    assert "lost when the machine restarts" in str(line["detail"])
    assert "on a disk" in str(line["detail"])


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    tried = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True
    )
    return tried.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root, unshare and mount")
def test_serve_with_its_store_in_a_container_s_own_layer_warns_that_a_new_container_loses_it(
    tmp_path: Path,
) -> None:
    """``--db`` on an overlay, a container's own writable layer (Kubernetes makes no volume
    for the image's VOLUME /data: a pod without one kept its store there): every delivery it
    holds is gone when the container is replaced. serve started without a word of it. A real
    overlay mount, in a mount namespace of serve's own."""
    for part in ("lower", "upper", "work", "merged"):
        (tmp_path / part).mkdir()
    merged = tmp_path / "merged"
    args, base, db = serve_args(merged, {"forms.yaml": FORMS_CONFIG})
    lower, upper, work = (tmp_path / part for part in ("lower", "upper", "work"))
    # (the configuration, written in the mount point, is hidden by the mount: the image's)
    (lower / "cfg").mkdir()
    (lower / "cfg" / "forms.yaml").write_text((merged / "cfg" / "forms.yaml").read_text())
    layers = f"lowerdir={lower},upperdir={upper},workdir={work}"
    script = (
        "set -e; mount --make-rprivate /; "
        f"mount -t overlay overlay -o {shlex.quote(layers)} {shlex.quote(str(merged))}; "
        f"exec {shlex.join([sys.executable, '-m', 'hub', *args])}"
    )
    env = {**os.environ, "FORMS_TOKEN": "t", "PYTHONPATH": str(Path.cwd())}
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_http(f"{base}/healthz", proc=proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        out.seek(0)
        lines = [json.loads(line) for line in out if line.startswith("{")]
    (line,) = [entry for entry in lines if entry.get("event") == "store_in_container_layer"]
    assert line["level"] == "warning"
    assert (line["path"], line["filesystem"], line["mount"]) == (str(db), "overlay", str(merged))
    assert "lost when the container is" in str(line["detail"])
    assert "Mount a volume over the --db file's directory" in str(line["detail"])
    assert (upper / "hub.db").is_file() and not db.exists()  # (in the layer, not the volume)


def _sandbox_output(db: Path) -> list[dict[str, object]]:
    """The JSON lines of a real ``leadhub sandbox --db db``, started and stopped."""
    port = free_port()
    args = sandbox_args(port, "ak", "sk", "--db", str(db))
    with leadhub_process(args, ready_url=f"http://127.0.0.1:{port}/") as proc:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.stdout is not None
        output = proc.stdout.read()
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_the_standalone_sandbox_with_its_file_in_memory_warns_as_serve_does(tmp_path: Path) -> None:
    """``leadhub sandbox --db`` on a tmpfs: the leads it holds are gone when the machine
    restarts (on NFS, a container's layer: as serve's store). It started without a word; on
    the temporary directory's disk it says nothing."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or _real_mount(shm)[0] not in MEMORY_FILESYSTEMS:
        pytest.skip("no tmpfs at /dev/shm")
    with tempfile.TemporaryDirectory(dir=shm, prefix="hub-test-") as directory:
        lines = _sandbox_output(Path(directory) / "leads.db")
    (line,) = [entry for entry in lines if entry.get("event") == "sandbox_in_memory"]
    assert line["level"] == "warning"
    assert (line["path"], line["filesystem"]) == (f"{directory}/leads.db", _real_mount(shm)[0])
    assert line["mount"] == _real_mount(shm)[1]
    assert str(line["detail"]).startswith("the sandbox's file is held in memory")
    assert "every lead it holds is lost when the machine restarts" in str(line["detail"])
    events = {str(entry.get("event")) for entry in _sandbox_output(tmp_path / "leads.db")}
    assert "sandbox_ready" in events
    if _real_mount(tmp_path)[0] not in MEMORY_FILESYSTEMS:
        assert not [event for event in events if event.startswith("sandbox_in_")], events
