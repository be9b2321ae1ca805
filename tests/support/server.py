"""Serve an ASGI app with uvicorn on a free loopback port, in a thread or a subprocess."""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

REPO = Path(__file__).resolve().parents[2]


#: Where :func:`free_port` picks: a block of ports per xdist worker, below the kernel's range
#: for the local ends of outgoing connections. A port the kernel hands out for "any port" (0)
#: comes from that range, so between the pick and a server's bind (in a subprocess, a second
#: later on a loaded machine) any client socket of any process could take it ("address already
#: in use"); a port below the range is only ever taken by a bind naming it.
_FIRST, _BLOCK = 20_000, 2_000
_picked = itertools.count(random.randrange(_BLOCK))
#: The sockets holding the ports :func:`free_port` gave lately, the oldest first: see there.
_held: collections.deque[socket.socket] = collections.deque()
#: How many of the latest ports stay held (a test takes a few; its hubs are started again on
#: the same port, so each stays held well after the test's first server bound it).
_HOLD = 64


@atexit.register
def _let_go() -> None:
    while _held:
        _held.popleft().close()


def _outgoing_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the range the
    kernel gives outgoing connections (so none takes it before the server binds it), and
    held for this process meanwhile.

    The blocks are per xdist worker, not per test session: sessions running at once on one
    machine (CI beside other runs) pick in the same block, and one could pick a port
    another had picked and not yet bound (its server still starting): its own server then
    failed to bind ("address already in use") while its wait for the port was answered by
    the other session's server, and its requests were refused once that one stopped. So the
    port stays bound here, by a socket that does not listen and allows reuse (set once the
    bind without it proved the port free): a server binding it as servers do (uvicorn, the
    hub, PostgreSQL: ``SO_REUSEADDR``) binds and listens beside it, and any other pick of
    it, here or in another session, fails to bind it and takes the next. It is let go once
    :data:`_HOLD` later ports are held.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = _FIRST + (int(worker) if worker.isdigit() else 0) % 6 * _BLOCK
    low, high = _outgoing_range()
    if first + _BLOCK <= low or first > high:
        for _ in range(_BLOCK):
            port = first + next(_picked) % _BLOCK
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, held (or in TIME_WAIT): the next one
                sock.close()
                continue
            return _hold(sock)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no block free
    sock.bind(("127.0.0.1", 0))
    return _hold(sock)


