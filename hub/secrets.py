"""Secrets from the environment: masked when printed, compared in constant time; and the
token ``GET /metrics`` requires, when ``LEADHUB_METRICS_TOKEN`` is set."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


class Secret:
    """A secret string. ``repr`` and ``str`` never show it; use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for signing and sending. Never log the result."""
        return self._value

    def encode(self) -> bytes:
        """The secret as UTF-8 bytes (an HMAC key)."""
        return self._value.encode()

    def matches(self, candidate: str | bytes) -> bool:
        """Whether ``candidate`` equals the secret, compared in constant time."""
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8", "surrogatepass")  # odd text never matches
        return hmac.compare_digest(self._value.encode(), candidate)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


#: The variable whose value ``GET /metrics`` requires as ``Authorization: Bearer <token>``
#: when it is set (``leadhub serve``, every role); unset, ``/metrics`` is open as before.
METRICS_TOKEN_VARIABLE = "LEADHUB_METRICS_TOKEN"

#: How an error names a blank character around a value.
_BLANKS = {
    "\r": "a carriage return (\\r)",
    "\n": "a line break (\\n)",
    "\t": "a tab",
    " ": "a space",
}
#: The fix for a value ending with a carriage return.
WINDOWS_LINE_ENDS = "an env file saved with Windows line endings? Save it with Unix (LF) ones"


def blank_around(value: str) -> tuple[str, str] | None:
    """How ``value`` starts or ends with a blank (``"ends with a tab"``), and that character;
    None when it does not. An env file saved with Windows line endings leaves a ``\\r``."""
    if value == value.strip():
        return None
    char = value[-1] if value != value.rstrip() else value[0]
    where = "ends" if value != value.rstrip() else "starts"
    return f"{where} with {_BLANKS.get(char, f'U+{ord(char):04X}')}", char


class SettingError(ValueError):
    """A secret's variable that ``serve`` refuses (exit 2), its message naming the variable
    and the fix (never the value)."""


def metrics_token(environ: Mapping[str, str]) -> Secret | None:
    """The token ``GET /metrics`` requires (:data:`METRICS_TOKEN_VARIABLE`), or None when
    the variable is unset (``/metrics`` open).

    Read once, at start: a running process cannot be given a new environment, so a reload
    (SIGHUP) keeps it. A value no scraper could send is refused rather than served: every
    scrape would be a 401 while the start said nothing. Empty (a template left blank: read as
    "no token", ``/metrics`` was open while the operator took it for guarded); starting or
    ending with a blank (an env file saved with Windows line endings keeps a ``\\r``; a
    header's value loses the blanks around it, and Prometheus trims its ``credentials_file``);
    or holding a character a header cannot carry (a line break, a pasted ellipsis). Nor is
    there a ``_FILE`` form, and a ``LEADHUB_METRICS_TOKEN_FILE`` is refused: ignored (a
    warning), ``/metrics`` was open while its operator took it for shut.

    Raises:
        SettingError: the variable is set to such a value.
    """
    name = METRICS_TOKEN_VARIABLE
    if f"{name}_FILE" in environ:  # (ignored, /metrics was open: the operator meant it shut)
        msg = (
            f"{name}_FILE is set, but the token is not read from a file: give it in {name} "
            "itself (Kubernetes: env valueFrom secretKeyRef; docker run --env-file), and "
            f"unset {name}_FILE"
        )
        raise SettingError(msg)
    value = environ.get(name)
    if value is None:
        return None
    unset = f"or unset {name} to serve /metrics without a token"
    if not value.strip():
        msg = (
            f"{name} is {'blank' if value else 'empty'}: give the token your scraper sends "
            "(Prometheus: the scrape config's authorization: credentials, or bearer_token), "
            f"{unset}"
        )
        raise SettingError(msg)
    if (blank := blank_around(value)) is not None:
        said, char = blank
        why = "which no scraper sends (a header's value loses the blanks around it), so every "
        why += "scrape would be refused (401)"
        fix = WINDOWS_LINE_ENDS if char == "\r" else "set it to the token alone"
        raise SettingError(f"{name} {said}, {why}: {fix}")
    for place, char in enumerate(value, start=1):
        if not " " <= char <= "~" and char != "\t":
            kind = "a control character" if char.isascii() else "a character that is not ASCII"
            msg = (
                f"{name} holds {kind} (U+{ord(char):04X}) at character {place}, which the "
                "Authorization header a scraper sends the token in cannot carry, so every "
                f"scrape would be refused (401): set it to the token alone, in printable "
                f"ASCII, {unset}"
            )
            raise SettingError(msg)
    return Secret(value)
