"""``LEADHUB_METRICS_TOKEN``: ``GET /metrics`` asks for ``Authorization: Bearer <token>``.

Unset, ``/metrics`` is open (as the rest of the suite scrapes it). Set, a scrape without the
token is a 401 with ``WWW-Authenticate: Bearer``, counted and logged (never the token), in
every role, and still after a reload; ``/healthz`` and ``/readyz`` stay open. A value no
scraper could send, or a ``LEADHUB_METRICS_TOKEN_FILE``, is refused by ``serve`` (exit 2) and
by ``check``, as said.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from hub.clock import ManualClock
from hub.secrets import Secret
from hub.store import open_store
from hub.web.app import create_app, store_lifespan
from hub.web.metrics import ScrapeGuard
from tests.e2e.support import wait_until
from tests.e2e.test_crash import CONFIG, ENV
from tests.e2e.test_reload import Log
from tests.support.logs import logged
from tests.support.server import leadhub_process, leadhub_run, serve_args, serve_in_thread
from tests.web.conftest import make_config

SCRAPE_TOKEN = "scrape-Tok3n-4f9a"
WRONG = "guess-Tok3n-0000"
BEARER = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}


def refused(text: str, reason: str) -> float | None:
    """``leadhub_metrics_refused_total{reason}`` in a scrape's text, or None (no series)."""
    pattern = rf'^leadhub_metrics_refused_total\{{reason="{reason}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def assert_guarded(base: str) -> None:
    """``/metrics`` at ``base`` refuses every scrape without the token, and answers the one
    that sends it; the health endpoints ask for nothing."""
    for headers in (
        {},
        {"Authorization": f"Bearer {WRONG}"},
        {"Authorization": f"Basic {SCRAPE_TOKEN}"},  # (the token, but not as a bearer's)
        {"Authorization": "Bearer"},
        {"X-Token": SCRAPE_TOKEN},
    ):
        answer = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
        assert answer.status_code == 401, headers
        assert answer.json() == {"error": "unauthorized"}
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "leadhub_" not in answer.text
    head = httpx.head(f"{base}/metrics", timeout=10)
    assert head.status_code == 401 and head.headers["www-authenticate"] == "Bearer"
    for probe in ("/healthz", "/readyz"):
        assert httpx.get(f"{base}{probe}", timeout=10).status_code == 200, probe
    # the scheme in any case, more than one space before the token
    for sent in (f"Bearer {SCRAPE_TOKEN}", f"bearer   {SCRAPE_TOKEN}"):
        answer = httpx.get(f"{base}/metrics", headers={"Authorization": sent}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert "leadhub_store_up 1.0" in answer.text


def test_serve_with_a_metrics_token_refuses_scrapes_without_it_also_after_a_reload(
    tmp_path: Path,
) -> None:
    """``leadhub serve`` (role all) with ``LEADHUB_METRICS_TOKEN``: a scrape without the
    token, with another, or not as a bearer's is a 401 with ``WWW-Authenticate: Bearer``,
    counted in ``leadhub_metrics_refused_total`` and logged as ``metrics_refused`` without the
    token sent; the one sending it reads the metrics; the health endpoints stay open. A
    reload (SIGHUP) keeps it so. Before, ``/metrics`` told anyone who reached the port the
    endpoints, targets and store state."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    env = {**ENV, "LEADHUB_METRICS_TOKEN": SCRAPE_TOKEN}
    with leadhub_process(args, ready_url=f"{base}/healthz", env=env) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        assert log.events("hub_ready")[0]["metrics_auth"] == "bearer"
        assert_guarded(base)
        text = httpx.get(f"{base}/metrics", headers=BEARER, timeout=10).text
        assert refused(text, "no_token") == 5.0  # none, Basic, an empty Bearer, X-Token, HEAD
        assert refused(text, "wrong_token") == 1.0
        wait_until(lambda: bool(log.events("metrics_refused")), what="the refusals' lines")
        line = log.events("metrics_refused")[0]
        assert line["reason"] == "no_token" and line["status"] == 401

        (tmp_path / "cfg" / "more.yaml").write_text("")  # a reload that changes nothing else
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        assert_guarded(base)
        after = httpx.get(f"{base}/metrics", headers=BEARER, timeout=10).text
        assert 'leadhub_config_reloads_total{outcome="ok"} 1.0' in after
        assert refused(after, "no_token") == 10.0
    output = "".join(log.text) + "".join(str(line) for line in log.lines)
    assert SCRAPE_TOKEN not in output and WRONG not in output


@pytest.mark.parametrize("role", ["web", "worker"])
def test_every_role_that_serves_metrics_asks_for_the_token(tmp_path: Path, role: str) -> None:
    """A web and a worker process (the worker serves ``/metrics`` with no webhooks) ask for
    the token too."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--role", role)
    env = {**ENV, "LEADHUB_METRICS_TOKEN": SCRAPE_TOKEN}
    with leadhub_process(args, ready_url=f"{base}/healthz", env=env):
        assert_guarded(base)


