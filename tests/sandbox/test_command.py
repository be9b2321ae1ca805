"""``leadhub sandbox`` as a real subprocess: ready line, capture, read back, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.sandbox.db import SandboxDB
from hub.store import open_store
from tests.sandbox.helpers import CAPTURE, body, sandbox_args, sigterm_while_a_call_is_held
from tests.support.server import HUP_WHILE_LOADING, REPO, free_port, leadhub_process, leadhub_run

DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)

ACCESS = "cli-access-key"
SECRET = "cli-secret-value-9f3a"
#: Seconds a ``leadhub sandbox`` process may take to refuse its arguments, to stop, or to
#: answer a call: a hang guard, not a measure. On two cores at a load of 40 a refused start
#: took up to 27 s and a clean stop 8 s (tests/sandbox/test_db_file.py, whose guards were
#: raised so); here they were 20 s, 30 s and 15 s, and a client's 5 s (httpx's default).
HANG = 120.0


def _args(port: int, *extra: str) -> list[str]:
    return sandbox_args(port, ACCESS, SECRET, *extra)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=HANG)
    out = proc.stdout.read() if proc.stdout else ""
    return code, out


@pytest.mark.slow
def test_sandbox_command_serves_captures_and_stops_cleanly_on_sigterm() -> None:
    """`leadhub sandbox` logs one ready line without the secret, captures and reads back a
    lead, and exits 0 on SIGTERM."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with leadhub_process(_args(port, "--rate-limit", "off"), ready_url=base + "/") as proc:
        params = {"accessKey": ACCESS, "secretKey": SECRET}
        with httpx.Client(base_url=base, params=params, timeout=HANG) as client:
            created = client.post(CAPTURE, json=body(("EmailAddress", "cli@example.com")))
            assert created.status_code == 200, created.text
            lead_id = created.json()["Message"]["RelatedId"]
            found = client.get("/v2/LeadManagement.svc/Leads.GetById", params={"id": lead_id})
            assert found.json()[0]["EmailAddress"] == "cli@example.com"
        code, out = _stop(proc)
    assert code == 0, out
    assert SECRET not in out
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    ready = [line for line in lines if line["event"] == "sandbox_ready"]
    assert len(ready) == 1
    assert (ready[0]["url"], ready[0]["rate_limit"]) == (base, "off")
    assert ready[0]["keys"] == "--access-key / --secret-key"


def test_a_hangup_is_logged_and_the_sandbox_serves_on() -> None:
    """SIGHUP (serve's reload signal, sent to every leadhub process by a config watcher or
    ``docker kill -s HUP``) is logged and changes nothing: its default action ended the
    sandbox at once, without a line (exit 129), and its leads in memory with it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with leadhub_process(_args(port), ready_url=base + "/") as proc:
        params = {"accessKey": ACCESS, "secretKey": SECRET}
        with httpx.Client(base_url=base, params=params, timeout=HANG) as client:
            created = client.post(CAPTURE, json=body(("EmailAddress", "hup@example.com")))
            lead_id = created.json()["Message"]["RelatedId"]
            proc.send_signal(signal.SIGHUP)
            seen = ""
            deadline = time.monotonic() + 30
            while "sandbox_hangup_ignored" not in seen and time.monotonic() < deadline:
                assert proc.poll() is None, f"a SIGHUP ended the sandbox:\n{seen}"
                time.sleep(0.05)
                seen += proc.stdout.read() if proc.stdout else ""
            assert "sandbox_hangup_ignored" in seen, seen
            found = client.get("/v2/LeadManagement.svc/Leads.GetById", params={"id": lead_id})
            assert [lead["ProspectID"] for lead in found.json()] == [lead_id]
        code, out = _stop(proc)
    assert code == 0, seen + out
    assert "sandbox_stopped" in out


def test_a_hangup_while_the_sandbox_starts_is_logged_and_it_serves(tmp_path: Path) -> None:
    """A SIGHUP while the sandbox loads its modules, before its own handler is in place, is
    logged once and changes nothing, as one while it serves: its default action ended the
    starting sandbox (exit 129, no line), as it did serve before ``leadhub`` guarded it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output = tmp_path / "sandbox.log"  # (a file, read as it grows: see leadhub_process)
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", HUP_WHILE_LOADING, *_args(port)],
            cwd=str(REPO),
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 120  # (a hang guard: a start under load takes 30 s)
        while "sandbox_ready" not in output.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
        assert proc.poll() is None, f"exit {proc.returncode}:\n{output.read_text()}"
        params = {"accessKey": ACCESS, "secretKey": SECRET}
        captured = body(("EmailAddress", "early@example.com"))
        created = httpx.post(base + CAPTURE, params=params, json=captured, timeout=60)
        assert created.status_code == 200, created.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = output.read_text().splitlines()
    events = [orjson.loads(line)["event"] for line in lines if line.startswith("{")]
    assert events.count("sandbox_hangup_ignored") == 1, events
    assert events.index("sandbox_hangup_ignored") < events.index("sandbox_ready")
    assert events[-1] == "sandbox_stopped"


