"""JSONPath compilation: the native paths agree with jsonpath-ng; filters work; bad paths fail."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonpath_ng.ext.parser import parse as ext_parse

from hub.config import ConfigError, load
from hub.mapping import paths
from hub.mapping.paths import (
    ExtendedPath,
    NativePath,
    PathError,
    PickedPath,
    RootFilterPath,
    SimplePath,
    TimedNativePath,
    compile_path,
)
from hub.mapping.steps import EqualityFilter, _indexes, indexing
from hub.mapping.values import DocumentError

KEYS = ["a", "b", "c", "x y", "data.json", "0", "é", "*"]
#: Values that filters compare with, so that random documents often hold them: equal
#: values of unlike types (1, 1.0, "1", true), blanks, unicode.
POOL: list[Any] = [1, 1.0, "1", 0, -1.5, True, False, None, "é", "", "x y"]

json_scalars = st.one_of(
    st.sampled_from(POOL),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=3),
)
json_docs = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=20,
)
steps = st.lists(
    st.one_of(st.sampled_from(KEYS), st.integers(min_value=-3, max_value=3)), max_size=5
)
#: Records a filter can pick from: objects holding POOL values or more documents, with
#: the odd scalar among them, in an array or as an object's values.
FIELDS = ["a", "é"]  # few names, so that filters over records often find them
records = st.dictionaries(
    st.sampled_from(FIELDS), st.one_of(st.sampled_from(POOL), json_docs), min_size=1, max_size=3
)
tables = st.one_of(
    st.lists(st.one_of(records, records, records, json_scalars), min_size=1, max_size=5),
    st.dictionaries(st.sampled_from(KEYS), st.one_of(records, json_scalars), max_size=4),
)
in_object = st.dictionaries(st.sampled_from(FIELDS), tables, min_size=1)
filter_docs = st.one_of(json_docs, tables, in_object, in_object)


def path_text(path_steps: list[Any], start: str = "$") -> str:
    parts = [start]
    for step in path_steps:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):  # what the lexer takes bare
            parts.append(f".{step}")
        elif step.startswith(("[", ".")):  # a wildcard or a filter, already written
            parts.append(step)
        else:
            parts.append(f"['{step}']")
    return "".join(parts)


def literal_text(value: Any) -> str:
    """``value`` as a filter literal (POOL's strings need no escaping)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


def relative(min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    """The steps of a relative path in a filter: ``@``, ``@.a``, ``@['x y'][0]``."""
    key = st.one_of(st.sampled_from(FIELDS), st.sampled_from(KEYS), st.integers(-2, 2))
    return st.one_of(
        st.lists(st.sampled_from(FIELDS), min_size=max(min_size, 1), max_size=1),
        st.lists(key, min_size=min_size, max_size=2),
    )


def from_root() -> st.SearchStrategy[list[Any]]:
    """The steps of a path from the document's root in a filter (``$``, ``$.a[0].é``): into
    the records of ``in_object`` documents often enough to find POOL values there."""
    return st.one_of(
        relative(),
        st.lists(st.one_of(st.sampled_from(FIELDS), st.integers(0, 1)), min_size=2, max_size=3),
    )


def comparison(target: list[Any], op: str, literal: Any, start: str = "@") -> str:
    return f"{path_text(target, start)} {op} {literal_text(literal)}"


def existence(target: list[Any], negate: bool, start: str = "@") -> str:
    return ("!" if negate else "") + path_text(target, start)


def filter_body(parts: list[str], joins: list[str]) -> str:
    """``a && b || c`` from expressions and the operators between them."""
    text = parts[0]
    for i, part in enumerate(parts[1:]):
        text += f" {joins[i % len(joins)]} {part}"
    return text


def filter_text(parts: list[str], joins: list[str]) -> str:
    """``[?(a && b || c)]`` from its expressions and the operators between them."""
    return f"[?({filter_body(parts, joins)})]"


OPS = ["==", "!=", "=", "<", "<=", ">", ">="]
JOINS = st.lists(st.sampled_from(["&&", "||"]), min_size=1, max_size=2)
comparisons = st.builds(comparison, relative(), st.sampled_from(OPS), st.sampled_from(POOL))
tests_for_existence = st.builds(existence, relative(min_size=1), st.booleans())
#: Tests of the document's root (``$.a[0].a == 1``, ``!$.é``), the same for every item.
root_comparisons = st.builds(
    comparison, from_root(), st.sampled_from(OPS), st.sampled_from(POOL), st.just("$")
)
root_tests = st.builds(existence, from_root(), st.booleans(), st.just("$"))
expressions = st.one_of(
    comparisons,
    comparisons,
    comparisons,
    tests_for_existence,
    tests_for_existence,
    root_comparisons,
    root_tests,
)
#: ``(a || b)``: a group, so that an ``||`` is one of the expressions an ``&&`` joins.
groups = st.builds(
    lambda parts, joins: f"({filter_body(parts, joins)})",
    st.lists(expressions, min_size=2, max_size=2),
    JOINS,
)
filters = st.builds(
    filter_text,
    st.lists(st.one_of(expressions, expressions, expressions, groups), min_size=1, max_size=3),
    JOINS,
)
any_step = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(KEYS),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from(["[*]", ".*"]),
    filters,
)
#: Up to one key, then a filter or wildcard (so that it often meets an array or object),
#: then up to two steps of any kind.
native_steps = st.builds(
    lambda head, fan, tail: [*head, fan, *tail],
    st.lists(st.sampled_from(FIELDS), max_size=1),
    st.one_of(filters, filters, st.sampled_from(["[*]", ".*"])),
    st.lists(any_step, max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(doc=json_docs, path_steps=steps)
def test_fast_path_returns_what_jsonpath_ng_returns(doc: Any, path_steps: list[Any]) -> None:
    """On random documents and random simple paths, the fast getter equals jsonpath-ng's find."""
    text = path_text(path_steps)
    compiled = compile_path(text)
    assert isinstance(compiled, SimplePath)
    expected = [match.value for match in ext_parse(text).find(doc)]
    assert compiled.values(doc) == expected


@settings(max_examples=800, deadline=None)
@given(doc=filter_docs, path_steps=native_steps)
def test_native_paths_return_what_jsonpath_ng_returns(doc: Any, path_steps: list[Any]) -> None:
    """Paths with filters and wildcards, compiled natively, find the very same values in the
    same order as jsonpath-ng on random documents (missing keys, non-objects in the list,
    1 vs '1' vs 1.0 vs true, null, unicode), with filters testing the document's root
    (``$.a[0].a == 1``, ``!$.é``) alone, or with tests of the item by ``&&``, ``||`` and
    groups; so does their walk (``NativePath.walk``)."""
    text = path_text(path_steps)
    compiled = compile_path(text)
    assert isinstance(compiled, NativePath | SimplePath)
    expected = [match.value for match in ext_parse(text).find(doc)]
    found = compiled.values(doc)
    assert found == expected
    assert [id(v) for v in found] == [id(v) for v in expected]  # the same items, not lookalikes
    if isinstance(compiled, NativePath):  # the walk a split path takes finds them too
        assert [id(v) for v in compiled.walk(doc).values] == [id(v) for v in expected]


#: The filters mappings pick a form's answers with (``[?(@.field.ref == 'email')]``): one
#: string compared with the item's members by name (none: the item itself), which the
#: fields of one mapped document share (:class:`EqualityFilter`).
equalities = st.builds(
    lambda names, op, literal: f"[?({path_text(names, '@')} {op} {literal_text(literal)})]",
    st.sampled_from([["a"], ["a"], ["é"], ["a", "é"], []]),
    st.sampled_from(["==", "="]),
    st.sampled_from(["1", "1", "é", "", "x y"]),
)
#: Documents holding lists (and objects) of records whose members are often the same
#: string, so that a filter keeps several items of one list, among lookalikes of other types.
answer_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["1", "é"]), st.sampled_from(["1", "é", "", "x y", 1, True, None, [], {}])
)
answer_records = st.dictionaries(
    st.sampled_from(FIELDS),
    st.one_of(answer_values, st.dictionaries(st.sampled_from(FIELDS), answer_values, max_size=2)),
    min_size=1,
    max_size=2,
)
answer_lists = st.lists(
    st.one_of(*[answer_records] * 6, json_scalars, st.lists(answer_values, max_size=2)),
    min_size=2,
    max_size=8,
)
equality_docs = st.one_of(
    answer_lists,
    st.fixed_dictionaries(
        {"a": answer_lists},
        optional={"é": st.dictionaries(st.sampled_from(KEYS), answer_records, max_size=4)},
    ),
)
equality_paths = st.builds(
    lambda head, fan, tail: path_text([*head, fan, *tail]),
    st.sampled_from([["a"], ["a"], [], ["é"], ["é", "a"]]),
    equalities,
    # (two names after: the member of a member, as $.answers[?(...)].choice.label reads)
    st.lists(st.one_of(st.sampled_from(FIELDS), equalities, st.just("[*]")), max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(doc=equality_docs, texts=st.lists(equality_paths, min_size=1, max_size=5))
def test_equality_filters_of_one_mapped_document_keep_what_jsonpath_ng_keeps(
    doc: Any, texts: list[str]
) -> None:
    """While a document is mapped (``indexing``), string equality filters group each list
    they open once and share it: on random documents (the member missing, null, 1 against
    '1', a list or an object where a record was, unicode, blanks), several such paths in a
    row, some on the same lists, each find jsonpath-ng's very items in its order."""
    compiled = [compile_path(text) for text in texts]
    for path in compiled:
        assert isinstance(path, NativePath)
        assert any(isinstance(step, EqualityFilter) for step in path.steps)
    token = indexing()
    try:
        for text, path in zip(texts, compiled, strict=True):
            expected = [match.value for match in ext_parse(text).find(doc)]
            assert [id(v) for v in path.values(doc)] == [id(v) for v in expected], text
    finally:
        _indexes.reset(token)


#: A form's answers nested two names deep, among items a path picking them must pass over:
#: no ``field``, a ``field`` that is no object, a string, a list, the picked ``choice`` a
#: string or without its ``label``.
PICKING_DOC = {
    "form": {
        "answers": [
            {"field": {"ref": "roof"}, "choice": {"label": "Tile"}},
            {"field": {"ref": "roof"}, "choice": "flat"},
            {"field": {"ref": "other"}, "choice": {"label": "x"}},
            {"field": "roof", "choice": {"label": "y"}},
            {"choice": {"label": "z"}},
            "roof",
            ["roof"],
            {"field": {"ref": "roof"}, "choice": {"other": 1}},
            {"field": {"ref": "roof"}, "choice": {"label": "Metal"}},
        ],
        "by_ref": {"one": {"field": {"ref": "roof"}, "choice": {"label": "Slate"}}},
        "text": "roof",
    }
}


@pytest.mark.parametrize(
    "text",
    [
        "$.form.answers[?(@.field.ref=='roof')].choice.label",
        "$.form.answers[?(@.field.ref=='roof')].choice",
        "$.form.answers[?(@.field.ref=='roof')]",
        "$.form.by_ref[?(@.field.ref=='roof')].choice.label",  # an object's values
        "$.form.answers[?(@.field.ref=='none')].choice.label",
        "$.form.missing[?(@.field.ref=='roof')].choice.label",
        "$.form.text[?(@.field.ref=='roof')].choice.label",  # a string: no items
        "$.form.text.deeper[?(@.field.ref=='roof')].choice",  # a name on a string
        "$.form.answers[0].choice[?(@ == 'x')].label",  # an index before: not picked
    ],
)
@pytest.mark.parametrize("grouped", [False, True])
def test_a_path_picking_answers_by_a_string_finds_what_jsonpath_ng_finds(
    text: str, grouped: bool
) -> None:
    """A path of names, one string equality filter and names is walked by indexing
    (:class:`PickedPath`): it finds jsonpath-ng's very values, in its order, with two names
    on either side of the filter, whether the filter groups its list (a document being
    mapped) or not, and finds nothing where a name is missing or reads a value that is no
    object."""
    compiled = compile_path(text)
    assert isinstance(compiled, NativePath)
    assert isinstance(compiled, PickedPath) == ("[0]" not in text)
    expected = [match.value for match in ext_parse(text).find(PICKING_DOC)]
    token = indexing() if grouped else None
    try:
        found = compiled.values(PICKING_DOC)
    finally:
        if token is not None:
            _indexes.reset(token)
    assert [id(v) for v in found] == [id(v) for v in expected]
    assert [id(v) for v in compiled.walk(PICKING_DOC).values] == [id(v) for v in expected]


def test_fields_picking_answers_of_one_list_group_it_once() -> None:
    """Typeform's fields each filter the answers by their question's ref: mapping a
    document groups that list once for all of them, by the member the filters name (two
    members, two groupings), and leaves nothing behind once it is mapped."""
    answers = [
        {"field": {"ref": ref}, "name": ref, "text": f"{ref}{n}"}
        for n, ref in enumerate(("a", "b", "c", "a"))
    ]
    doc = {"answers": answers}
    by_ref = [compile_path(f"$.answers[?(@.field.ref=='{ref}')].text") for ref in "abcd"]
    by_name = compile_path("$.answers[?(@.name == 'c')].text")
    token = indexing()
    try:
        assert [p.values(doc) for p in by_ref] == [["a0", "a3"], ["b1"], ["c2"], []]
        assert len(_indexes.get()) == 1
        assert by_name.values(doc) == ["c2"]
        assert len(_indexes.get()) == 2
    finally:
        _indexes.reset(token)
    assert _indexes.get(None) is None
    assert by_ref[0].values(doc) == ["a0", "a3"]  # outside a mapping: tested one by one


candidates = st.lists(
    st.one_of(records, records, st.lists(st.sampled_from(POOL), max_size=3), json_scalars),
    max_size=6,
)


@settings(max_examples=800, deadline=None)
@given(items=candidates, target=relative(), op=st.sampled_from(OPS), literal=st.sampled_from(POOL))
def test_one_comparison_keeps_what_jsonpath_ng_keeps(
    items: list[Any], target: list[Any], op: str, literal: Any
) -> None:
    """A single comparison filter over random records keeps exactly the items jsonpath-ng
    keeps, whatever the types on either side (true vs 1, '1' vs 1, null, a missing member)."""
    text = f"$[?({comparison(target, op, literal)})]"
    compiled = compile_path(text)
    assert isinstance(compiled, NativePath)
    expected = [match.value for match in ext_parse(text).find(items)]
    assert [id(v) for v in compiled.values(items)] == [id(v) for v in expected]


#: Every POOL value, and containers, at member "a", at the ends of arrays of every length
#: up to 3 and one level down; plus a record without "a", and items that are not records.
EVERY_CANDIDATE: list[Any] = [
    *({"a": value} for value in [*POOL, [], {}, [1], {"a": 1}, float("inf")]),
    *([value] for value in POOL),
    *([value, "é"] for value in POOL),
    *(["é", 0, value] for value in POOL),
    *({"a": {"é": value}} for value in POOL),
    *({"a": [value, 2]} for value in POOL),
    {"é": 1},
    *POOL,
    [],
]
TARGETS: list[list[Any]] = [[], ["a"], [0], [-1], [-2], [-3], [2], ["a", "é"], ["a", 0], ["a", -2]]


@pytest.mark.parametrize("op", OPS)
def test_every_comparison_keeps_what_jsonpath_ng_keeps(op: str) -> None:
    """For every target shape and every literal, a comparison filter keeps exactly the
    candidates jsonpath-ng keeps from a list holding every pairing of types."""
    for target in TARGETS:
        for literal in POOL:
            text = f"$[?({comparison(target, op, literal)})]"
            compiled = compile_path(text)
            assert isinstance(compiled, NativePath), text
            expected = [match.value for match in ext_parse(text).find(EVERY_CANDIDATE)]
            found = compiled.values(EVERY_CANDIDATE)
            assert [id(v) for v in found] == [id(v) for v in expected], text


#: The items a filter on the document's root keeps all of or none of: records, and not.
ITEMS: list[Any] = [{"a": 1}, "é", [1], None, {"é": {"a": 2}}]


@pytest.mark.parametrize("op", [*OPS, "exists", "!"])
def test_every_root_test_keeps_what_jsonpath_ng_keeps(op: str) -> None:
    """A filter testing the document's root (``$.probe.a == 1``, ``$.probe[0]``,
    ``!$.probe.a``) keeps all the items or none exactly when jsonpath-ng does, for every
    target shape and literal, whatever the document holds there (every pairing of types,
    a member missing, a value that is no object), natively; alone and beside a test of the
    item (``&&``, ``||``)."""
    documents = [{"probe": value, "items": ITEMS} for value in EVERY_CANDIDATE]
    documents += [{"items": ITEMS}, {"probe": ITEMS}]  # no probe; no items
    kept = set()
    for target in TARGETS:
        for literal in POOL if op in OPS else [None]:
            steps = ["probe", *target]
            if op in OPS:
                test = comparison(steps, op, literal, "$")
            else:
                test = existence(steps, op == "!", "$")
            for text in (
                f"$.items[?({test})]",
                f"$.items[?({test} && @.a == 1)]",
                f"$.items[?(@.a == 1 || {test})]",
            ):
                compiled, parsed = compile_path(text), ext_parse(text)
                assert isinstance(compiled, RootFilterPath), text
                for doc in documents:
                    expected = [match.value for match in parsed.find(doc)]
                    found = compiled.values(doc)
                    assert [id(v) for v in found] == [id(v) for v in expected], (text, doc)
                    kept.add(len(found))
    assert kept == {0, 1, len(ITEMS)}  # the root test both held and did not


class CountsSearches:
    """A compiled pattern that counts its searches, and searches as the real pattern does."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.searches = 0

    def search(self, value: str, timeout: float | None = None, concurrent: Any = None) -> Any:
        self.searches += 1
        return self.compiled.search(value, timeout=timeout, concurrent=concurrent)


def test_a_root_test_is_evaluated_once_per_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test of the document's root holds for all the items or none: it is evaluated once
    per document, not once per item as jsonpath-ng does (a regular expression on the root
    is searched once, by values and by walk), and only paths holding one set the root for
    their filters (the others compile as before)."""
    patterns: list[CountsSearches] = []

    def counted(pattern: str) -> CountsSearches:
        patterns.append(CountsSearches(regex.compile(pattern)))
        return patterns[-1]

    monkeypatch.setattr(paths, "regex", SimpleNamespace(compile=counted, error=regex.error))
    items = [{"n": n} for n in range(1000)]
    doc = {"kind": "lead", "items": items, "more": {"items": items}}
    for text, found in [
        ("$.items[?($.kind =~ '^lead$' && @.n > 0)]", items[1:]),
        ("$.items[?(@.n < 0 || $.kind =~ '^lead$')]", items),
        ("$..items[?($.kind =~ '^page$')]", []),
    ]:
        compiled = compile_path(text)
        assert isinstance(compiled, RootFilterPath) and compiled.timed, text
        assert compiled.values(doc) == found, text
        assert compiled.walk(doc).values == found, text
        assert patterns[-1].searches == 2, text
    for ordinary in ["$.items[?(@.n > 0)]", "$.items[?(@.k =~ 'x')]", "$.items[*].n"]:
        assert type(compile_path(ordinary)) in (NativePath, TimedNativePath), ordinary


@pytest.mark.parametrize(
    "text", ["$", "$.a.b[0].c", "$['x y']", "$.items[-1]", "$['data.json'].email[0]"]
)
def test_simple_paths_take_the_fast_path(text: str) -> None:
    """Chains of single names and indexes compile to the precompiled getter."""
    assert isinstance(compile_path(text), SimplePath)


def test_typeform_filter_on_answer_ref() -> None:
    """A filter on field.ref picks the right answer from a Typeform response."""
    doc = {
        "form_response": {
            "answers": [
                {"field": {"ref": "name"}, "text": "Jordan"},
                {"field": {"ref": "email"}, "email": "j@example.com"},
            ]
        }
    }
    path = compile_path("$.form_response.answers[?(@.field.ref=='email')].email")
    assert isinstance(path, NativePath)
    assert path.values(doc) == ["j@example.com"]


def test_facebook_filter_on_field_name_then_index() -> None:
    """Facebook's field_data filter with values[0] gives the first value of that question."""
    doc = {"field_data": [{"name": "email", "values": ["p@example.com", "x"]}]}
    path = compile_path("$.field_data[?(@.name=='email')].values[0]")
    assert path.values(doc) == ["p@example.com"]


def test_wildcards_and_descendants_find_every_value() -> None:
    """Wildcards and descendants find every value."""
    doc = {"a": [{"b": 1}, {"b": 2}], "c": {"b": 3}}
    assert compile_path("$.a[*].b").values(doc) == [1, 2]
    assert sorted(compile_path("$..b").values(doc)) == [1, 2, 3]


def test_a_filter_on_odd_documents_finds_nothing() -> None:
    """A filter over a document of the wrong shape finds nothing instead of raising."""
    path = compile_path("$.field_data[?(@.name=='email')].values[0]")
    assert path.values({"field_data": "oops"}) == []
    assert path.values(None) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$.a b", "quote keys"),
        ("$.a[?(@.x==)]", "does not compile"),
        ("Typeform", "for a constant write {value: ...}"),
        ("email", "paths start with '$'"),
        # A form field named where (jsonpath-ng's operator word), or one holding an accented
        # letter: told only to quote keys "with spaces or symbols"; now the path to write.
        ("$.where", "write $['where'] ('where' is a word of jsonpath-ng's syntax)"),
        ("$.lead.wherenot", "write $.lead['wherenot'] ('wherenot' is a word of"),
        ("$.lead.prénom", "write $.lead['prénom'] (jsonpath-ng reads a name holding more"),
        ("$.a[?(@.clé=='x')].v", "write $.a[?(@['clé']=='x')].v (jsonpath-ng reads a name"),
        ("$.名前[0]", "write $['名前'][0] (jsonpath-ng reads"),
        ("$.form_id:abc", "quote keys with spaces or symbols"),  # (a ':' lacking its space)
    ],
)
def test_bad_paths_raise_with_the_fix(text: str, fragment: str) -> None:
    """A path that does not parse, or is not rooted at $, raises PathError with the fix."""
    with pytest.raises(PathError) as info:
        compile_path(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


#: Paths jsonpath-ng's lexer or parser refuses part way through.
REFUSED = ["$.a[", "$..[?(@.a==]", "$.a.b)", "$[?(@.x > )]", "$.'a", "$[?(@.a == 'x' &&)]"]
#: Paths that parse, each to a tree of its own.
READ = ["$.a.b", "$.answers[?(@.field.ref=='email')].email", "$[?(@.a==1)]", "$..b[0:2]"]


def test_each_path_is_read_afresh_after_one_that_was_refused() -> None:
    """The hub keeps one jsonpath-ng parser per thread (building it again took most of a
    path's compile): a parse that raised part way through leaves nothing behind, so each
    path after it reads as jsonpath-ng reads it alone, in this thread and in another."""

    def read_all() -> list[Any]:
        trees = []
        for refused in REFUSED:
            with pytest.raises(Exception, match=r"(?i)error|unexpected"):
                paths.parse_path(refused)
            trees += [paths.parse_path(text) for text in READ]
        return trees

    expected = [ext_parse(text) for text in READ] * len(REFUSED)
    assert read_all() == expected
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.extend(read_all()))
    thread.start()
    thread.join()
    assert other == expected


def test_a_number_filter_tells_types_apart() -> None:
    """`== 1` keeps the numbers 1 and 1.0 but not '1' or true; `!= 1` keeps the rest,
    including the record that has no such member."""
    doc = {"rows": [{"n": 1}, {"n": "1"}, {"n": True}, {"n": 1.0}, {"m": 1}, "n"]}
    assert compile_path("$.rows[?(@.n == 1)]").values(doc) == [{"n": 1}, {"n": 1.0}]
    assert compile_path("$.rows[?(@.n != 1)].n").values(doc) == ["1", True]
    assert compile_path("$.rows[?(@.n == true)].n").values(doc) == [True]


@pytest.mark.parametrize(
    "text",
    [
        "$.a[?(@.* =~ 'x.*')]",  # a regular expression on a wildcard
        "$.a[?(@.n == @.m)]",  # a comparison with another path
        "$.a[?(@.n == $.want)]",  # the root inside a filter, compared with a path
        "$.a[?($.want == @.m)]",
        "$.a[?($.* == 'xy')]",  # a wildcard from the root inside a filter
        "$.a[?($..n == 1)]",  # descendants from the root
        "$.a[?(@.* == 1)]",  # a wildcard inside a filter
        "$.a[0].`parent`",  # a named operator
        "$.a.`len`",
        "$.a[*] where n",
        "$.a[?(@.* =~ 'x')]..m",  # descendants after a step jsonpath-ng evaluates
    ],
)
def test_other_paths_keep_jsonpath_ng(text: str) -> None:
    """Filters and steps the native kinds do not cover are left to jsonpath-ng, which
    still finds what it finds."""
    doc = {"want": "xy", "a": [{"n": "xy", "m": "xy"}, {"n": 1, "m": 2}]}
    compiled = compile_path(text)
    assert isinstance(compiled, ExtendedPath)
    assert compiled.values(doc) == [match.value for match in ext_parse(text).find(doc)]
    assert compiled.values(doc)  # each of them finds something in this document


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("$.items[?(@.name =~ '(unclosed')].v", "'(unclosed'"),
        ("$..items[?(@.a == 1 || @.name =~ 'x[')]", "'x['"),  # inside an ||
        ("$.a[?(@.b[?(@.c =~ '*')])]", "'*'"),  # in a filter inside a filter
    ],
)
def test_a_filter_regex_that_does_not_compile_is_a_path_error(text: str, pattern: str) -> None:
    """A regular expression in a filter is compiled at load: one that cannot compile is a
    PathError quoting the path, the pattern and the fix, not an error at each document."""
    with pytest.raises(PathError) as info:
        compile_path(text)
    message = str(info.value)
    assert repr(text) in message and f"the regular expression {pattern}" in message
    assert "does not compile" in message and "in brackets, like [(]" in message