def _hold(sock: socket.socket) -> int:
    """Keep ``sock`` (bound, not listening) open, letting a server bind its port beside it
    (see :func:`free_port`); its port."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _held.append(sock)
    while len(_held) > _HOLD:
        _held.popleft().close()
    return int(sock.getsockname()[1])


def serve_args(
    tmp_path: Path, files: Mapping[str, str], *extra: str, db: str | None = None
) -> tuple[list[str], str, Path]:
    """``leadhub serve`` arguments for the configuration directory ``tmp_path/"cfg"`` holding
    ``files`` (file name -> YAML text), a free loopback port and the store URL ``db`` (by
    default the SQLite file ``tmp_path/"hub.db"``), then ``extra``; its base URL and that
    SQLite file. Called again on the same ``tmp_path`` (its files written again), it gives a
    second process on another port the same directory."""
    config = tmp_path / "cfg"
    config.mkdir(exist_ok=True)
    for name, text in files.items():
        (config / name).write_text(text)
    sqlite = tmp_path / "hub.db"
    port = free_port()
    args = ["serve", "--config-dir", str(config), "--port", str(port)]
    args += ["--db", f"sqlite:///{sqlite}" if db is None else db, *extra]
    return args, f"http://127.0.0.1:{port}", sqlite


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


@contextlib.contextmanager
def serve_in_thread(app: Any, *, port: int | None = None, **config: Any) -> Iterator[str]:
    """Run ``app`` on uvicorn in a daemon thread; yields its base URL ``http://127.0.0.1:PORT``.

    The server is stopped (and the thread joined) when the block ends. Its socket is bound
    here and handed to uvicorn: a port picked free and bound later by uvicorn could be taken
    meanwhile by another test's process ("address already in use", seen on a loaded machine).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind(("127.0.0.1", port or 0))
    except OSError:
        sock.close()
        raise
    port = int(sock.getsockname()[1])
    cfg = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=config.pop("lifespan", "on"),
        **config,
    )
    server = _ThreadServer(cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive():
                msg = "uvicorn exited before it started"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = "uvicorn did not start within 15 s"
                raise RuntimeError(msg)
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()  # (uvicorn closes it as it stops; not if it never started)


def wait_http(
    url: str, *, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    """Poll ``url`` until it answers at all (any status), or fail after ``timeout`` seconds.
    With ``proc``, only an answer of ``proc``'s own counts: it is polled once ``proc`` (or a
    process it started) is what listens on the port, and again found so after the answer.

    An answer from whatever listened on the port counted: another test's server (another
    session's, a previous hub on a port used again) answering before ``proc`` bound the port
    made ``proc`` ready, and its requests then went to that server, or were refused once it
    stopped. While ``proc`` listens on the port no other process can (none sets
    ``SO_REUSEPORT``), so a request made then reaches it. Where ``/proc`` does not tell who
    listens (not Linux), any answer counts, as before.

    The timeout is a hang guard, not a measure of start-up time: at the suite's start, four
    workers on two cores starting PostgreSQL servers and hubs at once, a hub took more than
    20 s (the old timeout) to answer, and every test of a module sharing it errored. A
    process that does not answer in time fails with its output.
    """
    port = httpx.URL(url).port or 80
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            msg = f"process exited with {proc.returncode} before {url} answered:\n{out}"
            raise RuntimeError(msg)
        try:
            if proc is None or listens(proc.pid, port) is not False:
                httpx.get(url, timeout=1.0)
                if proc is None or listens(proc.pid, port) is not False:
                    return
        except httpx.TransportError:
            if time.monotonic() > deadline and (proc is None or proc.stdout is None):
                raise
        if time.monotonic() > deadline:
            out = proc.stdout.read() if proc is not None and proc.stdout is not None else ""
            who = listeners(port) - (processes_under(proc.pid) if proc is not None else set())
            others = f" (another process listens on its port: pid {sorted(who)})" if who else ""
            msg = f"{url} did not answer within {timeout:g} s{others}; the process's output:\n{out}"
            raise RuntimeError(msg)
        time.sleep(0.05)


def listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid``, or a process under it, holds a socket listening on TCP
    ``port``, from ``/proc``; ``None`` when ``/proc`` does not tell."""
    inodes = _listening(port)
    if inodes is None:
        return None
    if not inodes:
        return False
    return _holds(pid, inodes) or any(_holds(p, inodes) for p in processes_under(pid) - {pid})


def listeners(port: int) -> set[int]:
    """The processes (those this one may look into) holding a socket listening on TCP
    ``port``."""
    inodes = _listening(port) or set()
    return {each for each in _pids() if inodes and _holds(each, inodes)}


def _listening(port: int) -> set[str] | None:
    """The sockets (as their ``/proc/PID/fd`` links read) listening on TCP ``port``, IPv4 or
    IPv6; ``None`` when neither the kernel's socket diagnostics nor ``/proc/net`` tell.

    Asked of the kernel over netlink (:func:`_diag_listening`, as ``ss -l`` asks): reading
    ``/proc/net/tcp`` walks the kernel's whole table of connections, about 7 ms of CPU per
    read on these machines even with the table nearly empty. ``wait_http`` asks every 50 ms
    while a process starts: 45 s of CPU over the suite, where the diagnostics, which walk
    only the listening sockets, answer in about 40 µs.
    """
    with contextlib.suppress(OSError):
        return _diag_listening(port)
    return _proc_listening(port)


#: ``struct nlmsghdr``: length, type, flags, sequence, port id.
_NL_HEADER = struct.Struct("=IHHII")
#: ``struct nlmsghdr`` then ``struct inet_diag_req_v2``: family, protocol, extensions, a pad
#: byte, the states asked for, and a ``struct inet_diag_sockid`` left zero (a dump).
_DIAG_REQUEST = struct.Struct("=IHHIIBBBxI48x")
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN = 10
#: In a ``struct inet_diag_msg``: the local port (big-endian, first in its sockid, after
#: four bytes of family, state, timer and retransmits) and the inode (after the 48-byte
#: sockid and four 32-bit fields: expires, receive and send queues, uid).
_DIAG_SPORT, _DIAG_INODE = 4, 4 + 48 + 16


def _diag_listening(port: int) -> set[str]:
    """:func:`_listening` from the kernel's socket diagnostics (``NETLINK_SOCK_DIAG``,
    listening TCP sockets only); raises ``OSError`` where they cannot be asked."""
    inodes = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5.0)
        for family in (socket.AF_INET, socket.AF_INET6):
            request = (_DIAG_REQUEST.size, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
            nl.send(_DIAG_REQUEST.pack(*request, family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN))
            done = False
            while not done:
                data = nl.recv(1 << 16)
                if not data:
                    raise OSError("the socket diagnostics ended without an answer")
                offset = 0
                while offset + _NL_HEADER.size <= len(data):
                    length, kind, _flags, _seq, _pid = _NL_HEADER.unpack_from(data, offset)
                    if kind == _NLMSG_DONE:
                        done = True
                        break
                    if kind == _NLMSG_ERROR or length < _NL_HEADER.size + _DIAG_INODE + 4:
                        raise OSError("the socket diagnostics refused the request")
                    body = offset + _NL_HEADER.size
                    (sport,) = struct.unpack_from(">H", data, body + _DIAG_SPORT)
                    (inode,) = struct.unpack_from("=I", data, body + _DIAG_INODE)
                    if sport == port:
                        inodes.add(f"socket:[{inode}]")
                    offset += (length + 3) & ~3  # (messages are aligned to 4 bytes)
    return inodes


def _proc_listening(port: int) -> set[str] | None:
    """:func:`_listening` from ``/proc/net``; ``None`` when it cannot be read."""
    inodes = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    return inodes if readable else None


def _holds(pid: int, inodes: set[str]) -> bool:
    """Whether process ``pid`` has one of ``inodes`` open."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for fd in names:
        with contextlib.suppress(OSError):
            if os.readlink(fds / fd) in inodes:
                return True
    return False


def processes_under(pid: int) -> set[int]:
    """``pid`` and every process under it (children, theirs...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in _pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(entry)
    found, todo = set(), [pid]
    while todo:
        each = todo.pop()
        if each not in found:
            found.add(each)
            todo += children.get(each, [])
    return found


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def leadhub_run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    unprivileged: bool = False,
    leadhub_env: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hub ARGS`` to its end from the repository root (``env`` over this
    process's environment, without its ``LEADHUB_*`` variables unless ``leadhub_env``;
    ``unprivileged``: where file permissions hold, see :func:`without_root_reading`); its
    output captured as text."""
    argv = [sys.executable, "-m", "hub", *args]
    inherited = {k: v for k, v in os.environ.items() if leadhub_env or not k.startswith("LEADHUB_")}
    return subprocess.run(
        without_root_reading(argv) if unprivileged else argv,
        cwd=str(REPO),
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def leadhub_process(
    args: Sequence[str],
    *,
    ready_url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """Run ``python -m hub ARGS`` as a real subprocess; waits for ``ready_url`` if given.

    On exit the process gets SIGTERM (then SIGKILL after 10 s).
    """
    full_env = {**os.environ, **(env or {})}
    # Output goes to a file, never a pipe: a chatty child would fill a pipe nobody drains and
    # hang. ``proc.stdout`` reads that file from its start, so callers read it as a pipe.
    sink = tempfile.NamedTemporaryFile(prefix="leadhub-proc-", suffix=".log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", *args],
        cwd=str(cwd or REPO),
        env=full_env,
        stdout=sink,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.stdout = open(sink.name, encoding="utf-8", errors="replace")
    try:
        if ready_url:
            wait_http(ready_url, proc=proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        sink.close()


def without_root_reading(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that file permissions hold for it: as it is for a user other than
    root, else through setpriv without the capabilities that let root read anything (the
    test is skipped when neither is possible)."""
    if os.geteuid() != 0:
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        import pytest

        pytest.skip("running as root without setpriv: every file is readable")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", "--", *argv]


#: ``leadhub`` (its arguments after ``python -c HUP_WHILE_LOADING``) run as ``python -m hub``
#: does, with a SIGHUP to itself at the moment a server command's modules import uvicorn: an
#: audit hook, Python's own event at that point of the real start, before the command's own
#: handler is installed (the early guard's tests, for serve and the sandbox).
HUP_WHILE_LOADING = """
import os, signal, sys

def hook(event, args):
    if event == "import" and args[0] == "uvicorn" and not hook.done:
        hook.done = True  # (a hook cannot be removed: it acts once)
        os.kill(os.getpid(), signal.SIGHUP)

hook.done = False

sys.addaudithook(hook)
from hub.cli import main
sys.exit(main(sys.argv[1:]))
"""