@pytest.mark.slow
def test_sandbox_command_keeps_leads_in_its_db_file_across_restarts(tmp_path: Path) -> None:
    """With --db, a lead captured before a restart is still there after it."""
    db = str(tmp_path / "sandbox.db")
    params = {"accessKey": ACCESS, "secretKey": SECRET}
    lead_id = None
    for _ in range(2):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with leadhub_process(_args(port, "--db", db), ready_url=base + "/") as proc:
            with httpx.Client(base_url=base, params=params, timeout=HANG) as client:
                if lead_id is None:
                    response = client.post(CAPTURE, json=body(("EmailAddress", "keep@example.com")))
                    lead_id = response.json()["Message"]["RelatedId"]
                else:
                    path = "/v2/LeadManagement.svc/Leads.GetByEmailaddress"
                    found = client.get(path, params={"emailaddress": "keep@example.com"})
                    assert [lead["ProspectID"] for lead in found.json()] == [lead_id]
            code, out = _stop(proc)
            assert code == 0, out


@pytest.mark.slow
def test_sigterm_stops_the_sandbox_while_a_timeout_fault_holds_a_call() -> None:
    """A call held by a timeout fault (here for an hour) does not hold up a stop: on SIGTERM
    the held call's connection is closed unanswered and the command exits 0 at once."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    params = {"accessKey": ACCESS, "secretKey": SECRET}
    with leadhub_process(_args(port, "--rate-limit", "off"), ready_url=base + "/") as proc:
        stopped = sigterm_while_a_call_is_held(proc, base, params, hold=3600)
    assert stopped.code == 0  # it exited while the call was still held
    # A hang guard, not a measure of speed: a stop that waited for the call would take an hour.
    assert stopped.seconds < 60, f"SIGTERM took {stopped.seconds:.1f} s"
    assert len(stopped.raised) == 1 and isinstance(stopped.raised[0], DROPPED)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback here")
def test_the_ready_line_of_an_ipv6_sandbox_is_a_url() -> None:
    """--host ::1: the ready line's url is http://[::1]:PORT, which a client can call (it was
    http://::1:PORT, which none reads)."""
    port = free_port()
    base = f"http://[::1]:{port}"
    args = _args(port, "--host", "::1", "--rate-limit", "off")
    with leadhub_process(args, ready_url=base + "/") as proc:
        code, out = _stop(proc)
    assert code == 0, out
    assert _ready_line(out)["url"] == base


SERVE_ACCESS = "serve-named-access-4c1d"
SERVE_SECRET = "serve-named-secret-77ab"


def _ready_line(out: str) -> dict[str, Any]:
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    ready = [line for line in lines if line["event"] == "sandbox_ready"]
    assert len(ready) == 1, out
    found: dict[str, Any] = ready[0]
    return found


