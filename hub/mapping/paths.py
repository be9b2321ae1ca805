"""JSONPaths, compiled once at load.

:func:`compile_path` parses a path with jsonpath-ng's extended parser (so filters
such as ``$.field_data[?(@.name=='email')].values[0]`` work). When the parsed path
is a plain chain of single field names and single indexes from the root
(``$.a.b[0].c``, ``$['x y']``, ``$.items[-1]``), it is replaced by a precompiled
getter that walks the document with plain dict/list indexing (:class:`SimplePath`).
When the chain also has wildcards (``[*]``, ``.*``), filters comparing a relative
path with a literal (``[?(@.field.ref=='email')]``) or the document's root with one
(``[?($.object == 1)]``: :class:`RootFilterPath`), unions of names or indexes
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
(:data:`~hub.mapping.steps.REGEX_BUDGET` of the matching thread's CPU time per path and
document; not wall time, which a loaded machine also spends waiting for a core, nor other
threads' CPU time): a pattern that backtracks without end on a sender's value, such as
``^(a|aa)+$`` on forty ``a`` and a ``b``, fails that document's mapping with the reason
(:class:`DocumentError`) instead of holding the dispatcher's only thread for good.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import regex
from jsonpath_ng import jsonpath
from jsonpath_ng.ext import filter as ext_filter
from jsonpath_ng.ext.parser import ExtendedJsonPathParser

from hub.exceptions import HubError
from hub.mapping.steps import (
    MAX_DESCENT,
    BoundedRegex,
    DescentTooLarge,
    EqualityFilter,
    OnRoot,
    RootFilter,
    StepFunc,
    _budget,
    _document,
    chain_step,
    descend_step,
    equality,
    filter_predicate,
    filter_step,
    indexes_step,
    names_step,
    regex_budget,
    root_document,
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
    #: Whether every step is a field name (``$.form_response.hidden.gclid``), the most
    #: common path, walked by indexing alone.
    names_only: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names_only", all(type(s) is str for s in self.steps))

    def values(self, document: Any) -> list[Any]:
        """The one value at the end of the chain, or nothing when a step is missing."""
        value = document
        if self.names_only:
            # Indexing with a name fails (KeyError, TypeError) exactly where a member is
            # missing or a value is no object: a list, a string, a number, null.
            try:
                for name in self.steps:
                    value = value[name]
            except (KeyError, TypeError):
                return []
            return [value]
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


#: What one step of a :class:`NativePath` does (:attr:`NativePath.kinds`): take values by
#: name or index (one, or a run of them), by a union of names or indexes in one bracket, or
#: open containers: a wildcard, a filter, a slice, ``..``.
KEYS, UNION, WILDCARD, FILTER, SLICE, DESCEND = (
    "keys",
    "union",
    "wildcard",
    "filter",
    "slice",
    "descend",
)
#: The kinds of step that open containers rather than take values by name or index.
OPENING = frozenset({WILDCARD, FILTER, SLICE, DESCEND})
#: The steps after which :meth:`NativePath.walk` counts the containers it could not go on
#: into (a ``..`` visits values without the next name by design: counting stops at one).
_BRANCHING = frozenset({WILDCARD, FILTER, SLICE})


class Walk(NamedTuple):
    """What :meth:`NativePath.walk` found in a document, and how (for a split path: the
    leads, an empty batch or a miss, and the lists a lead was expected in that are not
    there). A tuple: one is made per delivery, on the event loop."""

    values: list[Any]
    #: How many of the values a wildcard, filter or slice of the path opened (before any
    #: ``..``) the rest of it could not go on into: a name or index not there, or a value
    #: that is no list or object given to a later wildcard, filter or slice (``{"id": 2}``
    #: and ``{"leads": null}`` among the groups of ``$.groups[*].leads[*]``). Not counted at
    #: a union of names or indexes (``['email','mail']``: one of them missing is expected).
    missed: int = 0
    #: The path found nothing, and ran dry at a step that opens containers given at least
    #: one list or object: the containers it takes its values from are there and held none
    #: it keeps (for a split path, an empty batch: ``{"leads": []}`` for ``$.leads[*]``).
    #: ``False`` when it ran dry at a name or index (the document is not shaped as the
    #: path expects, or the path has a typo), or at a wildcard given no container
    #: (``{"leads": null}``).
    ran_dry_in_containers: bool = False
    #: The path found nothing because a filter given items kept none of them: the filter
    #: (as jsonpath-ng writes it, ``[?@.type == 'lead']``) and how many items it left out
    #: (every item given, for a filter reading the document's root that does not hold for
    #: it: ``[?$.object == 1]`` on another object). ``None`` when the lists it was given
    #: were empty (or it did not run dry at a filter).
    kept_none: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class NativePath:
    """A root-anchored chain with wildcards or simple filters, walked without jsonpath-ng."""

    text: str
    #: (Compared by ``text``: the same text compiles to the same steps, and a reload that
    #: leaves a path as it was finds its mapping unchanged, ``hub.dispatch.worker``.)
    steps: tuple[StepFunc, ...] = field(compare=False)
    #: What each step does (:data:`KEYS`, :data:`UNION`, :data:`WILDCARD`, :data:`FILTER`,
    #: :data:`SLICE` or :data:`DESCEND`), for :meth:`walk`.
    kinds: tuple[str, ...] = ()
    #: Each step as jsonpath-ng writes it (``*``, ``[?@.type == 'lead']``), to name it in a
    #: message; ``""`` for a run of names and indexes.
    texts: tuple[str, ...] = ()
    #: Whether :meth:`walk` can count missed containers (:attr:`Walk.missed`): a step
    #: follows the path's first wildcard, filter or slice, with no ``..`` before it
    #: (``$.groups[*].leads[*]``; not ``$.data.leads[*]`` nor ``$..leads[*]``).
    counts: bool = False

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
            raise DocumentError(self._too_large()) from None
        return nodes

    def walk(self, document: Any) -> Walk:
        """What :meth:`values` finds in ``document``, with how the walk went (:class:`Walk`),
        for a split path (``hub.sources.split``: in place of :meth:`values` for a path that
        :attr:`counts`, else only once :meth:`values` found nothing). It costs what
        :meth:`values` does, plus, at each step after the path's first wildcard, filter or
        slice, a count of the values given that a step of names and indexes did not get
        through, or a look at each value given to a wildcard, filter or slice (whether it is
        a list or an object), and a :class:`Walk`.

        Raises:
            DocumentError: as :meth:`values`.
        """
        nodes = [document]
        missed = 0
        counting = descended = False
        try:
            for step, kind, text in zip(self.steps, self.kinds, self.texts, strict=True):
                found = step(nodes)
                if counting:
                    missed += _missed(kind, nodes, found)
                if not found:
                    return _ran_dry(kind, text, nodes, missed)
                nodes = found
                descended = descended or kind == DESCEND
                counting = not descended and (counting or kind in _BRANCHING)
        except DescentTooLarge:
            raise DocumentError(self._too_large()) from None
        return Walk(nodes, missed)

    def _too_large(self) -> str:
        return (
            f"JSONPath {self.text} cannot be evaluated: its '..' would visit more than "
            f"{MAX_DESCENT:,} values of this document (each '..' visits again all that "
            "the one before it found); use one '..', or start it nearer the values, "
            "like $.items..email"
        )


def _missed(kind: str, given: list[Any], found: list[Any]) -> int:
    """How many of the values ``given`` to a step of ``kind`` (which ``found`` ``found``)
    the walk cannot go on into (see :attr:`Walk.missed`)."""
    if kind == KEYS:  # (one value per value given that gets through)
        return len(given) - len(found)
    if kind in _BRANCHING:
        return sum(1 for node in given if not isinstance(node, dict | list | tuple))
    return 0


def _ran_dry(kind: str, text: str, given: list[Any], missed: int) -> Walk:
    """The :class:`Walk` of a path whose step of ``kind`` (written ``text``) found nothing
    in the values ``given`` to it, ``missed`` counted before."""
    containers = [node for node in given if isinstance(node, dict | list | tuple)]
    kept_none = None
    if kind == FILTER:  # (a filter opens lists and objects: see filter_step)
        left_out = sum(len(node) for node in containers if isinstance(node, dict | list))
        kept_none = (text, left_out) if left_out else None
    return Walk([], missed, kind in OPENING and bool(containers), kept_none)


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

    def walk(self, document: Any) -> Walk:
        """As :meth:`NativePath.walk`, the regular expressions sharing one budget.

        Raises:
            DocumentError: as :meth:`values`.
        """
        token = regex_budget()
        try:
            return NativePath.walk(self, document)
        finally:
            _budget.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class PickedPath(NativePath):
    """A :class:`NativePath` that picks items of one list by a string and reads a member of
    each: names, then one :class:`~hub.mapping.steps.EqualityFilter`, then names
    (``$.form_response.answers[?(@.field.ref=='email')].email``), the shape mappings pick a
    form's answer by its question with. Its :meth:`values` walk the names by indexing
    rather than step by step (what its steps find, without a list made for each step).
    """

    #: The names before the filter, the filter, and the names after it.
    before: tuple[str, ...] = field(compare=False)
    pick: EqualityFilter = field(compare=False)
    after: tuple[str, ...] = field(compare=False)

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order."""
        node = document
        # Indexing with a name fails (KeyError, TypeError) exactly where a member is
        # missing or a value is no object, as the path's steps find nothing there.
        try:
            for name in self.before:
                node = node[name]
        except (KeyError, TypeError):
            return []
        picked = self.pick.kept(node)
        if not self.after:
            return list(picked)
        out = []
        for item in picked:
            try:
                for name in self.after:
                    item = item[name]
            except (KeyError, TypeError):
                continue
            out.append(item)
        return out


