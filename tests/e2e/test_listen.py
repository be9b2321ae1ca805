"""Where ``leadhub serve`` listens: the address it announces and gives the embedded sandbox's
target is the one it bound, also for ``--port 0``."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.e2e.support import lead_by_email, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN, _delivered
from tests.e2e.test_reload import Log
from tests.support.server import leadhub_process, leadhub_run


def _args(tmp_path: Path, port: int) -> list[str]:
    config = tmp_path / "cfg"
    config.mkdir(exist_ok=True)
    (config / "forms.yaml").write_text(CONFIG)
    return [
        "serve",
        "--config-dir",
        str(config),
        "--port",
        str(port),
        "--db",
        f"sqlite:///{tmp_path}/hub.db",
        "--log-json",
    ]


def test_port_0_announces_the_bound_port_and_delivers_into_the_sandbox(tmp_path: Path) -> None:
    """With ``--port 0`` the ready line names the port the system chose, and the dispatcher
    reaches the embedded sandbox there (it was told port 0 and never delivered)."""
    with leadhub_process(_args(tmp_path, 0), env=ENV) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        (ready,) = log.events("hub_ready")
        base = ready["url"]
        port = int(base.rsplit(":", 1)[1])
        assert port > 0 and ready["sandbox"] == f"{base}/sandbox"
        lead = {"email": "port.zero@example.com"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = httpx.post(f"{base}/hooks/forms", json=lead, headers=auth)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: _delivered(base) == 1, what="the lead in the sandbox")
        assert lead_by_email(base, "port.zero@example.com")


def test_a_port_in_use_stops_serve_before_it_opens_the_store(tmp_path: Path) -> None:
    """Another process holds the port: one line says so, exit 1, no traceback, and no
    database was created."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = leadhub_run(_args(tmp_path, port), env=ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert (
        f"leadhub serve: startup failed: cannot listen on http://127.0.0.1:{port}: "
        "Address already in use" in result.stderr
    )
    assert "Traceback" not in output
    assert not (tmp_path / "hub.db").exists()


def test_a_port_in_use_on_every_interface_says_every_interface(tmp_path: Path) -> None:
    """``--host 0.0.0.0`` (the image's ``LEADHUB_HOST``) and the port taken: the line says the
    bind was on every interface, not only ``http://127.0.0.1:PORT`` (the URL the hub reaches
    itself at), which sent a user looking for a process on the loopback address alone."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        flag = leadhub_run([*_args(tmp_path, port), "--host", "0.0.0.0"], env=ENV)
        image = leadhub_run(_args(tmp_path, port), env={**ENV, "LEADHUB_HOST": "0.0.0.0"})
    assert flag.returncode == image.returncode == 1, flag.stderr + image.stderr
    said = f"cannot listen on http://127.0.0.1:{port} ({{}}: every interface): Address already"
    assert said.format("--host 0.0.0.0") in flag.stderr
    assert said.format("LEADHUB_HOST=0.0.0.0") in image.stderr


def test_uvicorns_own_warnings_are_json_lines_too(tmp_path: Path) -> None:
    """A warning uvicorn logs itself (a CONNECT, an upgrade it does not support; an
    ``Upgrade: h2c`` offer is read as HTTP/1.1 without a word) is a JSON line, like every
    other (it was bare text on standard error). A request it cannot parse is the
    hub's own ``delivery_received`` line (rejected, ``unreadable``, 400), not uvicorn's
    "Invalid HTTP request received." warning as well."""
    with leadhub_process(_args(tmp_path, 0), env=ENV) as proc:
        log = Log(proc)
        wait_until(lambda: bool(log.events("hub_ready")), what="the ready line")
        base = log.events("hub_ready")[0]["url"]
        host, port = base.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(b"CONNECT /healthz HTTP/1.1\r\nhost: hub\r\n\r\n")
            assert conn.recv(1024).startswith(b"HTTP/1.1 405")
        wait_until(
            lambda: bool(log.events("Unsupported upgrade request.")), what="uvicorn's warning"
        )
        (warning,) = log.events("Unsupported upgrade request.")
        assert (warning["logger"], warning["level"]) == ("uvicorn.error", "warning")
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert conn.recv(1024).startswith(b"HTTP/1.1 400")
        wait_until(lambda: bool(log.events("delivery_received")), what="the refusal's line")
        (refused,) = log.events("delivery_received")
        assert (refused["outcome"], refused["reason"], refused["status"]) == (
            "rejected",
            "unreadable",
            400,
        )
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert log.events("hub_stopped")
        assert log.events("Invalid HTTP request received.") == []
    assert log.text == []
