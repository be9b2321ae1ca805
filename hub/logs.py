"""structlog set-up: JSON lines off a terminal, a console renderer on one.

Context (``delivery_id``, ``endpoint``, ...) is bound through contextvars so
that every event of one delivery step carries it. Lines logged inside a running
event loop are written together once per loop iteration (:class:`LineWriter`):
under load that is one write and flush for many requests instead of one each. Values that look like
secrets never reach the output: :func:`redact` drops keys whose names say
they hold one, and :class:`hub.secrets.Secret` masks itself anyway. Records of the
standard ``logging`` module (uvicorn's, libraries') are written the same way
(:class:`StdlibBridge`), from WARNING up.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import datetime
import functools
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, BinaryIO, TextIO

import orjson
import structlog

_SECRET_WORDS = (
    "secret",
    "token",
    "password",
    "signature",
    "authorization",
    "access_key",
    "accesskey",
    "api_key",
    "apikey",
    "google_key",
    "cookie",
)


@functools.lru_cache(maxsize=2048)
def is_secret_name(name: str) -> bool:
    """Whether a header, field or key name says its value is a secret."""
    lowered = name.lower().replace("-", "_")
    return any(word in lowered for word in _SECRET_WORDS)


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor that masks values stored under secret-looking keys."""
    for key in list(event_dict):
        if key != "event" and is_secret_name(key):
            event_dict[key] = "**********"
    return event_dict


_LEVELS = {"warn": "warning", "exception": "error", "failure": "error", "msg": "info"}


class _Stamp:
    """One processor for what every line gets: level, UTC timestamp, traceback, redaction.

    (structlog's ``add_log_level``, ``TimeStamper(fmt="iso")``, ``format_exc_info`` and
    :func:`redact` in one call; the timestamp's date and time are formatted once per second.)
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: object, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["level"] = _LEVELS.get(method, method)
        now = time.time()
        second = int(now)
        if second != self._second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        if "exc_info" in event_dict:
            event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
        return redact(logger, method, event_dict)


def _dumps(obj: Any, default: Any = None) -> bytes:
    try:
        return orjson.dumps(obj, default=default or str)
    except TypeError:  # a string orjson cannot write (a lone surrogate from a sender's text)
        return json.dumps(obj, default=default or str).encode()


class _Shown:
    """A text value the console renderer writes as its ``repr``, quoted and escaped (not a
    ``str``: the renderer writes a ``str`` without a space as it is)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)

    __str__ = __repr__  # (the event column is written with ``str``)