@dataclass(frozen=True, slots=True)
class RootFilterPath(NativePath):
    """A :class:`NativePath` with a filter that reads the document's root
    (``$.entry[?($.object == 1)]``, :class:`~hub.mapping.steps.RootFilter`): while it is
    evaluated, its filters find the root in the document it was given, and its regular
    expressions, when it has any (``timed``), share one budget as a
    :class:`TimedNativePath`'s do. Only such paths pay for giving the filters their root."""

    #: Whether the path holds a regular expression (:class:`BoundedRegex`).
    timed: bool = False

    def values(self, document: Any) -> list[Any]:
        """Every value the path finds in ``document``, in document order.

        Raises:
            DocumentError: as :meth:`TimedNativePath.values`.
        """
        with self._evaluating(document):
            return NativePath.values(self, document)

    def walk(self, document: Any) -> Walk:
        """As :meth:`NativePath.walk`: a filter on the root that does not hold for
        ``document`` keeps none of the items it was given (:attr:`Walk.kept_none`).

        Raises:
            DocumentError: as :meth:`values`.
        """
        with self._evaluating(document):
            return NativePath.walk(self, document)

    @contextmanager
    def _evaluating(self, document: Any) -> Iterator[None]:
        root = root_document(document)
        budget = regex_budget() if self.timed else None
        try:
            yield
        finally:
            if budget is not None:
                _budget.reset(budget)
            _document.reset(root)