def _capture_status(base: str, access: str, secret: str) -> int:
    params = {"accessKey": access, "secretKey": secret}
    with httpx.Client(base_url=base, params=params, timeout=HANG) as client:
        answer = client.post(CAPTURE, json=body(("EmailAddress", f"{access}@example.com")))
    return answer.status_code


@pytest.mark.slow
def test_sandbox_command_takes_the_keys_serves_embedded_sandbox_reads() -> None:
    """``serve``'s embedded sandbox reads LEADHUB_SANDBOX_ACCESS_KEY / _SECRET_KEY / _RATE_LIMIT;
    the standalone sandbox read only LEADHUB_ACCESS_KEY / _SECRET_KEY / _RATE_LIMIT, so keys
    set under serve's names were silently sandbox / sandbox. Without the flag or its
    LEADHUB_<FLAG>, it now takes serve's names: a Lead.Capture with those keys is accepted,
    one with the defaults refused, and the ready line says where the keys came from."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LEADHUB_SANDBOX_ACCESS_KEY": SERVE_ACCESS,
        "LEADHUB_SANDBOX_SECRET_KEY": SERVE_SECRET,
        "LEADHUB_SANDBOX_RATE_LIMIT": "off",
    }
    args = ["sandbox", "--port", str(port)]
    with leadhub_process(args, ready_url=base + "/", env=env) as proc:
        accepted = _capture_status(base, SERVE_ACCESS, SERVE_SECRET)
        defaults = _capture_status(base, "sandbox", "sandbox")
        code, out = _stop(proc)
    assert (accepted, defaults) == (200, 401), out
    assert code == 0, out
    assert SERVE_ACCESS not in out and SERVE_SECRET not in out
    ready = _ready_line(out)
    assert ready["keys"] == "LEADHUB_SANDBOX_ACCESS_KEY / LEADHUB_SANDBOX_SECRET_KEY"
    assert ready["rate_limit"] == "off"


@pytest.mark.slow
def test_the_flag_then_leadhub_flag_win_over_serves_names() -> None:
    """With all three given, the flag wins (--secret-key), then LEADHUB_<FLAG>
    (LEADHUB_ACCESS_KEY, LEADHUB_RATE_LIMIT); serve's names are read only when both are
    absent: a call with serve's keys is refused."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LEADHUB_SANDBOX_ACCESS_KEY": SERVE_ACCESS,
        "LEADHUB_SANDBOX_SECRET_KEY": SERVE_SECRET,
        "LEADHUB_SANDBOX_RATE_LIMIT": "fast",  # never read: LEADHUB_RATE_LIMIT is set
        "LEADHUB_ACCESS_KEY": ACCESS,
        "LEADHUB_RATE_LIMIT": "7/1s",
    }
    args = ["sandbox", "--port", str(port), "--secret-key", SECRET]
    with leadhub_process(args, ready_url=base + "/", env=env) as proc:
        accepted = _capture_status(base, ACCESS, SECRET)
        serves = _capture_status(base, SERVE_ACCESS, SERVE_SECRET)
        code, out = _stop(proc)
    assert (accepted, serves) == (200, 401), out
    assert code == 0, out
    ready = _ready_line(out)
    assert ready["keys"] == "LEADHUB_ACCESS_KEY / --secret-key"
    assert ready["rate_limit"] == "7/1s"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG,
        env=None if env is None else {**os.environ, **env},
    )


def test_the_sandbox_refuses_the_hubs_event_store(tmp_path: Path) -> None:
    """LEADHUB_DB, serve's store URL (the container image sets it), is also the sandbox's --db:
    the sandbox wrote its tables into the hub's queue. Now it refuses that file (exit 2),
    naming the variable, and leaves it as it was."""
    db = tmp_path / "leadhub.db"

    async def make() -> None:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        await store.close()

    asyncio.run(make())
    before = _tables(db)
    result = _run(*_args(free_port()), env={"LEADHUB_DB": f"sqlite:///{db}"})
    assert result.returncode == 2, result.stderr
    assert f"LEADHUB_DB='sqlite:///{db}' cannot be used" in result.stderr
    assert "holds a leadhub event store" in result.stderr
    assert _tables(db) == before and "leads" not in before


