"""Wrong keys (401) pause a target; fixing them (``kill -HUP`` or a restart) resumes it at once.

Real processes: a ``leadhub sandbox`` with its own keys, and ``leadhub serve`` whose target
reads its secret key from a file (``LSQ_SECRET_FILE``), so a reload takes the fixed key. The
target's retry schedule starts at 30 s, so its first pause lasts 15 to 30 s: what is delivered
within a few seconds of the fix was not waiting for the pause to run out.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub.store.models import Event, State
from tests.dispatch.support import KEYS, target_yaml
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_crash import CONFIG, TOKEN
from tests.e2e.test_reload import Log
from tests.support.server import free_port, leadhub_process, serve_args

#: A first pause of 15 to 30 s (the schedule's first ceiling, times 0.5 to 1).
SLOW_RETRY = "{initial: 30s, max_interval: 1h, give_up_after: 1h}"
#: Seconds within which held events must go once the keys are fixed (well under a pause).
PROMPT = 8.0
#: A first pause of 5 to 10 minutes: what it holds back is not due again within a test.
LONG_RETRY = "{initial: 10m, max_interval: 1h, give_up_after: 2h}"


@dataclass
class Hub:
    """A running ``serve`` whose target is paused, and what the test needs of it."""

    proc: subprocess.Popen[str]
    log: Log
    base: str
    db: str
    secret: Path
    ids: list[int]

    def events(self) -> list[Event]:
        found = on_store(self.db, lambda store: store.list(limit=1000))
        return [event for event in found if event.id in self.ids]

    def post(self, email: str) -> int:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.post(f"{self.base}/hooks/forms", json={"email": email}, headers=headers)
        assert answer.status_code == 200, answer.text
        event_id: int = answer.json()["id"]
        return event_id

    def paused_gauge(self) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        found = re.search(r'^leadhub_target_paused\{target="default"\} (\S+)$', text, re.M)
        assert found, text
        return float(found.group(1))


def sandbox_args(port: int) -> list[str]:
    """``leadhub sandbox`` arguments: ``port``, no rate limit, the test keys."""
    args = ["sandbox", "--port", str(port), "--rate-limit", "off"]
    return [*args, "--access-key", KEYS["LSQ_ACCESS"], "--secret-key", KEYS["LSQ_SECRET"]]


@contextlib.contextmanager
def sandbox(tmp_path: Path, port: int | None = None) -> Iterator[str]:
    """A ``leadhub sandbox`` process taking the test keys (on ``port``, else a free one);
    yields its base URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with leadhub_process(sandbox_args(port), ready_url=f"{url}/"):
        yield url


def setup(tmp_path: Path, sandbox_url: str, retry: str = SLOW_RETRY) -> tuple[list[str], str, Path]:
    """serve's arguments (a 1 s target timeout, so an 8 s lease), its base URL, the key file."""
    target = target_yaml("default", sandbox_url, timeout="1s", retry=retry)
    files = {"forms.yaml": CONFIG, "targets.yaml": target}
    args, base, _ = serve_args(tmp_path, files, "--lease", "8s")
    secret = tmp_path / "lsq_secret"
    secret.write_text("not-the-key\n")
    return args, base, secret


def env_with(secret: Path) -> dict[str, str]:
    return {"LSQ_ACCESS": KEYS["LSQ_ACCESS"], "LSQ_SECRET_FILE": str(secret), "FORMS_TOKEN": TOKEN}


@contextlib.contextmanager
def paused_hub(
    tmp_path: Path, sandbox_url: str, leads: int = 3, retry: str = SLOW_RETRY
) -> Iterator[Hub]:
    """serve with the wrong secret key, ``leads`` events posted, the target paused."""
    args, base, secret = setup(tmp_path, sandbox_url, retry)
    with leadhub_process(args, ready_url=f"{base}/readyz", env=env_with(secret)) as proc:
        hub = Hub(proc, Log(proc), base, f"sqlite:///{tmp_path / 'hub.db'}", secret, [])
        hub.ids = [hub.post(f"held{n}@example.com") for n in range(leads)]
        wait_until(lambda: bool(hub.log.events("target_paused")), what="the pause")
        wait_until(
            lambda: all(e.state is State.QUEUED and e.last_error for e in hub.events()),
            what="every event put back by the pause",
        )
        yield hub


def fix_and_reload(hub: Hub) -> None:
    hub.secret.write_text(KEYS["LSQ_SECRET"] + "\n")
    hub.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: bool(hub.log.events("config_reloaded")), what="the reload")


