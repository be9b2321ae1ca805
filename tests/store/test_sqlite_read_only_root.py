"""A SQLite store whose directory alone is writable (a container with a read-only root
filesystem and the --db volume, as Kubernetes' readOnlyRootFilesystem makes it) purges and
replays events by the thousand.

SQLite makes its temporary files (a statement's journal past 64 KiB, a large sort) in
/var/tmp, /usr/tmp, /tmp or the working directory; none was writable there, and a purge of a
few hundred events (serve's retention too) or a replay failed with "disk I/O error", told as
the disk failing ("look in the system log"). The store keeps them in memory now. Real
``leadhub purge`` and ``replay`` processes in a mount namespace whose /, /tmp and /var/tmp are
read-only (root and unshare only: skipped otherwise).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.support import queue_leads

EACH = 1000  # delivered events to purge, and dead ones to replay (a few hundred failed)
DAY = 86_400.0


def _can_unshare_mounts() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    tried = subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30)
    return tried.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root and unshare")


def _old_events(db: Path) -> None:
    """``EACH`` delivered and ``EACH`` dead events, received 40 days ago, beside the one lead
    that made the store: copies of its delivery, as the store keeps them."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO deliveries (endpoint, received_at, content_type, headers, body, "
            "body_format) SELECT d.endpoint, d.received_at - 40 * ? + i, d.content_type, "
            "d.headers, d.body, d.body_format FROM n, deliveries AS d WHERE d.id = 1",
            (2 * EACH, DAY),
        )
        conn.execute(
            "INSERT INTO events (delivery, endpoint, delivery_id, state, attempts, "
            "next_attempt_at, updated_at) SELECT id, endpoint, 'old-' || id, CASE id % 2 WHEN 0 "
            "THEN 'delivered' ELSE 'dead' END, 1, received_at, received_at FROM deliveries "
            "WHERE id > 1"
        )
    conn.close()


def _with_read_only_root(data: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``argv`` run in a mount namespace where only ``data`` is writable of /, /tmp and
    /var/tmp (the working directory: /)."""
    script = "\n".join(
        [
            "set -e",
            "mount --make-rprivate /",
            f"mount --bind {shlex.quote(str(data))} {shlex.quote(str(data))}",
            "mount --rbind /tmp /tmp",  # (its own mount, so that it can be made read-only)
            "mount -o remount,bind,ro /tmp",
            "mount --bind /var/tmp /var/tmp",
            "mount -o remount,bind,ro /var/tmp",
            "mount -o remount,bind,ro /",
            "! touch /tmp/leadhub-test-writable 2>/dev/null",
            "cd /",
            f"exec {shlex.join(argv)}",
        ]
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(Path.cwd())}
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd="/",
    )


def test_purge_and_replay_work_where_only_the_store_s_directory_is_writable(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "hub.db"
    url = f"sqlite:///{db}"
    queue_leads(url, "forms", 1)
    _old_events(db)
    hub = [sys.executable, "-m", "hub"]

    purged = _with_read_only_root(data, [*hub, "purge", "--db", url, "--older-than", "1d"])
    assert purged.returncode == 0, purged.stderr + purged.stdout
    assert f"Purged {EACH} events and {EACH} deliveries" in purged.stdout, purged.stdout

    replayed = _with_read_only_root(data, [*hub, "replay", "--db", url, "--status", "dead"])
    assert replayed.returncode == 0, replayed.stderr + replayed.stdout
    assert f"Requeued {EACH} events" in replayed.stdout, replayed.stdout
