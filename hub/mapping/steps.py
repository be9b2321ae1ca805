"""Native JSONPath steps: what :mod:`hub.mapping.paths` compiles filters and wildcards into.

A path such as ``$.form_response.answers[?(@.field.ref=='email')].email`` becomes a
tuple of steps. Each step takes the list of nodes the path has reached so far and
returns the next list, exactly as jsonpath-ng's ``find`` would (same values, same
order):

- a run of field names and indexes walks each node down (an object's member, an
  array's element), keeping the nodes that have the whole chain;
- ``[*]`` (or ``.*``) opens every array and every object (its values, in order);
- a filter ``[?(...)]`` keeps the array elements, or object values, for which its
  predicate holds;
- a union of names ``['a','b']`` or indexes ``[0,2]`` walks each node down each of them, in
  the order written; a slice ``[1:3]``, ``[::-1]`` takes those elements of each array;
- ``..`` (:func:`descend_step`) puts in place of each node that node and everything under
  it, in document order (pre-order: an object, then its first value and all under it, then
  its second...), as jsonpath-ng's ``Descendants`` walks them; the step after ``..`` then
  applies to each of those. It walks with a list, not recursion, so a deep document is no
  RecursionError, and it takes time linear in what it visits.

A predicate is a comparison of a relative path (``@``, ``@.a.b``, ``@.items[0]``)
with a literal (string, number, ``true``/``false``, ``null``) by ``== = != < <= > >=``,
a regular expression (``@.name =~ '^e-?mail$'``, a :class:`BoundedRegex`), an existence
test (``@.a``, ``!@.a``), or an ``&&`` / ``||`` of those. It follows
RFC 9535 as jsonpath-ng 1.16 implements it: values of different types are never
equal (``1`` is not ``'1'``, ``true`` is not ``1``), only two numbers or two strings
are ordered, and a missing member satisfies only ``!=``.

Any of those tests may read the document's root instead (``$.object == 1``, ``$.a``,
``!$.a``): jsonpath-ng evaluates it on each item, and it finds the same value for every
item, so it holds for the whole document or for none of it. Such a filter is an
:class:`OnRoot`: its root tests are evaluated once per document, when its step
(:class:`RootFilter`) runs, and what is left is an ordinary predicate, or every item, or
none (TikTok's ``$.entry[?($.object == 1)]`` on another object: the filter keeps none of the
entries). :func:`compile_predicate` returns ``None`` for anything else (comparisons with
another path, ``$..a`` or ``$.*`` inside a filter), and the caller keeps jsonpath-ng for
that path.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import thread_time
from typing import Any, NamedTuple

from jsonpath_ng import jsonpath
from jsonpath_ng.ext import filter as ext_filter

from hub.mapping.values import DocumentError

#: Moves a path's nodes one step on.
StepFunc = Callable[[list[Any]], list[Any]]
#: Whether a filter keeps one candidate.
Predicate = Callable[[Any], bool]
#: One step of a relative path inside a filter: a field name or an index.
Key = str | int

_MISSING = object()
_ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


#: Seconds the regular expressions of one path may take on one document, in all: only the
#: time spent matching counts, not the walk to the values (jsonpath-ng's walk of a 1 MB
#: document with ``..`` took more than this, and a pattern that cannot backtrack was blamed).
REGEX_BUDGET = 0.2

#: The clock the budget is counted by: the CPU time of the thread evaluating the path, which
#: is the thread the pattern matches on (the ``regex`` module matches in the calling thread).
#: Not the wall clock: on a loaded machine a match of a few microseconds could wait longer
#: than the budget for a core. Nor the process's CPU time, which counts every thread's: the
#: store's writer thread or a reload's load, running while a match was timed, spent the
#: event loop's budget, and a benign pattern failed the document ("took more than 0.2 s")
#: because of them, not the pattern.
#:
#: The ``regex`` module's own ``timeout``, which stops a match that runs on, counts the
#: process's CPU time (C's ``clock()``) and cannot be told otherwise, so a match holds the
#: GIL (``concurrent=False``): no other Python thread runs during it. Matching a ``str``, it
#: let go of the GIL, and each time it took it back (to check that timeout, or to grow its
#: stacks) it waited out other threads' turns, whose CPU time the timeout counted: a benign
#: pattern was stopped after milliseconds of matching. What other threads do without the
#: GIL meanwhile (SQLite's own work) still counts there: only a match that takes a good part
#: of the budget by itself may be stopped early while such threads are busy.
cpu_time = thread_time

#: The document the path being evaluated was given, for the filters that read its root
#: (:class:`RootFilter`); set only while a path holding one is evaluated (the paths in
#: :mod:`hub.mapping.paths` that set it), so that no other path pays for it.
_document: ContextVar[Any] = ContextVar("document")


def root_document(document: Any) -> Token[Any]:
    """Give the path about to be evaluated on ``document`` its root, for its filters that read
    it (``_document.reset`` the token after)."""
    return _document.set(document)


#: What is left of :data:`REGEX_BUDGET` for the path being evaluated, in a one-item list
#: that its matches take from (:func:`regex_budget`); unset outside a path's ``values``.
_budget: ContextVar[list[float]] = ContextVar("regex_budget")


def regex_budget() -> Token[list[float]]:
    """Give the path about to be evaluated its :data:`REGEX_BUDGET` (``_budget.reset`` the
    token after)."""
    return _budget.set([REGEX_BUDGET])


class BoundedRegex(ext_filter.Expression):
    """``@.x =~ 'pattern'``, matched with the ``regex`` module under a time budget.

    Finds what jsonpath-ng's own ``=~`` finds (the targets whose value is a string in
    which the pattern is found, ``re.search``'s rule), but stops when the path's budget is
    spent and raises :class:`DocumentError` naming the pattern.
    """

    def __init__(self, target: Any, pattern: str, compiled: Any, path: str) -> None:
        super().__init__(target, "=~", pattern)
        self.compiled = compiled
        self.path = path

    def find(self, datum: Any) -> list[Any]:
        wrapped = jsonpath.DatumInContext.wrap(datum)
        left = _budget.get(None) or [REGEX_BUDGET]
        return [data for data in self.target.find(wrapped) if self.matches(data.value, left)]

    def matches(self, value: Any, left: list[float] | None = None) -> bool:
        """Whether ``value`` is a string in which the pattern is found, taking the time from
        ``left`` (the path's budget, else a budget of its own).

        Raises:
            DocumentError: the budget is spent.
        """
        if not isinstance(value, str):
            return False
        if left is None:
            left = _budget.get(None) or [REGEX_BUDGET]
        start = cpu_time()
        try:
            if left[0] <= 0:
                raise TimeoutError
            # Holding the GIL: see cpu_time.
            return self.compiled.search(value, timeout=left[0], concurrent=False) is not None
        except TimeoutError:
            msg = (
                f"JSONPath {self.path}: the regular expression {self.value!r} took more "
                f"than {REGEX_BUDGET:g} s on this document's values; write it without "
                "nested repeats such as (a|aa)+ or (a+)*"
            )
            raise DocumentError(msg) from None
        finally:
            left[0] -= cpu_time() - start


def chain_step(keys: tuple[Key, ...]) -> StepFunc:
    """Walk every node through ``keys`` (field names, indexes); keep those that get through."""
    if len(keys) == 1 and isinstance(keys[0], str):
        name = keys[0]

        def member(nodes: list[Any]) -> list[Any]:
            return [node[name] for node in nodes if isinstance(node, dict) and name in node]

        return member
    if all(isinstance(key, str) for key in keys):  # a run of names: $.form_response.answers
        names = tuple(str(key) for key in keys)

        def members(nodes: list[Any]) -> list[Any]:
            # Indexing with a name fails (KeyError, TypeError) exactly where resolve finds
            # nothing: a missing member, or a value that is no object.
            out = []
            for node in nodes:
                try:
                    for name in names:
                        node = node[name]
                except (KeyError, TypeError):
                    continue
                out.append(node)
            return out

        return members

    def walk(nodes: list[Any]) -> list[Any]:
        out = []
        for node in nodes:
            value = resolve(node, keys)
            if value is not _MISSING:
                out.append(value)
        return out

    return walk


def wildcard_step(nodes: list[Any]) -> list[Any]:
    """Every element of every array and every value of every object, in order."""
    out: list[Any] = []
    for node in nodes:
        if isinstance(node, list | tuple):
            out.extend(node)
        elif isinstance(node, dict):
            out.extend(node.values())
    return out


def names_step(names: tuple[str, ...]) -> StepFunc:
    """Each of ``names`` (in order, repeats repeated) of every object among the nodes."""

    def step(nodes: list[Any]) -> list[Any]:
        return [
            node[name] for node in nodes if isinstance(node, dict) for name in names if name in node
        ]

    return step


def indexes_step(indexes: tuple[int, ...]) -> StepFunc:
    """Each of ``indexes`` (in order, repeats repeated) of every array among the nodes."""

    def step(nodes: list[Any]) -> list[Any]:
        return [
            node[index]
            for node in nodes
            if isinstance(node, list | tuple)
            for index in indexes
            if -len(node) <= index < len(node)
        ]

    return step


def slice_step(start: int | None, end: int | None, stride: int | None) -> StepFunc:
    """The elements ``[start:end:stride]`` of every array among the nodes (none for a
    stride of 0, as jsonpath-ng: Python would raise)."""
    if stride == 0:
        return lambda nodes: []
    part = slice(start, end, stride)

    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if isinstance(node, list | tuple):
                out.extend(node[part])
        return out

    return step


#: The most values one ``..`` step may put in place of its nodes, in one document. A single
#: ``..`` from the root visits each value of the document once: a 1 MiB body (the default
#: ``max_body``) holds at most about 520,000 (``[0,0,...]``), a realistic one some 90,000.
#: Only ``..`` after ``..`` (``$..*..*``) visits values again, once per ``..`` above them,
#: and may find far more than the document holds: such a path stops here (about 0.1 s of
#: walking) instead of holding the dispatcher's thread for seconds or minutes.
MAX_DESCENT = 2_000_000


class DescentTooLarge(Exception):
    """A ``..`` step would visit more than :data:`MAX_DESCENT` values."""


def descend_step(nodes: list[Any]) -> list[Any]:
    """Every node and, after each, every value under it, in document order (pre-order).

    Raises:
        DescentTooLarge: more than :data:`MAX_DESCENT` values would be given.
    """
    out: list[Any] = []
    keep = out.append
    stack = nodes[::-1]
    pop, push = stack.pop, stack.extend
    # Values given plus values waiting: grows only when a container's values are pushed.
    pushed = len(stack)
    while stack:
        node = pop()
        keep(node)
        if isinstance(node, list):  # jsonpath-ng opens lists and dicts only (not tuples)
            push(reversed(node))
            pushed += len(node)
        elif isinstance(node, dict):
            push(reversed(node.values()))
            pushed += len(node)
        else:
            continue
        if pushed > MAX_DESCENT:
            raise DescentTooLarge
    return out


def filter_step(predicate: Predicate) -> StepFunc:
    """The elements of every array, and values of every object, that ``predicate`` keeps."""

    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if isinstance(node, list):
                out.extend([item for item in node if predicate(item)])
            elif isinstance(node, dict):
                out.extend([item for item in node.values() if predicate(item)])
        return out

    return step


#: Lists and objects grouped by an :class:`EqualityFilter` (:data:`_indexes`).
_Groupings = dict[tuple[int, tuple[str, ...]], tuple[Any, dict[str, list[Any]]]]

#: While a document is mapped (:func:`indexing`): each list or object an
#: :class:`EqualityFilter` opened, by its id and the filter's member names, with the node
#: itself (held, so that no other object takes its id while the memo lives) and its items
#: grouped by the string they hold there. Unset outside a mapping.
_indexes: ContextVar[_Groupings] = ContextVar("filter_indexes")


#: What :func:`indexing` gives, for :func:`indexed`.
IndexingToken = Token[dict[tuple[int, tuple[str, ...]], tuple[Any, dict[str, list[Any]]]]]


def indexing() -> IndexingToken:
    """Let the :class:`EqualityFilter` steps evaluated from now on share their groupings of
    one document's lists, until :func:`indexed` is given the token (once that document is
    mapped: the document must not change meanwhile)."""
    return _indexes.set({})


def indexed(token: IndexingToken) -> None:
    """End what :func:`indexing` began: the groupings are dropped."""
    _indexes.reset(token)


@dataclass(frozen=True, slots=True)
class EqualityFilter:
    """The step of a filter that is one ``@.a.b == 'text'`` (or ``=``): the elements of every
    array, and values of every object, whose member at :attr:`names` is the string
    :attr:`literal`, as :attr:`plain` (the :func:`filter_step` of the same predicate) keeps
    them.

    It is how mappings pick a form's answer by its question (Typeform's ``field.ref``,
    Facebook's ``name``, Google's ``column_id``): one field a question, each filtering the
    same list. While a document is mapped (:func:`indexing`), the first such filter on a
    list groups its items by that member, once, and each filter then looks its string up:
    a form of N answers read by N fields looks at N items, not N times N.
    """

    names: tuple[str, ...]
    literal: str
    plain: StepFunc

    def __call__(self, nodes: list[Any]) -> list[Any]:
        if _indexes.get(None) is None:
            return self.plain(nodes)
        out: list[Any] = []
        for node in nodes:
            out.extend(self.kept(node))
        return out

    def kept(self, node: Any) -> Sequence[Any]:
        """The items of ``node`` (a list's elements, an object's values) this filter keeps,
        in order; nothing for any other value. While a document is mapped, the list is the
        grouping's own: read it, never change it."""
        memo = _indexes.get(None)
        if memo is None:
            return self.plain([node])
        if isinstance(node, list):
            items: Iterable[Any] = node
        elif isinstance(node, dict):
            items = node.values()
        else:
            return ()
        key = (id(node), self.names)
        entry = memo.get(key)
        if entry is None:
            entry = memo[key] = (node, _grouped(items, self.names))
        return entry[1].get(self.literal, ())


