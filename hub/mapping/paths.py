"""JSONPaths, compiled once at load.

:func:`compile_path` parses a path with jsonpath-ng's extended parser (so filters
such as ``$.field_data[?(@.name=='email')].values[0]`` work). When the parsed path
is a plain chain of single field names and single indexes from the root
(``$.a.b[0].c``, ``$['x y']``, ``$.items[-1]``), it is replaced by a precompiled
getter that walks the document with plain dict/list indexing (:class:`SimplePath`).
When the chain also has wildcards (``[*]``, ``.*``), filters comparing a relative
path with a literal (``[?(@.field.ref=='email')]``), unions of names or indexes
(``['a','b']``, ``[0,2]``), slices (``[1:3]``) or descendants (``$..email``,
``$..answers[*].email``; see :mod:`hub.mapping.steps`), it becomes a :class:`NativePath`:
a tuple of precompiled steps. Both return exactly what jsonpath-ng would, in the same
order (property tests check this on random documents and paths). Everything else keeps
jsonpath-ng's own ``find`` (:class:`ExtendedPath`).

jsonpath-ng's ``..`` took 0.2-0.5 s on a 1 MB document (it wraps every value it visits in
a ``DatumInContext``), on the dispatcher's event loop; the native step takes a few tens of
ms, and stops with a :class:`DocumentError` when ``..`` after ``..`` would visit more than
:data:`~hub.mapping.steps.MAX_DESCENT` values.

jsonpath-ng evaluates its paths recursively, one Python frame per level of the parsed
path: a path it evaluates that nests more than :data:`MAX_NESTING` levels (a union of
thousands of names joined by ``|``, thousands of steps with a regex filter at the end)
compiled, then failed on every document with a RecursionError. It is a :class:`PathError`
now; so is ``&``, which jsonpath-ng parses but never evaluates.

A regular expression in a filter (``[?(@.name =~ '^e-?mail$')]``) is compiled at load
too, so a pattern that cannot compile is a :class:`PathError` (a ``check`` error), not a
failure each time a document is mapped. It is matched with the ``regex`` module (the
standard library's syntax and results) under a time budget
(:data:`~hub.mapping.steps.REGEX_BUDGET` of CPU time matching per path and document; not
wall time, which a loaded machine also spends waiting for a core): a pattern that
backtracks without end on a sender's value, such as ``^(a|aa)+$`` on forty ``a`` and a
``b``, fails that document's mapping with the reason (:class:`DocumentError`) instead of
holding the dispatcher's only thread for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import regex
from jsonpath_ng import jsonpath
from jsonpath_ng.ext import filter as ext_filter
from jsonpath_ng.ext.parser import parse as _ext_parse

from hub.exceptions import HubError
from hub.mapping.steps import (
    MAX_DESCENT,
    BoundedRegex,
    DescentTooLarge,
    StepFunc,
    _budget,
    chain_step,
    descend_step,
    filter_predicate,
    filter_step,
    indexes_step,
    names_step,
    regex_budget,
    single_key,
    slice_step,
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
    #: For each step, whether it opens containers (a wildcard, a filter, a slice, ``..``)
    #: rather than taking values by name or index (see :func:`ran_dry_in_containers`).
    opens: tuple[bool, ...] = ()

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order.

        Raises:
            DocumentError: its ``..`` steps would visit more than
                :data:`~hub.mapping.steps.MAX_DESCENT` values of ``document``.
        """
        nodes = [document]
        try:
            for step in self.steps:
                nodes = step(nodes)
                if not nodes:
                    break
        except DescentTooLarge:
            msg = (
                f"JSONPath {self.text} cannot be evaluated: its '..' would visit more than "
                f"{MAX_DESCENT:,} values of this document (each '..' visits again all that "
                "the one before it found); use one '..', or start it nearer the values, "
                "like $.items..email"
            )
            raise DocumentError(msg) from None
        return nodes


@dataclass(frozen=True, slots=True)
class TimedNativePath(NativePath):
    """A :class:`NativePath` with a regular expression in a filter: its matches share one
    budget per document (:data:`~hub.mapping.steps.REGEX_BUDGET`), as an
    :class:`ExtendedPath`'s do."""

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order.

        Raises:
            DocumentError: as :meth:`NativePath.values`, or a regular expression of the path
                ran out of its time.
        """
        token = regex_budget()
        try:
            return NativePath.values(self, document)
        finally:
            _budget.reset(token)


@dataclass(frozen=True, slots=True)
class ExtendedPath:
    """Any other path, found by jsonpath-ng: one holding a ``|`` union, a named operator
    (``sorted``, ``len``...), ``where``, or a filter using a regular expression, another
    path or ``$``, whatever native steps it holds besides."""

    text: str
    expression: Any
    #: Whether the path holds a regular expression (:class:`BoundedRegex`).
    timed: bool = False

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order.

        Raises:
            DocumentError: jsonpath-ng ran out of stack on a deeply nested document, or a
                regular expression of the path ran out of its time
                (:data:`~hub.mapping.steps.REGEX_BUDGET`).
        """
        token = regex_budget() if self.timed else None
        try:
            return [match.value for match in self.expression.find(document)]
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            # A filter comparing unlike types, or a path into an odd document, finds nothing
            # rather than failing the whole mapping.
            return []
        except RecursionError:
            msg = f"JSONPath {self.text} cannot be evaluated: the document is nested too deeply"
            raise DocumentError(msg) from None
        finally:
            if token is not None:
                _budget.reset(token)


