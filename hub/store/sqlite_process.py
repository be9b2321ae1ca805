"""The SQLite store's ingest writer in a process of its own.

In one process the store's writer thread and the event loop share one GIL: every
``sqlite3`` call hands it over and the writer then waits for the busy loop to give it
back, so each group commit took about 2.5 ms of wall time for 1 ms of work, and the loop
sat idle while requests waited on it (measured in BENCHMARKS.md). Here ``enqueue`` hands
its rows to a child process over a socket pair instead; the child runs the same
group-commit batches (:func:`hub.store.bulk.insert`, then one savepoint per delivery when
a batch meets a duplicate) and answers only after ``COMMIT``, so a 200 still means
durably stored. Every other write keeps using the in-process writer thread; SQLite's
own lock (``BEGIN IMMEDIATE``, waited for by ``sqlite_conn.begin_immediate``) orders the
two, as it orders several hub processes on one file.

Wire format, both ways: frames of a 4-byte big-endian length and a msgpack body.

* parent → child: a list of deliveries (:data:`hub.store.rows.Row` tuples), in the order submitted;
* child → parent: ``[commits, results]``, ``results`` one entry per delivery of the
  frames it just committed, in order: a list of ``[event id, duplicate, delivery id]``,
  or a tagged list: ``["error", message]`` (that delivery failed: a :class:`StoreError`),
  ``["unavailable", message]`` (its batch was not written), ``["parse"]`` (a skimmed body
  needs the full parser: :class:`BodyNotSkimmed`, nothing stored).

The child exits when the socket reaches end of file: when the hub stops, or dies (even
by ``kill -9``). If the child dies, what waits on it fails with
:class:`StoreUnavailable` (the sender gets 503 and retries) and the next enqueue starts
a new child. If it stops answering instead (stopped, deadlocked, stuck on a hung disk),
what has waited ``stall_after`` fails the same way and the child is killed: the next
enqueue starts a new one once the old one has exited. One that does not exit after
``SIGKILL`` (a process in uninterruptible sleep on a hung mount exits only when the disk
answers) is waited for at most :data:`REAP_WAIT` per attempt, and until it has exited no
new child starts: writes and readiness answer 503 at once rather than piling up children.

Readiness (:meth:`IngestProcess.check`) asks the child for an answer: it sends a frame of no
deliveries (one at a time, however many probes wait), which the child answers with an empty
list once it reads it, and is ready at the child's next answer, of that frame or of any other
(an idle child answers at once, a busy one after the batch it is committing). No answer
within :data:`PROBE_WAIT`: not ready. While a probe waits, the watchdog watches it as it
watches a delivery, so a child that only probes wait on (a web instance that is not ready
gets no webhooks) is killed and replaced after ``stall_after`` all the same. Writes send
nothing more for it.

The child never creates the database file (the store's open, in the parent, made it
before starting the first child): a child started, or restarted, while the file is
missing (deleted, moved away, its volume unmounted) answers each write ``unavailable``,
saying so, until the file is back (``sqlite_conn.WRITE_MODES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from hub import orphans
from hub.store.base import (
    STALL_AFTER,
    BodyNotSkimmed,
    Outcome,
    Settle,
    StoreError,
    StoreStats,
    StoreUnavailable,
    log,
    settle_future,
)
from hub.store.models import EnqueueResult
from hub.store.rows import Row
from hub.store.sqlite_child import Frames, framed
from hub.store.sqlite_conn import (
    Identity,
    unavailable,
)

#: Deliveries gathered in one loop iteration that are handed to the child at once, without
#: waiting for the iteration to end. Under load an iteration reads a few dozen requests
#: (about 45 µs of the loop each); handed over only at its end, they kept the child idle
#: while the loop worked, and the loop idle while the child committed: the two moved in
#: lock step. Handing over every few lets the child commit the first while the loop reads
#: the rest (4, 8 and 12 measured alike: 17,800-18,400 req/s against 14,400-15,200 at 64
#: connections in BENCHMARKS.md's diagnostic).
HAND_OVER = 8
#: Seconds to wait for a child that was sent ``SIGKILL`` to exit before a new one may
#: start; a start that waits longer fails (503) and the next one waits again.
REAP_WAIT = 2.0
#: Seconds a readiness probe waits for the child's next answer (:meth:`IngestProcess.check`).
PROBE_WAIT = 2.0
#: A frame of no deliveries: the child answers it with an empty list (a readiness probe).
_PROBE = msgspec.msgpack.encode([])
#: Seconds a new child may take to say it is ready (its first, empty answer), or
#: ``stall_after`` if longer: its start (the interpreter, the imports) is not counted as a
#: stall of the writes sent to it, as it was when they were sent before it was ready.
START_WAIT = 10.0


def _child_env() -> dict[str, str]:
    """The environment for the child: ours, with this very ``hub`` package first on its path.

    The child must run the same code as the parent whatever the working directory (a
    different ``hub`` installed elsewhere must not answer instead).
    """
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def _retrieved(start: asyncio.Future[None]) -> None:
    """Retrieve a start's outcome: its callers see it through their own await, and one that
    no caller waits for any more is not logged as never retrieved."""
    if not start.cancelled():
        start.exception()


# -- the parent's side ----------------------------------------------------------------------


class _Waiter:
    """A delivery handed to the child, and whom to tell what became of it (once)."""

    __slots__ = ("done", "finished", "tell")

    def __init__(self, tell: Settle) -> None:
        self.tell = tell
        self.done = False
        #: For :meth:`IngestProcess.stop`: a future set once this one is told.
        self.finished: asyncio.Future[None] | None = None

    def settle(self, outcome: Outcome) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.tell(outcome)
        except Exception:  # a caller's bug must not keep the deliveries after it untold
            log().exception("store_answer_failed")
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


def _fail(waiters: Iterable[_Waiter], err: Exception) -> None:
    for waiter in waiters:
        waiter.settle(err)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: IngestProcess) -> None:
        self.owner = owner
        self.frames = Frames()
        self.decoder = msgspec.msgpack.Decoder()

    def data_received(self, data: bytes) -> None:
        try:
            replies = [self.decoder.decode(f) for f in self.frames.feed(data)]
        except (ValueError, msgspec.DecodeError) as exc:
            self.owner._lost(f"its answer could not be read ({exc})")
            return
        for reply in replies:
            self.owner._answered(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost("it closed its socket")


class IngestProcess:
    """Runs enqueues in a child process (see the module's docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        stats: StoreStats,
        stall_after: float = STALL_AFTER,
        files: Callable[[], tuple[Identity, Identity]] | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.stats = stats
        self.stall_after = stall_after
        #: The file the store's first open made or found, and its log (the writer thread's
        #: :meth:`~hub.store.sqlite_threads.Writer.files`): a child started later opens no
        #: other file beside that one's log.
        self._files = files
        #: Since when deliveries wait for the child without an answer from it
        #: (``time.monotonic``; reset by each answer), None when none waits.
        self._waiting_since: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._encoder = msgspec.msgpack.Encoder()
        #: The deliveries sent and not yet answered, in order.
        self._waiting: deque[_Waiter] = deque()
        #: Deliveries submitted in this loop iteration, sent together at its end.
        self._gathered: list[Row] = []
        self._gathered_waiters: list[_Waiter] = []
        self._starting: asyncio.Task[None] | None = None
        #: While a start waits for the new child's first answer (it is ready).
        self._ready: asyncio.Future[None] | None = None
        self._commits_before = 0
        #: Between start() and stop(): a lost child is replaced on the next enqueue.
        self._open = False
        #: While a readiness probe waits for the child's next answer (:meth:`check`).
        self._probe: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def start(self) -> None:
        """Start the child (once; concurrent callers wait for the same start).

        The start is a task of its own: a caller that stops waiting for it (a readiness probe
        past its time, a request given up) leaves it going, and the next caller waits for
        the same start. Run in the caller, a start cancelled with it left a half-started
        child that the next start killed: where starting a child took longer than a probe
        waits (a loaded machine), each probe killed the child the one before had started, and
        no writer came back.
        """
        self._open = True
        if self.running:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
            self._starting.add_done_callback(_retrieved)
        try:
            await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            msg = "The event store's writer process did not start: the store was closed."
            raise StoreUnavailable(msg) from None  # (stop() ended the start)

    async def _start(self) -> None:
        try:
            await self._reap()
            try:
                ours, theirs = socket.socketpair()
            except OSError as exc:
                raise unavailable(self.path, exc) from exc
            try:
                self._child = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "hub.store.sqlite_child",
                        str(theirs.fileno()),
                        str(self.path),
                        self.synchronous,
                        *map(_identity_arg, self._files() if self._files else (None, None)),
                    ],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    env=_child_env(),
                )
                orphans.OWN.add(self._child.pid)  # (waited for here, not by the reaper)
            except OSError as exc:
                ours.close()
                raise unavailable(self.path, exc) from exc
            finally:
                theirs.close()
            self._commits_before = self.stats.commits
            loop = asyncio.get_running_loop()
            self._ready = ready = loop.create_future()  # (before its answer can be read)
            transport, _ = await loop.create_unix_connection(lambda: _Protocol(self), sock=ours)
            await self._until_ready(ready, transport)
            self._transport = transport
            log().info("store_writer_started", writer_pid=self._child.pid)
        finally:
            self._starting = None

    async def _until_ready(self, ready: asyncio.Future[None], transport: asyncio.Transport) -> None:
        """Wait for the new child's first answer; if it dies or stays silent, kill it.

        Raises:
            StoreUnavailable: it did not say it was ready.
        """
        wait = max(START_WAIT, self.stall_after)
        try:
            await asyncio.wait_for(asyncio.shield(ready), wait)
        except asyncio.CancelledError:  # stop() while it starts: it must not stay behind
            transport.abort()
            self._kill()
            raise
        except (TimeoutError, StoreUnavailable) as exc:
            transport.abort()
            self._kill()
            why = f"it did not say it was ready within {wait:g} s" if not ready.done() else exc
            pid = self._child.pid if self._child is not None else None
            msg = f"The event store's writer process (pid {pid}) did not start: {why}."
            raise StoreUnavailable(msg) from None
        finally:
            self._ready = None

    async def enqueue(self, row: Row) -> list[EnqueueResult]:
        if not self._open:
            msg = "The event store is not open; call `await store.open()` first."
            raise StoreError(msg)
        if not self.running:
            await self.start()
        future: asyncio.Future[list[EnqueueResult]] = asyncio.get_running_loop().create_future()
        self.submit(row, lambda outcome: settle_future(future, outcome))
        return await future

    def submit(self, row: Row, tell: Settle) -> None:
        """Hand ``row`` to the child and call ``tell`` with its results once committed, or
        with the exception that failed it (:class:`BodyNotSkimmed` included), from the
        event loop's thread: at the earliest when the child's answer is read, without a
        task to wake or a loop iteration to wait. ``tell`` may also run before this
        returns (the child is not running, the row cannot be encoded)."""
        if not self._gathered:
            asyncio.get_running_loop().call_soon(self._send)
        self._gathered.append(row)
        self._gathered_waiters.append(_Waiter(tell))
        if len(self._gathered) >= HAND_OVER:
            self._send()  # the child starts on these while the loop reads the rest

    def _watch(self) -> None:
        """The watchdog (one timer, not one per delivery): what has waited for the child
        longer than ``stall_after`` fails (503 upstream), and it looks again later."""
        self._watchdog = None
        since = self._waiting_since
        if since is None or not (self._waiting or self._probe):
            return
        waited = time.monotonic() - since
        if waited < self.stall_after:
            self._watch_in(self.stall_after - waited)
            return
        child = self._child
        log().error(
            "store_writer_stalled",
            waited=round(waited, 1),
            failing=sum(not waiter.done for waiter in self._waiting),
            writer_pid=child.pid if child is not None else None,
        )
        msg = (
            f"The event store's writer process has not answered for {waited:.0f} s "
            "(a stalled disk or mount?); nothing unanswered was acknowledged."
        )
        _fail(self._waiting, StoreUnavailable(msg))
        # A child that stopped answering is not trusted to go on: it is killed (what it
        # committed stays; the senders' retries of it are duplicates) and the next write
        # starts a new one once it has exited (:meth:`_reap`).
        self._kill()
        self._lost(f"it had not answered for {waited:.0f} s and was killed")

    def _watch_in(self, seconds: float) -> None:
        if self._watchdog is None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(max(seconds, 0.01), self._watch)

    async def check(self) -> None:
        """Readiness: raise :class:`StoreUnavailable` when the child does not answer a probe
        within :data:`PROBE_WAIT` (see the module's docstring), when a delivery has waited for
        it for longer than ``stall_after``, or when no child runs and none can start (a
        killed one has not exited); a child lost while idle is replaced here, as the next
        write would (its start waits for its first answer)."""
        since = self._waiting_since
        if since is not None and time.monotonic() - since > self.stall_after:
            msg = (
                f"The event store's writer process has not answered for "
                f"{time.monotonic() - since:.0f} s (a stalled disk or mount?)."
            )
            raise StoreUnavailable(msg)
        if not self._open:
            return
        if not self.running:
            await self.start()
            return
        probe = self._probe
        if probe is None:
            probe = self._send_probe()
        try:
            await asyncio.wait_for(asyncio.shield(probe), PROBE_WAIT)
        except TimeoutError:
            pid = self._child.pid if self._child is not None else None
            msg = (
                f"The event store's writer process (pid {pid}) has not answered within "
                f"{PROBE_WAIT:g} s (stopped, or stuck on a stalled disk or mount?)."
            )
            raise StoreUnavailable(msg) from None

    def _send_probe(self) -> asyncio.Future[None]:
        """Send the child a frame of no deliveries; the future its next answer sets."""
        probe = self._probe = asyncio.get_running_loop().create_future()
        try:
            if self._transport is None:  # (check starts a child first: not met)
                raise ConnectionError("no child runs")
            self._transport.write(framed(_PROBE))
        except Exception as exc:  # the probe fails with the child (what waits fails too)
            self._lost(f"writing to it failed ({exc})")
            return probe
        if self._waiting_since is None:  # watched as a delivery would be
            self._waiting_since = time.monotonic()
            self._watch_in(self.stall_after)
        return probe

    def _send(self) -> None:
        rows, self._gathered = self._gathered, []
        waiters, self._gathered_waiters = self._gathered_waiters, []
        if not rows:
            return
        if not self.running or self._transport is None:
            _fail(waiters, StoreUnavailable("The event store's writer process is not running."))
            return
        try:
            frame = framed(self._encoder.encode(rows))
        except Exception:  # a row msgpack cannot carry: it alone fails, the rest goes
            rows, waiters = self._sendable(rows, waiters)
            if not rows:
                return
            frame = framed(self._encoder.encode(rows))
        # Waiting before writing: the child answers every frame, in order, one entry per row.
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
            self._watch_in(self.stall_after)
        self._waiting.extend(waiters)
        try:
            self._transport.write(frame)
        except Exception as exc:  # the socket is unusable: what waits fails, the next starts anew
            self._lost(f"writing to it failed ({exc})")

    def _sendable(self, rows: list[Row], waiters: list[_Waiter]) -> tuple[list[Row], list[_Waiter]]:
        """The rows that encode, and their waiters; the others fail (never sent)."""
        kept: list[Row] = []
        waiting: list[_Waiter] = []
        for row, waiter in zip(rows, waiters, strict=True):
            try:
                self._encoder.encode(row)
            except Exception as exc:
                msg = f"A delivery could not be handed to the store's writer ({exc})."
                waiter.settle(StoreError(msg))
                continue
            kept.append(row)
            waiting.append(waiter)
        return kept, waiting

    def _answered(self, reply: Any) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)  # its first answer, empty: it is ready
        if self._probe is not None:  # any answer: it is moving
            if not self._probe.done():
                self._probe.set_result(None)
            self._probe = None
        commits, results = reply
        self.stats.commits = self._commits_before + int(commits)
        # (a frame answered: the child is moving; what waits now, waits from now)
        self._waiting_since = time.monotonic() if len(self._waiting) > len(results) else None
        for result in results:
            if not self._waiting:
                break
            waiter = self._waiting.popleft()
            self.stats.jobs += 1
            if waiter.done:
                continue
            tag = result[0] if result else None
            if tag == "error":
                waiter.settle(StoreError(str(result[1])))
            elif tag == "unavailable":
                waiter.settle(StoreUnavailable(str(result[1])))
            elif tag == "parse":
                waiter.settle(BodyNotSkimmed())
            else:
                waiter.settle([EnqueueResult(int(i), bool(d), str(did)) for i, d, did in result])

    def _lost(self, why: str) -> None:
        if self._ready is not None and not self._ready.done():  # it died starting
            self._ready.set_exception(StoreUnavailable(why))
            self._ready.exception()  # (retrieved: the start raises its own)
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            msg = f"The event store's writer process stopped: {why}."
            probe.set_exception(StoreUnavailable(msg))
            probe.exception()  # (retrieved: a probe that gave up waiting is gone)
        transport, self._transport = self._transport, None
        if transport is None:
            return  # already handled (a failed write, then the socket's own close)
        transport.abort()
        code = self._child.poll() if self._child is not None else None
        if self._open:  # not a stop we asked for
            log().error("store_writer_lost", why=why, exit_code=code, waiting=len(self._waiting))
        self._waiting_since = None
        if self._waiting:
            msg = (
                f"The event store's writer process stopped ({why}; exit code {code}); "
                "nothing unanswered was acknowledged, and the next write starts a new one."
            )
            waiting, self._waiting = self._waiting, deque()
            _fail(waiting, StoreUnavailable(msg))

    def _kill(self) -> None:
        """Send the child ``SIGKILL`` (one already gone is no error); it stays the child that
        the next start waits for (:meth:`_reap`)."""
        if self._child is not None:
            with contextlib.suppress(OSError):
                self._child.kill()

    async def _reap(self) -> None:
        """Wait for a previous child (lost: its socket closed, or killed for stalling) to
        be gone, for at most :data:`REAP_WAIT`.

        Raises:
            StoreUnavailable: it has not exited (it stays the child to wait for next time):
                a new one must not write beside it, nor new ones pile up behind it.
        """
        old = self._child
        if old is not None and old.poll() is None:
            self._kill()  # it must not write behind a new one
            try:
                await asyncio.to_thread(old.wait, REAP_WAIT)
            except subprocess.TimeoutExpired:
                msg = (
                    f"The event store's previous writer process (pid {old.pid}) has not "
                    f"exited {REAP_WAIT:g} s after SIGKILL (stuck on a hung disk or mount?); "
                    "no new one starts until it has."
                )
                raise StoreUnavailable(msg) from None
        if old is not None:
            orphans.OWN.discard(old.pid)
        self._child = None

    async def stop(self) -> None:
        """Wait for what was sent, then close the socket and wait for the child to exit.

        The watchdog keeps watching meanwhile: with a stalled child, what waits is answered
        (503) after ``stall_after`` and the stop goes on, instead of waiting as long as the
        stall lasts."""
        self._open = False
        if self._starting is not None:  # a start that no caller may wait for any more
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        self._send()
        untold = [waiter for waiter in self._waiting if not waiter.done]
        if untold:
            loop = asyncio.get_running_loop()
            for waiter in untold:
                waiter.finished = loop.create_future()
            with contextlib.suppress(Exception):
                await asyncio.gather(*(w.finished for w in untold if w.finished is not None))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        child, self._child = self._child, None
        if child is not None:
            try:
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()
                try:
                    await asyncio.to_thread(child.wait, REAP_WAIT)
                except subprocess.TimeoutExpired:  # it can write nothing more once it wakes
                    log().error("store_writer_left", writer_pid=child.pid)
                    return  # (still ours to wait for: not the reaper's)
            orphans.OWN.discard(child.pid)


def _identity_arg(identity: Identity) -> str:
    """A file identity as the child's argument (``DEV:INO``, ``-`` for none)."""
    return "-" if identity is None else f"{identity[0]}:{identity[1]}"
