"""uvicorn's httptools protocol, with webhook POSTs taken without the ASGI cycle.

:class:`HubHttpProtocol` does these things on top of uvicorn's ``HttpToolsProtocol``:

* **A webhook POST skips ASGI.** For a plain ``POST /hooks/{endpoint}`` (a known endpoint,
  a ``Content-Length`` within its limit, no ``Expect``, nothing else under way on the
  connection, its writes not paused) the protocol gathers the body itself and hands it to
  :meth:`hub.web.ingest.Ingest.post`, which answers from the store's callback; the answer
  is written in one call right there. No scope, no request/response cycle, no task, no
  ``receive``/``send`` coroutines, and no loop iteration between the commit and the write:
  about a fifth of the event loop's time per webhook (BENCHMARKS.md §1). Every other
  request (a chunked or oversized body, a handshake, a health check, a pipelined request
  behind one under way) takes uvicorn's own path to the same app, so the answers are the
  same either way; ``tests/web/test_protocol.py`` checks both paths. So does a webhook
  read while the transport has asked the protocol to pause writing (a sender that does
  not read its answers): uvicorn's path waits for the transport to drain before it answers
  (and starts no request behind it meanwhile), where the fast path wrote at once, so the
  answers to such a sender grew the transport's buffer without bound.
* **Bodies held within a budget**: each byte of a webhook's body the protocol gathers is taken
  from ingest's budget of bodies being read, all connections together
  (``hub.web.ingest.BODIES_IN_FLIGHT``), and given back once the body is read whole or
  dropped; a body read past it is answered 503 at once and its connection closed, as
  ingest answers one on the ASGI path.
* **One write per response** on the ASGI path: uvicorn writes a response's status line and
  headers as soon as the app sends ``http.response.start``, then the body in a second
  write. The protocol's transport gathers what is written during one event loop iteration
  and writes it at the end of that iteration, in one call. Closing writes what is gathered
  first; ``abort`` drops it, as it drops the transport's own buffer.
* **A bounded request head**: a request line and headers over :data:`MAX_HEAD` are answered
  431 and the connection closed (uvicorn's httptools protocol reads a head without limit),
  however the head's bytes are split across reads, before the request is dispatched (neither
  the webhook path nor the app sees it); each request on a connection has its own limit. So
  are a chunked body's trailer fields (counted the same ways, and dropped, not added to the
  request's headers as uvicorn did, without limit), answered 431 once over it; and a chunk's
  size line, whose extensions (``5;aaaa...``) the parser skips without end, answered 400.
* **Refusals in request order**: a request refused (431, 400 for bytes uvicorn's parser
  cannot read, 408 below) behind requests read whole but not answered yet on its connection
  (a webhook being stored, an app's answer under way, requests pipelined behind it) is
  answered after them, then the connection closed; nothing read after it is started.
  uvicorn's protocol wrote its 400 and closed the connection at once: a webhook stored in
  that time was never answered 200, the sender got the 400 for it. A refusal waits
  :data:`READ_TIMEOUT` at most for those answers: past that (a store that neither commits
  nor fails), the connection is closed with neither them nor the refusal.
* **A bounded pipeline**: at most :data:`MAX_PIPELINED` requests read whole wait behind the
  one being answered; the next is refused 429 as above (uvicorn queued every request it read,
  and read on after each answer, for a sender that never read its answers).
* **A half-closed connection is still answered**: a sender that closes its side after its
  requests (``shutdown(SHUT_WR)``, ``nc -N``) gets the answers of those it sent whole (and a
  refusal queued after them), in order, and then the connection is closed, as after a
  refusal; a request it left unfinished is dropped. uvicorn's protocol closed the
  connection at the end of file: a webhook stored meanwhile was never answered 200, and
  pipelined requests not started yet were never started.
* **A bounded wait for a request's bytes**: a connection that sends nothing of its first
  request, or stops mid-head or mid-body, for :data:`READ_TIMEOUT` is closed (with a 408 once
  a request has begun, refused as above: after the answers of the requests before it).
  uvicorn's protocol times out only the wait between requests (keep-alive): a sender that
  vanished mid-request held its connection, and a file descriptor, for good. A request
  also has :data:`REQUEST_TIME` to come whole, more at :data:`REQUEST_RATE` bytes a
  second, :data:`REQUEST_TIME_MAX` at most (a byte every 29 s was never cut), and blank
  lines between requests do not stop the keep-alive wait (one ``\r\n`` after an answer
  held the connection for good).
* **A lingering close**: a connection the hub ends while its sender may still be sending (a
  refusal; a 413 for a body not read) is shut on the hub's side, and what still comes is read
  and dropped until the sender closes, goes quiet, or a bound passes
  (:meth:`GatheringTransport.close`). uvicorn closed at once, and the kernel reset the
  connection under a sender still writing, which then saw the reset, not the answer.
* **An offer to switch protocols is ignored**: a request with ``Upgrade`` and ``Connection:
  upgrade`` (``h2c``, which Java's HttpClient offers with every request to an http:// URL;
  anything but a WebSocket uvicorn takes, or a ``CONNECT``) is read and answered as the
  HTTP/1.1 request it also is, body included (:meth:`HubHttpProtocol._without_upgrade`).
  httptools ends such a request at its head and leaves the body to the new protocol;
  uvicorn's protocol, which does not switch, went on with an empty body (a form webhook
  stored as an empty form, the lead lost) and read the body as the next request.
* **A Content-Length repeated with one value is that value**: ``Content-Length: 5`` twice,
  or ``5, 5``, which httptools refuses, is read as one (RFC 9112 6.3), the head read again
  without the repeats (:meth:`HubHttpProtocol._repeated_length`); different values are a
  400 that says so. A head is read so wherever it falls: beginning a read, pipelined behind
  other requests in one (found where the parser would begin it: :func:`_request_start`), cut
  across reads, behind a head or body that came across reads; but not behind a chunked body
  that came across reads (where it begins is not known: still a 400).
* **Refusals counted**: each request refused so (400, 431, 408, 429) is counted in
  ``leadhub_deliveries_total`` as ``rejected`` with reason ``unreadable``,
  ``headers_too_large``, ``read_timeout`` or ``pipelined_too_far`` (endpoint ``""`` unless
  its head was read whole and names an endpoint), once, when it is refused, unless its own
  cycle was started: a webhook cut off in its body is counted ``disconnected`` (by the fast
  path's ``connection_lost`` or by ingest), as before. uvicorn's refusals were counted nowhere.
  Only where the app is the hub's with ingest (``serve``'s ``web`` and ``all`` roles): a
  ``worker`` takes no deliveries, and counts none of its other requests as deliveries.
* **Refusals logged**: each such refusal is also one ``delivery_received`` line, as ingest
  logs a rejected delivery (``endpoint``, ``outcome`` ``rejected``, ``reason``, ``status``,
  ``detail``), on any app, at most one a second per endpoint and reason
  (:data:`REFUSAL_LOG_EVERY`, with ``unlogged``). uvicorn logged its 400 as an unstructured
  warning per refusal (and this protocol its 431 and 408), whatever the flood.

This leans on uvicorn's protocol internals (``cycle``, ``headers``, ``url``, the parser
callbacks, and its ``data_received``, repeated here without its warning), so the dependency
on uvicorn is pinned to the minor versions tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

import httptools
import orjson
import structlog
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from hub.logs import Throttle
from hub.web.ingest import (
    DISCONNECTED,
    PREFIX,
    Answer,
    HookRoute,
    Ingest,
    header_dict,
    over_budget,
)


class GatheringTransport:
    """A transport that passes everything to ``inner`` but gathers writes per loop iteration,
    and closes a connection whose sender may still be sending by lingering (:meth:`close`)."""

    __slots__ = ("_inner", "_last_read", "_linger_until", "_loop", "_pending", "_timer", "lingers")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self._pending: list[bytes] = []
        #: Whether a close now should linger (the protocol says: a request is unfinished);
        #: None: never (a graceful stop closes at once).
        self.lingers: Callable[[], bool] | None = None
        #: While lingering: the timer that ends it, when it must end at the latest, and when a
        #: byte last came (loop time). ``_linger_until`` is 0.0 until :meth:`close`.
        self._timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0
        self._last_read = 0.0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._linger_until:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write what was gathered, as one write (nothing if the transport is closing)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if self._inner.is_closing() or self._linger_until:
            return
        self._inner.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Write what was gathered, then close the connection; a second close (uvicorn's
        graceful stop) ends a linger at once.

        When the sender may still be sending (:attr:`lingers`: a request not read whole, a
        431 for a head that never ends, a 413 for a body not read), the connection lingers:
        the hub's side is shut (the answer, then the end of file), and what still comes is
        read and dropped until the sender closes its side, or sends nothing for
        :data:`LINGER_QUIET`, or :data:`LINGER_MAX` has passed; then it is closed. Closing at
        once with the sender's bytes unread made the kernel reset the connection: a sender
        still writing its body most often saw the reset, not the answer (the 413 or 431 that
        tells it not to send that again), and retried it."""
        if self._linger_until:
            self._end_linger()
            return
        self.flush()
        lingers = self.lingers
        inner = self._inner
        if inner.is_closing() or lingers is None or not lingers() or not inner.can_write_eof():
            inner.close()
            return
        now = self._loop.time()
        self._linger_until = now + LINGER_MAX
        self._last_read = now
        inner.write_eof()
        inner.resume_reading()  # (paused while a refusal waited for the answers before it)
        self._timer = self._loop.call_later(LINGER_QUIET, self._linger_check)

    def read_while_closing(self) -> None:
        """A read came while the connection is closing (dropped): a lingering close waits on."""
        if self._linger_until:
            self._last_read = self._loop.time()

    def _linger_check(self) -> None:
        self._timer = None
        now = self._loop.time()
        end = min(self._linger_until, self._last_read + LINGER_QUIET)
        if now >= end:
            self._inner.close()
        else:
            self._timer = self._loop.call_later(end - now, self._linger_check)

    def _end_linger(self) -> None:
        self.forget()
        self._inner.close()

    def forget(self) -> None:
        """The connection is gone (or is being closed now): no linger's timer is left."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def is_closing(self) -> bool:
        return bool(self._linger_until) or self._inner.is_closing()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def abort(self) -> None:
        self._pending = []
        self.forget()
        self._inner.abort()

    def end_linger(self) -> None:
        """Close a lingering connection now (nothing when it does not linger)."""
        if self._linger_until:
            self._end_linger()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + sum(len(p) for p in self._pending)

    def __getattr__(self, name: str) -> Any:
        # everything else (get_extra_info, pause_reading, resume_reading, set_protocol, ...)
        return getattr(self._inner, name)


class _Noop:
    """uvicorn sets its cycle's ``message_event`` on a disconnect; ours needs no waking."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NOOP = _Noop()