#: What :func:`_native_steps` turns one node into: a key or index, or any other step.
NativeStep = Step | StepFunc


def _opens(node: Any) -> bool:
    """Whether the native step of ``node`` opens containers (a wildcard, a filter, a slice)
    rather than taking values by name or index (one, or a union of them)."""
    wildcard = getattr(node, "_deprecated_wildcard_use", False)
    return type(node) not in (jsonpath.Fields, jsonpath.Index) or wildcard


def _native_step(node: Any) -> NativeStep | None:
    key = single_key(node)
    if key is not None:
        return key
    kind = type(node)
    if kind is jsonpath.Wildcard:
        return wildcard_step
    if kind is ext_filter.Filter:
        predicate = filter_predicate(node)
        return None if predicate is None else filter_step(predicate)
    # A hand-built Fields('*') or Slice() is a wildcard; no parsed path holds one.
    wildcard = getattr(node, "_deprecated_wildcard_use", False)
    if kind is jsonpath.Fields and node.fields and not wildcard:
        return names_step(tuple(node.fields))
    if kind is jsonpath.Index and node.indices:
        return indexes_step(tuple(int(index) for index in node.indices))
    if kind is jsonpath.Slice and not wildcard:
        return slice_step(node.start, node.end, node.step)
    return None


#: In :func:`_native_steps`' work list: the ``..`` between a ``Descendants``' two sides.
_DESCEND = object()


def _native_steps(node: Any) -> list[tuple[NativeStep, bool]] | None:
    """The steps of ``node`` when it is a root-anchored path of native steps, else ``None``;
    each with whether it opens containers (:func:`_opens`; ``..`` does).

    ``Child(left, right)`` is ``left``'s steps then ``right``'s, and ``Descendants(left,
    right)`` is ``left``'s steps, ``..`` and ``right``'s: every step maps each node on its
    own and keeps their order, so a tree of them, however the parser nested it
    (``$..a.b`` is ``Descendants(Root, Child(a, b))``), is its leaves' steps in order, the
    root first. The tree is walked in a loop: a path of a thousand steps (``$.a.a.a...``)
    nests that deep, and recursing on it made ``leadhub check`` (and serve, try) stop with
    a RecursionError traceback.
    """
    steps: list[tuple[NativeStep, bool]] = []
    rooted = False
    pending = [node]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind is jsonpath.Child:
            pending += [node.right, node.left]
        elif kind is jsonpath.Descendants:
            pending += [node.right, _DESCEND, node.left]
        elif node is _DESCEND:
            steps.append((descend_step, True))
        elif kind is jsonpath.Root and not rooted and not steps:
            rooted = True
        else:
            step = _native_step(node) if rooted else None
            if step is None:
                return None
            steps.append((step, _opens(node)))
    return steps if rooted else None


def _as_funcs(
    steps: list[tuple[NativeStep, bool]],
) -> tuple[tuple[StepFunc, ...], tuple[bool, ...]]:
    """Step functions for ``steps``, each run of names and indexes walked in one step, and
    whether each opens containers (a run of names and indexes does not)."""
    funcs: list[StepFunc] = []
    opens: list[bool] = []
    run: list[Step] = []
    for step, opening in steps:
        if isinstance(step, str | int):
            run.append(step)
            continue
        if run:
            funcs.append(chain_step(tuple(run)))
            opens.append(False)
            run = []
        funcs.append(step)
        opens.append(opening)
    if run:
        funcs.append(chain_step(tuple(run)))
        opens.append(False)
    return tuple(funcs), tuple(opens)


#: The most levels a path jsonpath-ng evaluates may nest (:func:`_nesting`). Its ``find``
#: recurses once per level, so Python's limit of 1,000 frames, less those of the caller,
#: is the real bound: at 990 levels a path fails from a bare interpreter, at 840 under 150
#: frames of caller. 200 leaves the dispatcher, ``leadhub try`` and a filter's recursion
#: into a 200-deep document (``sorted``) their room; no path written by hand comes near.
MAX_NESTING = 200


