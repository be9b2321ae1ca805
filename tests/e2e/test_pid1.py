"""``leadhub serve`` as PID 1 of its own PID namespace, as the image runs it (its ENTRYPOINT
is ``leadhub``, no init before it): a process of the container left without its parent is
handed to the hub, which must wait for it once it exits, or it stays a zombie for the
container's life. The namespace is made with ``unshare`` (root only: skipped otherwise)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub import orphans
from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.e2e.test_reload import Log
from tests.support.server import serve_args, wait_http


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    tried = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30
    )
    return tried.returncode == 0


needs_pid1 = pytest.mark.skipif(not _can_unshare(), reason="needs root, unshare and nsenter")


def _children(pid: int) -> list[tuple[int, str]]:
    """``pid``'s children, as ``(pid, state)``, from the host's ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
                if int(ppid) == pid:
                    found.append((int(entry.name), state))
    return found


@contextlib.contextmanager
def _serve_as_pid1(args: list[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``leadhub ARGS`` as PID 1 of a new PID namespace; yields ``unshare`` (whose exit code
    is the hub's) and the hub's PID as the host sees it."""
    sink = tempfile.NamedTemporaryFile(prefix="leadhub-pid1-", suffix=".log")
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    proc = subprocess.Popen(
        [*unshare, sys.executable, "-m", "hub", *args],
        env={**os.environ, **ENV},
        stdout=sink,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.stdout = open(sink.name, encoding="utf-8", errors="replace")
    try:
        wait_until(lambda: bool(_children(proc.pid)), what="the hub's start")
        ((hub, _),) = _children(proc.pid)
        yield proc, hub
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(hub, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
        sink.close()


@pytest.mark.slow
@needs_pid1
def test_the_hub_as_pid_1_reaps_orphans_and_still_waits_for_its_writer(tmp_path: Path) -> None:
    """A process started in the hub's namespace whose parent exits before it (a ``docker
    exec`` shell's background job, a health check's ``python`` left when Docker kills its
    shell) is waited for once it exits: no zombie stays, and ``orphan_reaped`` says so. The
    store's writer, the hub's own child, is still the store's to wait for: killed, it is
    lost (``store_writer_lost``) and replaced by a new one that takes the next delivery."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--log-json")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _serve_as_pid1(args) as (proc, hub):
        wait_http(f"{base}/readyz", proc=proc)
        log = Log(proc)
        assert log.events("hub_ready")[0]["pid"] == 1
        shell = "sleep 0.2 & echo $!"  # the shell exits at once: sleep is left to PID 1
        inside = ["nsenter", "-t", str(hub), "-p", "-m", "sh", "-c", shell]
        orphan = int(subprocess.run(inside, capture_output=True, text=True, check=True).stdout)

        def reaped() -> bool:
            return [line["pid"] for line in log.events("orphan_reaped")] == [orphan]

        wait_until(reaped, timeout=60, what="the orphan's orphan_reaped line")
        assert [state for _pid, state in _children(hub) if state == "Z"] == []

        (writer,) = (pid for pid, _state in _children(hub))
        os.kill(writer, signal.SIGKILL)
        wait_until(lambda: bool(log.events("store_writer_lost")), what="the writer's loss")
        lead = {"email": "after.writer@example.com"}
        answer = httpx.post(f"{base}/hooks/forms", json=lead, headers=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        assert [line["pid"] for line in log.events("orphan_reaped")] == [orphan]  # (not it)
        assert [state for _pid, state in _children(hub) if state == "Z"] == []

        os.kill(hub, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert log.events("hub_stopped")


def test_reap_waits_for_exited_children_but_not_the_ones_the_hub_waits_for() -> None:
    """:func:`hub.orphans.reap` (run here in the test process, whose children these are)
    waits for an exited child it was not told of, and leaves one in ``OWN`` to its owner,
    whose ``wait`` still reads the child's own exit code (a reap would leave it 0)."""
    own = subprocess.Popen(["sh", "-c", "exit 7"])
    stray = subprocess.Popen(["sh", "-c", "exit 3"])
    orphans.OWN.add(own.pid)
    try:
        zombies = {own.pid, stray.pid}
        wait_until(lambda: zombies <= set(orphans._zombie_children()), what="both to exit")
        reaped = orphans.reap()  # (and any other child of this process left unwaited)
        assert stray.pid in reaped
        assert own.pid not in reaped
        assert stray.pid not in orphans._zombie_children()
        assert own.pid in orphans._zombie_children()
        assert own.wait(timeout=30) == 7
    finally:
        orphans.OWN.discard(own.pid)
        stray.wait(timeout=30)  # (already reaped: Popen takes the missing child as 0)