def test_serve_without_a_metrics_token_serves_metrics_to_anyone(tmp_path: Path) -> None:
    """Unset, ``/metrics`` is open as before: no token asked, no refusal series, and the
    ready line says so."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    env = {k: v for k, v in ENV.items() if k != "LEADHUB_METRICS_TOKEN"}
    with leadhub_process(args, ready_url=f"{base}/healthz", env=env) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        assert log.events("hub_ready")[0]["metrics_auth"] is None
        answer = httpx.get(f"{base}/metrics", timeout=10)
        assert answer.status_code == 200 and "leadhub_store_up 1.0" in answer.text
        assert "leadhub_metrics_refused" not in answer.text


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    """A hub app served in this process with a metrics token; its base URL."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}", clock=ManualClock(1_700_000_000.0))
    app = create_app(
        config=make_config(tmp_path),
        store=store,
        lifespan_hooks=[store_lifespan(store)],
        metrics_token=Secret(SCRAPE_TOKEN),
    )
    with serve_in_thread(app) as url:
        yield url


def test_a_refused_scrape_is_logged_without_the_token(guarded: str) -> None:
    """Each refusal's ``metrics_refused`` line says why (``reason``, ``detail``) and never
    holds the token sent, nor the hub's; an admitted scrape logs no refusal."""
    with capture_logs() as logs:
        wrong = httpx.get(f"{guarded}/metrics", headers={"Authorization": f"Bearer {WRONG}"})
        (line,) = logged(logs, "metrics_refused")
        none = httpx.get(f"{guarded}/metrics")
        lines = logged(logs, "metrics_refused", 2)
        right = httpx.get(f"{guarded}/metrics", headers=BEARER)
    assert (wrong.status_code, none.status_code, right.status_code) == (401, 401, 200)
    assert line["reason"] == "wrong_token" and line["status"] == 401
    assert line["detail"] == "the bearer token does not match"
    assert lines[1]["reason"] == "no_token" and lines[1]["detail"] == "no Authorization header"
    assert len([x for x in logs if x["event"] == "metrics_refused"]) == 2
    for logged_line in logs:
        shown = repr(logged_line)
        assert SCRAPE_TOKEN not in shown and WRONG not in shown