def _grouped(items: Iterable[Any], names: tuple[str, ...]) -> dict[str, list[Any]]:
    """``items`` (in order) by the string each holds at ``names``; an item without one there
    (a member missing, a value that is no object, or no string) is in no group, as
    ``@.a.b == 'text'`` holds for no such item (:func:`_string_test`)."""
    groups: dict[str, list[Any]] = {}
    if len(names) == 2:  # @.field.ref, the usual member: read without a loop over names
        outer, inner = names
        for item in items:
            try:
                value = item[outer][inner]
            except (KeyError, TypeError):
                continue
            if isinstance(value, str):
                groups.setdefault(value, []).append(item)
        return groups
    for item in items:
        value = item
        try:
            for name in names:
                value = value[name]
        except (KeyError, TypeError):
            continue
        if isinstance(value, str):
            groups.setdefault(value, []).append(item)
    return groups


def equality(node: ext_filter.Filter) -> tuple[tuple[str, ...], str] | None:
    """The member names and the string of a filter that is one ``@.a.b == 'text'`` (or
    ``=``) of the item's members by name (:class:`EqualityFilter`), else ``None``."""
    if len(node.expressions) != 1 or type(node.expressions[0]) is not ext_filter.Expression:
        return None
    expression = node.expressions[0]
    if expression.op not in ("==", "=") or not isinstance(expression.value, str):
        return None
    read = operand(expression.target)
    if read is None or read.root or not all(isinstance(key, str) for key in read.keys):
        return None
    return tuple(str(key) for key in read.keys), expression.value


