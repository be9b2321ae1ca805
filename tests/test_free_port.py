"""``free_port`` (tests.support.server): a port it gave is not given again, by this process or
by another test session on the machine, while the server it was picked for starts; that
server binds it all the same."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.support.server import REPO, free_port, leadhub_process

#: Another session's pick (a process of its own, its worker's block the same as this one's),
#: its counter at ``port``: it prints the port it was given.
OTHER_SESSION = """
import itertools, sys
from tests.support import server
port = int(sys.argv[1])
first = port - (port - server._FIRST) % server._BLOCK
server._picked = itertools.count(port - first)
print(server.free_port())
"""


def test_a_port_given_is_not_given_again_and_its_server_binds_it() -> None:
    """Sessions running at once (CI beside other runs) pick in the same blocks: one could pick
    a port another had picked and not bound yet (its server starting), and its server failed
    to bind while its wait was answered by the other's. Here the other session's pick, made
    right at that port, gets the next one; the server started on the port then binds it and
    answers there."""
    port = free_port()
    other = subprocess.run(
        [sys.executable, "-c", OTHER_SESSION, str(port)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(other.stdout) != port, other.stdout
    url = f"http://127.0.0.1:{port}"
    keys = ["--access-key", "held-port-key", "--secret-key", "held-port-secret"]
    with leadhub_process(["sandbox", "--port", str(port), *keys], ready_url=f"{url}/") as proc:
        headers = {"x-LSQ-AccessKey": "held-port-key", "x-LSQ-SecretKey": "held-port-secret"}
        answer = httpx.get(f"{url}/_sandbox/leads", headers=headers, timeout=10)
        assert (answer.status_code, answer.json()) == (200, [])  # this sandbox: its keys
        assert proc.poll() is None