def test_the_sandbox_refuses_another_application_s_database(tmp_path: Path) -> None:
    """A --db naming another application's SQLite database (a typo), not empty and holding
    none of the sandbox's tables: the sandbox added its tables beside that application's and
    wrote its leads there. It refuses the file (exit 2), naming its tables and what to do,
    and leaves it as it was."""
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.close()
    before = db.read_bytes()
    result = _run(*_args(free_port(), "--db", str(db)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"leadhub sandbox: --db {str(db)!r} cannot be used: it holds another database's tables "
        "(customers) and none of the sandbox's, so the sandbox writes nothing there; check "
        "that --db names the sandbox's file, or give the sandbox a file of its own, e.g. "
        "sandbox.db"
    )
    assert db.read_bytes() == before


def test_serve_refuses_the_sandboxs_database(tmp_path: Path) -> None:
    """The other way round: a sandbox run first (``leadhub sandbox`` in the container, where
    LEADHUB_DB is set) made its leads in the file, and serve added the hub's tables beside
    them, from then on a file the sandbox refused. serve refuses it now (exit 1, at once even
    with --store-wait), saying what it holds and what to do, and leaves it as it was."""
    db = tmp_path / "leadhub.db"
    sandbox = SandboxDB(str(db))
    sandbox.close()
    before = _tables(db)
    config = tmp_path / "config"
    config.mkdir()
    (config / "hub.yaml").write_text(
        "kind: endpoint\nname: e\nsource: token\ntoken: t\n---\n"
        "name: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
    )
    result = leadhub_run(
        ["serve", "--config-dir", str(config), "--port", "0", "--store-wait", "1m"],
        env={"LEADHUB_DB": f"sqlite:///{db}"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"{str(db)!r} is no event store: it holds the Lead.Capture sandbox's leads (its leads "
        "and activities tables; leadhub sandbox --db reads LEADHUB_DB too); give the hub a "
        "file of its own, like sqlite:///leadhub.db, and the sandbox another (--db sandbox.db)"
    ) in result.stdout
    assert "store_waiting" not in result.stdout
    assert _tables(db) == before and "events" not in before and "leads" in before


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


@pytest.mark.parametrize(
    ("env", "flags", "named"),
    [
        ({"LEADHUB_ACCESS_KEY": ""}, [], "LEADHUB_ACCESS_KEY=''"),
        ({"LEADHUB_SECRET_KEY": "  "}, [], "LEADHUB_SECRET_KEY='  '"),
        ({"LEADHUB_SANDBOX_ACCESS_KEY": ""}, [], "LEADHUB_SANDBOX_ACCESS_KEY=''"),
        ({"LEADHUB_SANDBOX_SECRET_KEY": " "}, [], "LEADHUB_SANDBOX_SECRET_KEY=' '"),
        ({}, ["--access-key", ""], "argument --access-key"),
        ({}, ["--secret-key", ""], "argument --secret-key"),
    ],
)
def test_sandbox_command_refuses_an_empty_key(
    env: dict[str, str], flags: list[str], named: str
) -> None:
    """An empty (or blank) key is a usage error naming the variable or flag it came from: the
    sandbox compares a call's key with it, so it let in any call sending an empty accessKey=
    or secretKey= (it served on, keyless in effect)."""
    port = str(free_port())
    result = leadhub_run(
        ["sandbox", "--port", port, *flags], env=env, leadhub_env=False, timeout=HANG
    )
    assert result.returncode == 2, result.stderr
    assert f"leadhub sandbox: error: {named}: an empty key is matched" in result.stderr
    assert "sandbox_ready" not in result.stdout


@pytest.mark.parametrize(
    ("env", "flags", "named", "said"),
    [
        ({}, ["--access-key", "cl\u00e9-9f3a"], "argument --access-key", "not ASCII (U+00E9)"),
        ({}, ["--secret-key", "pasted\u2026"], "argument --secret-key", "not ASCII (U+2026)"),
        ({}, ["--secret-key", "line\nbreak"], "argument --secret-key", "control character"),
        (
            {"LEADHUB_SANDBOX_SECRET_KEY": "cl\u00e9-9f3a"},
            [],
            "LEADHUB_SANDBOX_SECRET_KEY",
            "not ASCII (U+00E9)",
        ),
        ({"LEADHUB_ACCESS_KEY": "cl\u00e9-9f3a"}, [], "LEADHUB_ACCESS_KEY", "not ASCII (U+00E9)"),
    ],
)
def test_sandbox_command_refuses_a_key_no_header_carries(
    env: dict[str, str], flags: list[str], named: str, said: str
) -> None:
    """A key holding a character no HTTP header carries is a usage error naming the flag or
    variable and the character, never the key, as serve refuses it for its embedded sandbox:
    the sandbox served, and every call sending the key in x-LSQ-AccessKey / x-LSQ-SecretKey
    (as the hub does; curl sends its UTF-8 bytes) was a 401."""
    port = str(free_port())
    result = leadhub_run(
        ["sandbox", "--port", port, *flags], env=env, leadhub_env=False, timeout=HANG
    )
    assert result.returncode == 2, result.stderr
    assert f"leadhub sandbox: error: {named}: the key holds a" in result.stderr
    assert said in result.stderr
    assert "9f3a" not in result.stderr
    assert "sandbox_ready" not in result.stdout


@pytest.mark.parametrize(
    ("env", "flags", "named"),
    [
        ({}, ["--db", ""], "argument --db"),
        ({}, ["--db", " "], "argument --db"),
        ({}, ["--db", "sqlite:///"], "argument --db"),
        ({"LEADHUB_DB": ""}, [], "LEADHUB_DB=''"),
    ],
)
def test_sandbox_command_refuses_an_empty_db(
    env: dict[str, str], flags: list[str], named: str
) -> None:
    """An empty --db (a LEADHUB_DB= a template left blank, --db "$VAR" with the variable
    unset) is a usage error naming where it came from: it served with its leads in memory,
    lost at the next stop, where serve refuses an empty --db."""
    port = str(free_port())
    result = leadhub_run(
        ["sandbox", "--port", port, *flags], env=env, leadhub_env=False, timeout=HANG
    )
    assert result.returncode == 2, result.stderr
    said = f"leadhub sandbox: error: {named}: an empty database would keep the sandbox's leads"
    assert said in result.stderr
    assert "sandbox_ready" not in result.stdout


def test_sandbox_command_refuses_a_bad_rate_limit() -> None:
    """A --rate-limit that is not N/Ws or off exits 2 with a message quoting it."""
    result = _run(*_args(free_port(), "--rate-limit", "fast"))
    assert result.returncode == 2
    assert "'fast'" in result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEADHUB_SANDBOX_RATE_LIMIT": "fast"}, "LEADHUB_SANDBOX_RATE_LIMIT: 'fast'"),
        ({"LEADHUB_SANDBOX_RATE_LIMIT": ""}, "LEADHUB_SANDBOX_RATE_LIMIT: ''"),
        ({"LEADHUB_RATE_LIMIT": "fast"}, "LEADHUB_RATE_LIMIT: 'fast'"),
    ],
)
def test_sandbox_command_names_the_variable_of_a_bad_rate_limit(
    env: dict[str, str], named: str
) -> None:
    """A bad (or empty) rate limit from a variable exits 2 naming that variable: the message
    said --rate-limit, a flag the user never typed."""
    port = str(free_port())
    result = leadhub_run(["sandbox", "--port", port], env=env, leadhub_env=False, timeout=HANG)
    assert result.returncode == 2, result.stderr
    assert f"leadhub sandbox: {named} is not a rate limit" in result.stderr
    assert "sandbox_ready" not in result.stdout