@dataclass(frozen=True, slots=True)
class ExtendedPath:
    """Any other path, found by jsonpath-ng: one holding a ``|`` union, a named operator
    (``sorted``, ``len``...), ``where``, or a filter using another path, or a regular
    expression or a ``$`` beyond single names and indexes (``@.* =~ 'x'``, ``$..a``),
    whatever native steps it holds besides."""

    text: str
    expression: Any = field(compare=False)  # (compared by ``text``, as NativePath's steps)
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


def _kind(node: Any) -> str:
    """What the native step of ``node``, no single name or index, does (:data:`KEYS`...)."""
    kind = type(node)
    if kind is jsonpath.Wildcard or getattr(node, "_deprecated_wildcard_use", False):
        return WILDCARD
    if kind is ext_filter.Filter:
        return FILTER
    if kind is jsonpath.Slice:
        return SLICE
    return UNION  # (names or indexes in one bracket: the other steps _native_step takes)


def _native_step(node: Any) -> NativeStep | None:
    key = single_key(node)
    if key is not None:
        return key
    kind = type(node)
    if kind is jsonpath.Wildcard:
        return wildcard_step
    if kind is ext_filter.Filter:
        predicate = filter_predicate(node)
        if isinstance(predicate, OnRoot):
            return RootFilter(predicate)
        if predicate is None:
            return None
        step = filter_step(predicate)
        equal = equality(node)
        return step if equal is None else EqualityFilter(*equal, plain=step)
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