def _escape_controls(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A console-only processor: each text value holding a character that is not printable
    (a C0 or C1 control character such as ESC or U+009B CSI, DEL, a bidi override) is written
    quoted and escaped (``'x\\x1b[2J'``), as the renderer writes a value with a space.

    structlog's ConsoleRenderer writes a text value without a space, ``=`` or quote as it is:
    a sender's delivery id, charset or header value holding an escape sequence (``\\u001b[2J``
    in JSON, a raw 0x9b byte in a header, read as Latin-1) reached the operator's terminal
    raw, where it could clear the screen, hide lines or retitle the window. JSON lines are
    not affected (orjson escapes C0 controls; the text there is data, not a terminal's)."""
    for key, value in event_dict.items():
        if type(value) is str and not value.isprintable():
            event_dict[key] = _Shown(value)
    return event_dict


class LineWriter:
    """A structlog logger writing each message as a line to ``stream``.

    Outside an event loop a line is written and flushed at once. Inside one, lines wait
    for the end of the current loop iteration (``loop.call_soon``) and are then written
    and flushed together; a line from elsewhere writes the waiting ones first, in order.
    Messages may be ``bytes`` (the JSON renderer's, UTF-8) or ``str``; bytes go straight to
    the stream's binary buffer when it has one.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._binary: BinaryIO | None = getattr(stream, "buffer", None)
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        #: The loop that will flush the waiting lines (another loop schedules its own).
        self._scheduled: asyncio.AbstractEventLoop | None = None

    def msg(self, message: str | bytes) -> None:
        """Write ``message`` as one line (soon, when called inside an event loop)."""
        if isinstance(message, str):
            message = message.encode("utf-8", "backslashreplace")
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._pending.append(message)
            if loop is None:
                self._write_locked()
                return
            if self._scheduled is loop:
                return
            self._scheduled = loop
        loop.call_soon(self.flush)

    debug = info = warning = warn = error = critical = exception = fatal = failure = log = msg

    def flush(self) -> None:
        """Write the lines waiting for the end of a loop iteration."""
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        self._scheduled = None
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        lines.append(b"")
        data = b"\n".join(lines)
        try:
            self._stream.flush()  # text written by others (print) first, in order
            if self._binary is not None:
                self._binary.write(data)
                self._binary.flush()
            else:
                self._stream.write(data.decode("utf-8", "replace"))
                self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break the caller
            pass


_writer: LineWriter | None = None


@atexit.register
def flush() -> None:
    """Write any log lines still waiting (at exit, and when logging is re-configured)."""
    if _writer is not None:
        _writer.flush()


def configure(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Set structlog up for the process.

    Args:
        json: JSON lines when true, a console renderer when false; by default
            JSON unless ``stream`` is a terminal.
        level: the lowest level written (``debug``, ``info``, ``warning``, ``error``).
        stream: where to write; standard output by default.

    Raises:
        ValueError: ``level`` is not a log level name.
    """
    global _writer
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        msg = f"unknown log level {level!r}; use debug, info, warning or error"
        raise ValueError(msg)
    flush()
    out = stream or sys.stdout
    _writer = LineWriter(out)
    if json is None:
        json = not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shown = [] if json else [_escape_controls]
    threshold = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, _Stamp(), *shown, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_factory(_writer),
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib(threshold)


#: Libraries whose records with an exception report an expected failure, not a bug: asyncpg's
#: pool logs "Failed to restore the pool connection floor; retrying" with its traceback at each
#: retry while PostgreSQL is down. Their exception is written as ``error`` (its type) and
#: ``detail`` (its message), one line, and without the context bound where the record was
#: made (the pool's task inherits that of whichever request started it).
BRIEF_LOGGERS = ("asyncpg",)
_URL_PASSWORD = re.compile(r"(://[^/?#@\s:]*:)[^@\s]*@")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def without_passwords(text: str) -> str:
    """``text`` with the passwords of URLs (``user:PASSWORD@``) and of libpq's
    ``password=...`` settings masked."""
    return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def _brief(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in BRIEF_LOGGERS)


class StdlibBridge(logging.Handler):
    """Hands records of the standard ``logging`` module (uvicorn's "Unsupported upgrade
    request.", asyncpg's pool) to structlog, so that they too are lines of the configured
    format (JSON off a terminal) instead of bare text on standard error. (python-multipart's
    parser warns of each error it then raises: ``hub.sources.bodies`` gives it a logger that
    writes nothing, since the hub's own 400 line, with the endpoint, carries those words.)

    The record's message is the event; its logger's name is ``logger``. A record of one of
    :data:`BRIEF_LOGGERS` gets its exception's type and message instead of its traceback.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if _brief(record.name):
                exc = record.exc_info[1] if record.exc_info else None
                if exc is not None:
                    fields["error"] = type(exc).__name__
                    fields["detail"] = without_passwords(str(exc))
                message = without_passwords(record.getMessage())
                contextvars.Context().run(
                    structlog.get_logger().log, record.levelno, message, **fields
                )
                return
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger().log(record.levelno, record.getMessage(), **fields)
        except Exception:  # a record that cannot be written must not break its caller
            self.handleError(record)


def _bridge_stdlib(level: int) -> None:
    """Route the standard library's records through :class:`StdlibBridge` (root logger).

    Libraries log chatty details at INFO and below (httpx: one line per request), so their
    records start at WARNING whatever ``level`` is.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibBridge)]:
        root.removeHandler(handler)
    root.addHandler(StdlibBridge())
    root.setLevel(max(level, logging.WARNING))


def _factory(writer: LineWriter) -> Any:
    def make(*_args: Any) -> LineWriter:
        return writer

    return make


class Throttle:
    """Which lines of a run of like ones to write, so that a failure repeated at every request
    (a store that is down, a full disk) logs a line a second rather than one per request.

    :meth:`admit` says whether a line of ``key`` is written now: the first of its key, then
    at most one per ``every`` seconds, each saying how many were left out since the one before.
    """

    #: Keys kept at most; beyond, those not written for ``every`` seconds are forgotten.
    KEYS = 256

    def __init__(self, every: float) -> None:
        self.every = every
        #: key -> when its last line was written, and how many were left out since
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def admit(self, key: Hashable, now: float, every: float | None = None) -> int | None:
        """None: leave this line out. Otherwise write it, with the returned number of lines
        of ``key`` left out since the last one written (``unlogged``, when not 0). ``every``:
        this line's interval, when not the throttle's."""
        logged_at, left_out = self._seen.get(key, (None, 0))
        gap = self.every if every is None else every
        if logged_at is not None and 0 <= now - logged_at < gap:
            self._seen[key] = (logged_at, left_out + 1)
            return None
        if key not in self._seen and len(self._seen) >= self.KEYS:
            self._seen = {k: v for k, v in self._seen.items() if 0 <= now - v[0] < self.every}
        self._seen[key] = (now, 0)
        return left_out

    def extra(self, key: Hashable, now: float, every: float | None = None) -> dict[str, int] | None:
        """:meth:`admit` as the written line's extra fields: None to leave the line out, else
        ``{"unlogged": n}`` when ``n`` lines of ``key`` were left out since the last, or
        ``{}``."""
        left_out = self.admit(key, now, every)
        if left_out is None:
            return None
        return {"unlogged": left_out} if left_out else {}

    def left_out(self) -> int:
        """Lines left out since the last one written, of every key together."""
        return sum(n for _, n in self._seen.values())