def resolve(item: Any, target: tuple[Key, ...]) -> Any:
    """The one value ``target`` reaches from ``item``, or ``_MISSING``."""
    value = item
    for key in target:
        if isinstance(key, str):
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif isinstance(value, list | tuple) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return _MISSING
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparison(op: str, literal: Any) -> Predicate:
    """Whether a value found (never missing) compares as ``value <op> literal``."""
    if literal is None or isinstance(literal, bool):
        # Only identity can make these equal (True is not 1), and they are not ordered.
        if op == "!=":
            return lambda value: value is not literal
        if op in ("<", ">"):
            return lambda value: False
        return lambda value: value is literal
    compare = _ORDERED[op]
    unlike = op == "!="  # what a value of another type gives: unequal, and unordered
    if isinstance(literal, str):
        return lambda value: compare(value, literal) if isinstance(value, str) else unlike
    return lambda value: compare(value, literal) if _is_number(value) else unlike


class Operand(NamedTuple):
    """What a filter's test reads (:func:`operand`): the value at ``keys`` from each item
    (``@.a.b``), or from the document's root (``$.a.b``, ``root``)."""

    keys: tuple[Key, ...]
    root: bool


def _expression(node: ext_filter.Expression) -> Predicate | OnRoot | None:
    """A comparison or an existence test, of each item or of the document's root."""
    read = operand(node.target)
    if read is None:
        return None
    return _on(read, _test(read.keys, node.op, node.value))