@pytest.mark.parametrize(
    "pattern", ["(?|a|b)", "(?V1)[[a]b]", "(?r)a", "(?f)ss", "(?<n>a)", "\\\\p{L}", "(?L)a"]
)
def test_a_regex_python_refuses_is_a_path_error(pattern: str) -> None:
    """What only the ``regex`` module reads (branch reset, versions, reverse and full-case
    flags, ``(?<n>...)``, ``\\p{L}``) is not Python's syntax, which README promises and
    jsonpath-ng's own ``=~`` raises on: it was taken, and matched by rules nobody wrote."""
    text = f"$.items[?(@.name =~ '{pattern}')].v"
    with pytest.raises(re.error):  # jsonpath-ng's own find
        ext_parse(text).find({"items": [{"name": "a", "v": 1}]})
    with pytest.raises(PathError, match="does not compile"):
        compile_path(text)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("^[[:alpha:]]+$", "Python reads [:...:] inside brackets as the characters written"),
        ("[a[:digit:]]", "Python reads [:...:] inside brackets as the characters written"),
        ("[^x[:^space:]]", "Python reads [:...:] inside brackets as the characters written"),
        ("[[:a:]]", "Python reads [:...:] inside brackets as the characters written"),
        ("a{e<=1}", "Python reads { here as the character itself"),
        ("(?:mail){1<=e<=2}", "Python reads { here as the character itself"),
        ("x{2i+1s<=3}", "Python reads { here as the character itself"),
        ("a{s", "Python reads { here as the character itself"),
    ],
)
def test_a_regex_the_matcher_reads_otherwise_is_a_path_error(pattern: str, reason: str) -> None:
    """Python reads ``[[:alpha:]]`` as the characters ``[:alph`` then ``]``, and
    ``a{e<=1}`` as that text; the ``regex`` module (which matches under the time budget)
    read a POSIX class and a fuzzy match, so the filter kept values jsonpath-ng does not
    (``^[[:alpha:]]+$`` kept "abc"). Such a pattern is refused at load with the fix."""
    text = f"$.items[?(@.name =~ '{pattern}')].v"
    with pytest.raises(PathError) as info:
        compile_path(text)
    assert reason in str(info.value) and repr(pattern) in str(info.value)


