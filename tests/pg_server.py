"""A real, throwaway PostgreSQL server for the tests, and throwaway schemas in it.

:class:`PostgresServer` makes a fresh cluster in a temporary directory (a copy of one that
initdb made once) and serves it on 127.0.0.1 and a free port; :func:`fresh_schema` makes a
uniquely named schema and drops it afterwards. PostgreSQL refuses to run as root, so as root
initdb and pg_ctl run as the ``postgres`` user (``runuser``), and that user owns the
temporary directory.

The server settings trade durability for speed (no fsync): fine for tests, never for data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.support.server import free_port

PG_USER = "postgres"  # the superuser initdb makes; as root, also the user the server runs as
#: Server settings for test speed only: a crash may lose or corrupt the throwaway cluster.
FAST_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
)
#: A cluster that trusts every local connection, superuser ``postgres``; C collation, so
#: the tests see the same order on every machine.
INITDB_OPTIONS = ("-A", "trust", "-U", PG_USER, "--no-sync", "-E", "UTF8", "--locale=C")
START_TIMEOUT_S = 60
START_ATTEMPTS = 3  # another process may take the free port between the pick and the bind


def find_bindir() -> Path | None:
    """The directory holding PostgreSQL's initdb and pg_ctl, or None if there is none.

    ``pg_config --bindir`` if that has initdb (pg_config alone comes with libpq-dev, without
    a server), else the newest ``/usr/lib/postgresql/*/bin`` with initdb (Debian's layout).
    """
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and (Path(out) / "initdb").is_file():
            return Path(out)
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if not candidates:
        return None
    return max(candidates, key=lambda bindir: _version_key(bindir.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    """``"15"`` -> (15,), ``"9.6"`` -> (9, 6): numeric order, so 10 is newer than 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (-1,)


class PostgresServerError(RuntimeError):
    """initdb or pg_ctl failed; the message says which command and what it printed."""


class PostgresServer:
    """A fresh PostgreSQL cluster in a temporary directory, serving 127.0.0.1 on a free port.

    ``start()`` then ``.dsn``; ``stop()`` kills the server and removes the directory. Also a
    context manager.
    """

    def __init__(self, bindir: Path | None = None, settings: Sequence[str] = ()) -> None:
        """``settings``: ``name=value`` settings given to the server after
        :data:`FAST_SETTINGS` (a later one wins)."""
        found = bindir or find_bindir()
        if found is None:
            raise PostgresServerError(
                "PostgreSQL is not installed: no initdb from `pg_config --bindir` "
                "or in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
            )
        self.bindir = found
        self.port: int | None = None
        self._base: Path | None = None
        self._as_postgres = os.geteuid() == 0
        self.settings = tuple(settings)

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust auth: no password)."""
        if self.port is None:
            raise PostgresServerError("the PostgreSQL server is not started")
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self._require_base() / "data"

    @property
    def log_file(self) -> Path:
        return self._require_base() / "server.log"

    def start(self, port: int | None = None) -> None:
        """initdb a fresh cluster and start it on ``port`` (else a free one, tried again if
        taken meanwhile); returns once it accepts connections."""
        if self._base is not None:
            raise PostgresServerError("the PostgreSQL server is already started")
        self._base = Path(tempfile.mkdtemp(prefix="hub-test-pg-"))
        chosen = port
        try:
            (self._base / "sock").mkdir()
            if self._as_postgres:
                self._chown_to_postgres(self._base)
            self._copy_template()
            for attempt in range(1, START_ATTEMPTS + 1):
                port = chosen or free_port()
                try:
                    self._pg_ctl_start(port)
                except PostgresServerError:
                    if chosen or attempt == START_ATTEMPTS or not self._port_taken():
                        raise
                else:
                    self.port = port
                    return
        except BaseException:
            self._kill()
            self._remove_dir()
            raise

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``) and remove its directory; idempotent."""
        if self._base is None:
            return
        error: PostgresServerError | None = None
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "immediate", "-w"])
            except PostgresServerError as e:
                error = e
        self.port = None
        self._remove_dir()
        if error is not None:
            raise error

    def pause(self) -> None:
        """Stop the server as an administrator would (``pg_ctl stop -m fast``: connections are
        ended, data kept); :meth:`resume` starts it again on the same port."""
        self._run("pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "fast", "-w"])

    def resume(self) -> None:
        """Start the server :meth:`pause` stopped, on its port; returns once it accepts."""
        if self.port is None:
            raise PostgresServerError("the PostgreSQL server is not started")
        self._pg_ctl_start(self.port)

    def crash(self) -> None:
        """Kill the server as a crash would (SIGKILL to the postmaster and every process of
        its at once: what is in its shared memory and not yet written is lost), then wait
        until they are gone; :meth:`resume` starts it again, recovering from its WAL."""
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGSTOP)  # (it starts no process more while its family is listed)
        family = [*_children(pid), pid]
        for each in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(each, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while any(Path(f"/proc/{each}").exists() for each in family):
            if time.monotonic() > deadline:
                raise PostgresServerError(f"PostgreSQL (pid {pid}) did not die of SIGKILL")
            time.sleep(0.01)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _kill(self) -> None:
        """Best effort after a failed start: a server pg_ctl gave up waiting for may still run."""
        if self._base is not None and (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(PostgresServerError):
                self._run("pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "immediate", "-w"])

    def _copy_template(self) -> None:
        """A fresh cluster in :attr:`data_dir`: a copy of the one initdb made for this bindir
        (once for every test process of this user, see :meth:`_template`)."""
        shutil.copytree(self._template(), self.data_dir, symlinks=True)
        if self._as_postgres:
            self._chown_to_postgres(self.data_dir)

    def _template(self) -> Path:
        """A cluster initdb made with :data:`INITDB_OPTIONS` for this bindir, kept in the
        temporary directory for the next servers: initdb's bootstrap runs PostgreSQL a
        few times over, a second of CPU a server (38 of the suite's CPU seconds), where a
        copy takes milliseconds. Made under a lock, in a directory of its own renamed
        into place, so a process sees a whole template or none; a failed initdb leaves
        nothing behind."""
        key = hashlib.sha256(repr((str(self.bindir), INITDB_OPTIONS)).encode()).hexdigest()
        root = Path(tempfile.gettempdir()) / f"hub-test-pg-templates-{os.geteuid()}"
        root.mkdir(exist_ok=True)
        template = root / key[:16] / "data"
        if template.is_dir():
            return template
        lock_path = root / f"{key[:16]}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if template.is_dir():  # made by another process while this one waited
                return template
            building = Path(tempfile.mkdtemp(prefix=f"{key[:16]}-", dir=root))
            try:
                if self._as_postgres:
                    self._chown_to_postgres(building)
                self._run("initdb", ["-D", str(building / "data"), *INITDB_OPTIONS], cwd=building)
                building.rename(template.parent)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    root.rmdir()  # (only if this was all there was)
                raise
        return template

    def _pg_ctl_start(self, port: int) -> None:
        # pg_ctl hands -o to a shell, so each value is shell-quoted.
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={port}",
            f"unix_socket_directories={self._require_base() / 'sock'}",
            *FAST_SETTINGS,
            *self.settings,
        ]
        options = shlex.join(arg for setting in settings for arg in ("-c", setting))
        self.log_file.unlink(missing_ok=True)
        try:
            wait = ("-w", "-t", str(START_TIMEOUT_S))
            log = ("-l", str(self.log_file))
            self._run("pg_ctl", ["start", "-D", str(self.data_dir), *log, *wait, "-o", options])
        except PostgresServerError as e:
            raise PostgresServerError(f"{e}\nserver log ({self.log_file}):\n{self._log()}") from e

    def _port_taken(self) -> bool:
        return "could not bind" in self._log() or "already in use" in self._log()

    def _log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def _run(self, program: str, args: list[str], cwd: Path | None = None) -> None:
        cmd = [str(self.bindir / program), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S + 30,
                stdin=subprocess.DEVNULL,
                # the postgres user may not be able to read our cwd
                cwd=cwd or self._require_base(),
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PostgresServerError(f"{shlex.join(cmd)} failed: {e}") from e
        if done.returncode != 0:
            raise PostgresServerError(
                f"{shlex.join(cmd)} failed (exit {done.returncode}):\n"
                f"{done.stderr.strip() or done.stdout.strip() or '(no output)'}"
            )

    def _chown_to_postgres(self, path: Path) -> None:
        try:
            user = pwd.getpwnam(PG_USER)
        except KeyError as e:
            raise PostgresServerError(
                f"running as root, PostgreSQL must run as the {PG_USER!r} user, "
                "and there is no such user"
            ) from e
        for p in [path, *path.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)

    def _require_base(self) -> Path:
        if self._base is None:
            raise PostgresServerError("the PostgreSQL server is not started")
        return self._base

    def _remove_dir(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc; a zombie's too)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # (gone meanwhile)
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def schema_url(request: pytest.FixtureRequest) -> str:
    """The store URL of a fresh schema (the ``postgres_schema`` fixture) for ``request``'s test."""
    dsn, schema = request.getfixturevalue("postgres_schema")
    return f"{dsn}?schema={schema}"


def schema_name() -> str:
    """A fresh schema name: ``t_`` and 12 hex digits."""
    return f"t_{uuid.uuid4().hex[:12]}"


async def sql(dsn: str, query: str, *args: Any, schema: str | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (in ``schema``, if given); its rows.

    Also through a transaction-mode PgBouncer (tests.pgbouncer): the schema is set for the
    statement's transaction, not at connect (PgBouncer refuses ``search_path`` there), and
    the statement is an unnamed one (a named one would outlive the connection there)."""
    import asyncpg  # on use: conftest imports this module for every test run

    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        if not schema:  # (on its own: CREATE TABLESPACE refuses a transaction)
            return [tuple(row) for row in await conn.fetch(query, *args)]
        async with conn.transaction():
            await conn.execute("SELECT set_config('search_path', $1, true)", f'"{schema}"')
            return [tuple(row) for row in await conn.fetch(query, *args)]
    finally:
        await conn.close()


async def cut_connections(dsn: str) -> int:
    """Make the server end every connection of the hub's stores (by the application name they
    give the server), as a restart or a network fault would; returns how many."""
    from hub.store.postgres import APPLICATION_NAME

    ((count,),) = await sql(
        dsn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        APPLICATION_NAME,
    )
    return int(count)


@contextlib.asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """A new, empty schema in the database at ``dsn``; dropped (CASCADE) on exit."""
    name = schema_name()
    await sql(dsn, f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        await sql(dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def frozen(server: PostgresServer) -> Iterator[None]:
    """Every process of ``server`` stopped (SIGSTOP) for the block: a database that hangs
    (a stalled disk, a stuck host) rather than one that refuses connections."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    # The postmaster first, so that it forks no backend after its children are read. A
    # backend may be ending meanwhile (a pool closing a connection): gone before its stop,
    # or reaped by the postmaster once resumed, it is a process that needs no signal.
    os.kill(postmaster, signal.SIGSTOP)
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    stopped = [pid for pid in map(int, children) if _signal(pid, signal.SIGSTOP)]
    try:
        yield
    finally:
        # Children before the postmaster: stopped, it reaps none of them in between.
        for pid in stopped:
            _signal(pid, signal.SIGCONT)
        os.kill(postmaster, signal.SIGCONT)


def _signal(pid: int, sig: signal.Signals) -> bool:
    """``sig`` sent to ``pid``; False if it has ended (and been reaped) already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
