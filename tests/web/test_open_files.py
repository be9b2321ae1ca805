"""``leadhub serve`` raises its soft limit of open files to the hard one.

Found by a hostile sender: each connection takes a file descriptor, and a process out of
them has every new connection accepted and closed at once, with no line in the log. Under
the usual soft limit (1,024; systemd keeps it low for programs that use ``select()``, with a
hard limit of 524,288), about a thousand connections that each send a byte of a request now
and then (within the 30 s read wait) kept every sender out. Here the soft limit is 256:
400 such connections no longer keep a webhook out.

A real ``serve`` subprocess, started with the lowered soft limit (its hard one as this
process has it), and real sockets.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import leadhub_process, serve_args

pytestmark = pytest.mark.slow

CONFIG = """kind: endpoint
name: forms
source: token
token: open-files-test-token
"""
SOFT = 256
HELD = 400


@contextlib.contextmanager
def _soft_limit(soft: int) -> Iterator[None]:
    """This process's soft limit of open files lowered to ``soft`` (so a child started now
    has it), then put back."""
    was = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, was[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, was)


def test_connections_past_the_soft_limit_keep_no_webhook_out(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard < 4 * HELD:
        pytest.skip(f"the hard limit of open files ({hard}) leaves no room above {HELD}")
    args, url, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, "--log-json")
    host, port = url.removeprefix("http://").split(":")
    with contextlib.ExitStack() as stack:
        with _soft_limit(SOFT):
            proc = stack.enter_context(leadhub_process(args, ready_url=f"{url}/healthz"))
        for _ in range(HELD):  # each sends a part of a request's head, then waits
            sock = stack.enter_context(socket.create_connection((host, int(port)), timeout=30))
            sock.sendall(b"POST /hooks/forms HTTP/1.1\r\nhost: hub\r\n")
        answer = httpx.post(
            f"{url}/hooks/forms",
            json={"email": "open-files@example.com"},
            headers={"Authorization": "Bearer open-files-test-token"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted"
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        line = next(x for x in limits if x.startswith("Max open files")).split()
        assert (int(line[3]), int(line[4])) == (hard, hard)
        assert proc.stdout is not None
        ready = next(json.loads(x) for x in proc.stdout.read().splitlines() if "hub_ready" in x)
        assert ready["open_files"] == hard