def test_held_events_go_at_once_after_a_reload_with_the_right_keys(tmp_path: Path) -> None:
    """The events a pause put back wait for the pause to end (15-30 s here, up to an hour with
    the default schedule); once ``kill -HUP`` gives the target the right keys, that wait is
    over: they are delivered within seconds, their attempts not counted for the pause. (They
    waited the whole old pause out.)"""
    with sandbox(tmp_path) as sandbox_url, paused_hub(tmp_path, sandbox_url) as hub:
        fix_and_reload(hub)
        wait_until(
            lambda: all(e.state is State.DELIVERED for e in hub.events()),
            timeout=PROMPT,
            what="the held events delivered after the reload",
        )
        assert [e.attempts for e in hub.events()] == [1, 1, 1]


def test_held_events_go_at_once_after_a_restart_with_the_right_keys(tmp_path: Path) -> None:
    """The same when the key is fixed by a restart (as a key given in a variable must be):
    the new process sends the events the old one's pause put back without waiting it out."""
    with sandbox(tmp_path) as sandbox_url:
        with paused_hub(tmp_path, sandbox_url) as hub:
            hub.proc.send_signal(signal.SIGTERM)
            assert hub.proc.wait(timeout=30) == 0
        args, base, _ = setup(tmp_path, sandbox_url)
        hub.secret.write_text(KEYS["LSQ_SECRET"] + "\n")  # the key fixed for the restart
        with leadhub_process(args, ready_url=f"{base}/readyz", env=env_with(hub.secret)):
            wait_until(
                lambda: all(e.state is State.DELIVERED for e in hub.events()),
                timeout=PROMPT,
                what="the held events delivered after the restart",
            )


def test_a_pause_a_killed_process_left_does_not_use_up_give_up_after(tmp_path: Path) -> None:
    """kill -9 while the wrong keys hold the leads back for longer than their give_up_after
    (3 s here), then a restart with the right keys that meets a 500 on each lead: each is
    retried, not dead. The store kept the pause with the end it was due to have, and the new
    process counts it up to its start. (A restart forgot it: each lead was dead at its 500,
    "gave up after 1 attempt(s) over 3s".)"""
    retry = "{initial: 30s, max_interval: 1h, give_up_after: 3s}"
    with sandbox(tmp_path) as sandbox_url:
        with paused_hub(tmp_path, sandbox_url, retry=retry) as hub:
            time.sleep(4.0)  # paused for longer than give_up_after
            hub.proc.send_signal(signal.SIGKILL)
            hub.proc.wait(timeout=30)
        faults = {"every": 1, "kinds": ["500"]}  # (the sandbox's own keys take its faults)
        answer = httpx.post(f"{sandbox_url}/_sandbox/faults", params=_keys(), json=faults)
        assert answer.status_code == 200, answer.text
        args, base, _ = setup(tmp_path, sandbox_url, retry)
        hub.secret.write_text(KEYS["LSQ_SECRET"] + "\n")
        with leadhub_process(args, ready_url=f"{base}/readyz", env=env_with(hub.secret)):
            settled = (State.RETRYING, State.DEAD)  # (its first call after the restart over)
            wait_until(
                lambda: all(e.attempts == 1 and e.state in settled for e in hub.events()),
                what="each lead's first call after the restart failed",
            )
            events = hub.events()
    assert [e.state for e in events] == [State.RETRYING] * 3, [e.last_error for e in events]
    assert all("500" in (e.last_error or "") for e in events)


def _keys() -> dict[str, str]:
    return {"accessKey": KEYS["LSQ_ACCESS"], "secretKey": KEYS["LSQ_SECRET"]}


def test_the_paused_gauge_is_0_once_a_reload_gave_the_right_keys(tmp_path: Path) -> None:
    """``leadhub_target_paused`` (what the README says to alert on) goes back to 0 when the
    reload's new lane delivers; it stayed 1 for as long as the process ran, the paused lane
    it described being gone."""
    with sandbox(tmp_path) as sandbox_url, paused_hub(tmp_path, sandbox_url) as hub:
        assert hub.paused_gauge() == 1
        fix_and_reload(hub)
        fresh = hub.post("fresh@example.com")
        hub.ids.append(fresh)
        wait_until(
            lambda: any(e.id == fresh and e.state is State.DELIVERED for e in hub.events()),
            timeout=PROMPT,
            what="a new lead delivered with the right keys",
        )
        assert hub.paused_gauge() == 0