def test_a_regex_only_the_matcher_refuses_says_so() -> None:
    """``a{ess`` is Python's (the text itself) but the ``regex`` module refuses it: the
    error says so, rather than that the pattern "does not compile"."""
    with pytest.raises(PathError) as info:
        compile_path("$[?(@ =~ 'a{ess')]")
    assert "is Python's syntax, but the matcher (the regex module) refuses it" in str(info.value)


#: Read alike by ``re`` and ``regex``: ``[:...:]`` outside brackets or escaped, repeats,
#: an escaped or bracketed ``{``.
ALIKE = ["[:alpha:]", "\\\\[:alpha:]", "[\\\\[:alpha:]]", "a{2}", "a{,3}", "a{1,}"]
ALIKE += ["\\\\{e}", "[{]e}"]


@pytest.mark.parametrize("pattern", ALIKE)
def test_a_regex_both_read_alike_still_filters(pattern: str) -> None:
    """A ``[:...:]`` outside brackets or escaped, a repeat ``{2}``, an escaped ``{`` are read
    alike by both, and filter as jsonpath-ng does."""
    text = f"$[?(@ =~ '{pattern}')]"
    items = ["a", ":", "[", "a]", "aa", "aaa", "{e}", "b", "e}", "{", "x{e<=1}"]
    expected = [match.value for match in ext_parse(text).find(items)]
    assert compile_path(text).values(items) == expected