def test_a_flood_of_refusals_logs_a_line_a_second_and_counts_each() -> None:
    """A scanner's flood: every refusal counted, at most one line a second per reason, the
    next one saying how many were left out (``unlogged``)."""
    from prometheus_client import CollectorRegistry

    now = [100.0]
    guard = ScrapeGuard(Secret(SCRAPE_TOKEN), CollectorRegistry(), monotonic=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(5):
            assert not guard.admits(f"Bearer {WRONG}")
        now[0] += 1.5
        assert not guard.admits(f"Bearer {WRONG}")
        assert guard.admits(f"Bearer {SCRAPE_TOKEN}")
    lines = [line for line in logs if line["event"] == "metrics_refused"]
    assert [line.get("unlogged") for line in lines] == [None, 4]
    assert guard.refused.labels("wrong_token")._value.get() == 6.0


BAD_TOKENS: list[Any] = [
    ("", "LEADHUB_METRICS_TOKEN is empty: give the token your scraper sends"),
    ("   ", "LEADHUB_METRICS_TOKEN is blank: give the token your scraper sends"),
    (f"{SCRAPE_TOKEN}\r", "LEADHUB_METRICS_TOKEN ends with a carriage return (\\r)"),
    (f" {SCRAPE_TOKEN}", "LEADHUB_METRICS_TOKEN starts with a space"),
    ("scrape\ntoken", "LEADHUB_METRICS_TOKEN holds a control character (U+000A) at character 7"),
    ("scrape…", "LEADHUB_METRICS_TOKEN holds a character that is not ASCII (U+2026)"),
]


@pytest.mark.parametrize(("value", "said"), BAD_TOKENS)
def test_a_token_no_scraper_could_send_is_refused_by_serve_and_check(
    tmp_path: Path, value: str, said: str
) -> None:
    """An empty token (a template left blank), one with a blank around it (an env file with
    Windows line endings) or a character a header cannot carry: ``serve`` exits 2 and
    ``check`` exits 1, both saying what to fix, never showing the value. Taken, /metrics was
    open (empty) or refused every scrape (401) with nothing said at start."""
    args, _, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    env = {**ENV, "LEADHUB_METRICS_TOKEN": value}
    served = leadhub_run(args, env=env)
    assert served.returncode == 2, served.stderr
    assert f"leadhub serve: {said}" in served.stderr
    checked = leadhub_run(["check", str(tmp_path / "cfg")], env=env)
    assert checked.returncode == 1, checked.stdout
    assert said in checked.stdout
    if value.strip():
        assert value.strip() not in served.stderr + checked.stdout


def test_check_knows_the_variable_and_refuses_its_file_form(tmp_path: Path) -> None:
    """``check`` with a good ``LEADHUB_METRICS_TOKEN`` warns of nothing (a variable it reads,
    not ``variable_unknown``). ``LEADHUB_METRICS_TOKEN_FILE`` (a Docker secret's way) is
    refused by ``check`` and ``serve``, saying where to give the token: only warned of as
    a variable nothing reads, /metrics was served open to whoever meant to shut it."""
    args, _, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    config = str(tmp_path / "cfg")
    env = {**ENV, "LEADHUB_METRICS_TOKEN": SCRAPE_TOKEN}
    checked = leadhub_run(["check", config], env=env)
    assert checked.returncode == 0, checked.stdout
    assert "0 warnings" in checked.stdout and "warning:" not in checked.stdout
    said = (
        "LEADHUB_METRICS_TOKEN_FILE is set, but the token is not read from a file: give it in "
        "LEADHUB_METRICS_TOKEN itself"
    )
    for extra in ({}, {"LEADHUB_METRICS_TOKEN": SCRAPE_TOKEN}):
        env = {**ENV, "LEADHUB_METRICS_TOKEN_FILE": str(tmp_path / "token"), **extra}
        checked = leadhub_run(["check", config], env=env)
        assert checked.returncode == 1 and said in checked.stdout, checked.stdout
        assert "warning:" not in checked.stdout  # (not also "nothing reads it")
        served = leadhub_run(args, env=env)
        assert served.returncode == 2 and f"leadhub serve: {said}" in served.stderr


def test_serve_help_names_the_variable() -> None:
    """``leadhub serve --help`` names the variable and what it does (and the embedded
    sandbox's own variables): a ``variable_unknown`` line sends the reader to ``--help``,
    which named only the flags' variables."""
    shown = leadhub_run(["serve", "--help"])
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "LEADHUB_METRICS_TOKEN, when set, is the token GET /metrics asks for" in text
    assert "LEADHUB_SANDBOX_ACCESS_KEY, LEADHUB_SANDBOX_SECRET_KEY and LEADHUB_SANDBOX_RATE" in text
