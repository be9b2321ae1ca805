"""JSONPaths, compiled once at load.

:func:`compile_path` parses a path with jsonpath-ng's extended parser (so filters
such as ``$.field_data[?(@.name=='email')].values[0]`` work). When the parsed path
is a plain chain of single field names and single indexes from the root
(``$.a.b[0].c``, ``$['x y']``, ``$.items[-1]``), it is replaced by a precompiled
getter that walks the document with plain dict/list indexing; it returns exactly
what jsonpath-ng would (a property test checks this on random documents).
Everything else keeps jsonpath-ng's own ``find``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonpath_ng import jsonpath
from jsonpath_ng.ext.parser import parse as _ext_parse

from hub.exceptions import HubError


class PathError(HubError):
    """A JSONPath does not compile."""


#: One step of a simple path: a field name (str) or an array index (int).
Step = str | int


@dataclass(frozen=True, slots=True)
class SimplePath:
    """A root-anchored chain of field names and indexes, walked without jsonpath-ng."""

    text: str
    steps: tuple[Step, ...]

    def values(self, document: Any) -> list[Any]:
        """The one value at the end of the chain, or nothing when a step is missing."""
        value = document
        for step in self.steps:
            if isinstance(step, str):
                if not isinstance(value, dict) or step not in value:
                    return []
                value = value[step]
            else:
                if not isinstance(value, list | tuple) or not -len(value) <= step < len(value):
                    return []
                value = value[step]
        return [value]


@dataclass(frozen=True, slots=True)
class ExtendedPath:
    """Any other path: filters, wildcards, slices, descendants, through jsonpath-ng."""

    text: str
    expression: Any

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order."""
        try:
            return [match.value for match in self.expression.find(document)]
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            # A filter comparing unlike types, or a path into an odd document, finds nothing
            # rather than failing the whole mapping.
            return []


def _simple_steps(node: Any) -> list[Step] | None:
    """The steps of ``node`` when it is a plain root-anchored chain, else ``None``."""
    if isinstance(node, jsonpath.Root):
        return []
    if type(node) is not jsonpath.Child:
        return None
    left = _simple_steps(node.left)
    if left is None:
        return None
    right = node.right
    if type(right) is jsonpath.Fields and len(right.fields) == 1:
        if getattr(right, "_deprecated_wildcard_use", False) or right.fields[0] == "*":
            return None
        return [*left, right.fields[0]]
    if type(right) is jsonpath.Index and len(right.indices) == 1:
        return [*left, int(right.indices[0])]
    return None


def compile_path(text: str) -> SimplePath | ExtendedPath:
    """Compile ``text`` once; raises :class:`PathError` naming the fix when it does not parse.

    Paths must start at the root (``$``), so that a constant written where a path
    belongs (``Source: Typeform``) is caught instead of silently finding nothing.
    """
    if not isinstance(text, str) or not text.strip().startswith("$"):
        msg = (
            f"{text!r} is not a JSONPath: paths start with '$' (like $.email); "
            "for a constant write {value: ...}"
        )
        raise PathError(msg)
    text = text.strip()
    try:
        expression = _ext_parse(text)
    except Exception as exc:  # JSONPathError, and ply raises a few bare exception types too
        msg = (
            f"JSONPath {text!r} does not compile ({exc}); quote keys with spaces or symbols "
            "like $['my key'], and put the whole path in quotes in YAML"
        )
        raise PathError(msg) from exc
    steps = _simple_steps(expression)
    if steps is not None:
        return SimplePath(text=text, steps=tuple(steps))
    return ExtendedPath(text=text, expression=expression)