def _test(target: tuple[Key, ...], op: str | None, literal: Any) -> Predicate | None:
    """Whether a value (an item, or the document) has ``target`` (``op`` ``None``), has it
    not (``!``), or has it comparing as ``<op> literal``; ``None`` for another ``op`` or a
    ``literal`` that is another path."""
    if op == "!":
        return lambda item: resolve(item, target) is _MISSING
    if op is None:
        return lambda item: resolve(item, target) is not _MISSING
    if op not in _ORDERED or not (literal is None or isinstance(literal, str | int | float)):
        return None  # =~, or a comparison with another path
    found = _comparison(op, literal)
    missing: bool = op == "!="  # nothing found is unequal to every value
    if all(isinstance(key, str) for key in target) and isinstance(literal, str):
        if op in ("==", "=", "!="):
            return _string_test(tuple(str(key) for key in target), literal, equal=not missing)

    def on_path(item: Any) -> bool:
        value = resolve(item, target)
        return missing if value is _MISSING else found(value)

    return on_path


def _on(read: Operand, test: Predicate | None) -> Predicate | OnRoot | None:
    """``test``, of each item; or, when it reads the document's root, an :class:`OnRoot`
    that tests the document."""
    if test is None or not read.root:
        return test
    return OnRoot(lambda document: bool(test(document)))


