"""``/readyz`` asks the SQLite store's writer process (``leadhub serve --role web``) for an
answer: a stopped writer is not ready, a killed one is replaced."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx

from hub.store.sqlite_process import PROBE_WAIT
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
    and is 200, and a webhook after it is taken by that one."""
    args, base, _ = _web(tmp_path)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        writer = _writer_child(proc.pid)
        os.kill(writer, signal.SIGKILL)
        wait_until(
            lambda: any(line["event"] == "store_writer_lost" for line in _lines(proc)),
            timeout=30,
            what="the hub to see its writer gone",
        )
        assert _ready(base) == 200
        assert _writer_child(proc.pid) != writer
        lead = httpx.post(
            f"{base}/hooks/forms",
            json={"email": "after@example.com"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert (lead.status_code, lead.json()) == (200, {"status": "accepted", "id": 1})
        events = [line["event"] for line in _lines(proc)]
    assert events.count("store_writer_started") == 2
    assert "readiness_failed" not in events
