"""structlog set-up: JSON lines off a terminal, a console renderer on one.

Context (``delivery_id``, ``endpoint``, ...) is bound through contextvars so
that every event of one delivery step carries it. Values that look like
secrets never reach the output: :func:`redact` drops keys whose names say
they hold one, and :class:`hub.secrets.Secret` masks itself anyway.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

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


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Set structlog up for the process.

    Args:
        json: JSON lines when true, a console renderer when false; by default
            JSON unless ``stream`` is a terminal.
        level: the lowest level written (``debug``, ``info``, ``warning``, ``error``).
        stream: where to write; standard output by default.
    """
    out = stream or sys.stdout
    if json is None:
        json = not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> Any:
    """A lazy structlog logger; ``name`` is bound as ``component``.

    The logger follows the configuration in force when it logs, not when it was made, so
    a module-level logger respects a later :func:`configure` or ``capture_logs``.
    """
    return structlog.get_logger(component=name) if name else structlog.get_logger()