def test_sandbox_command_refuses_an_unusable_db(tmp_path: Path) -> None:
    """A --db whose directory cannot be made (a file in its way) exits 2 with a message
    naming it and what to check, not a traceback."""
    (tmp_path / "taken").write_text("not a directory")
    db = str(tmp_path / "taken" / "sandbox.db")
    result = _run(*_args(free_port(), "--db", db))
    assert result.returncode == 2, result.stderr
    assert db in result.stderr
    assert "Traceback" not in result.stderr
    assert "check that its directory exists and is writable (the directory of --db)" in (
        result.stderr
    )


def test_sandbox_command_makes_the_missing_directories_of_its_db(tmp_path: Path) -> None:
    """A --db in directories that do not exist yet (a fresh volume, ``data/`` in a new
    checkout) is made there, as serve makes its store's: it exited 2 with SQLite's bare
    "unable to open database file". The leads are in that file."""
    db = tmp_path / "fresh" / "volume" / "sandbox.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with leadhub_process(_args(port, "--db", str(db)), ready_url=base + "/") as proc:
        response = httpx.post(
            base + CAPTURE,
            params={"accessKey": ACCESS, "secretKey": SECRET},
            json=body(("EmailAddress", "fresh@example.com")),
            timeout=HANG,
        )
        assert response.status_code == 200, response.text
        code, out = _stop(proc)
    assert code == 0, out
    lead_id = response.json()["Message"]["RelatedId"]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id FROM leads WHERE email_key = 'fresh@example.com'")
        assert [row[0] for row in rows] == [lead_id]