def get_logger(name: str | None = None) -> Any:
    """A lazy structlog logger; ``name`` is bound as ``component``.

    The logger follows the configuration in force when it logs, not when it was made, so
    a module-level logger respects a later :func:`configure` or ``capture_logs``.
    """
    return structlog.get_logger(component=name) if name else structlog.get_logger()


class Failures:
    """The lines of a run of failures of one kind of call (a store's commits, a dispatcher's
    claims) and of its end, so that a failure repeated at every try for as long as an outage
    lasts logs a few lines rather than one per try.

    :meth:`failed` logs its line (``name``, at ``level``: error unless told otherwise, with
    ``error`` and ``fields``) at the first failure of a run and at the first of each new
    error, then at most once per ``every`` seconds for the same ``name`` and error, with
    ``unlogged`` (how many were left out since the one before) when not 0
    (:class:`Throttle`). :meth:`succeeded` ends the run: one ``recovered`` line, a warning
    (a log filtered to warnings shows how the run ended), with ``failed`` (what failed since
    the last ``recovered`` line, counted as :meth:`failed` was told) and ``seconds`` (from
    the first of those failures to then, by ``clock``).

    A store at the edge of a full disk fails, commits a smaller batch, fails again: runs that
    begin and end many times a second. So the first failure of a run is left out when a line
    of the same name and error was logged less than ``relapse`` seconds before; the run's
    next failure ``relapse`` seconds after that line is logged (with ``unlogged``). A run none
    of whose failures was logged ends without a line (the log already says the calls succeed
    again): its failures are counted in the next lines' ``unlogged``, and in the next run's
    ``failed`` and ``seconds`` when that run begins within ``every`` seconds of its end (one
    flapping episode); a run that begins later is counted alone. So one
    kind of call logs at most two lines (a failure, its end) per ``relapse`` seconds for one
    error, however often it flaps.
    """

    #: Seconds after a line within which a new run's first failure of the same error is left out.
    RELAPSE = 1.0

    def __init__(
        self,
        recovered: str,
        *,
        every: float,
        relapse: float = RELAPSE,
        clock: Callable[[], float] = time.monotonic,
        logger: Callable[[], Any] = get_logger,
        level: str = "error",
    ) -> None:
        self.recovered = recovered
        self.level = level
        self.every = every
        self.relapse = min(relapse, every)
        self._clock = clock
        self._logger = logger
        self._lines = Throttle(every)
        self._since: float | None = None  # the first failure since the last recovered line
        self._failed = 0
        self._told = False  # a failure line of the current run was logged
        self._quiet_end: float | None = None  # when the last run none of whose was told ended

    @property
    def count(self) -> int:
        """What failed since the last ``recovered`` line (0: every failure was told ended)."""
        return self._failed

    def failed(self, name: str, error: str, count: int = 1, **fields: Any) -> None:
        """``count`` calls (or jobs) failed with ``error``: log ``name`` if it is due."""
        now = self._clock()
        if self._quiet_end is not None and now - self._quiet_end >= self.every:
            # The quiet runs before were no part of this one (calls succeeded for a whole
            # interval since): its end line is of this run alone. Carried, a failure quiet at
            # 10:00 made an outage at 15:00 that lasted 30 s end with "seconds: 18030".
            self._since = None
            self._failed = 0
        self._quiet_end = None
        if self._since is None:
            self._since = now
        self._failed += count
        # Until one of its lines is logged, a run is due at the relapse interval.
        every = None if self._told else self.relapse
        more = self._lines.extra((name, error), now, every)
        if more is not None:
            self._told = True
            getattr(self._logger(), self.level)(name, error=error, **fields, **more)

    def succeeded(self) -> None:
        """A call succeeded: ends a run of failures, if one is under way (logged once, if
        one of its failures was)."""
        if self._since is None:
            return
        if not self._told:  # a quiet run ended: carried into the next, if that comes soon
            if self._quiet_end is None:
                self._quiet_end = self._clock()
            return
        seconds = round(self._clock() - self._since, 3)
        self._logger().warning(self.recovered, failed=self._failed, seconds=seconds)
        self._since = None
        self._failed = 0
        self._told = False
