"""A real, throwaway PgBouncer in front of the test PostgreSQL server.

Managed PostgreSQL poolers often run PgBouncer in transaction mode: each transaction of a
client may run on another server connection, so nothing of a session (a ``SET``, a named
prepared statement, the startup packet's settings) carries from one transaction to the
next. :class:`PgBouncer` starts one (``pool_mode = transaction`` by default) on 127.0.0.1
and a free port, in front of a server's DSN, with ``auth_type = trust`` (the test server
trusts every local connection too) and a user list naming that DSN's user, who may also
use its admin console (:meth:`PgBouncer.show`). PgBouncer refuses to run as root, so as root
it runs as the ``postgres`` user, as the test server does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

from tests.pg_server import find_bindir
from tests.support.server import free_port

RUN_AS = "postgres"
START_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # another process may take the free port between the pick and the bind


def find_pgbouncer() -> Path | None:
    """The pgbouncer binary: on PATH, else Debian's ``/usr/sbin/pgbouncer`` (not on a
    non-root user's PATH); None if neither."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    return Path(found) if found else None


class PgBouncerError(RuntimeError):
    """PgBouncer did not start; the message says what it printed."""


class PgBouncer:
    """PgBouncer on 127.0.0.1 and a free port, pooling for the server at ``server_dsn``.

    ``start()`` then :meth:`dsn`; ``stop()`` kills it and removes its
    directory. ``ignore``: startup parameters it should accept and drop
    (``ignore_startup_parameters``; by default it refuses every one it does not track).
    ``pool_size``: its server connections per database and user (1: every client's
    transactions on one server session, to see what one of them leaves there).
    ``max_client_conn``: the client connections it takes in all (more are refused).
    ``settings``: more ``name = value`` lines of its ``[pgbouncer]`` section (a later one wins).
    :meth:`show` reads its admin console (``SHOW POOLS``, ``SHOW CLIENTS``).
    """

    def __init__(
        self,
        server_dsn: str,
        *,
        pool_mode: str = "transaction",
        ignore: tuple[str, ...] = (),
        pool_size: int = 20,
        max_client_conn: int = 1000,
        settings: tuple[str, ...] = (),
        binary: Path | None = None,
    ) -> None:
        found = binary or find_pgbouncer()
        if found is None:
            raise PgBouncerError(
                "PgBouncer is not installed (apt-get install pgbouncer): no pgbouncer on PATH "
                "or in /usr/sbin"
            )
        self.binary = found
        target = urllib.parse.urlsplit(server_dsn)
        self.user = target.username or RUN_AS
        self.password = urllib.parse.unquote(target.password or "").replace('"', '""')
        self.database = target.path.lstrip("/") or self.user
        self.server = (target.hostname or "127.0.0.1", target.port or 5432)
        self.pool_mode = pool_mode
        self.ignore = ignore
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.settings = settings
        self.port: int | None = None
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_other = os.geteuid() == 0

    def dsn(self, database: str | None = None) -> str:
        """``postgresql://USER@127.0.0.1:PORT/DB`` through the pooler (no password)."""
        if self.port is None:
            raise PgBouncerError("PgBouncer is not started")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    @property
    def log_file(self) -> Path:
        if self._base is None:
            raise PgBouncerError("PgBouncer is not started")
        return self._base / "pgbouncer.log"

    def show(self, command: str) -> list[dict[str, str]]:
        """The rows of an admin console command (``SHOW POOLS``: ``cl_waiting`` counts the
        clients waiting for a server connection), each a dict of its columns. Through psql:
        the admin console takes the simple query protocol only, and asyncpg sends every
        query that returns rows by the extended one."""
        if self.port is None:
            raise PgBouncerError("PgBouncer is not started")
        bindir = find_bindir()
        if bindir is None or not (bindir / "psql").is_file():
            raise PgBouncerError("psql is not installed beside PostgreSQL's initdb")
        argv = [str(bindir / "psql"), "-X", "--csv", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-c", command]
        done = subprocess.run(
            [*argv, "pgbouncer"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode != 0:
            raise PgBouncerError(f"{command!r} on PgBouncer's admin console failed: {done.stderr}")
        return list(csv.DictReader(io.StringIO(done.stdout)))

    def start(self) -> None:
        """Write its configuration and start it; returns once it accepts connections."""
        if self._base is not None:
            raise PgBouncerError("PgBouncer is already started")
        self._base = Path(tempfile.mkdtemp(prefix="hub-test-pgbouncer-"))
        try:
            # trust: no client password; the server's (if it asks one) from the DSN
            (self._base / "userlist.txt").write_text(f'"{self.user}" "{self.password}"\n')
            for attempt in range(1, START_ATTEMPTS + 1):
                port = free_port()
                try:
                    self._start_on(port)
                except PgBouncerError:
                    if attempt == START_ATTEMPTS or "in use" not in self._log():
                        raise
                else:
                    self.port = port
                    return
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End PgBouncer at once (its client and server connections close) and remove its
        directory; idempotent."""
        self._end()
        self.port = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _config(self, port: int) -> str:
        base = self._base
        assert base is not None
        host, server_port = self.server
        return "\n".join(
            [
                "[databases]",
                f"* = host={host} port={server_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"admin_users = {self.user}",  # (show)
                f"auth_file = {base / 'userlist.txt'}",
                f"pool_mode = {self.pool_mode}",
                f"max_client_conn = {self.max_client_conn}",
                f"default_pool_size = {self.pool_size}",
                f"ignore_startup_parameters = {','.join(self.ignore)}",
                f"logfile = {base / 'pgbouncer.log'}",
                f"pidfile = {base / 'pgbouncer.pid'}",
                *self.settings,
                "",
            ]
        )

    def _start_on(self, port: int) -> None:
        base = self._base
        assert base is not None
        ini = base / "pgbouncer.ini"
        ini.write_text(self._config(port))
        self.log_file.unlink(missing_ok=True)
        if self._as_other:
            user = pwd.getpwnam(RUN_AS)
            for p in [base, *base.iterdir()]:
                os.chown(p, user.pw_uid, user.pw_gid)
        # as the other user by Popen itself (not runuser, which would not pass SIGINT on)
        who = pwd.getpwnam(RUN_AS) if self._as_other else None
        self._proc = subprocess.Popen(
            [str(self.binary), str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=None if who is None else who.pw_uid,
            group=None if who is None else who.pw_gid,
            extra_groups=None if who is None else [],
            cwd=base,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise PgBouncerError(f"pgbouncer exited at start; its log:\n{self._log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.02)
        self._end()
        raise PgBouncerError(f"pgbouncer did not listen within {START_TIMEOUT_S} s:\n{self._log()}")

    def _end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # killed: which signal shuts PgBouncer down at once differs between its versions
        # (SIGTERM waits for the clients from 1.23 on), and it keeps nothing to save
        proc.kill()
        proc.wait(10)

    def _log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except (OSError, PgBouncerError):
            return "(no log)"
