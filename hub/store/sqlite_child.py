"""The SQLite store's writer process, which
:class:`~hub.store.sqlite_process.IngestProcess` starts (``python -m hub.store.sqlite_child``),
and the frames both sides send.

It reads deliveries from its parent over a socket pair, commits them in group-commit
batches and answers after ``COMMIT`` (see :mod:`hub.store.sqlite_process` for the protocol
and for what the parent does when the child dies or stalls). It imports only what that
takes: no asyncio and no log set-up until it has a line to write. A ``serve`` on SQLite
starts one, and starts another after each failure of its writer, so its start is part of
every start of the hub: its imports took 0.18-0.20 s of CPU with the whole store, and
0.14 s so (medians of 21 starts on the benchmarks' machine).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import sqlite3
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from hub.store import base, bulk
from hub.store.base import StoreStats, StoreUnavailable
from hub.store.models import EnqueueResult
from hub.store.rows import to_pending
from hub.store.sqlite_conn import (
    MAX_BATCH,
    Identity,
    Reopening,
    WriteFailures,
    begin_immediate,
    bulk_or_each,
    unavailable,
)

#: A frame's header: the length of its msgpack body (see sqlite_process's wire format). One
#: delivery on the wire: ``bulk.Pending``'s fields in order but ``body_format`` (the body
#: travels as received; the child compresses it), then the skim: None, or ``[key]`` for a
#: ``SkimId`` delivery (its events empty; the child reads the id).
HEADER = struct.Struct(">I")
#: Largest frame either side accepts (a batch of maximal bodies fits well below it).
MAX_FRAME = 1 << 30


def framed(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class Frames:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        at = 0
        while len(buf) - at >= 4:
            (size,) = HEADER.unpack_from(buf, at)
            if size > MAX_FRAME:
                msg = f"a frame of {size} bytes from the store's writer process"
                raise ValueError(msg)
            if len(buf) - at - 4 < size:
                break
            frames.append(bytes(buf[at + 4 : at + 4 + size]))
            at += 4 + size
        del buf[:at]
        return frames


def _results(results: list[EnqueueResult]) -> list[tuple[int, bool, str | None]]:
    return [(r.id, r.duplicate, r.delivery_id) for r in results]


def _commit(conn: sqlite3.Connection, items: list[bulk.Pending]) -> list[Any]:
    """Insert ``items`` in one transaction; one answer per item (see the module's wire format)."""
    begin_immediate(conn)
    outcomes = bulk_or_each(conn, items, bulk.insert, bulk.insert_one)
    conn.execute("COMMIT")
    return [_results(value) if ok else ["error", str(value)] for ok, value in outcomes]


#: The most one read from the parent takes (a reused buffer of this size).
RECV_SIZE = 1 << 20


class _Inbox:
    """Reads from the parent into one buffer, reused: each read is copied out at its size.

    ``sock.recv(1 << 20)`` allocates a mebibyte at every read and shrinks it to what came.
    The first such buffer freed raises glibc's mmap threshold to its size, after which each
    one is carved from the heap and shrunk in place, and the small allocations made between
    two reads pin the freed tails: the child's heap grew without a large body, from 7 to
    33 MB over 60,000 small deliveries (40 to 77 MB of RSS in a 17-minute soak), and stayed
    at 8.5 MB with the threshold fixed.
    """

    def __init__(self, size: int = RECV_SIZE) -> None:
        self._view = memoryview(bytearray(size))

    def read(self, sock: socket.socket) -> bytes:
        """What one read brings (``b""`` at end of file); raises as ``sock.recv`` does."""
        got = sock.recv_into(self._view)
        return bytes(self._view[:got])


#: A frame this large holds a large body (a frame is at most :data:`HAND_OVER` deliveries):
#: after answering it, the child gives its free memory back (:func:`_trim`).
TRIM_AFTER = 256 * 1024


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return functools.partial(trim, 0)


_trim = _malloc_trim()


def serve(
    sock: socket.socket,
    path: Path,
    synchronous: str,
    opened: Identity = None,
    wal: Identity = None,
) -> None:
    """The child's loop: read frames, commit them in batches, answer, until end of file.
    ``opened`` and ``wal``: the file the store opened and its log (see
    :class:`~hub.store.sqlite_conn.Reopening`)."""
    stats = StoreStats()
    writer = Reopening(
        path, synchronous=synchronous, writer=True, stats=stats, opened=opened, wal=wal
    )
    frames = Frames()
    inbox = _Inbox()
    decoder = msgspec.msgpack.Decoder()
    encoder = msgspec.msgpack.Encoder()
    ready: deque[bulk.Pending | None] = deque()
    eof = False
    large = False  # a large frame was read since the last trim
    failures = WriteFailures()
    sock.sendall(framed(encoder.encode([0, []])))  # ready: the parent starts sending
    while not (eof and not ready):
        if not ready:
            sock.setblocking(True)
            try:
                data = inbox.read(sock)
            except ConnectionResetError:
                # The parent died with an answer of ours unread: the end of file as it is
                # then told (a traceback in the hub's log would say something had gone wrong)
                break
            if not data:
                break
            chunks = [data]
            sock.setblocking(False)
            while True:  # whatever else has arrived joins this batch
                try:
                    more = inbox.read(sock)
                except BlockingIOError:
                    break
                except ConnectionResetError:  # the parent died (as above)
                    eof = True
                    break
                if not more:
                    eof = True
                    break
                chunks.append(more)
            for frame in frames.feed(b"".join(chunks)):
                large = large or len(frame) >= TRIM_AFTER
                ready.extend(to_pending(row) for row in decoder.decode(frame))
        batch = [ready.popleft() for _ in range(min(len(ready), MAX_BATCH))]
        items = [p for p in batch if p is not None]
        try:
            written: Iterator[Any] = iter(())
            if items:
                conn = writer.get()
                changes = conn.total_changes
                written = iter(_commit(conn, items))
                stats.commits += 1  # (after the commit: a failure skips it)
                if conn.total_changes != changes:
                    failures.committed()
            answers = [["parse"] if p is None else next(written) for p in batch]
        except StoreUnavailable as exc:
            failures.failed("store_unavailable", exc, len(batch))
            answers = [["unavailable", str(exc)]] * len(batch)
        except Exception as exc:
            failures.failed("store_write_failed", exc, len(batch))
            if writer.conn is not None and writer.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    writer.conn.execute("ROLLBACK")
            writer.drop()
            answers = [["unavailable", str(unavailable(path, exc))]] * len(batch)
        sock.setblocking(True)
        try:
            sock.sendall(framed(encoder.encode([stats.commits, answers])))
        except OSError:
            break  # the parent is gone; what was committed stays, the senders retry the rest
        if large and not ready and _trim is not None:
            # Large bodies (up to max_body each, and their copies) come from the heap once
            # glibc has raised its mmap threshold after freeing one, and the heap's free
            # pages stay with the process: the child grew from 50 to 82 MB over 24,000
            # deliveries of which 2% were 0.5 to 1 MB, and stays at 38 MB trimmed
            # (BENCHMARKS.md). Small deliveries never come here.
            _trim()
            large = False
    writer.drop()


def _identity_of(arg: str) -> Identity:
    if arg == "-":
        return None
    dev, ino = arg.split(":")
    return int(dev), int(ino)


def _configure_logs() -> None:
    from hub import logs

    logs.configure(level="warning", stream=sys.stderr)


def main(argv: list[str]) -> int:
    fd, path, synchronous = int(argv[0]), Path(argv[1]), argv[2]
    opened, wal = (_identity_of(argv[3]), _identity_of(argv[4])) if len(argv) >= 5 else (None, None)
    # The parent stops us by closing the socket (or by dying): a signal sent to the whole
    # process group (Ctrl-C, a service manager's SIGTERM, a closed terminal's or a
    # `pkill -HUP`'s SIGHUP, which the hub takes as "reload") must not cut its writes short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # JSON lines, or the console renderer when stderr is a terminal (as the hub decides);
    # set up before the first line, if there is one (most children never write one)
    base.before_first_line = _configure_logs
    sock = socket.socket(fileno=fd)
    try:
        serve(sock, path, synchronous, opened, wal)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    os._exit(main(sys.argv[1:]))