_PREFIX = PREFIX.encode()
_JSON = [(b"content-type", b"application/json")]
#: The most a request's line and headers may take before the hub answers 431 and closes the
#: connection. uvicorn's httptools protocol sets no limit (its h11 one: 16 KiB): a header
#: line that never ended grew the process by the size sent (100 MB: 170 MB more). A head is
#: checked twice over: when it ends, before the request is dispatched, as the parser handed
#: it over (the URL, each header's name and value, as if written ``name: value`` with CRLFs,
#: the method and version: a head written so is counted to the byte, the blank line that
#: ends it included; counted only when the reads that held it could hold more than the
#: limit); and, while it has not ended, by every read that began and ended inside it (the
#: parser keeps a part of a line until the line ends, so a line that never ends is seen
#: only so), checked after each read: one read (at most 256 KiB) more may be held. A chunked
#: body's trailer fields have the same limit, counted as the parser hands each over and by
#: every read that began and ended inside them. So has a chunk's size line (its extensions:
#: ``5;aaaa...``), counted by every read inside a body that the parser handed nothing of,
#: answered 400 once over it.
MAX_HEAD = 64 * 1024
#: What a head takes besides its URL and headers: the spaces and CRLF of the request line,
#: its version (``HTTP/1.1``), the blank line that ends it (the method is counted apart).
_REQUEST_LINE = len(b"  HTTP/1.1\r\n\r\n")
#: What a header line takes besides its name and value: ``: `` and its CRLF.
_HEADER_LINE = len(b": \r\n")
#: Seconds a connection may go without a byte while the hub waits for a request it has not
#: read whole (the first request of a new connection, or the rest of a head or body), before
#: the hub closes it: answered 408 when a request had begun, closed silently before. Each
#: byte starts the wait over (a slow sender that keeps sending is not cut). uvicorn's
#: protocol waits without end there (it times out only the keep-alive wait between
#: requests): under `ulimit -n 64`, 40 connections that sent part of a request and then
#: nothing (a sender whose host vanished, a NAT that dropped the flow) held every free file
#: descriptor for as long as the hub ran, and every new connection was refused (accepted and
#: closed at once), senders and the dispatcher's calls to the embedded sandbox alike.
READ_TIMEOUT = 30.0
#: Seconds a request may take to come whole (its head and body; for a connection's first
#: request, from the connection's start), plus a second for each :data:`REQUEST_RATE` bytes
#: the connection sent meanwhile; past that it is answered 408 and the connection closed,
#: as after :data:`READ_TIMEOUT`. The wait for each byte alone did not bound a request: a
#: sender trickling a byte every 29 s (or a blank line before its first request) held its
#: connection, and a file descriptor, for as long as it liked. A sender that keeps up
#: :data:`REQUEST_RATE` is not cut before :data:`REQUEST_TIME_MAX` (1 MiB at 2 KB/s: 9
#: minutes), the most any request has: bytes sent fast would otherwise hold a connection
#: for long (a body of one-byte chunks: six bytes on the wire for each of the body's; a
#: chunk's extension, before it had a limit of its own, for good).
REQUEST_TIME = 60.0
REQUEST_RATE = 1024
REQUEST_TIME_MAX = 900.0
#: How long a connection closed under a sender that may still be sending lingers
#: (:meth:`GatheringTransport.close`): it is closed once the sender has sent nothing for
#: ``LINGER_QUIET`` seconds, and after ``LINGER_MAX`` at most, unless the sender closes
#: first (as nginx's ``lingering_timeout`` and ``lingering_time``, shorter).
LINGER_QUIET = 2.0
LINGER_MAX = 10.0
#: The most requests a connection may have read whole and queued behind the one being
#: answered (HTTP pipelining); the next is answered 429 after them, and the connection
#: closed. uvicorn queues every request it reads while one is answered, and reads on after
#: each answer: a sender that wrote requests without reading their answers (which the
#: kernel's buffers take for a while) grew the hub by about 600 bytes a request, 230 MB in
#: 10 s of ``GET /healthz``, kept after it closed. No webhook sender pipelines so deep.
MAX_PIPELINED = 100
#: Seconds between two ``delivery_received`` lines of the protocol's own refusals of one
#: endpoint and reason (the lines between are counted in the next one's ``unlogged``).
REFUSAL_LOG_EVERY = 1.0
#: The refusal lines' throttle of each server (all its connections share it).
_REFUSAL_LINES: weakref.WeakKeyDictionary[ServerState, Throttle] = weakref.WeakKeyDictionary()
_UNREADABLE = "Invalid HTTP request received."
#: The parser's refusals of a Content-Length given twice, or as a list (``5, 5``).
_LENGTH_ERRORS = frozenset({"Duplicate Content-Length", "Invalid character in Content-Length"})
_REPEATED_LENGTHS = (
    "Content-Length is given more than once, with different values; send it once, the "
    "body's length in bytes"
)


