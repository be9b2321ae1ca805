"""``wait_http`` (tests.support.server) with a process: only that process's answer makes it
ready, not one from another process on its port (another test's server, a previous hub on a
port used again), and a process it started counts as its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.server import (
    _diag_listening,
    _proc_listening,
    free_port,
    serve_in_thread,
    wait_http,
)

#: A server answering "mine" on the port given, bound as soon as the port is free (tried
#: again while another listens on it).
MINE = """
import http.server, sys, time

class Mine(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"mine")

    def log_message(self, *args):
        pass

while True:
    try:
        server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Mine)
        break
    except OSError:
        time.sleep(0.05)
server.serve_forever()
"""


async def _other(request: Request) -> PlainTextResponse:
    return PlainTextResponse("other")


@contextlib.contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` run in a session of its own, killed with every process in it on exit."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_another_process_answering_on_the_port_is_not_the_process_being_ready() -> None:
    """Another server answers on the port while the process waits to bind it: the wait is
    not over (before, that answer made the process ready, and the test's requests went to
    the other server); once the other stops and the process binds the port, its answer is."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app = Starlette(routes=[Route("/", _other)])
    with contextlib.ExitStack() as other:
        other.enter_context(serve_in_thread(app, port=port))
        with started([sys.executable, "-c", MINE, str(port)]) as proc:
            assert httpx.get(url, timeout=10).text == "other"
            with pytest.raises(RuntimeError, match="another process listens on its port"):
                wait_http(url, timeout=2, proc=proc)
            other.close()  # the other server stops: the process binds the port
            wait_http(url, proc=proc)
            assert httpx.get(url, timeout=10).text == "mine"


def test_a_process_started_by_the_one_waited_for_is_its_own() -> None:
    """A server run by the process waited for (a shell, ``unshare --fork``) makes it ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    shell = f'"{sys.executable}" -c "$1" {port}; exit $?'  # (the shell forks: not an exec)
    with started(["sh", "-c", shell, "sh", MINE]) as proc:
        wait_http(url, timeout=60, proc=proc)
        assert httpx.get(url, timeout=10).text == "mine"
        assert proc.poll() is None


def test_the_kernels_socket_diagnostics_find_the_listening_sockets_proc_net_finds() -> None:
    """``wait_http`` asks the kernel over netlink which sockets listen on a port (reading
    ``/proc/net/tcp`` cost 7 ms of CPU a time): the same sockets ``/proc/net`` lists, IPv4 and
    IPv6, and neither a connection on that port nor a port bound without listening."""
    held = free_port()  # bound, not listening
    with contextlib.ExitStack() as stack:
        v4 = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        port = int(v4.getsockname()[1])
        listening = {f"socket:[{os.fstat(v4.fileno()).st_ino}]"}
        v6 = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        with contextlib.suppress(OSError):  # (a machine without IPv6: IPv4 alone)
            v6.bind(("::1", port))
            v6.listen()
            listening.add(f"socket:[{os.fstat(v6.fileno()).st_ino}]")
        client = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        accepted = stack.enter_context(v4.accept()[0])  # established, on the same port
        assert client.getpeername()[1] == accepted.getsockname()[1] == port
        assert _diag_listening(port) == _proc_listening(port) == listening
    assert _diag_listening(port) == _proc_listening(port) == set()
    assert _diag_listening(held) == _proc_listening(held) == set()