#: One step of :func:`_native_steps`: the step, its kind (:data:`KEYS`...) and its text.
_Shaped = tuple[NativeStep, str, str]


def _native_steps(node: Any) -> list[_Shaped] | None:
    """The steps of ``node`` when it is a root-anchored path of native steps, else ``None``;
    each with its kind (:data:`KEYS` for a name or index; ``..`` is :data:`DESCEND`) and
    its text as jsonpath-ng writes it.

    ``Child(left, right)`` is ``left``'s steps then ``right``'s, and ``Descendants(left,
    right)`` is ``left``'s steps, ``..`` and ``right``'s: every step maps each node on its
    own and keeps their order, so a tree of them, however the parser nested it
    (``$..a.b`` is ``Descendants(Root, Child(a, b))``), is its leaves' steps in order, the
    root first. The tree is walked in a loop: a path of a thousand steps (``$.a.a.a...``)
    nests that deep, and recursing on it made ``leadhub check`` (and serve, try) stop with
    a RecursionError traceback.
    """
    steps: list[_Shaped] = []
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
            steps.append((descend_step, DESCEND, ".."))
        elif kind is jsonpath.Root and not rooted and not steps:
            rooted = True
        else:
            step = _native_step(node) if rooted else None
            if step is None:
                return None
            if isinstance(step, str | int):
                steps.append((step, KEYS, ""))
            else:
                steps.append((step, _kind(node), _written(node)))
    return steps if rooted else None


def _written(node: Any) -> str:
    """``node`` as jsonpath-ng writes it, to name it in a message; a filter whose relative
    path is too deep for jsonpath-ng's recursive ``str`` (``@.a.a...`` a thousand names,
    which the native step takes) is ``[?...]``."""
    try:
        return str(node)
    except RecursionError:
        return "[?...]"


