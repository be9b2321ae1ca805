"""Errors and warnings found while loading configuration, each as ``file:line: message``.

Loading goes on after an error so that ``check`` reports every problem at once;
:class:`ConfigError` carries them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.exceptions import HubError


class ConfigError(HubError):
    """The configuration directory has errors."""

    def __init__(self, issues: Iterable[str], *, warnings: Iterable[str] = ()) -> None:
        self.issues: list[str] = list(issues)
        #: Warnings found on the way, for ``check`` to show beside the errors.
        self.warnings: list[str] = list(warnings)
        count = len(self.issues)
        head = f"{count} configuration error{'s' if count != 1 else ''}"
        super().__init__("\n".join([head + ":", *self.issues]))


@dataclass(slots=True)
class Issues:
    """Collected errors and warnings, reported sorted by file and line."""

    errors: list[tuple[str, int, str]] = field(default_factory=list)
    warnings: list[tuple[str, int, str]] = field(default_factory=list)
    #: Files not read to their end (unreadable, or a YAML syntax error stopped them): what
    #: they held past that is unknown, so nothing may be concluded from its absence.
    unread: set[str] = field(default_factory=set)

    #: An issue at line 0 is in no file: an environment variable's (``LEADHUB_SANDBOX_*``),
    #: ``file`` naming it; its message names the variable, and is shown alone (as
    #: ``LEADHUB_SANDBOX_ACCESS_KEY:0:`` it looked like a place in a file of that name).

    def error(self, file: str, line: int, message: str) -> None:
        self.errors.append((file, line, message))

    def warn(self, file: str, line: int, message: str) -> None:
        self.warnings.append((file, line, message))

    @staticmethod
    def _render(items: list[tuple[str, int, str]]) -> list[str]:
        ordered = sorted(enumerate(items), key=lambda pair: (pair[1][0], pair[1][1], pair[0]))
        return [
            f"{file}:{line}: {message}" if line else message for _, (file, line, message) in ordered
        ]

    def error_lines(self) -> list[str]:
        return self._render(self.errors)

    def warning_lines(self) -> list[str]:
        return self._render(self.warnings)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'fields'?)`` when a close choice exists, else ``""``."""
    choices = list(choices)
    lowered = word.lower()
    # A prefix ("Email" for "EmailAddress") beats difflib's ratio, which favours short words.
    prefixed = [c for c in choices if c.lower().startswith(lowered) and len(lowered) >= 3]
    close = prefixed[:1] or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