def test_every_held_event_says_why_its_target_is_paused_and_what_to_do(tmp_path: Path) -> None:
    """Each event the pause holds back names the refusal (HTTP 401, the keys) and the fix, not
    only the one whose call was refused: the others said "target 'default' is paused"."""
    with sandbox(tmp_path) as sandbox_url, paused_hub(tmp_path, sandbox_url) as hub:
        hub.ids += [hub.post(f"later{n}@example.com") for n in range(3)]  # after the pause
        wait_until(
            lambda: all(e.state is State.QUEUED and e.last_error for e in hub.events()),
            what="the later events put back too",
        )
        errors = [e.last_error or "" for e in hub.events()]
    for error in errors:
        assert error.startswith("target paused: HTTP 401"), errors
        assert "access_key" in error and "secret_key" in error, errors
        assert "kill -HUP" in error, errors
        assert KEYS["LSQ_SECRET"] not in error and "not-the-key" not in error


@pytest.mark.slow
def test_held_events_go_at_once_when_the_instance_whose_pause_held_them_stops(
    tmp_path: Path, hub_db_url: str
) -> None:
    """Two instances on one store, one of them with a wrong key (a bad deploy): its pause puts
    back the events it had claimed, due when the pause ends (5 to 10 minutes here, up to an
    hour by default). Stopped (rolled back), it leaves them due at once, and the instance with
    the right key, which went on serving, delivers them within seconds. (They waited out the
    stopped instance's whole pause: the other one had started before it, and a pause's held
    events were made due again only at a start or a reload of an instance.)"""
    with sandbox(tmp_path) as sandbox_url:
        target = target_yaml("default", sandbox_url, timeout="1s", retry=LONG_RETRY)
        files = {"forms.yaml": CONFIG, "targets.yaml": target}
        (tmp_path / "good").mkdir()
        (tmp_path / "bad").mkdir()
        lease = ("--lease", "8s")
        good_args, good_url, _ = serve_args(
            tmp_path / "good", files, "--role", "worker", *lease, db=hub_db_url
        )
        bad_args, bad_url, _ = serve_args(tmp_path / "bad", files, *lease, db=hub_db_url)
        right, wrong = tmp_path / "right_secret", tmp_path / "wrong_secret"
        right.write_text(KEYS["LSQ_SECRET"] + "\n")
        wrong.write_text("not-the-key\n")
        with leadhub_process(
            good_args, ready_url=f"{good_url}/readyz", env=env_with(right)
        ) as good:
            good.send_signal(signal.SIGSTOP)  # it claims nothing while the other pauses
            try:
                with leadhub_process(
                    bad_args, ready_url=f"{bad_url}/readyz", env=env_with(wrong)
                ) as bad:
                    hub = Hub(bad, Log(bad), bad_url, hub_db_url, wrong, [])
                    hub.ids = [hub.post(f"held{n}@example.com") for n in range(3)]
                    wait_until(lambda: bool(hub.log.events("target_paused")), what="the pause")
                    wait_until(
                        lambda: all(e.state is State.QUEUED and e.last_error for e in hub.events()),
                        what="every event put back by the pause",
                    )
                    good.send_signal(signal.SIGCONT)
                    bad.send_signal(signal.SIGTERM)
                    assert bad.wait(timeout=30) == 0
            finally:
                good.send_signal(signal.SIGCONT)
            wait_until(
                lambda: all(e.state is State.DELIVERED for e in hub.events()),
                timeout=30,
                what="the held events delivered by the instance with the right key",
            )


def _renamed_files(target: str, sandbox_url: str) -> dict[str, str]:
    """The ``forms`` endpoint mapped to ``target``, defined at ``sandbox_url``."""
    mapping = CONFIG.replace("endpoint: forms\n", f"endpoint: forms\ntarget: {target}\n")
    assert f"target: {target}" in mapping
    targets = target_yaml(target, sandbox_url, timeout="1s", retry=LONG_RETRY)
    return {"forms.yaml": mapping, "targets.yaml": targets}


