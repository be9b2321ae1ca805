"""Parsing of the human-written quantities used in flags and config files.

Durations are strings such as ``500ms``, ``10s``, ``5m``, ``1h``, ``3d`` (a bare
number means seconds); sizes are ``1MiB``, ``512KiB``, ``100kB`` or a byte count;
rate limits are ``N/Ws`` (``25/5s``) or ``off``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


class UnitError(ValueError):
    """A quantity could not be parsed; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``calls`` calls in any sliding window of ``window`` seconds."""

    calls: int
    window: float

    def __str__(self) -> str:
        return f"{self.calls}/{seconds_text(self.window)}s"


def seconds_text(seconds: float) -> str:
    """``seconds`` as a person writes them: ``5``, ``0.7``.

    Rounded to the microsecond first: ``25/700ms`` makes ``700 * 0.001``, which is
    0.7000000000000001 in binary floating point.
    """
    rounded = round(seconds, 6)
    return str(int(rounded)) if rounded == int(rounded) else str(rounded)


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text`` (``"10s"``, ``"5m"``, ``"250ms"``, or a number of seconds)."""
    if isinstance(text, bool):
        msg = f"{text!r} is not a duration; write it like '10s', '5m' or '1h'."
        raise UnitError(msg)
    if isinstance(text, int | float):
        if text < 0:
            msg = f"{text!r} is negative; a duration is zero or more, like '10s'."
            raise UnitError(msg)
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        msg = f"{text!r} is not a duration; write it like '10s', '5m' or '1h'."
        raise UnitError(msg)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


#: An age written without its unit (``30``), which :func:`parse_duration` reads as seconds.
_BARE_NUMBER = re.compile(r"\s*\d+(\.\d*)?\s*")


def unitless_age(text: str) -> str | None:
    """The number of an AGE written without its unit (``30``), else None: read as seconds, it
    is seldom what was meant (days, most often), so the commands taking an age refuse it
    with :func:`age_units_hint`. Zero needs no unit."""
    if _BARE_NUMBER.fullmatch(text) and float(text) != 0:
        return text.strip()
    return None


def age_units_hint(number: str) -> str:
    """What to write instead of a unitless age ``number``."""
    return (
        f"write {number + 'd'!r} for days, or {number + 'h'!r}, {number + 'm'!r} or "
        f"{number + 's'!r}"
    )


def parse_lease(text: str) -> float:
    """Seconds in a ``--lease`` (``serve``'s, or ``LEADHUB_LEASE`` as ``check`` judges it): a
    duration of at least 1 s."""
    lease = parse_duration(text)
    if lease < 1.0:
        msg = f"{text!r} is too short for a lease; give at least 1s, e.g. '60s'."
        raise UnitError(msg)
    return lease


def parse_size(text: str | int) -> int:
    """Bytes in ``text`` (``"1MiB"``, ``"512KiB"``, ``"100kB"`` or a byte count)."""
    if isinstance(text, bool):
        msg = f"{text!r} is not a size; write it like '1MiB' or '512KiB'."
        raise UnitError(msg)
    if isinstance(text, int):
        if text <= 0:
            msg = f"{text!r} is not a positive size; write it like '1MiB'."
            raise UnitError(msg)
        return text
    match = _SIZE.match(str(text))
    if not match:
        msg = f"{text!r} is not a size; write it like '1MiB' or '512KiB'."
        raise UnitError(msg)
    unit = match.group(2).lower() if match.group(2) else None
    scaled = float(match.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(scaled):  # (int() of it raised OverflowError: a traceback)
        msg = f"{_shown(text)} is too large for a size; write it like '1MiB'."
        raise UnitError(msg)
    size = int(scaled)
    if size <= 0:
        msg = f"{text!r} is not a positive size; write it like '1MiB'."
        raise UnitError(msg)
    return size


def parse_rate_limit(text: str) -> RateLimit | None:
    """A :class:`RateLimit` from ``"25/5s"``, or ``None`` for ``"off"``."""
    if str(text).strip().lower() == "off":
        return None
    match = _RATE.match(str(text))
    if not match:
        msg = f"{text!r} is not a rate limit; write it like '25/5s', or 'off'."
        raise UnitError(msg)
    try:
        calls = int(match.group(1))
    except ValueError:  # more digits than Python converts (4,300): it raised, a traceback
        calls = -1
    window = float(match.group(2)) * _DURATION_UNITS[match.group(3) or "s"]
    if calls < 0 or not math.isfinite(window):
        msg = f"{_shown(text)} is too large for a rate limit; write it like '25/5s', or 'off'."
        raise UnitError(msg)
    if calls <= 0 or window <= 0:
        msg = f"{text!r} must allow at least one call in a window longer than zero, like '25/5s'."
        raise UnitError(msg)
    return RateLimit(calls=calls, window=window)


def _shown(text: object) -> str:
    """``text`` as an error quotes it: at most 40 characters (a value of thousands of
    digits made a message as long)."""
    written = repr(str(text))
    return written if len(written) <= 40 else written[:37] + "..."
