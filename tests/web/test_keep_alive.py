"""How long ``leadhub serve`` and ``leadhub sandbox`` keep an idle connection (``--keep-alive``).

At uvicorn's 5 s, a client whose pool kept idle connections as long (httpx's default), or a
load balancer keeping them longer (AWS's ALB: 60 s), sent requests on connections the server
was closing that instant: the request got no answer (the chaos soak's senders saw a
``ReadError`` now and then). The default is now longer than those; real processes, real
sockets.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.support.server import REPO, free_port, leadhub_process, leadhub_run, serve_args

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"
#: Longer than uvicorn's 5 s and httpx's pool's 5 s: the idle time a connection outlived.
IDLE = 6.5
#: The shipped targets alone (the embedded sandbox; no endpoint needs a secret).
TARGETS = {"targets.yaml": (REPO / "mappings" / "targets.yaml").read_text()}


def _answer(sock: socket.socket) -> bytes:
    """One answer's bytes (its head and the short body of /healthz); b"" if closed."""
    sock.settimeout(30)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        if not chunk:
            return got
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _idle_then_asked_again(url: str, idle: float) -> bytes:
    """Ask ``/healthz`` on a connection, leave it idle ``idle`` seconds, ask again on it: the
    second answer's head (b"" when the server closed the connection meanwhile)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(HEALTHZ)
        assert _answer(sock).startswith(b"HTTP/1.1 ")
        time.sleep(idle)
        try:
            sock.sendall(HEALTHZ)
            return _answer(sock)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_serve_keeps_an_idle_connection_longer_than_clients_pools_do(tmp_path: Path) -> None:
    args, url, _ = serve_args(tmp_path, TARGETS)
    with leadhub_process(args, ready_url=f"{url}/healthz"):
        assert _idle_then_asked_again(url, IDLE).startswith(b"HTTP/1.1 ")


def test_serve_closes_an_idle_connection_after_the_keep_alive_given(tmp_path: Path) -> None:
    args, url, _ = serve_args(tmp_path, TARGETS, "--keep-alive", "1s")
    with leadhub_process(args, ready_url=f"{url}/healthz"):
        assert _idle_then_asked_again(url, 4) == b""


def test_the_standalone_sandbox_keeps_an_idle_connection_as_serve_does() -> None:
    port = free_port()
    args = ["sandbox", "--port", str(port), "--access-key", "k", "--secret-key", "s"]
    url = f"http://127.0.0.1:{port}"
    with leadhub_process(args, ready_url=f"{url}/healthz"):
        assert _idle_then_asked_again(url, IDLE).startswith(b"HTTP/1.1 ")


@pytest.mark.parametrize("given", ["0s", "2h", "soon"])
def test_a_keep_alive_out_of_range_is_a_usage_error(tmp_path: Path, given: str) -> None:
    args, _, _ = serve_args(tmp_path, TARGETS)
    done = leadhub_run(args, env={"LEADHUB_KEEP_ALIVE": given})
    assert done.returncode == 2, done.stderr
    assert "LEADHUB_KEEP_ALIVE" in done.stderr and given in done.stderr, done.stderr
