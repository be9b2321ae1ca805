"""``/readyz`` asks the SQLite store's writer process (``leadhub serve --role web``) for an
answer: a stopped writer is not ready, a killed one is replaced."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx

from hub.store.sqlite_process import PROBE_WAIT
from hub.web.app import READY_TIMEOUT
from tests.e2e.support import wait_until
from tests.e2e.test_crash import ENV, TOKEN
from tests.e2e.test_stalled_writer import _lines, _web, _writer_child
from tests.support.server import leadhub_process


def _ready(base: str) -> int:
    """The status of one ``/readyz`` (the 30 s are a hang guard, not a measure of speed)."""
    return httpx.get(f"{base}/readyz", timeout=30).status_code


def test_a_stopped_writer_is_not_ready_until_it_goes_on(tmp_path: Path) -> None:
    """The writer process stopped (SIGSTOP, as a hung disk would hold it) with no delivery
    waiting on it: ``/readyz`` is 503, saying why, once PROBE_WAIT has passed without its
    answer, and 200 again when it goes on, the same process. (Readiness asked only whether a
    delivery had waited for it past ``stall_after``: with none sent, it said ready for as
    long as the writer stayed stopped.)"""
    args, base, _ = _web(tmp_path)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGSTOP)
        try:
            assert _ready(base) == 503
            assert _ready(base) == 503  # (the same probe still waits: no second one sent)
        finally:
            os.kill(writer, signal.SIGCONT)
        assert _ready(base) == 200
        assert _writer_child(proc.pid) == writer
        # logged as that probe is answered, the line is written at the end of the hub's loop
        # iteration: after the answer, which a loaded machine can bring here first
        wait_until(
            lambda: any(line["event"] == "readiness_recovered" for line in _lines(proc)),
            what="the recovery's line",
        )
        lines = [line for line in _lines(proc) if str(line["event"]).startswith("readiness")]
    assert [line["event"] for line in lines] == ["readiness_failed", "readiness_recovered"]
    assert lines[0]["error"] == "StoreUnavailable"
    assert f"(pid {writer}) has not answered within {PROBE_WAIT:g} s" in str(lines[0]["detail"])
    assert lines[1]["failed"] == 2


def test_a_stopped_writer_that_no_delivery_waits_on_is_replaced(tmp_path: Path) -> None:
    """Stopped with nothing but readiness probes waiting on it, the writer is killed once it
    has not answered for ``?stall_after=`` and the next probe starts a new one: ready again
    while the old one would still be stopped. (Not ready, a web instance gets no webhooks,
    so no delivery would ever wait past ``stall_after`` to have it replaced.)"""
    args, base, _ = _web(tmp_path, "?stall_after=1s")
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGSTOP)
        try:
            assert _ready(base) == 503
            wait_until(lambda: _ready(base) == 200, timeout=30, what="a new writer")
        finally:
            with contextlib.suppress(ProcessLookupError):  # (killed once it had stalled)
                os.kill(writer, signal.SIGCONT)
        assert _writer_child(proc.pid) != writer
        assert not Path(f"/proc/{writer}").exists()  # killed, and reaped
        lines = _lines(proc)
    [stalled] = [line for line in lines if line["event"] == "store_writer_stalled"]
    assert (stalled["writer_pid"], stalled["failing"]) == (writer, 0)


def test_a_killed_writer_is_replaced_at_the_next_probe(tmp_path: Path) -> None:
    """The writer process killed (SIGKILL) while idle: the next ``/readyz`` starts a new one
    and is 200 once it has started (a 503 meanwhile only for want of its answer within
    READY_TIMEOUT, on a loaded machine), and a webhook after it is taken by that one."""
    args, base, _ = _web(tmp_path)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGKILL)
        wait_until(
            lambda: any(line["event"] == "store_writer_lost" for line in _lines(proc)),
            timeout=30,
            what="the hub to see its writer gone",
        )
        wait_until(lambda: _ready(base) == 200, timeout=60, what="a new writer")
        assert _writer_child(proc.pid) != writer
        lead = httpx.post(
            f"{base}/hooks/forms",
            json={"email": "after@example.com"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert (lead.status_code, lead.json()) == (200, {"status": "accepted", "id": 1})
        lines = _lines(proc)
    assert [line["event"] for line in lines].count("store_writer_started") == 2
    failed = [line for line in lines if line["event"] == "readiness_failed"]
    assert all(line["detail"] == f"no answer within {READY_TIMEOUT:g}s" for line in failed)


#: A ``sitecustomize`` put on the hub's PYTHONPATH: a writer process started once the file
#: named by SLOW_WRITER_MARK exists sleeps SLOW_WRITER_SECONDS before it starts, as one
#: starting on a loaded machine takes that long.
_SLOW_WRITER = """
import os, sys, time
if "hub.store.sqlite_child" in sys.orig_argv and os.path.exists(os.environ["SLOW_WRITER_MARK"]):
    time.sleep(float(os.environ["SLOW_WRITER_SECONDS"]))
"""


def test_a_writer_slower_to_start_than_a_probe_waits_is_not_started_again(
    tmp_path: Path,
) -> None:
    """The writer process killed, and its replacement taking longer to start than a readiness
    probe waits (READY_TIMEOUT, then a second more): that probe is 503, and a later one 200,
    answered by that same replacement, the only one started.

    A probe that gave up cancelled the start it had begun, and the next probe killed the
    half-started child and started another: as long as a start took longer than a probe
    waits (a loaded machine, where the test above failed so), no writer came back.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SLOW_WRITER)
    mark = tmp_path / "slow-writer"
    env = {
        **ENV,
        "PYTHONPATH": str(site),
        "SLOW_WRITER_MARK": str(mark),
        "SLOW_WRITER_SECONDS": str(READY_TIMEOUT + 1),
    }
    args, base, _ = _web(tmp_path)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=env) as proc:
        writer = _writer_child(proc.pid)
        mark.touch()  # the writers started from now on are slow
        os.kill(writer, signal.SIGKILL)
        wait_until(
            lambda: any(line["event"] == "store_writer_lost" for line in _lines(proc)),
            timeout=30,
            what="the hub to see its writer gone",
        )
        assert _ready(base) == 503  # its replacement is still starting
        wait_until(lambda: _ready(base) == 200, timeout=60, what="the replacement started")
        lines = _lines(proc)
    assert [line["event"] for line in lines].count("store_writer_started") == 2