def test_sandbox_command_exits_1_when_the_port_is_taken() -> None:
    """When the port is already bound, the command logs sandbox_failed and exits 1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _run(*_args(taken.getsockname()[1]))
    assert result.returncode == 1
    assert "sandbox_failed" in result.stdout


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_sandbox_command_refuses_a_database_url_that_is_not_sqlite(how: str) -> None:
    """A PostgreSQL URL for --db (or LEADHUB_DB, serve's store, which the sandbox takes too)
    was "unable to open database file", its password shown. Now it exits 2 saying the
    sandbox takes a SQLite file only, the password masked."""
    url = "postgresql://hub:hunter2@127.0.0.1:5432/leadhub"
    if how == "flag":
        result = _run(*_args(free_port(), "--db", url))
        named = "--db 'postgresql://hub:***@127.0.0.1:5432/leadhub'"
    else:
        result = _run(*_args(free_port()), env={"LEADHUB_DB": url})
        named = "LEADHUB_DB='postgresql://hub:***@127.0.0.1:5432/leadhub'"
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"leadhub sandbox: {named} is not a SQLite file: the sandbox keeps its leads in a "
        "SQLite file only (a path, or sqlite:///path.db); give --db one, or leave it out to "
        "keep them in memory"
    )
    assert "hunter2" not in result.stderr + result.stdout


def test_a_sqlite_url_s_escapes_are_decoded_as_serve_decodes_them(tmp_path: Path) -> None:
    """``--db sqlite:///.../my%20leads.db`` keeps the leads in ``my leads.db``, as serve reads
    its store's URL (and names its embedded sandbox's file after it): the sandbox made a file
    named ``my%20leads.db``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{tmp_path}/my%20leads.db"
    with leadhub_process(_args(port, "--db", url), ready_url=base + "/") as proc:
        params = {"accessKey": ACCESS, "secretKey": SECRET}
        captured = body(("EmailAddress", "space@example.com"))
        created = httpx.post(base + CAPTURE, params=params, json=captured, timeout=60)
        assert created.status_code == 200, created.text
        code, out = _stop(proc)
    assert code == 0, out
    assert sorted(f.name for f in tmp_path.iterdir()) == ["my leads.db"]
    kept = SandboxDB(str(tmp_path / "my leads.db"))
    try:
        assert kept.lead_by_email("space@example.com") is not None
    finally:
        kept.close()