def _string_test(names: tuple[str, ...], literal: str, *, equal: bool) -> Predicate:
    """``@.a.b == 'lit'`` (or ``!=``), the common case, as directly as Python allows.

    Indexing with a name fails (KeyError, TypeError) exactly where jsonpath-ng finds
    nothing: a missing member, or a value that is not an object. A string literal
    equals only an equal string; ``==`` is False for every other JSON type.
    """

    if equal and len(names) == 1:  # @.name == 'lit'
        (name,) = names

        def equal_member(item: Any) -> bool:
            try:
                return bool(item[name] == literal)
            except (KeyError, TypeError):
                return False

        return equal_member
    if equal and len(names) == 2:  # @.field.ref == 'lit'
        first, second = names

        def equal_member_of_member(item: Any) -> bool:
            try:
                return bool(item[first][second] == literal)
            except (KeyError, TypeError):
                return False

        return equal_member_of_member

    def test(item: Any) -> bool:
        value = item
        try:
            for name in names:
                value = value[name]
        except (KeyError, TypeError):
            return not equal  # missing: only != holds
        return (value == literal) is equal

    return test


def _regex(node: BoundedRegex) -> Predicate | OnRoot | None:
    """``@.a =~ 'pattern'``: the items whose value there is a string the pattern is found in
    (:meth:`BoundedRegex.matches`, under the path's deadline); ``$.a =~ 'pattern'``: all of
    them or none, by the document's value there."""
    read = operand(node.target)
    if read is None:
        return None
    matches = node.matches
    target = read.keys
    return _on(read, lambda item: matches(resolve(item, target)))


#: What a filter reading the document's root leaves for the items of one document
#: (:attr:`OnRoot.bind`): it keeps every item (``True``), none (``False``), or those a
#: predicate keeps.
Decided = bool | Predicate


@dataclass(frozen=True, slots=True)
class OnRoot:
    """A filter expression that reads the document's root (``$.object == 1``, or an ``&&`` /
    ``||`` holding one): ``bind`` evaluates its root tests on the document, once, and gives
    what is left for the items (:data:`Decided`)."""

    bind: Callable[[Any], Decided]


