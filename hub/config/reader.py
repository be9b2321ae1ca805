"""Typed, located reads from one YAML mapping, recording every problem as an issue.

Each getter returns a usable value or ``None`` (after recording an error), so a
document with several mistakes yields all of them in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hub.config.issues import Issues, did_you_mean
from hub.config.nodes import Node, as_bool, uses_variables_only, variables
from hub.secrets import Secret
from hub.units import UnitError, parse_duration, parse_size

T = TypeVar("T")

_MISSING = object()


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__  # pragma: no cover


def _shown(node: Node) -> str:
    """How a value that is not true or false is named in the error, so the fix is plain."""
    if node.expanded:
        return f"{node.value!r} (from {node.raw})"
    if node.raw is None:
        return type_name(node.value)
    if isinstance(node.value, str) and as_bool(node.value) is not None:
        # required: "true" is the text true: YAML reads only the unquoted word as a flag.
        return f"the text {node.raw!r} (in quotes); write {node.raw.lower()} without quotes"
    return repr(node.raw)


class Reader:
    """Reads keys of one mapping node; ``what`` names it in messages (``target 'crm'``)."""

    def __init__(self, node: Node, issues: Issues, what: str) -> None:
        self.node = node
        self.issues = issues
        self.what = what
        self.values: dict[str, Node] = node.value if isinstance(node.value, dict) else {}

    # --- reporting ------------------------------------------------------------------------

    def error(self, node: Node | None, message: str) -> None:
        if node is not None and node.reported:
            return  # a follow-on: what is wrong with this value is reported already
        where = node if node is not None else self.node
        self.issues.error(where.file, where.line, message)

    def warn(self, node: Node | None, message: str) -> None:
        where = node if node is not None else self.node
        self.issues.warn(where.file, where.line, message)

    def key_line(self, key: str) -> int:
        return self.node.key_lines.get(key, self.node.line)

    def check_keys(
        self, allowed: Iterable[str], misplaced: Callable[[str], str | None] | None = None
    ) -> None:
        """Every key must be one of ``allowed``; a typo gets a "did you mean".

        ``misplaced(key)``, when given, may name where an unknown key belongs instead (a
        field's ``transform`` written at the mapping's level, one indentation short): that
        is the fix then, rather than a "did you mean" of a key it never meant.
        """
        allowed = list(allowed)
        for key in self.values:
            if key not in allowed:
                where = misplaced(key) if misplaced is not None else None
                fix = f"; {where}" if where else did_you_mean(key, allowed)
                self.issues.error(
                    self.node.file,
                    self.key_line(key),
                    f"unknown key {key!r} in {self.what}{fix}; known keys: {', '.join(allowed)}",
                )

    # --- getters --------------------------------------------------------------------------

    def get(self, key: str) -> Node | None:
        return self.values.get(key)

    def required(self, key: str) -> Node | None:
        node = self.values.get(key)
        if node is None or node.value is None:
            self.error(node, f"{self.what} needs {key!r}")
            return None
        return node

    def text(self, key: str, *, required: bool = False, default: Any = None) -> Any:
        node = self.required(key) if required else self.values.get(key)
        if node is None or (node.value is None and not required):
            return default
        if isinstance(node.value, bool) or isinstance(node.value, dict | list):
            self.error(node, f"{key!r} of {self.what} must be text, not {type_name(node.value)}")
            return default
        return str(node.value) if node.value is not None else default

    def flag(self, key: str, default: bool) -> bool:
        node = self.values.get(key)
        if node is None or node.value is None:
            return default
        value = node.value
        if isinstance(value, str) and node.expanded:
            value = as_bool(value)  # ${VAR}: its text, read as the field needs
        if not isinstance(value, bool):
            self.error(node, f"{key!r} of {self.what} must be true or false, not {_shown(node)}")
            return default
        return value

    def choice(self, key: str, choices: Iterable[str], default: str | None) -> str | None:
        choices = list(choices)
        value = self.text(key, default=default)
        if value is None or value in choices:
            return value  # type: ignore[no-any-return]
        self.error(
            self.values.get(key),
            f"{key!r} of {self.what} is {value!r}{did_you_mean(value, choices)}; "
            f"use one of: {', '.join(choices)}",
        )
        return default

    def _unit(self, key: str, parse: Callable[[Any], T], default: T) -> T:
        node = self.values.get(key)
        if node is None or node.value is None:
            return default
        try:
            return parse(node.plain())  # a list or mapping is shown as written, not as nodes
        except UnitError as exc:
            self.error(node, f"{key!r} of {self.what}: {exc}")
            return default

    def duration(self, key: str, default: float, example: str, *, zero: bool = False) -> float:
        """Seconds: finite, and more than zero unless ``zero`` is allowed (where it means
        something); ``example`` shows a good value in the message."""
        node = self.values.get(key)
        seconds = self._unit(key, parse_duration, default)
        if node is None or node.reported or (math.isfinite(seconds) and (seconds or zero)):
            return seconds
        shown = node.value if node.expanded else node.raw
        least = "of zero or more" if zero else "more than zero"
        self.error(
            node,
            f"{key!r} of {self.what} must be a finite duration {least}, like {example}, "
            f"not {shown!r}",
        )
        return default

    def size(self, key: str, default: int) -> int:
        return self._unit(key, parse_size, default)

    def secret(self, key: str, *, required: bool = True) -> Secret | None:
        """A secret; it belongs in the environment, so a literal in the file is a warning."""
        node = self.required(key) if required else self.values.get(key)
        if node is None or node.value is None:
            return None
        if isinstance(node.value, list):
            self.error(
                node,
                f"{key!r} of {self.what} must be text, not a list: it takes one value (a list "
                "is for the secret or token a sender signs or sends with, to rotate it)",
            )
            return None
        return self._secret_at(node, key, f"{key!r} of {self.what}")

    def secrets(self, key: str) -> tuple[Secret, ...]:
        """A required secret, or a list of them while a secret is rotated
        (``secret: ["${NEW}", "${OLD}"]``): a delivery is taken under any of them.

        Each value is read as :meth:`secret` reads one; an empty list is an error (no
        delivery would verify), a value listed twice a warning. Nothing here shows a
        secret: a value is named by its place and the variables it was written with.
        Returns ``()`` when no value is usable (each problem recorded).
        """
        node = self.required(key)
        if node is None:
            return ()
        if not isinstance(node.value, list):
            single = self.secret(key)
            return () if single is None else (single,)
        if not node.value:
            self.error(
                node,
                f"{key!r} of {self.what} is an empty list, which no delivery verifies under; "
                f"write the value, or while rotating it the new and the old one: "
                f'{key}: ["${{NEW_VAR}}", "${{OLD_VAR}}"] (in [ ], each ${{VAR}} in quotes)',
            )
            return ()
        found: list[tuple[int, Node, Secret]] = []
        unusable = False
        for number, item in enumerate(node.value, start=1):
            where = f"value {number} of {key!r} of {self.what}"
            if item.value is None or isinstance(item.value, dict | list | bool):
                self.error(item, f"{where} must be text, not {type_name(item.value)}")
                unusable = True
                continue
            secret = self._secret_at(item, key, where)
            if secret is None:
                unusable = True
                continue
            first = next((f for f in found if f[2] == secret), None)
            if first is not None:
                self.warn(
                    item,
                    f"{where} is the same as value {first[0]}{_written(first[1], item)}; "
                    "remove one",
                )
                continue
            found.append((number, item, secret))
        return () if unusable else tuple(secret for _, _, secret in found)

    def _secret_at(self, node: Node, key: str, where: str) -> Secret | None:
        """The secret at ``node`` (``where`` names it in messages); ``None`` when unusable."""
        if isinstance(node.value, dict | list | bool):
            self.error(node, f"{where} must be text, not {type_name(node.value)}")
            return None
        if not uses_variables_only(node.raw) and not node.reported:
            self.warn(
                node,
                f"{where} is written in the file; put it in the environment "
                f"and write {key}: ${{SOME_VAR}}",
            )
        value = str(node.value)
        if value:
            return Secret(value)
        # An empty key would make the endpoint accept signatures made with an empty key.
        if node.reported:
            return None  # its variable is unset, and that is reported already
        names = variables(node.raw)
        path = dict(node.files).get(names[0]) if names else None
        if uses_variables_only(node.raw) and path is not None:
            # (``export NAME=...`` beside NAME_FILE is itself an error: both set)
            self.error(
                node,
                f"{where} is empty: ${{{names[0]}}} comes from {names[0]}_FILE, which names "
                f"{path!r}, a file holding no text; write the real secret in that file",
            )
        elif uses_variables_only(node.raw):
            self.error(
                node,
                f"{where} is empty: ${{{names[0]}}} is set but empty; "
                f"set it to the real secret (export {names[0]}=...)",
            )
        elif names:
            self.error(
                node,
                f"{where} is empty: {node.raw!r} gives no text; "
                f"set {', '.join(names)} to the real secret (export {names[0]}=...)",
            )
        else:
            self.error(node, f"{where} is empty; set it through ${{VAR}}")
        return None


def _written(first: Node, again: Node) -> str:
    """How two equal secrets were written, for the warning: their variables, never a value."""
    if uses_variables_only(first.raw) and uses_variables_only(again.raw):
        return f" ({first.raw} and {again.raw} hold the same value)"
    return ""
