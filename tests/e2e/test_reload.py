"""``kill -HUP``: a running ``leadhub serve`` takes a changed configuration directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from hub.store.models import State
from tests.dispatch.support import KEYS, recording_target, target_yaml
from tests.e2e.support import lead_by_email, stored_events, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN, _delivered
from tests.support.server import HUP_WHILE_LOADING, REPO, leadhub_process, serve_args

EXTRA = """kind: endpoint
name: extra
source: token
token: ${FORMS_TOKEN}
---
kind: mapping
name: extra-map
endpoint: extra
fields:
  EmailAddress: { path: $.contact.email, required: true }
  Source: { value: Extra form }
"""


class Log:
    """The JSON lines a running process has written so far, read as they come: whole lines
    only (the process may be writing one: a write that spans a page boundary is seen half
    done, and a half line of JSON does not parse), the rest read once it is whole."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.stream = proc.stdout
        self.lines: list[dict[str, Any]] = []
        self.text: list[str] = []  # the lines that are not JSON
        self.partial = ""  # the start of a line still being written

    def events(self, name: str) -> list[dict[str, Any]]:
        *whole, self.partial = (self.partial + self.stream.read()).split("\n")
        for line in whole:
            if line.startswith("{"):
                self.lines.append(orjson.loads(line))
            elif line.strip():
                self.text.append(line + "\n")
        return [line for line in self.lines if line["event"] == name]


def test_sighup_reloads_the_config_and_a_broken_one_changes_nothing(tmp_path: Path) -> None:
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    config = tmp_path / "cfg"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    lead = {"contact": {"email": "new.form@example.com"}}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        assert log.events("hub_ready")[0]["pid"] == proc.pid  # whom to send SIGHUP
        assert httpx.post(f"{base}/hooks/extra", json=lead, headers=auth).status_code == 404

        (config / "extra.yaml").write_text(EXTRA)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        (reloaded,) = log.events("config_reloaded")
        assert reloaded["endpoints_added"] == ["extra"] and reloaded["endpoints_removed"] == []
        answer = httpx.post(f"{base}/hooks/extra", json=lead, headers=auth)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: _delivered(base) == 1, what="the new endpoint's lead")
        (sent,) = lead_by_email(base, "new.form@example.com")
        assert sent["Source"] == "Extra form"

        # A broken file: the reload is refused, saying where, and the hub goes on as it was.
        (config / "broken.yaml").write_text("kind: endpoint\nname: [oops\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reload_failed")), what="the refusal")
        (failed,) = log.events("config_reload_failed")
        assert any(error.startswith(f"{config / 'broken.yaml'}:") for error in failed["errors"])
        again = {"contact": {"email": "still.works@example.com"}}
        assert httpx.post(f"{base}/hooks/extra", json=again, headers=auth).status_code == 200
        old = httpx.post(f"{base}/hooks/forms", json={"email": "f@example.com"}, headers=auth)
        assert old.status_code == 200
        wait_until(lambda: _delivered(base) == 3, what="both leads after the refusal")

        # Taking the file away takes its endpoint away.
        (config / "broken.yaml").unlink()
        (config / "extra.yaml").unlink()
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(log.events("config_reloaded")) == 2, what="the second reload")
        assert log.events("config_reloaded")[1]["endpoints_removed"] == ["extra"]
        assert httpx.post(f"{base}/hooks/extra", json=lead, headers=auth).status_code == 404
        assert not log.events("config_reload_failed")[1:]
        metrics = httpx.get(f"{base}/metrics").text
        assert 'leadhub_config_reloads_total{outcome="ok"} 2.0' in metrics
        assert 'leadhub_config_reloads_total{outcome="failed"} 1.0' in metrics