def test_held_events_go_at_once_after_a_reload_that_renamed_their_target(tmp_path: Path) -> None:
    """A paused target fixed and renamed in one reload (``crm`` with the wrong key becomes
    ``crm-eu`` with the right one, the mapping following): the events its pause held back go
    at once to the new target, as for a target fixed under its own name. Its pause (5 to 10
    minutes here) held them back until it would have ended: the reload resumed only targets
    it kept."""
    with sandbox(tmp_path) as sandbox_url:
        files = _renamed_files("crm", sandbox_url)  # (the embedded sandbox's 10 s timeout)
        args, base, _ = serve_args(tmp_path, files, "--lease", "26s")
        secret = tmp_path / "lsq_secret"
        secret.write_text("not-the-key\n")
        with leadhub_process(args, ready_url=f"{base}/readyz", env=env_with(secret)) as proc:
            hub = Hub(proc, Log(proc), base, f"sqlite:///{tmp_path / 'hub.db'}", secret, [])
            hub.ids = [hub.post(f"renamed{n}@example.com") for n in range(3)]
            wait_until(lambda: bool(hub.log.events("target_paused")), what="the pause")
            wait_until(
                lambda: all(e.state is State.QUEUED and e.last_error for e in hub.events()),
                what="every event put back by the pause",
            )
            for name, text in _renamed_files("crm-eu", sandbox_url).items():
                (tmp_path / "cfg" / name).write_text(text)
            fix_and_reload(hub)
            wait_until(
                lambda: all(e.state is State.DELIVERED for e in hub.events()),
                what="the held events delivered to the renamed target",
            )
            assert {e.target for e in hub.events()} == {"crm-eu"}
            assert [e.attempts for e in hub.events()] == [1, 1, 1]


def test_a_pause_that_ends_by_itself_is_told_in_a_log_filtered_to_warnings(
    tmp_path: Path,
) -> None:
    """The account's keys refused, then taken again with no change to the hub (the account
    side fixed: here the sandbox started again with the keys the hub sends): the next probe
    resumes the target, and with ``--log-level warning`` the log says so (``target_resumed``,
    a warning: how long and how many pauses), as it says each ``target_paused`` (an error).
    It was an info line, filtered out there: the last word on the target was its pause."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    target = target_yaml("default", url, timeout="1s", retry="{initial: 2s, max_interval: 2s}")
    files = {"forms.yaml": CONFIG, "targets.yaml": target}
    args, base, _ = serve_args(tmp_path, files, "--lease", "8s", "--log-level", "warning")
    env = {**KEYS, "FORMS_TOKEN": TOKEN}
    keys = ["--access-key", KEYS["LSQ_ACCESS"], "--secret-key"]
    box = ["sandbox", "--port", str(port), "--rate-limit", "off", *keys]
    with leadhub_process(args, ready_url=f"{base}/readyz", env=env) as proc:
        log = Log(proc)
        hub = Hub(proc, log, base, f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, [])
        with leadhub_process([*box, "another-secret"], ready_url=f"{url}/"):
            hub.ids = [hub.post("held@example.com")]
            wait_until(lambda: bool(log.events("target_paused")), what="the pause")
            assert hub.paused_gauge() == 1
        with leadhub_process([*box, KEYS["LSQ_SECRET"]], ready_url=f"{url}/"):
            wait_until(lambda: bool(log.events("target_resumed")), timeout=60, what="the resume")
            wait_until(
                lambda: [e.state for e in hub.events()] == [State.DELIVERED],
                what="the held lead delivered",
            )
        assert hub.paused_gauge() == 0
        [resumed] = log.events("target_resumed")
    assert (resumed["level"], resumed["target"], resumed["by"]) == ("warning", "default", "probe")
    assert resumed["pauses"] >= 1
    assert resumed["seconds"] > 0


def test_a_reload_that_fixes_a_paused_target_says_its_pause_ended(tmp_path: Path) -> None:
    """The fix the pause's reason asks for (the keys, then ``kill -HUP``) ends the pause with
    a ``target_resumed`` warning (``by`` the reload), as a probe's answer does: nothing said
    so, and a log alerting on ``target_paused`` never saw the pause end. A reload that leaves
    the paused target as it was says nothing of it."""
    with sandbox(tmp_path) as sandbox_url, paused_hub(tmp_path, sandbox_url) as hub:
        hub.proc.send_signal(signal.SIGHUP)  # nothing changed: still paused
        wait_until(lambda: bool(hub.log.events("config_reloaded")), what="the first reload")
        assert hub.log.events("target_resumed") == []
        hub.secret.write_text(KEYS["LSQ_SECRET"] + "\n")
        hub.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(hub.log.events("target_resumed")), what="the pause's end")
        [resumed] = hub.log.events("target_resumed")
        assert (resumed["level"], resumed["target"], resumed["by"]) == (
            "warning",
            "default",
            "reload",
        )
        assert resumed["pauses"] == 1
        assert resumed["seconds"] > 0
        wait_until(
            lambda: all(e.state is State.DELIVERED for e in hub.events()),
            timeout=PROMPT,
            what="the held events delivered after the reload",
        )
        assert hub.log.events("target_resumed") == [resumed]  # once
