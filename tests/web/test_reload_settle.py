"""A reload waits for the configuration files to settle, and reads them again when one changed
while it read them (``hub.web.reload.read_config``): a file still being written is not taken
for its empty or cut-short first half. Time is a :class:`ManualClock`; each "sleep" moves it
and may play a writer's next step, so each timeline is exact."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.config import load
from hub.config.models import Config
from hub.web.reload import SETTLE, SETTLE_MAX, Reloads, read_config, reload_config, settled
from tests.dispatch.support import flat_endpoint_yaml

TARGET = """kind: target
name: default
url: http://127.0.0.1:9/
access_key: key
secret_key: secret
"""


class Timeline:
    """A manual clock whose sleeps are recorded, each playing ``steps[i]`` (if any) midway."""

    def __init__(self, steps: list[Callable[[], None]] | None = None) -> None:
        self.clock = ManualClock()
        self.naps: list[float] = []
        self.steps = list(steps or [])

    async def sleep(self, seconds: float) -> None:
        self.naps.append(round(seconds, 6))
        self.clock.advance(seconds / 2)
        if self.steps:
            self.steps.pop(0)()
        self.clock.advance(seconds / 2)

    def write(self, path: Path, text: str) -> None:
        """Write ``path`` now (its modification time is the clock's)."""
        path.write_text(text)
        now = self.clock.time()
        os.utime(path, (now, now))


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cfg"
    directory.mkdir()
    (directory / "targets.yaml").write_text(TARGET)
    old = 1_600_000_000  # long before the manual clock's now
    os.utime(directory / "targets.yaml", (old, old))
    return directory


async def test_files_at_rest_are_read_at_once(config_dir: Path) -> None:
    timeline = Timeline()
    timeline.write(config_dir / "forms.yaml", flat_endpoint_yaml("forms", "default"))
    timeline.clock.advance(SETTLE)
    config, waited = await read_config(config_dir, timeline.clock, timeline.sleep)
    assert sorted(config.endpoints) == ["forms"]
    assert (waited, timeline.naps) == (0.0, [])


async def test_a_file_written_in_two_steps_is_read_whole(config_dir: Path) -> None:
    """The signal comes after the file was emptied, before its text was written (an editor
    writing in place, a watcher that signals at the first change): the reload waits until
    the file has not changed for SETTLE seconds, so it reads the whole file."""
    timeline = Timeline()
    forms = config_dir / "forms.yaml"
    timeline.write(forms, "")  # emptied, its text still to come
    timeline.clock.advance(0.1)
    timeline.steps = [lambda: timeline.write(forms, flat_endpoint_yaml("forms", "default"))]
    config, waited = await read_config(config_dir, timeline.clock, timeline.sleep)
    assert sorted(config.endpoints) == ["forms"]
    # 0.4 s to the empty file's SETTLE, its text written 0.2 s in: 0.3 s more from there
    assert timeline.naps == [pytest.approx(SETTLE - 0.1), pytest.approx(SETTLE - 0.2)]
    assert waited == pytest.approx(0.7)


async def test_without_the_wait_the_empty_file_would_have_been_read(config_dir: Path) -> None:
    """What the wait is for: the same directory, read at the moment of the signal (as every
    reload did before), has no endpoint (an empty file is valid)."""
    (config_dir / "forms.yaml").write_text("")
    config: Config = load(config_dir, {})
    assert config.endpoints == {}


async def test_files_that_keep_changing_are_read_after_settle_max(config_dir: Path) -> None:
    timeline = Timeline()
    forms = config_dir / "forms.yaml"

    def rewrite() -> None:
        timeline.write(forms, flat_endpoint_yaml("forms", "default"))
        timeline.steps.append(rewrite)  # and again at the next nap

    timeline.write(forms, flat_endpoint_yaml("forms", "default"))
    timeline.steps = [rewrite]
    _, waited = await settled(config_dir, timeline.clock, timeline.sleep)
    assert waited == pytest.approx(SETTLE_MAX)
    assert sum(timeline.naps) == pytest.approx(SETTLE_MAX)


async def test_a_modification_time_in_the_future_is_not_waited_for(config_dir: Path) -> None:
    timeline = Timeline()
    forms = config_dir / "forms.yaml"
    forms.write_text(flat_endpoint_yaml("forms", "default"))
    later = timeline.clock.time() + 3600
    os.utime(forms, (later, later))
    _, waited = await settled(config_dir, timeline.clock, timeline.sleep)
    assert (waited, timeline.naps) == (0.0, [])


async def test_a_file_changed_while_it_was_read_is_read_again(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read sees the file before a write that lands while it reads; the files
    then differ from what they were before the read, so the directory is read again."""
    timeline = Timeline()
    forms = config_dir / "forms.yaml"
    timeline.write(forms, flat_endpoint_yaml("forms", "default"))
    timeline.clock.advance(SETTLE)
    reads: list[list[str]] = []

    def load_during_a_write(directory: Path, environ: object) -> Config:
        config = load(directory, os.environ)
        reads.append(sorted(config.endpoints))
        if len(reads) == 1:  # a second endpoint lands just after the file was read
            timeline.write(
                forms,
                flat_endpoint_yaml("forms", "default")
                + "---\n"
                + flat_endpoint_yaml("more", "default"),
            )
        return config

    monkeypatch.setattr("hub.web.reload.load", load_during_a_write)
    config, _ = await read_config(config_dir, timeline.clock, timeline.sleep)
    assert reads == [["forms"], ["forms", "more"]]
    assert sorted(config.endpoints) == ["forms", "more"]


async def test_signals_while_a_reload_waits_are_one_more_reload(config_dir: Path) -> None:
    """Five SIGHUPs (``Reloads.ask``, as the hook's signal handler calls it) while the first
    reload waits for a file to settle: that reload, then one more that reads the files after
    every signal, not five (each would have waited its turn, and the files, again)."""
    timeline = Timeline()
    forms = config_dir / "forms.yaml"
    timeline.write(forms, "")  # being written when the first signal comes
    app = Starlette()
    app.state.config = load(config_dir, {})
    settling, go_on = asyncio.Event(), asyncio.Event()

    async def sleep(seconds: float) -> None:  # the first reload's wait, held by the test
        settling.set()
        await go_on.wait()
        await timeline.sleep(seconds)

    reloads = Reloads(
        app,
        functools.partial(
            reload_config, app, config_dir, lambda c: c, clock=timeline.clock, sleep=sleep
        ),
    )
    with capture_logs() as logs:
        reloads.ask()
        await asyncio.wait_for(settling.wait(), 10)
        for _ in range(4):
            reloads.ask()
        assert len(reloads.tasks) == 2  # the one under way, and one more
        timeline.write(forms, flat_endpoint_yaml("forms", "default"))
        go_on.set()
        await asyncio.wait_for(asyncio.gather(*reloads.tasks), 10)
    reloaded = [line for line in logs if line["event"] == "config_reloaded"]
    assert [line["endpoints"] for line in reloaded] == [["forms"], ["forms"]]
    assert reloads.counts.labels("ok")._value.get() == 2
    await reloads.close()