def _one_length(head: bytes) -> bytes | str | None:
    """``head`` (a request line and its header lines, without the blank line) with its
    Content-Length given once, where it was given several times (lines, or a list in one)
    with one value; why not (``str``: different values); or None (no such header repeated,
    or a value that is no number: the parser's refusal stands)."""
    lines = head.split(b"\r\n")
    values: list[bytes] = []
    where = 0
    kept = lines[:1]  # (the request line)
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name.lower() != b"content-length":
            kept.append(line)
            continue
        if not values:
            kept.append(b"")  # (its place, filled below)
            where = len(kept) - 1
        values += [item.strip(b" \t") for item in value.split(b",")]
    if len(values) < 2 or not all(value.isdigit() for value in values):
        return None
    if len(set(values)) > 1:
        return _REPEATED_LENGTHS
    kept[where] = b"Content-Length: " + values[0]
    return b"\r\n".join(kept)


class _Completions:
    """A scratch parser's protocol: counts the requests it read whole (and nothing else: the
    parser calls back only what its protocol has)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def on_message_complete(self) -> None:
        self.count += 1


def _completed(data: bytes) -> int:
    """How many requests a fresh parser reads whole from ``data`` (up to an error)."""
    counter = _Completions()
    parser = httptools.HttpRequestParser(counter)
    with contextlib.suppress(AttributeError):  # (as the protocol's own parser: see below)
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    with contextlib.suppress(httptools.HttpParserError, httptools.HttpParserUpgrade):
        parser.feed_data(data)
    return counter.count


def _request_start(data: bytes, before: int) -> int | None:
    """Where, in ``data`` (bytes that begin at a request's start), the request after the
    first ``before`` requests begins (blank lines before it included): the least prefix a
    fresh parser reads ``before`` requests whole from, found by halving (the parser gives
    no offsets). Only for a request the parser refused (:meth:`HubHttpProtocol.
    _repeated_length`), or a head cut off by its read: a few parses of one read. None when
    ``data`` holds fewer."""
    if before <= 0:
        return 0
    if _completed(data) < before:
        return None
    low, high = 1, len(data)  # (the answer is in low..high)
    while low < high:
        middle = (low + high) // 2
        if _completed(data[:middle]) >= before:
            high = middle
        else:
            low = middle + 1
    return low


_log = structlog.get_logger()


class _Webhook:
    """A webhook POST taken without ASGI: uvicorn's protocol code treats it as its
    ``cycle`` (``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``)."""

    __slots__ = (
        "body",
        "disconnected",
        "headers",
        "held",
        "keep_alive",
        "message_event",
        "posted",
        "query",
        "response_complete",
        "route",
        "start",
    )

    def __init__(
        self,
        route: HookRoute,
        headers: list[tuple[bytes, bytes]],
        query: bytes,
        keep_alive: bool,
    ) -> None:
        self.route = route
        self.headers = headers
        self.query = query
        self.keep_alive = keep_alive
        self.body = bytearray()
        #: Bytes of the body taken from ingest's budget of bodies being read (given back
        #: once the body is read whole, or dropped: :meth:`HubHttpProtocol._let_go`).
        self.held = 0
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NOOP
        #: Its body read in full and handed to ingest (which answers it, once).
        self.posted = False
        self.start = perf_counter()


class _Dropped:
    """A request read after the connection was closed under it, in the same read: the one
    before it was answered while that read was parsed and ended the connection (HTTP/1.0
    with ``Connection: keep-alive``, which the parser keeps reading after, or a graceful
    stop). uvicorn's path never starts such a request (it waits behind that one, and the
    closing connection starts nothing more), so neither does this: not stored, not answered,
    not logged."""

    __slots__ = ()
    response_complete = True
    disconnected = True
    keep_alive = False
    message_event = _NOOP


_DROPPED = _Dropped()


class HubHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`GatheringTransport`, taking webhook POSTs
    without the ASGI cycle (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, self.loop)
        gathering.lingers = self._unfinished
        super().connection_made(gathering)  # type: ignore[arg-type]
        ingest = getattr(self.app, "ingest", None)
        #: The hub's ingest when the app is the hub's, unwrapped, and serves webhooks.
        self.ingest: Ingest | None = ingest if isinstance(ingest, Ingest) else None
        #: The webhook handed to ingest and not answered yet (one at most: the next request
        #: waits behind it on uvicorn's path); like an ASGI request's task, uvicorn's graceful
        #: stop waits for it, even once its sender has gone.
        self.answering: _Webhook | None = None
        self.lost = False
        #: Requests begun on the connection; whether the last one's head is still being
        #: read; how many bytes of it were read by reads that began and ended inside it
        #: (see :data:`MAX_HEAD`). Reads so far and the last one's length; the read the head
        #: began in and that read's length.
        self.begun = 0
        self.in_head = False
        self.head_read = 0
        self.reads = 0
        self.read_len = 0
        self.head_from = 0
        self.head_first = 0
        #: Whether the last thing the parser read of a chunked body was a chunk's size line
        #: (the last chunk's, when trailer fields follow); how many bytes of trailer fields
        #: the request being read has sent (see :data:`MAX_HEAD`).
        self.after_chunk_size = False
        self.trailer_read = 0
        #: Whether the parser handed anything of the request over (its head read whole, body
        #: bytes, a chunk's size line) during the read being parsed; how many bytes the reads
        #: since it last did, inside the body of one request, took: a chunk's size line with
        #: its extensions, which the parser reads without end and hands nothing of over (or
        #: trailer fields, counted apart as well). See :data:`MAX_HEAD`.
        self.handed = False
        self.line_read = 0
        #: Of the read being parsed: the body bytes the parser handed over, and how many of
        #: them it had when it first read a request whole (-1: none yet, or one with chunks,
        #: which it read a chunk's size line of); the end, in the read, of a body it began in
        #: (see :meth:`_from_request`).
        self.body_read = 0
        self.body_end = -1
        self.chunked_read = False
        #: The bytes of the request whose head is being read, from its first, while that head
        #: spans reads (see :meth:`_repeated_length`), unless it came behind a chunked body
        #: that spanned reads; else None (freed once the head is read whole). A head whose
        #: Content-Length repeats, not whole yet: its bytes so far, read again with the next.
        self.head_raw: bytearray | None = None
        self.head_pending: bytes | None = None
        #: Whether a request was refused (:meth:`_refuse`) or the sender's side closed
        #: (:meth:`eof_received`): nothing read after is started; what is written once the
        #: answers of the requests before it are, before the connection is closed (the
        #: refusal's answer; ``b""`` after an end of file), while it waits for them.
        self.refused = False
        self.refusal: bytes | None = None
        #: Whether a request has begun and not been read whole (its sender may still be
        #: sending it: a close then lingers, see :meth:`GatheringTransport.close`).
        self.unfinished = False
        #: Whether the sender closed its side (:meth:`eof_received`): nothing more comes.
        self.ended = False
        #: Whether the request just read asked to switch protocols (``Upgrade: h2c``), which
        #: the hub does not: it is read again without it (:meth:`_without_upgrade`).
        self.upgrade_ignored = False
        #: Whether a request is awaited or being read (see :data:`READ_TIMEOUT`): from the
        #: connection's start, and from each request's first byte to its last; when a byte
        #: last came (loop time); the timer that looks at both (None when none is armed).
        self.reading = True
        self.last_read = self.loop.time()
        #: When the request being awaited or read began to be awaited (the connection's
        #: start, then each later request's first byte), and the bytes the connection had
        #: received then; the bytes received so far (see :data:`REQUEST_TIME`).
        self.request_since = self.last_read
        self.request_from = 0
        self.received = 0
        self.read_timer: asyncio.TimerHandle | None = self.loop.call_later(
            READ_TIMEOUT, self._read_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        cycle: Any = self.cycle
        super().connection_lost(exc)
        transport: Any = self.transport
        transport.forget()  # (a linger's timer)
        # The transport's ``lingers`` is this protocol's bound method: a reference cycle
        # (protocol, transport, method) that kept every closed connection's protocol, its
        # parser, flow control and last webhook, until the cyclic collector ran, and serve
        # runs it rarely (hub.runtime): those that had been alive at a young collection
        # waited in the older generations for a full one. Broken here, refcounting frees a
        # connection as it closes.
        transport.lingers = None
        self.lost = True
        self.reading = False
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None
        if type(cycle) is _Webhook and not cycle.posted and self.ingest is not None:
            # gone mid-body: logged and counted as ASGI's path does (ingest's _Disconnected)
            self._let_go(cycle)
            self.ingest.done(cycle.route.name, cycle.start, DISCONNECTED)
        if self.answering is not None:
            # uvicorn waits for its connections, then its tasks, before the app's lifespan
            # ends (the store closes): this answer is the task an ASGI request would have.
            self.connections.add(self)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.unfinished = True
        if self.refused:
            return
        # A request is under way: no keep-alive timeout. (uvicorn cancels it as data comes
        # in, but an answer written while the data is parsed, a 401, arms it again for the
        # rest: it would close the connection under the next request in that data.)
        self._unset_keepalive_if_required()
        self.head_raw = None
        if self.begun:  # (the first request's time runs from the connection's start)
            self.request_since = self.loop.time()
            self.request_from = self.received
        self.begun += 1
        self.in_head = True
        self.head_read = 0
        self.head_from = self.reads
        self.head_first = self.read_len
        self.after_chunk_size = False
        self.trailer_read = 0
        self.reading = True

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport.is_closing():
            # (the parser may have failed; whatever follows a refusal or a close is not read)
            self.transport.read_while_closing()  # type: ignore[attr-defined]
            return
        self.last_read = self.loop.time()
        self.reads += 1
        self.read_len = len(data)
        self.received += len(data)
        begun = self.begun
        trailing = self.after_chunk_size
        boundary = not self.unfinished  # (whether this read begins the next request)
        kept = self.head_raw  # (the head under way's bytes before this read, if kept)
        if self.head_pending is not None:  # a head held back: read again, with what came
            data = self.head_pending + data
            self.head_pending = None
            self.read_len = len(data)
            boundary = True
        # uvicorn's data_received, less its "Invalid HTTP request received." warning (one
        # line per refusal, however many: the refusal's own line, throttled, says it). Only
        # bytes of a request under way stop the keep-alive wait (a request's first byte
        # stops it in on_message_begin): uvicorn stopped it at any byte, and the blank lines
        # a parser skips between requests (one "\r\n" after an answer) began no request,
        # so no timer was left and the connection stayed open for good.
        if self.unfinished:
            self._unset_keepalive_if_required()
        # What is fed to the parser; where a request's first byte is in it, for a head the
        # parser may refuse (see _repeated_length): the bytes before it of the request under
        # way when it began (None: unknown); or, for a read that began in a body, the end of
        # that body if this read holds it (from_body, see body_end); and the requests begun
        # before that byte.
        fed = data
        self.handed = False
        origin: bytes | bytearray | None = b"" if boundary else kept
        from_body = origin is None and not self.in_head and not self.after_chunk_size
        origin_begun = begun if boundary or from_body else begun - 1
        self.body_read = 0
        self.body_end = -1
        self.chunked_read = False
        while True:
            try:
                self.parser.feed_data(fed)
            except httptools.HttpParserError as exc:
                again: bytes | str | bool = True
                if str(exc) in _LENGTH_ERRORS:
                    whole = self._from_request(origin, fed, from_body)
                    if whole is not None:
                        again = self._repeated_length(whole, origin_begun)
                if isinstance(again, bytes):
                    fed, origin, origin_begun = again, b"", self.begun  # (at its head again)
                    continue
                if again is not False:
                    self.send_400_response(again if isinstance(again, str) else _UNREADABLE)
            except httptools.HttpParserUpgrade as exc:
                if self.upgrade_ignored:  # read again, without the Upgrade
                    fed = self._without_upgrade(fed[exc.args[0] if exc.args else len(fed) :])
                    origin, origin_begun = b"", self.begun
                    continue
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            break
        if self.reading and self.read_timer is None and not self.transport.is_closing():
            # a request left unfinished by this read (one read whole arms nothing)
            self.read_timer = self.loop.call_later(READ_TIMEOUT, self._read_timed_out)
        if self.refused or self.transport.is_closing():
            return
        if not self.in_head:
            if trailing and self.after_chunk_size and begun == self.begun and self.unfinished:
                self.trailer_read += len(data)  # (a read inside the trailer fields)
            if self.trailer_read > MAX_HEAD and self.unfinished:
                self._trailers_too_large()
            elif begun == self.begun and self.unfinished and not self.handed:
                self.line_read += len(data)  # (a read inside a chunk's size line)
                if self.line_read > MAX_HEAD:
                    self._chunk_line_too_large()
            else:
                self.line_read = 0
            return
        if begun == self.begun:  # all of it inside one head (else: counted from the next)
            self.head_read += len(data)
            if self.head_raw is not None:
                self.head_raw += data
        elif self.head_pending is None:  # the head began in this read: kept, when known
            whole = self._from_request(origin, fed, from_body)
            raw = None if whole is None else self._head_bytes(whole, origin_begun)
            self.head_raw = None if raw is None else bytearray(raw)
        if self.head_read > MAX_HEAD:
            self._head_too_large()

    def _repeated_length(self, origin: bytes, before: int) -> bytes | str | bool:
        """What to read next for a request the parser refused over its Content-Length, the last
        begun; ``origin``: the bytes fed to the parser up to the refusal, from the first byte
        of a request (the request after the first ``before`` begun on the connection): the
        head again, with the Content-Length given once, then the rest (as
        :meth:`_without_upgrade` does); False when its head is not whole yet (held back:
        read again with the next read, see :attr:`head_pending`); why the request is refused
        (``str``); or True, the parser's own refusal stands.

        The parser (llhttp) refuses a Content-Length given twice, or as ``5, 5``; a recipient
        may take a list of identical values as that one value (RFC 9112 6.3), as h11 and
        nginx do: a Zapier or Make author who adds the Content-Length the tool sends already
        was a 400 "Invalid HTTP request received.", while every other header sent twice with
        the same value is taken once (:func:`hub.web.ingest.header_dict`). The head is found
        where the parser would begin it (:func:`_request_start`): alone in its read, after
        others in it, cut across reads, behind a head or a body that came across reads (not a
        chunked one: see :meth:`_from_request`)."""
        if self.refused or self.transport.is_closing():
            return True
        raw = self._head_bytes(origin, before)
        if raw is None:
            return True
        head, blank, rest = raw.lstrip(b"\r\n").partition(b"\r\n\r\n")  # (blank lines skipped)
        if not blank:
            if len(raw) > MAX_HEAD:
                self._head_too_large()
                return False
            self.head_pending = raw
        else:
            once = _one_length(head)
            if not isinstance(once, bytes):
                return once if once is not None else True
            raw = once + blank + rest
        self.begun -= 1  # (begun again: the same request)
        self.head_raw = None
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # (httptools < 0.6.3; see _without_upgrade)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        return raw if blank else False

    def _from_request(
        self, origin: bytes | bytearray | None, fed: bytes, from_body: bool
    ) -> bytes | None:
        """The bytes fed to the parser (``fed``), from a request's first byte on (see
        :meth:`data_received`): after ``origin``, the bytes of the request under way before
        them; or, for a read that began in a body (``from_body``), from that body's end, when
        this read held it and the body had no chunks (its bytes on the wire are the parser's
        body bytes); None when not known."""
        if origin is not None:
            return bytes(origin) + fed
        if from_body and self.body_end >= 0:
            return fed[self.body_end :]
        return None

    def _head_bytes(self, origin: bytes, before: int) -> bytes | None:
        """The bytes of the last request begun, from its first (blank lines before it
        included) to the end of ``origin``: bytes fed to the parser from the first byte of
        the request after the first ``before`` begun on the connection. None when the
        parser's count and a fresh parser's disagree (as after a request read again)."""
        skipped = self.begun - before - 1  # (requests read whole in origin before it)
        if skipped < 0:
            return None
        start = _request_start(origin, skipped)
        return None if start is None else origin[start:]

    def _unfinished(self) -> bool:
        """Whether closing now leaves a sender writing the rest of a request, or of the bytes
        after it: a request under way not read whole, or one refused (the parser stopped)."""
        return (self.unfinished or self.refused) and not self.ended

    def shutdown(self) -> None:
        """uvicorn's graceful stop: what it closes is closed at once, a lingering connection
        too (a stop does not wait for senders still sending)."""
        transport: Any = self.transport
        transport.lingers = None
        transport.end_linger()  # (whatever its cycle: one lingers only once it is refused)
        super().shutdown()

    def _head_over(self) -> bool:
        """Whether the head the parser just read whole is over :data:`MAX_HEAD`. The reads
        that held it bound it (the one it began in, those inside it, this one): only a head
        they leave room for over the limit is counted, from what the parser handed over (the
        method, the URL, each header as ``name: value`` with its CRLF; the spaces, version
        and blank line), so an ordinary request pays one comparison."""
        if self.reads == self.head_from:
            bound = self.read_len
        else:
            bound = self.head_first + self.head_read + self.read_len
        if bound <= MAX_HEAD:
            return False
        size = len(self.parser.get_method()) + len(self.url) + _REQUEST_LINE
        for name, value in self.headers:
            size += len(name) + len(value) + _HEADER_LINE
        return size > MAX_HEAD

    def _head_too_large(self) -> None:
        self._refuse(431, f"request headers over the {MAX_HEAD}-byte limit", "headers_too_large")

    def _trailers_too_large(self) -> None:
        self._refuse(431, f"request trailers over the {MAX_HEAD}-byte limit", "headers_too_large")

    def _chunk_line_too_large(self) -> None:
        """A chunk's size line went on past :data:`MAX_HEAD` (extensions after ``5;``, which
        the parser skips without limit and the hub has no use for): only the whole-request
        deadline (:data:`REQUEST_TIME_MAX`) ended it, and a sender could make the hub read
        and parse gigabytes for nothing meanwhile (4 GB in 5 s on the loopback)."""
        self._refuse(
            400,
            f"a chunk size line (with its extensions) over the {MAX_HEAD}-byte limit",
            "unreadable",
        )

    def on_header(self, name: bytes, value: bytes) -> None:
        """A header of the head being read; after it, a trailer field of a chunked body,
        which is counted (:data:`MAX_HEAD`) and dropped: uvicorn appended each to the
        request's headers, without limit (50 MB of short trailer fields, to any path and
        without a credential, grew the hub by 820 MB)."""
        if self.in_head:  # uvicorn's on_header, inline (one call less per header)
            name = name.lower()
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))
        else:
            self.trailer_read += len(name) + len(value) + _HEADER_LINE

    def on_chunk_header(self) -> None:
        """A chunk's size line was read: its data, or (the last chunk) trailer fields, next."""
        self.after_chunk_size = True
        self.handed = True
        self.chunked_read = True

    def on_headers_complete(self) -> None:
        self.head_raw = None  # (read whole: its bytes are not needed again)
        self.handed = True
        if self.refused:
            return
        if self.transport.is_closing():
            self.in_head = False
            self.cycle = _DROPPED  # type: ignore[assignment]
            return
        if self._head_over():
            # the whole head came in this read (or the rest of it did): the per-read count
            # never saw it unfinished. Refused before anything is dispatched (with the head
            # still "being read": no cycle is this request's).
            self._head_too_large()
            return
        if self.parser.should_upgrade() and self._ignores_upgrade():
            self.upgrade_ignored = True  # (nothing dispatched: read again without it)
            return
        self.in_head = False
        webhook = self._webhook()
        if webhook is None:
            super().on_headers_complete()
            if len(self.pipeline) > MAX_PIPELINED:
                self._refuse(
                    429,
                    f"more than {MAX_PIPELINED} requests sent ahead of their answers; "
                    "read the answers before sending more",
                    "pipelined_too_far",
                )
        else:
            self.cycle = webhook  # type: ignore[assignment]

    def _ignores_upgrade(self) -> bool:
        """Whether the request whose head was just read asks for an upgrade the hub ignores:
        any but a WebSocket one uvicorn would take (the hub serves none), and not a
        ``CONNECT`` (no HTTP request to read instead)."""
        return self.parser.get_method() != b"CONNECT" and not self._should_upgrade()

    def _without_upgrade(self, rest: bytes) -> bytes:
        """What to read next, with a new parser, for a request that asked to switch protocols:
        its head again without its ``Upgrade`` header, then ``rest`` (its body and what
        follows, as received so far).

        httptools takes a request with ``Upgrade`` and ``Connection: upgrade`` as switching
        protocols once its head ends: the request ended there, and its body was left unread,
        for the new protocol. uvicorn does not switch (it only warns), so the request went on
        with an empty body: Java's HttpClient offers ``Upgrade: h2c`` with every cleartext
        request by default, and its JSON webhook was a 400 "empty body", its form webhook
        a 200, the duplicate of an empty form (the lead lost), its signed one a 401; the
        body then read as the next request, a 400. A server may ignore an upgrade (RFC 9110
        7.8) and answer the request as HTTP/1.1: this reads it so.
        """
        self.upgrade_ignored = False
        head = [self.parser.get_method(), b" ", self.url, b" HTTP/"]
        head += [self.parser.get_http_version().encode("ascii"), b"\r\n"]
        for name, value in self.headers:
            if name != b"upgrade":
                head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self.begun -= 1  # (begun again: the same request)
        self.parser = httptools.HttpRequestParser(self)
        # as uvicorn sets its own: a request after one with Connection: close is not an
        # error of the parser's (without it, each counted a false 400 'unreadable')
        with contextlib.suppress(AttributeError):  # (httptools < 0.6.3)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        return b"".join(head) + rest

    def _webhook(self) -> _Webhook | None:
        """The request as a :class:`_Webhook` when it may skip ASGI, else None."""
        ingest = self.ingest
        if (
            ingest is None
            or not self.url.startswith(_PREFIX)
            or self.parser.get_method() != b"POST"
            or self.expect_100_continue
            or self.root_path
            or self.limit_concurrency is not None
            or not (self.cycle is None or self.cycle.response_complete)
            or self.parser.should_upgrade()
            or self.flow.write_paused  # (uvicorn's path waits for the transport to drain)
        ):
            return None
        parsed = httptools.parse_url(self.url)
        path: bytes = parsed.path
        if b"%" in path:
            return None
        try:
            name = path[len(_PREFIX) :].decode("ascii")
        except UnicodeDecodeError:
            return None
        route = ingest.routes.get(name)
        if route is None:
            return None
        length = None
        for key, value in self.headers:
            if key == b"content-length":
                if length is not None:
                    return None
                length = value
            elif key == b"transfer-encoding":
                return None
        if (
            length is None
            or not length.isdigit()
            or len(length) > 18  # (int() refuses thousands of digits; the app answers 400)
            or int(length) > route.endpoint.max_body
        ):
            return None  # uvicorn's path answers 411-less bodies, 413s and bad lengths
        http_1_0 = self.parser.get_http_version() == "1.0"
        keep_alive = not http_1_0 and self.parser.should_keep_alive()
        return _Webhook(route, self.headers, parsed.query or b"", keep_alive)

    def on_body(self, body: bytes) -> None:
        self.after_chunk_size = False
        self.handed = True
        self.body_read += len(body)
        if self.refused:
            return
        cycle: Any = self.cycle
        if type(cycle) is _Webhook:
            if cycle.posted:  # answered already (over the budget): the rest is dropped
                return
            ingest: Any = self.ingest
            if not ingest.bodies.take(len(body)):
                self._over_budget(cycle)
                return
            cycle.held += len(body)
            cycle.body += body  # at most its Content-Length, checked against the limit
            return
        if cycle is _DROPPED:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.upgrade_ignored:  # (its body is not read yet: see _without_upgrade)
            return
        if self.body_end < 0 and not self.chunked_read:  # (the read's first request ended)
            self.body_end = self.body_read
        self.reading = False
        self.unfinished = False
        self.after_chunk_size = False
        if self.refused:
            return
        cycle: Any = self.cycle
        if type(cycle) is not _Webhook:
            if cycle is not _DROPPED:
                super().on_message_complete()
            return
        if cycle.posted:  # answered before its body ended (over the budget)
            return
        ingest = self.ingest
        assert ingest is not None  # a _Webhook is only made with one
        route = cycle.route
        self._let_go(cycle)
        cycle.posted = True
        self.answering = cycle

        def reply(answer: Answer) -> None:
            if cycle.response_complete:
                return
            self.answering = None
            self._respond(cycle, answer.status, answer.headers, answer.body)
            ingest.done(route.name, cycle.start, answer)
            if self.lost:
                self.connections.discard(self)  # (kept for uvicorn's graceful stop)

        ingest.post(route, header_dict(cycle.headers), bytes(cycle.body), cycle.query, reply)

    def _let_go(self, cycle: _Webhook) -> None:
        """Give back what ``cycle``'s body took of ingest's budget (once)."""
        if cycle.held and self.ingest is not None:
            self.ingest.bodies.give(cycle.held)
            cycle.held = 0

    def _over_budget(self, cycle: _Webhook) -> None:
        """Answer ``cycle`` 503 before its body ends, as ingest answers one over its budget
        of bodies being read on the ASGI path, and close the connection (it lingers: the
        sender may still be sending); the rest of its body is dropped."""
        ingest = self.ingest
        assert ingest is not None  # a _Webhook is only made with one
        self._let_go(cycle)
        cycle.posted = True  # (answered: not "disconnected" when the connection goes)
        answer = over_budget(ingest.bodies)
        self._respond(cycle, answer.status, answer.headers, answer.body)
        ingest.done(cycle.route.name, cycle.start, answer)

    def _respond(
        self, cycle: _Webhook, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Write the whole response in one call, then let uvicorn start what waits."""
        cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            return
        if (b"connection", b"close") in headers:
            cycle.keep_alive = False
        transport: Any = self.transport
        transport.write(self._response(status, headers, body, keep_alive=cycle.keep_alive))
        transport.flush()  # now, not at the end of the loop iteration
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _read_timed_out(self) -> None:
        """:data:`READ_TIMEOUT` after the timer was armed: end the connection if it has
        sent nothing since, while a request is awaited or unfinished (closed at once before
        a request has begun, or when the unfinished request's own answer is under way; else
        refused 408 by :meth:`_refuse`, after the answers of the requests before it); else
        look again when the wait would end. A connection whose reading is paused (the app
        has not taken the body read so far) is not waiting on its sender: its wait starts
        over."""
        self.read_timer = None
        if not self.reading or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # (the hub's wait, not the sender's: neither deadline runs)
            self.request_since += now - self.last_read
            self.last_read = now
        idle = now - self.last_read
        allowed = REQUEST_TIME + (self.received - self.request_from) / REQUEST_RATE
        allowed = min(allowed, REQUEST_TIME_MAX)
        left = self.request_since + allowed - now
        if idle < READ_TIMEOUT and left > 0:
            self.read_timer = self.loop.call_later(
                min(READ_TIMEOUT - idle, left), self._read_timed_out
            )
            return
        cycle: Any = self.cycle
        # The unfinished request's own answer under way, or written (a 404 for an unknown
        # endpoint, a 413, answered before the body came whole): no 408 can follow. One
        # answered so got a second answer, the 408, READ_TIMEOUT later.
        answering = (
            not self.in_head
            and cycle is not None
            and (cycle.response_complete or getattr(cycle, "response_started", False))
        )
        # (a head held back, its Content-Length repeated, is a request begun: begun again
        # when read whole, it is not counted in begun meanwhile)
        if (not self.begun and self.head_pending is None) or answering:
            self.transport.close()
            return
        if idle >= READ_TIMEOUT:
            error = f"request not sent whole: no byte for {READ_TIMEOUT:g} s"
        else:
            error = (
                f"request not sent whole within {allowed:.0f} s ({REQUEST_TIME:g} s, and a "
                f"second more for each {REQUEST_RATE} bytes sent, {REQUEST_TIME_MAX:g} s at most)"
            )
        self._refuse(408, error, "read_timeout")

    def send_400_response(self, msg: str) -> None:
        """A request uvicorn's parser cannot read (``Content-Length: abc``, not HTTP) is
        answered as the app answers bad input, a short JSON reason, where uvicorn sent
        plain text; then the connection is closed, as uvicorn does (but after the answers
        of the requests before it: :meth:`_refuse`)."""
        self._refuse(400, msg, "unreadable")

    def _refuse(self, status: int, error: str, reason: str) -> None:
        """Answer the request being read ``status`` with ``error`` and close the connection:
        at once, or, when requests read whole before it are not answered yet (a webhook
        being stored, an app's answer under way, requests pipelined behind it), right
        after the last of those answers (:meth:`_close_after_answers`), so that each is
        answered in request order. Nothing read after it is started. Counted as a
        ``rejected`` delivery for ``reason``, and logged so (:meth:`_tell_refusal`), unless
        its own cycle was started (that counts and logs it: a webhook cut off in its body
        is ``disconnected``)."""
        if self.refused or self.transport.is_closing():
            return
        answer = self._response(status, _JSON, orjson.dumps({"error": error}), keep_alive=False)
        self._close_after_answers(answer, (status, error, reason))

    def eof_received(self) -> bool | None:  # type: ignore[override]  # (asyncio's signature)
        """The sender closed its side (``shutdown(SHUT_WR)``): it sends no more, but may
        still read. The answers of the requests it sent whole are written first (and a
        refusal queued after them), then the connection closed
        (:meth:`_close_after_answers`, without a refusal of its own); a request it left
        unfinished is dropped, and counted as when it closes both sides (a webhook cut off
        in its body: ``disconnected``). uvicorn's protocol closed the connection at once: a
        webhook stored meanwhile was never answered 200. True keeps the transport open for
        those answers; None lets it close now (nothing is owed)."""
        self.ended = True
        if not self.refused and not self.transport.is_closing():
            self._close_after_answers(b"", None)
        # (the transport may tell it again, each time reading is resumed while answers wait)
        return True if self.refusal is not None else None

    def _close_after_answers(self, last: bytes, refusal: tuple[int, str, str] | None) -> None:
        """Write ``last`` (a refusal's answer, or nothing) and close the connection, once the
        requests read whole before the one being read are answered: at once when none
        waits; else after the last of those answers (:meth:`on_response_complete`), or
        :data:`READ_TIMEOUT` at most (:meth:`_refusal_overdue`). Nothing read after is
        started. ``refusal`` (status, error, reason): the request being read is refused so
        and told (counted, logged) unless its own cycle was started. Without one (an end of
        file), a webhook queued and cut off in its body is ``disconnected``, as ingest says
        of one whose sender left while it read the body."""
        self.refused = True
        cycle: Any = self.cycle
        in_body = self.begun > 0 and self.reading and not self.in_head
        queued = False
        if in_body and cycle is not None and not cycle.response_complete:
            # cut short in its body: this request is answered by the refusal alone. Queued
            # behind one under way, it is never started; under way itself (a webhook or the
            # app reading its body), nothing before it waits: refused at once, and its
            # cycle is told of the disconnect, as before.
            waiting = queued = bool(self.pipeline) and self.pipeline[0][0] is cycle
            if queued:
                self.pipeline.popleft()
        else:  # refused in its head: the cycle is the last request read whole, if any
            waiting = cycle is not None and not cycle.response_complete
        if refusal is not None and (queued or not in_body):
            self._tell_refusal(*refusal, cycle if queued else None)
        elif refusal is None and queued and self.ingest is not None:
            # cut off in its body by the end of file, never started: ingest's own count and
            # line, as when it was started behind the answers and then told of the close
            name = self._endpoint(cycle)
            if name:
                self.ingest.done(name, perf_counter(), DISCONNECTED)
        self.reading = False  # (no read timeout: what is read now is dropped)
        if not waiting:
            self.transport.write(last)
            self.transport.close()
            return
        self.refusal = last
        self.flow.pause_reading()
        if self.read_timer is not None:
            self.read_timer.cancel()
        self.read_timer = self.loop.call_later(READ_TIMEOUT, self._refusal_overdue)

    def _tell_refusal(self, status: int, error: str, reason: str, cycle: Any) -> None:
        """Count and log a refused request no cycle counts: in ``leadhub_deliveries_total``
        as ``rejected`` for ``reason`` (when the app is the hub's with ingest: see
        :attr:`ingest`), and as ingest logs a rejected delivery, one ``delivery_received``
        line (``status``, ``reason``, ``detail``: ``error``), at most one a second for an
        endpoint and reason, with ``unlogged`` (lines left out since) when some were: a
        flood of garbage costs its sender a connection per refusal, and the hub a line
        each. Under its endpoint when its head was read whole (``cycle``, queued, never
        started) and names one of ingest's endpoints, else under ``endpoint=""`` (a head
        cut off or refused may not say, or not truly, where it was going), so that the
        labels stay bounded."""
        ingest = self.ingest
        endpoint = "" if cycle is None else self._endpoint(cycle)
        if ingest is not None:
            ingest.metrics.refused(endpoint, reason)
        throttle = _REFUSAL_LINES.get(self.server_state)
        if throttle is None:
            throttle = _REFUSAL_LINES[self.server_state] = Throttle(REFUSAL_LOG_EVERY)
        more = throttle.extra((endpoint, reason), self.loop.time(), REFUSAL_LOG_EVERY)
        if more is None:
            return
        _log.info(
            "delivery_received",
            endpoint=endpoint,
            delivery_id=None,
            outcome="rejected",
            reason=reason,
            status=status,
            detail=error,
            **more,
        )

    def _endpoint(self, cycle: Any) -> str:
        """The ingest endpoint a request read whole (``cycle``) is addressed to, or ``""``
        (not a webhook path, an endpoint ingest does not know, or no ingest)."""
        if self.ingest is None:
            return ""
        path: str = cycle.scope["path"]
        name = path.removeprefix(PREFIX)
        return name if name != path and name in self.ingest.routes else ""

    def _refusal_overdue(self) -> None:
        """:data:`READ_TIMEOUT` after a refusal (or a sender's end of file) began to wait
        for the answers before it: if they have not all come (an answer that never comes, a
        store that neither commits nor fails), the connection is closed without them, as it
        would have been without the wait, and without the refusal, which its sender would
        read as the answer to the first of them."""
        self.read_timer = None
        if self.refusal is None or self.transport.is_closing():
            return
        self.logger.warning(
            "Answers owed on a closing connection not given after %gs: connection closed.",
            READ_TIMEOUT,
        )
        self.refusal = None
        self.transport.close()

    def on_response_complete(self) -> None:
        """After each answer: uvicorn starts the request queued next; after the last one
        a refusal (or an end of file) waits for, the refusal is written (nothing, for an
        end of file) and the connection closed.

        uvicorn also reads on after each answer, even while the request being read waits in
        the queue with more of its body than it holds for the app (``HIGH_WATER_LIMIT``):
        each answer to a request ahead of it added a read (up to 256 KiB) to that body, held
        outside ingest's budget and its ``max_body`` (90 pipelined ``GET /healthz`` ahead of
        a large POST: 13 MB held). Reading stays paused then, until the app reads the body.

        Nor is the keep-alive wait started while the next request's head is being read (its
        first bytes came before this answer was written): uvicorn started it whenever no
        request was queued, and a sender that paused more than its 5 s in the rest of that
        head had its connection closed under the request, without an answer, where a request
        under way waits :data:`READ_TIMEOUT` (and is answered 408 past it)."""
        queued = bool(self.pipeline)
        super().on_response_complete()
        if self.refusal is not None and not queued and not self.transport.is_closing():
            refusal, self.refusal = self.refusal, None
            self.transport.write(refusal)
            self.transport.close()
            return
        if self.in_head and self.unfinished and not self.refused:
            self._unset_keepalive_if_required()  # (a later request's: it has its own wait)
        cycle: Any = self.cycle
        if self.pipeline and self.pipeline[0][0] is cycle and len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()

    def _response(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, keep_alive: bool
    ) -> bytes:
        """A whole response: the status line, uvicorn's default headers (server, date),
        ``headers`` (but ``connection: close``: ``keep_alive`` says it), the length,
        ``connection: close`` unless ``keep_alive``, then ``body``."""
        out = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            out += [name, b": ", value, b"\r\n"]
        for name, value in headers:
            if (name, value) != (b"connection", b"close"):
                out += [name, b": ", value, b"\r\n"]
        out += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        if not keep_alive:
            out.append(b"connection: close\r\n")
        out += [b"\r\n", body]
        return b"".join(out)