def test_a_secret_rotated_in_its_file_is_taken_at_the_reload(tmp_path: Path) -> None:
    """FORMS_TOKEN_FILE instead of FORMS_TOKEN: after the file is rewritten and the hub gets
    SIGHUP, the new token is accepted and the old one refused (401), without a restart."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    secret = tmp_path / "forms_token"
    secret.write_text("old-token\n")
    env = {k: v for k, v in ENV.items() if k != "FORMS_TOKEN"}
    env["FORMS_TOKEN_FILE"] = str(secret)
    lead = {"email": "rotated@example.com"}

    def post(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.post(f"{base}/hooks/forms", json=lead, headers=headers).status_code

    with leadhub_process(args, ready_url=f"{base}/readyz", env=env) as proc:
        log = Log(proc)
        assert (post("old-token"), post("new-token")) == (200, 401)
        secret.write_text("new-token\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        assert (post("old-token"), post("new-token")) == (401, 200)
        assert not any("new-token" in str(line) or "old-token" in str(line) for line in log.lines)


SLOW_TARGET = """kind: target
name: slow
url: http://127.0.0.1:9
access_key: slow-key
secret_key: slow-secret
timeout: 30s
"""


def test_a_reload_whose_timeout_the_lease_cannot_hold_is_refused_where_it_is(
    tmp_path: Path,
) -> None:
    """A reload giving a target a ``timeout`` the running hub's lease (60 s) cannot hold (a
    call may last 60 s, 66 s needed) is refused as the start refuses it: nothing changes,
    ``config_reload_failed`` names the target's file:line and the fix. Taken, every event of
    that target went back to the queue untried, a lease later, for good."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    config = tmp_path / "cfg"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        (config / "slow.yaml").write_text(SLOW_TARGET)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reload_failed")), what="the refusal")
        assert not log.events("config_reloaded")
        (failed,) = log.events("config_reload_failed")
        (error,) = failed["errors"]
        assert error.startswith(f"{config / 'slow.yaml'}:1: --lease 60s (this hub's) is too short")
        assert "give --lease 66s or more, or lower the target's timeout" in error
        # The hub goes on as it was.
        lead = {"email": "after.refusal@example.com"}
        assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 200
        wait_until(lambda: _delivered(base) == 1, what="the lead after the refusal")
        metrics = httpx.get(f"{base}/metrics").text
        assert 'leadhub_config_reloads_total{outcome="failed"} 1.0' in metrics