def _nesting(expression: Any) -> int:
    """How many levels of jsonpath-ng nodes ``expression`` nests, at its deepest (no
    recursion: the path may nest thousands deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(expression, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list | tuple):
            stack.extend((item, depth) for item in node)
        elif isinstance(node, jsonpath.JSONPath):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in vars(node).values())
    return deepest


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


def _bound_regexes(text: str, expression: Any) -> bool:
    """Compile every ``=~`` pattern of the path and put a :class:`BoundedRegex` in place of
    its expression; whether there was one.

    Raises:
        PathError: a pattern is not a string or does not compile.
    """
    for node in _nodes(expression):
        for name, child in list(vars(node).items()):
            if isinstance(child, list):
                child[:] = [_bounded(text, item) for item in child]
            else:
                setattr(node, name, _bounded(text, child))
    return any(type(node) is BoundedRegex for node in _nodes(expression))


def _bounded(text: str, node: Any) -> Any:
    """``node``, or a :class:`BoundedRegex` in its place when it is an ``=~`` expression."""
    if type(node) is not ext_filter.Expression or node.op != "=~":
        return node
    pattern = node.value
    if not isinstance(pattern, str):
        msg = (
            f"JSONPath {text!r}: =~ takes a regular expression in quotes, "
            f"like =~ '^a', not {pattern!r}"
        )
        raise PathError(msg)
    try:
        compiled = regex.compile(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        msg = (
            f"JSONPath {text!r}: the regular expression {pattern!r} does not compile "
            f"({exc}); fix it, writing a character meant literally in brackets, like [(] "
            "(the path's quotes take backslashes away)"
        )
        raise PathError(msg) from None
    return BoundedRegex(node.target, pattern, compiled, text)


def _evaluable(text: str, expression: Any) -> None:
    """Refuse a path jsonpath-ng would fail on with every document.

    Raises:
        PathError: the path uses ``&``, or nests more than :data:`MAX_NESTING` levels.
    """
    if any(type(node) is jsonpath._Intersect for node in _nodes(expression)):
        msg = (
            f"JSONPath {text!r} uses '&', which jsonpath-ng reads but cannot evaluate (every "
            "document would fail); write the path of the values meant, or a filter, like "
            "$.items[?(@.a == 1 && @.b == 2)]"
        )
        raise PathError(msg)
    nesting = _nesting(expression)
    if nesting > MAX_NESTING:
        msg = (
            f"JSONPath {text!r} nests {nesting} levels (its steps, '|' and filters inside one "
            f"another), more than the {MAX_NESTING} jsonpath-ng can evaluate (every document "
            "would fail); write a union of names or indexes in one bracket, like "
            "$.lead['work_email','email'] or $.items[0,1,2] (any number of them), and keep "
            f"a path with a regular expression, '|' or 'sorted' under {MAX_NESTING} steps"
        )
        raise PathError(msg)


def compile_path(text: str) -> SimplePath | NativePath | ExtendedPath:
    """Compile ``text`` once; raises :class:`PathError` naming the fix when it does not parse.

    Paths must start at the root (``$``), so that a constant written where a path
    belongs (``Source: Typeform``) is caught instead of silently finding nothing, every
    regular expression in a filter must compile, and a path jsonpath-ng evaluates must be
    one it can evaluate (:func:`_evaluable`).
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
    timed = _bound_regexes(text, expression)
    try:
        steps = _native_steps(expression)
    except RecursionError:  # filters inside a thousand parentheses: jsonpath-ng's, and refused
        steps = None
    if steps is None:
        _evaluable(text, expression)
        return ExtendedPath(text=text, expression=expression, timed=timed)
    keys = [step for step, _ in steps if isinstance(step, str | int)]
    if len(keys) == len(steps):
        return SimplePath(text=text, steps=tuple(keys))
    native = TimedNativePath if timed else NativePath
    funcs, opens = _as_funcs(steps)
    return native(text=text, steps=funcs, opens=opens)


def ran_dry_in_containers(path: object, document: Any) -> bool:
    """Whether ``path``, which found nothing in ``document``, ran dry at a step that opens
    containers (a wildcard, a filter, a slice, ``..``) given at least one list or object:
    the containers it takes its values from are there and held none it keeps (for a split
    path, an empty batch: ``{"leads": []}`` for ``$.leads[*]``). ``False`` when it ran dry
    at a name or index (the document is not shaped as the path expects, or the path has a
    typo), or at a wildcard given no container (``{"leads": null}``), and for a path
    walked by jsonpath-ng, whose steps are not walked one by one.

    Walked again from the start, step by step: call it only once the path found nothing.

    Raises:
        DocumentError: as the path's ``values`` (its ``..`` or a regular expression).
    """
    if not isinstance(path, NativePath):
        return False  # SimplePath: names and indexes only; ExtendedPath: cannot tell
    token = regex_budget() if isinstance(path, TimedNativePath) else None
    nodes = [document]
    try:
        for step, opens in zip(path.steps, path.opens, strict=True):
            found = step(nodes)
            if not found:
                return opens and any(isinstance(node, dict | list | tuple) for node in nodes)
            nodes = found
    except DescentTooLarge:
        return False
    finally:
        if token is not None:
            _budget.reset(token)
    return False  # (it found something after all)