@pytest.mark.parametrize(
    ("db", "said"),
    [
        (
            "{dir}/leads.db?synchronous=normal",
            "has URL options after its path; the sandbox's file takes none (?synchronous=, "
            "?writer= and ?stall_after= are options of serve's store): give --db the file "
            "alone, like 'sqlite:///{dir}/leads.db'",
        ),
        ("{dir}/leads.db?", "give --db the file alone, like 'sqlite:///{dir}/leads.db'"),
        (
            "{dir}/a#b.db",
            "has a '#', which ends a URL's path; write it %23 (and a '?' %3F), like "
            "'sqlite:///{dir}/a%23b.db'",
        ),
    ],
)
@pytest.mark.parametrize("given", ["flag", "variable"])
def test_a_sqlite_url_with_options_is_refused_not_made_a_file_name(
    tmp_path: Path, db: str, said: str, given: str
) -> None:
    """``sqlite:///x.db?synchronous=normal`` (serve's store URL, as the image's LEADHUB_DB may
    be) made a file named ``x.db?synchronous=normal``, and ``a#b.db`` one named so: the URL
    is refused (exit 2) saying what to write, and nothing is made."""
    url = "sqlite:///" + db.format(dir=tmp_path)
    if given == "flag":
        result = _run(*_args(free_port(), "--db", url))
        named = f"--db {url!r}"
    else:
        result = _run(*_args(free_port()), env={"LEADHUB_DB": url})
        named = f"LEADHUB_DB={url!r}"
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"leadhub sandbox: {named} " in result.stderr, result.stderr
    assert said.format(dir=tmp_path) in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("db", "written"),
    [("file:x.db", "x.db"), ("sqlite:///file:d/x.db", "d/x.db"), ("FILE:x.db?mode=rwc", "x.db")],
)
def test_a_db_in_sqlite_s_uri_form_is_refused_making_nothing(
    tmp_path: Path, db: str, written: str
) -> None:
    """``--db file:x.db`` (SQLite's URI form, alone or after ``sqlite:///``) made a file, or
    for ``file:d/x.db`` a directory, named ``file:...`` in the working directory: it is
    refused (exit 2) saying the path to give, and nothing is made."""
    result = subprocess.run(
        [sys.executable, "-m", "hub", *_args(free_port(), "--db", db)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"leadhub sandbox: --db {db!r} is in SQLite's URI form")
    assert f"; write {written!r}\n" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def _start_events(*args: str) -> dict[str, dict[str, Any]]:
    """The lines of ``leadhub sandbox ARGS`` (on a free port) run until ready, then stopped."""
    port = free_port()
    with leadhub_process(
        ["sandbox", "--port", str(port), *args], ready_url=f"http://127.0.0.1:{port}/"
    ) as proc:
        code, out = _stop(proc)
    assert code == 0, out
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {str(line["event"]): line for line in lines}


@pytest.mark.slow
def test_a_sandbox_with_the_default_keys_on_every_interface_is_warned_of() -> None:
    """``--host 0.0.0.0`` with the default keys answers anyone reaching the port with the keys
    everyone knows (every lead at ``/_sandbox/leads``) and said nothing, where serve's
    embedded sandbox logs ``sandbox_exposed``: now this one does too, with what to give.
    Keys of one's own, or a loopback host in any form (``127.1``), are not warned of."""
    events = _start_events("--host", "0.0.0.0")
    warning = events["sandbox_exposed"]
    assert warning["level"] == "warning"
    assert warning["host"] == "0.0.0.0"
    assert warning["keys"] == "sandbox / sandbox (the defaults, known to anyone)"
    assert "--access-key and --secret-key" in str(warning["fix"])
    assert warning["url"] == events["sandbox_ready"]["url"]
    own = _start_events("--host", "0.0.0.0", "--access-key", ACCESS, "--secret-key", SECRET)
    assert "sandbox_exposed" not in own
    assert "sandbox_ready" in own
    assert "sandbox_exposed" not in _start_events("--host", "127.1")