def test_a_stop_during_a_reload_lets_the_reload_finish_its_closing_lanes(tmp_path: Path) -> None:
    """SIGTERM while a reload closes the lane of a changed target (waiting for its call in
    flight, 8 s here): the reload ends first, its lane's call finishes and is recorded, then
    the hub stops. The stop cancelled the reload halfway: the call was cut unrecorded and its
    event left ``sending`` until its lease ended (a restart waited that long for it)."""
    mapping = CONFIG.replace("endpoint: forms\n", "endpoint: forms\ntarget: crm\n")
    with recording_target(slow={"Slow": 8.0}) as (url, fake):
        files = {"forms.yaml": mapping, "targets.yaml": target_yaml("crm", url, timeout="10s")}
        args, base, db = serve_args(tmp_path, files, "--lease", "26s")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with leadhub_process(args, ready_url=f"{base}/readyz", env={**ENV, **KEYS}) as proc:
            log = Log(proc)
            lead = {"email": "slow@example.com", "name": "Slow"}
            assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 200
            wait_until(lambda: bool(fake.calls), what="the slow call under way")
            changed = target_yaml("crm", url, timeout="10s", rate_limit="50/1s")
            (tmp_path / "cfg" / "targets.yaml").write_text(changed)
            proc.send_signal(signal.SIGHUP)
            # The reload reads the file once at rest (0.5 s), then closes the lane, waiting
            # for the slow call: the stop comes meanwhile. (A reload slower than that to
            # begin is stopped before it changes anything, and the test shows nothing.)
            time.sleep(2.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            assert log.events("config_reloaded"), "the reload was used whole"
        (event,) = stored_events(f"sqlite:///{db}")
        assert event.state is State.DELIVERED, (event.state, event.last_error)
        assert fake.calls == [("slow@example.com", "Slow")]


def test_a_sighup_while_serve_loads_its_modules_is_a_reload_once_started(
    tmp_path: Path,
) -> None:
    """A SIGHUP in the half second or more serve spends loading its modules, before it
    served anything, is remembered and applied once it has started (as README says of a
    SIGHUP while serve starts). Its default action ended the process: exit 129, no line."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    output = tmp_path / "serve.log"  # (a file, read as it grows: see leadhub_process)
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", HUP_WHILE_LOADING, *args],
            cwd=str(REPO),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.stdout = output.open(encoding="utf-8", errors="replace")
    try:
        log = Log(proc)
        wait_until(
            lambda: bool(log.events("config_reloaded")) or proc.poll() is not None,
            what="the reload once started, or the end of the process",
        )
        assert proc.poll() is None, f"serve ended: exit {proc.returncode}"
        (reloaded,) = log.events("config_reloaded")
        assert reloaded["endpoints_added"] == [] and reloaded["endpoints_removed"] == []
        assert httpx.get(f"{base}/readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_a_configuration_without_endpoints_serves_and_reloads(tmp_path: Path) -> None:
    """A directory that defines no endpoint (only targets, here an empty file: ``check``
    says ok) is served, and a reload that adds an endpoint, then one that takes every
    endpoint away again, are both taken. Before, the bodies' budget was the largest of no
    endpoints' ``max_body``: serve stopped at start with a TypeError's traceback (exit 1), and
    the reload to no endpoint was logged failed after it had half applied (the endpoint gone,
    the dispatcher reloaded)."""
    args, base, _ = serve_args(tmp_path, {"empty.yaml": ""})
    config = tmp_path / "cfg"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        assert log.events("hub_ready")[0]["endpoints"] == []
        lead = {"email": "late@example.com"}
        assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 404

        (config / "forms.yaml").write_text(CONFIG)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 200

        (config / "forms.yaml").unlink()
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(log.events("config_reloaded")) == 2, what="the second reload")
        assert log.events("config_reloaded")[1]["endpoints_removed"] == ["forms"]
        assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 404
        assert not log.events("config_reload_failed")


def test_a_reload_bringing_in_a_variable_that_is_not_utf8_changes_nothing(tmp_path: Path) -> None:
    """A reload bringing in an endpoint whose secret comes from a variable holding bytes that
    are not UTF-8 changes nothing, and says where. The loader took such a value and the
    ingest's routes could not be built of it, after the dispatcher had reloaded: the reload
    was logged failed (a traceback) and /hooks served the old endpoints, while the
    dispatcher mapped every lead with the new mappings. (The loader now refuses it at its
    line; the routes are built before anything changes all the same: Ingest.prepare.)"""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    config = tmp_path / "cfg"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    env = {**ENV, "SIGNED_SECRET": "caf\udce9"}  # (the bytes b"caf\xe9": Latin-1)
    changed = CONFIG + "  Source: { value: Reloaded }\n"
    signed = "kind: endpoint\nname: signed\nsource: typeform\nsecret: ${SIGNED_SECRET}\n"
    with leadhub_process(args, ready_url=f"{base}/readyz", env=env) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        (config / "forms.yaml").write_text(changed)
        (config / "signed.yaml").write_text(signed)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reload_failed")), what="the refusal")
        (failed,) = log.events("config_reload_failed")
        where = f"{config / 'signed.yaml'}:4: variable ${{SIGNED_SECRET}} holds bytes that"
        assert any(error.startswith(where) for error in failed["errors"]), failed
        assert not log.events("dispatcher_reloaded") and not log.events("config_reloaded")
        assert httpx.post(f"{base}/hooks/signed", json={}).status_code == 404
        lead = {"email": "unchanged@example.com"}
        assert httpx.post(f"{base}/hooks/forms", json=lead, headers=auth).status_code == 200
        wait_until(lambda: _delivered(base) == 1, what="the lead")
        (sent,) = lead_by_email(base, "unchanged@example.com")
        assert "Source" not in sent, sent  # mapped as before the reload
        metrics = httpx.get(f"{base}/metrics").text
        assert 'leadhub_config_reloads_total{outcome="failed"} 1.0' in metrics
