"""JSONPaths, compiled once at load.

:func:`compile_path` parses a path with jsonpath-ng's extended parser (so filters
such as ``$.field_data[?(@.name=='email')].values[0]`` work). When the parsed path
is a plain chain of single field names and single indexes from the root
(``$.a.b[0].c``, ``$['x y']``, ``$.items[-1]``), it is replaced by a precompiled
getter that walks the document with plain dict/list indexing (:class:`SimplePath`).
When the chain also has wildcards (``[*]``, ``.*``) and filters comparing a relative
path with a literal (``[?(@.field.ref=='email')]``, see :mod:`hub.mapping.steps`), it
becomes a :class:`NativePath`: a tuple of precompiled steps. Both return exactly what
jsonpath-ng would, in the same order (property tests check this on random documents
and paths). Everything else keeps jsonpath-ng's own ``find`` (:class:`ExtendedPath`).

A regular expression in a filter (``[?(@.name =~ '^e-?mail$')]``) is compiled at load
too, so a pattern that cannot compile is a :class:`PathError` (a ``check`` error), not a
failure each time a document is mapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jsonpath_ng import jsonpath
from jsonpath_ng.ext import filter as ext_filter
from jsonpath_ng.ext.parser import parse as _ext_parse

from hub.exceptions import HubError
from hub.mapping.steps import (
    StepFunc,
    chain_step,
    filter_predicate,
    filter_step,
    single_key,
    wildcard_step,
)
from hub.mapping.values import DocumentError


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
class NativePath:
    """A root-anchored chain with wildcards or simple filters, walked without jsonpath-ng."""

    text: str
    steps: tuple[StepFunc, ...]

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order."""
        nodes = [document]
        for step in self.steps:
            nodes = step(nodes)
            if not nodes:
                break
        return nodes


@dataclass(frozen=True, slots=True)
class ExtendedPath:
    """Any other path, found by jsonpath-ng: descendants (``$..x``), slices, unions, and
    filters using a regular expression, another path or ``$``."""

    text: str
    expression: Any

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order.

        Raises:
            DocumentError: jsonpath-ng ran out of stack on a deeply nested document.
        """
        try:
            return [match.value for match in self.expression.find(document)]
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            # A filter comparing unlike types, or a path into an odd document, finds nothing
            # rather than failing the whole mapping.
            return []
        except RecursionError:
            msg = f"JSONPath {self.text} cannot be evaluated: the document is nested too deeply"
            raise DocumentError(msg) from None


#: What :func:`_native_steps` turns one node into: a key or index, or any other step.
NativeStep = Step | StepFunc


def _native_step(node: Any) -> NativeStep | None:
    key = single_key(node)
    if key is not None:
        return key
    if type(node) is jsonpath.Wildcard:
        return wildcard_step
    if type(node) is ext_filter.Filter:
        predicate = filter_predicate(node)
        return None if predicate is None else filter_step(predicate)
    return None


def _native_steps(node: Any) -> list[NativeStep] | None:
    """The steps of ``node`` when it is a root-anchored chain of native steps, else ``None``."""
    if type(node) is jsonpath.Root:
        return []
    if type(node) is not jsonpath.Child:
        return None
    left = _native_steps(node.left)
    if left is None:
        return None
    right = _native_step(node.right)
    return None if right is None else [*left, right]


def _as_funcs(steps: list[NativeStep]) -> tuple[StepFunc, ...]:
    """Step functions for ``steps``, each run of names and indexes walked in one step."""
    funcs: list[StepFunc] = []
    run: list[Step] = []
    for step in steps:
        if isinstance(step, str | int):
            run.append(step)
            continue
        if run:
            funcs.append(chain_step(tuple(run)))
            run = []
        funcs.append(step)
    if run:
        funcs.append(chain_step(tuple(run)))
    return tuple(funcs)


def _nodes(expression: Any) -> list[Any]:
    """Every node of a parsed path (filters, their expressions, operands...), no recursion."""
    found = []
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, jsonpath.JSONPath):
            found.append(node)
            stack.extend(vars(node).values())
    return found


def _check_regexes(text: str, expression: Any) -> None:
    """Compile every ``=~`` pattern of the path; raise :class:`PathError` for a bad one."""
    for node in _nodes(expression):
        if type(node) is not ext_filter.Expression or node.op != "=~":
            continue
        pattern = node.value
        if not isinstance(pattern, str):
            msg = (
                f"JSONPath {text!r}: =~ takes a regular expression in quotes, "
                f"like =~ '^a', not {pattern!r}"
            )
            raise PathError(msg)
        try:
            re.compile(pattern)
        except re.error as exc:
            msg = (
                f"JSONPath {text!r}: the regular expression {pattern!r} does not compile "
                f"({exc}); fix it, writing a character meant literally in brackets, like [(] "
                "(the path's quotes take backslashes away)"
            )
            raise PathError(msg) from None


def compile_path(text: str) -> SimplePath | NativePath | ExtendedPath:
    """Compile ``text`` once; raises :class:`PathError` naming the fix when it does not parse.

    Paths must start at the root (``$``), so that a constant written where a path
    belongs (``Source: Typeform``) is caught instead of silently finding nothing, and
    every regular expression in a filter must compile.
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
    _check_regexes(text, expression)
    steps = _native_steps(expression)
    if steps is None:
        return ExtendedPath(text=text, expression=expression)
    keys = [step for step in steps if isinstance(step, str | int)]
    if len(keys) == len(steps):
        return SimplePath(text=text, steps=tuple(keys))
    return NativePath(text=text, steps=_as_funcs(steps))