def compile_predicate(node: Any) -> Predicate | OnRoot | None:
    """A native predicate for a filter expression node (an :class:`OnRoot` when it reads the
    document's root), or ``None`` if it has none."""
    if type(node) is ext_filter.Expression:
        return _expression(node)
    if type(node) is BoundedRegex:
        return _regex(node)
    if type(node) in (ext_filter.And, ext_filter.Or):
        return _joined(node.operands, every=type(node) is ext_filter.And)
    return None


def filter_predicate(node: ext_filter.Filter) -> Predicate | OnRoot | None:
    """The predicate of a whole ``[?(...)]`` (its expressions all hold), or ``None``."""
    if not node.expressions:
        return None
    return _joined(node.expressions, every=True)


def _joined(operands: list[Any], *, every: bool) -> Predicate | OnRoot | None:
    """``operands`` joined by ``&&`` (``every``) or ``||``; ``None`` if one has no native
    predicate. When one reads the document's root, so does the whole (:func:`_decide`)."""
    parts = [compile_predicate(operand) for operand in operands]
    preds = [part for part in parts if part is not None]
    if len(preds) < len(parts):
        return None
    plain = [part for part in preds if not isinstance(part, OnRoot)]
    if len(plain) < len(preds):
        return OnRoot(functools.partial(_decide, tuple(preds), every))
    return _all(plain) if every else _any(plain)


def _all(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    return lambda item: all(p(item) for p in preds)


def _any(preds: list[Predicate]) -> Predicate:
    return lambda item: any(p(item) for p in preds)


def _decide(parts: tuple[Predicate | OnRoot, ...], every: bool, document: Any) -> Decided:
    """What ``parts`` joined by ``&&`` (``every``) or ``||`` leave for the items of
    ``document``: each root test is evaluated once; one that decides the whole (a false one
    under ``&&``, a true one under ``||``) decides it, one that does not drops out, and the
    item predicates left are joined as the parts were."""
    preds: list[Predicate] = []
    for part in parts:
        decided = part.bind(document) if isinstance(part, OnRoot) else part
        if not isinstance(decided, bool):
            preds.append(decided)
        elif decided is not every:
            return decided
    if not preds:
        return every
    return _all(preds) if every else _any(preds)


class RootFilter:
    """The step of a filter that reads the document's root (an :class:`OnRoot`): its root
    tests are evaluated once per document, as the step runs, on the document the path was
    given (:func:`root_document`), then it keeps what :func:`filter_step` keeps with what
    they leave: every item, none, or those a predicate keeps. A :data:`StepFunc`."""

    __slots__ = ("test",)

    def __init__(self, test: OnRoot) -> None:
        self.test = test

    def __call__(self, nodes: list[Any]) -> list[Any]:
        decided = self.test.bind(_document.get())
        if not isinstance(decided, bool):
            return filter_step(decided)(nodes)
        return filter_step(_every)(nodes) if decided else []


def _every(item: Any) -> bool:
    return True


def operand(node: Any) -> Operand | None:
    """What ``@``, ``@.a.b``, ``@['x y'][0]``, ``$``, ``$.a.b`` read (:class:`Operand`);
    ``None`` for anything else.

    The chain is walked down its left side in a loop: ``@`` followed by a thousand names
    recursed that deep, and compiling the path raised RecursionError (a traceback from
    ``leadhub check``).
    """
    keys: list[Key] = []
    while type(node) is jsonpath.Child:
        key = single_key(node.right)
        if key is None:
            return None
        keys.append(key)
        node = node.left
    if type(node) not in (jsonpath.This, jsonpath.Root):
        return None
    return Operand(tuple(reversed(keys)), root=type(node) is jsonpath.Root)


def single_key(node: Any) -> Key | None:
    """The field name or index of a one-name ``Fields`` / one-index ``Index`` node."""
    if type(node) is jsonpath.Fields and len(node.fields) == 1:
        if getattr(node, "_deprecated_wildcard_use", False):
            return None
        name: str = node.fields[0]
        return name
    if type(node) is jsonpath.Index and len(node.indices) == 1:
        return int(node.indices[0])
    return None