def _as_funcs(
    steps: list[_Shaped],
) -> tuple[tuple[StepFunc, ...], tuple[str, ...], tuple[str, ...]]:
    """Step functions for ``steps``, each run of names and indexes walked in one step (of
    kind :data:`KEYS`, text ``""``), with the kind and the text of each."""
    funcs: list[StepFunc] = []
    kinds: list[str] = []
    texts: list[str] = []
    run: list[Step] = []

    def end_run() -> None:
        if run:
            funcs.append(chain_step(tuple(run)))
            kinds.append(KEYS)
            texts.append("")
            run.clear()

    for step, kind, text in steps:
        if isinstance(step, str | int):
            run.append(step)
            continue
        end_run()
        funcs.append(step)
        kinds.append(kind)
        texts.append(text)
    end_run()
    return tuple(funcs), tuple(kinds), tuple(texts)


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
        with warnings.catch_warnings():  # "Possible nested set": see _read_otherwise
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)  # Python's syntax, which jsonpath-ng's own =~ reads
    except (re.error, ValueError, OverflowError, RecursionError) as exc:
        msg = (
            f"JSONPath {text!r}: the regular expression {pattern!r} does not compile "
            f"({exc}); fix it, writing a character meant literally in brackets, like [(] "
            "(the path's quotes take backslashes away)"
        )
        raise PathError(msg) from None
    otherwise = _read_otherwise(pattern)  # before regex, which may refuse [[:a:]]
    if otherwise is not None:
        msg = f"JSONPath {text!r}: the regular expression {pattern!r}: {otherwise}"
        raise PathError(msg)
    try:
        compiled = regex.compile(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        msg = (
            f"JSONPath {text!r}: the regular expression {pattern!r} is Python's syntax, "
            f"but the matcher (the regex module) refuses it ({exc}); write a {{ or [ meant "
            "literally in brackets, like [{]"
        )
        raise PathError(msg) from None
    return BoundedRegex(node.target, pattern, compiled, text)


#: ``[:alpha:]`` inside a set: the ``regex`` module's POSIX class.
_POSIX_CLASS = re.compile(r"\[:\^?[A-Za-z]+:\]")
#: What ``re`` reads as a repeat after ``{``: ``{2}``, ``{1,3}``, ``{,3}``, ``{2,}``.
_REPEAT = re.compile(r"\d*(,\d*)?\}")
#: A ``{...}`` the ``regex`` module reads as a fuzzy-match constraint (``{e<=1}``,
#: ``{i,d}``, ``{2i+1s<=3}``), or refuses unclosed (``{s``): a lone e, i, d or s, no
#: spaces.
_FUZZY = re.compile(r"[^}\s]*(?<![A-Za-z])[eids](?![A-Za-z])")


def _read_otherwise(pattern: str) -> str | None:
    """Why the ``regex`` module (matching under the time budget) would read ``pattern``
    otherwise than Python's ``re`` (what README promises, and what jsonpath-ng finds), or
    ``None``.

    Both compile it, but ``regex`` reads ``[[:alpha:]]`` as a POSIX class (``re``: the
    characters ``[:alph`` then a ``]``) and ``a{e<=1}`` as a fuzzy match (``re``: the text
    ``a{e<=1}``), so such a filter kept values jsonpath-ng does not, silently. Walks the
    pattern as ``re`` does: a backslash escapes the next character; a set runs from ``[``
    to the first ``]`` that is not its first character.
    """
    i, in_set, set_start = 0, False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_set:
            if char == "[" and _POSIX_CLASS.match(pattern, i):
                return (
                    "Python reads [:...:] inside brackets as the characters written, not as "
                    "a class; write the characters, like [a-zA-Z] or \\d"
                )
            if char == "]" and i > set_start:
                in_set = False
        elif char == "[":
            in_set = True
            set_start = i + 1 + (pattern[i + 1 : i + 2] == "^")
        elif char == "{" and not _REPEAT.match(pattern, i + 1) and _FUZZY.match(pattern, i + 1):
            return (
                "Python reads { here as the character itself, where the matcher would read "
                "fuzzy matching; write it in brackets, [{]"
            )
        i += 1
    return None


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


#: A name after a ``.`` (``$.name``, ``@.name``): up to the next step, bracket, quote,
#: parenthesis, space, operator or ':' (``$.form_id:abc`` is a key whose ':' lacks its
#: space, not a name to quote).
_DOTTED = re.compile(r"(?<=[$@\]\w])\.([^.\[\]()'\"\s=!<>&|,~*:]+)")
#: A name jsonpath-ng reads after a ``.`` (its lexer's ``ID``), less its reserved words.
_PLAIN_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_@\-]*")
_RESERVED = ("where", "wherenot")