@pytest.mark.parametrize("literal", ["5", "true"])
def test_a_filter_regex_must_be_quoted_text(literal: str) -> None:
    """`=~` followed by a number or a boolean is a PathError at load (it could never match)."""
    with pytest.raises(PathError, match="=~ takes a regular expression in quotes"):
        compile_path(f"$.items[?(@.name =~ {literal})].v")


def test_a_regex_that_compiles_still_filters() -> None:
    """A valid pattern keeps working, brackets standing for a literal character."""
    doc = {"items": [{"name": "e(mail)", "v": 1}, {"name": "email", "v": 2}]}
    assert compile_path("$.items[?(@.name =~ '^e[(]')].v").values(doc) == [1]


#: Patterns for the =~ agreement test: anchors, classes, alternation, repeats, flags.
PATTERNS = ["a", "^a", "b$", "^$", "a.c", "[ab]+", "(?i)X", "^(a|b)*c", "\\d{2}", "é", "a|^$"]


@settings(max_examples=500, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.text(alphabet="abcXé1 2", max_size=6), st.sampled_from(POOL)), max_size=5
    ),
    pattern=st.sampled_from(PATTERNS),
)
def test_a_filter_regex_keeps_what_jsonpath_ng_keeps(values: list[Any], pattern: str) -> None:
    """=~ (matched by the regex module, under a budget, natively) keeps exactly the records
    jsonpath-ng's own =~ (re.search) keeps, whatever the values' types; so does the same
    filter on a wildcard (@.* =~, left to jsonpath-ng with the hub's bounded =~)."""
    doc = {"items": [{"n": value, "i": i} for i, value in enumerate(values)] + [{"i": -1}]}
    text = f"$.items[?(@.n =~ '{pattern}')].i"
    compiled = compile_path(text)
    assert isinstance(compiled, TimedNativePath)
    assert compiled.values(doc) == [m.value for m in ext_parse(text).find(doc)]
    text = f"$.items[?(@.* =~ '{pattern}')].i"
    extended = compile_path(text)
    assert isinstance(extended, ExtendedPath) and extended.timed
    assert extended.values(doc) == [m.value for m in ext_parse(text).find(doc)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("copies", [1, 50])
def test_a_regex_that_backtracks_without_end_is_a_document_error(copies: int) -> None:
    """A pattern that backtracks exponentially on a sender's value (re would take longer
    than the universe's age on 40 letters) stops at its budget with a DocumentError naming
    the path and the pattern; the budget covers every value the path tries, so 50 such
    values stop as soon as one does."""
    text = "$.items[?(@.name =~ '^(a|aa)+$')].v"
    hostile = {"name": "a" * 40 + "b", "v": "no"}
    doc = {"items": [{"name": "aaaa", "v": "yes"}] + [hostile] * copies}
    with pytest.raises(DocumentError) as info:
        compile_path(text).values(doc)
    message = str(info.value)
    assert message.startswith(f"JSONPath {text}: the regular expression '^(a|aa)+$' took more")
    assert "without nested repeats" in message
    assert compile_path(text).values({"items": [{"name": "aaaa", "v": "yes"}]}) == ["yes"]


class WaitsForACore:
    """A compiled pattern whose every search first waits ``seconds`` without running, as a
    match on a loaded machine waits for a core (the wall clock moves on, the process's CPU
    time does not), then searches as the real pattern does."""

    def __init__(self, compiled: Any, seconds: float) -> None:
        self.compiled = compiled
        self.seconds = seconds

    def search(self, value: str, timeout: float | None = None, concurrent: Any = None) -> Any:
        time.sleep(self.seconds)
        return self.compiled.search(value, timeout=timeout, concurrent=concurrent)


@pytest.mark.parametrize(("target", "kind"), [("@.name", TimedNativePath), ("@.*", ExtendedPath)])
def test_waiting_for_a_core_does_not_spend_the_regex_budget(
    target: str, kind: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget counts what the patterns take to match, not the machine's load: three
    matches that each wait 0.25 s for a core (more than the whole 0.2 s) still find the two
    emails. Counted by the wall clock, the second match failed the document with "the
    regular expression '^e-?mail$' took more than 0.2 s" (the property test
    test_a_filter_regex_keeps_what_jsonpath_ng_keeps failed so under load)."""
    slow = SimpleNamespace(
        compile=lambda pattern: WaitsForACore(regex.compile(pattern), 0.25), error=regex.error
    )
    monkeypatch.setattr(paths, "regex", slow)
    doc = {"items": [{"name": n, "v": i} for i, n in enumerate(["email", "e-mail", "phone"])]}
    path = compile_path(f"$.items[?({target} =~ '^e-?mail$')].v")
    assert isinstance(path, kind)
    assert path.values(doc) == [0, 1]


def burn(seconds: float) -> None:
    """Run for ``seconds`` of this thread's CPU time, however long the machine takes to give
    them (a busy thread: the store's writer, a reload's load)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class AnotherThreadRuns:
    """A compiled pattern whose every search has another thread of the process run
    ``seconds`` of CPU time while it waits, then searches as the real pattern does: the
    process's CPU time moves on by ``seconds``, the searching thread's does not. (The
    ``regex`` module lets other threads run while it matches.)"""

    def __init__(self, compiled: Any, seconds: float) -> None:
        self.compiled = compiled
        self.seconds = seconds
        self.searches = 0

    def search(self, value: str, timeout: float | None = None, concurrent: Any = None) -> Any:
        busy = threading.Thread(target=burn, args=(self.seconds,))
        busy.start()
        busy.join()
        self.searches += 1
        return self.compiled.search(value, timeout=timeout, concurrent=concurrent)


@pytest.mark.parametrize(("target", "kind"), [("@.name", TimedNativePath), ("@.*", ExtendedPath)])
def test_another_thread_busy_does_not_spend_the_regex_budget(
    target: str, kind: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget counts the CPU time of the thread matching the patterns, not the other
    threads': three matches during each of which another thread runs 0.25 s of CPU (more
    than the whole 0.2 s) still find the two emails. Counted in the process's CPU time,
    the second match failed the document with "the regular expression '^e-?mail$' took
    more than 0.2 s"."""
    made: list[AnotherThreadRuns] = []

    def compile_busy(pattern: str) -> AnotherThreadRuns:
        made.append(AnotherThreadRuns(regex.compile(pattern), 0.25))
        return made[-1]

    monkeypatch.setattr(paths, "regex", SimpleNamespace(compile=compile_busy, error=regex.error))
    doc = {"items": [{"name": n, "v": i} for i, n in enumerate(["email", "e-mail", "phone"])]}
    path = compile_path(f"$.items[?({target} =~ '^e-?mail$')].v")
    assert isinstance(path, kind)
    assert path.values(doc) == [0, 1]
    assert [pattern.searches for pattern in made] == [3]


@pytest.mark.parametrize(("target", "kind"), [("@.name", TimedNativePath), ("@.*", ExtendedPath)])
def test_python_threads_busy_during_the_matches_do_not_stop_them(target: str, kind: type) -> None:
    """Two threads busy in Python all along (each keeping the GIL for turns of 50 ms, as the
    store's writer thread may run Python between its SQLite calls), while a benign pattern
    matches 8 values of 40,000 letters in linear time (some 5 ms each): every value is
    matched. The regex module's own timeout counts the process's CPU time; a match that let
    go of the GIL waited for the busy threads' turns each time it took it back, and was
    stopped with "the regular expression ... took more than 0.2 s" for the CPU time they
    spent meanwhile (most runs, a few of the 8 matches)."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            pass

    doc = {"items": [{"name": "ab" * 20_000, "v": i} for i in range(8)] + [{"name": "abc", "v": 8}]}
    path = compile_path(f"$.items[?({target} =~ '^(?:(a)|(b))*$')].v")
    assert isinstance(path, kind)
    interval = sys.getswitchinterval()
    threads = [threading.Thread(target=busy) for _ in range(2)]
    for thread in threads:
        thread.start()
    sys.setswitchinterval(0.05)
    try:
        assert path.values(doc) == list(range(8))
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        for thread in threads:
            thread.join()


def test_a_path_jsonpath_ng_cannot_evaluate_raises_a_document_error() -> None:
    """A path jsonpath-ng evaluates recursively (sorting values nested 1000 levels deep) gives
    a DocumentError naming the path, never a RecursionError."""
    one, two = (orjson.loads(b"[" * 1000 + leaf + b"]" * 1000) for leaf in (b"1", b"2"))
    doc = {"a": [{"b": one}, {"b": two}]}
    with pytest.raises(DocumentError, match=r"JSONPath \$\.a\[/b\] cannot be evaluated"):
        compile_path("$.a[/b]").values(doc)


def test_check_reports_a_bad_regex_in_a_field_and_in_dedupe_with_its_line(tmp_path: Path) -> None:
    """Loading a directory reports a field's and a dedupe path's bad regex as file:line."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: z\nsource: none\ndedupe: \"$.ids[?(@ =~ '[')]\"\n---\n"
        "name: m\nendpoint: z\nfields:\n  EmailAddress: $.email\n"
        "  mx_Re: \"$.items[?(@.name =~ '(unclosed')].v\"\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    issues = info.value.issues
    where = str(tmp_path / "a.yaml")
    assert len(issues) == 2
    assert issues[0].startswith(f"{where}:4: 'dedupe' of endpoint 'z': JSONPath")
    assert issues[1].startswith(f"{where}:10: field 'mx_Re' of mapping 'm': JSONPath")
    assert all("does not compile" in issue for issue in issues)


def test_the_paths_a_bad_name_is_told_to_be_written_as_find_it() -> None:
    """What the error above says to write finds the member it names."""
    document = {"where": "Google", "lead": {"prénom": "Zoé"}, "a": [{"clé": "x", "v": 1}]}
    assert compile_path("$['where']").values(document) == ["Google"]
    assert compile_path("$.lead['prénom']").values(document) == ["Zoé"]
    assert compile_path("$.a[?(@['clé']=='x')].v").values(document) == [1]
