"""A stop signal is logged as it arrives (``hub_stopping``, naming the signal), so an operator
tells a stop from a crash and sees how long the stop took; a reload (SIGHUP) is no stop."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV
from tests.e2e.test_reload import Log
from tests.support.server import leadhub_process, serve_args


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_is_the_first_line_of_the_stop(tmp_path: Path, stop: signal.Signals) -> None:
    """After a SIGHUP (a reload: no stop line) and then ``stop``, serve's lines hold one
    ``hub_stopping`` with the signal's name, ahead of the dispatcher's stop and
    ``hub_stopped``; it exits 0 as before."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--log-json")
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        assert log.events("hub_stopping") == []
        proc.send_signal(stop)
        assert proc.wait(timeout=30) == 0
        stops = log.events("hub_stopping")  # (reads every line left)
    names = [line["event"] for line in log.lines]
    assert len(stops) == 1, f"one hub_stopping line wanted; the lines: {names}"
    (stopping,) = stops
    assert stopping["signal"] == stop.name
    assert stopping["level"] == "info"
    first = names.index("hub_stopping")
    assert names.index("config_reloaded") < first < names.index("dispatcher_stopped")
    assert first < names.index("hub_stopped")