def _names_quoted(text: str) -> str | None:
    """How to write ``text`` with each name after a ``.`` that jsonpath-ng cannot read there
    in brackets (``$.where`` as ``$['where']``, ``$.lead.prénom`` as ``$.lead['prénom']``),
    when that makes a path that compiles, and why; else ``None``. The general hint, to quote
    keys "with spaces or symbols", did not name a reserved word or an accented letter as the
    cause."""
    why: dict[str, None] = {}

    def quoted(match: re.Match[str]) -> str:
        name = match.group(1)
        if "'" in name or (name not in _RESERVED and _PLAIN_NAME.fullmatch(name)):
            return match.group(0)
        why[
            f"{name!r} is a word of jsonpath-ng's syntax"
            if name in _RESERVED
            else "jsonpath-ng reads a name holding more than ASCII letters, digits, _ and - "
            "only in quotes"
        ] = None
        return "['" + name + "']"

    fixed = _DOTTED.sub(quoted, text)
    if fixed == text:
        return None
    try:
        _ext_parse(fixed)
    except Exception:  # (what else is wrong with it, the general hint covers)
        return None
    return f"write {fixed} ({'; '.join(why)})"


_parsers = threading.local()


def _ext_parse(text: str) -> Any:
    """``text`` read by jsonpath-ng's extended parser, one parser per thread kept.

    jsonpath-ng's ``parse()`` builds its LALR parser again for every path: 0.5 of a path's
    0.7 ms, paid for each of a config's paths at every start, reload and ``check``. A parser
    starts each parse afresh (one that raised included); it is not shared across threads.
    """
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = ExtendedJsonPathParser()
    return parser.parse(text)


def parse_path(text: str) -> Any:
    """``text`` as jsonpath-ng's extended parser reads it, its own tree of nodes (what
    :func:`compile_path` starts from).

    Raises:
        Exception: what jsonpath-ng raises for a path that does not parse.
    """
    with warnings.catch_warnings():  # (an unquoted word as an operand is deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _ext_parse(text.strip())


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
        hint = _names_quoted(text) or "quote keys with spaces or symbols like $['my key']"
        msg = (
            f"JSONPath {text!r} does not compile ({exc}); {hint}, and put the whole path in "
            "quotes in YAML"
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
    keys = [step for step, _, _ in steps if isinstance(step, str | int)]
    if len(keys) == len(steps):
        return SimplePath(text=text, steps=tuple(keys))
    funcs, kinds, texts = _as_funcs(steps)
    counts = _counts(kinds)
    if any(isinstance(func, RootFilter) for func in funcs):
        return RootFilterPath(text, funcs, kinds, texts, counts, timed=timed)
    if timed:
        return TimedNativePath(text=text, steps=funcs, kinds=kinds, texts=texts, counts=counts)
    picked = _picked(steps)
    if picked is not None:
        before, pick, after = picked
        return PickedPath(
            text=text,
            steps=funcs,
            kinds=kinds,
            texts=texts,
            counts=counts,
            before=before,
            pick=pick,
            after=after,
        )
    return NativePath(text=text, steps=funcs, kinds=kinds, texts=texts, counts=counts)


def _picked(
    steps: list[_Shaped],
) -> tuple[tuple[str, ...], EqualityFilter, tuple[str, ...]] | None:
    """The names before, the filter, and the names after, of ``steps`` that are names, one
    :class:`~hub.mapping.steps.EqualityFilter` and names (:class:`PickedPath`); else None."""
    at = [i for i, (step, _, _) in enumerate(steps) if not isinstance(step, str | int)]
    if len(at) != 1 or not isinstance(pick := steps[at[0]][0], EqualityFilter):
        return None
    before = [step for step, _, _ in steps[: at[0]] if type(step) is str]
    after = [step for step, _, _ in steps[at[0] + 1 :] if type(step) is str]
    if len(before) + len(after) + 1 != len(steps):  # an index among them
        return None
    return tuple(before), pick, tuple(after)


def _counts(kinds: tuple[str, ...]) -> bool:
    """Whether a path of steps of ``kinds`` has a step after its first wildcard, filter or
    slice with no ``..`` before (:attr:`NativePath.counts`)."""
    for at, kind in enumerate(kinds):
        if kind == DESCEND:
            return False
        if kind in _BRANCHING:
            return at + 1 < len(kinds) and kinds[at + 1] != DESCEND
    return False
