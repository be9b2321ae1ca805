"""``..`` (descendants) paths: native, as fast as the document is large, and finding exactly
what jsonpath-ng's own ``find`` finds, in the same order."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonpath_ng import jsonpath
from jsonpath_ng.ext.parser import parse as ext_parse

from hub.mapping import steps
from hub.mapping.paths import ExtendedPath, NativePath, SimplePath, compile_path
from hub.mapping.values import DocumentError
from tests.mapping.test_paths import (
    FIELDS,
    KEYS,
    PATTERNS,
    filters,
    json_docs,
    path_text,
    records,
    relative,
)

#: Steps after (or before) a ``..``: names, indexes, unions of both, slices, wildcards and
#: filters (``path_text`` writes a string starting with "[" or "." as it stands).
UNIONS = ["['a','b']", "['b','a','a']", "['x y','é']", "[0,-1]", "[1,0,1]", "[-3,2]"]
SLICES = ["[0:2]", "[1:]", "[:-1]", "[::2]", "[::-1]", "[-2:]", "[2:0:-1]", "[0:3:0]"]
#: ``[?(@.a =~ 'pattern')]``, alone or beside another test.
regex_filters = st.builds(
    lambda target, pattern, other: f"[?({path_text(target, '@')} =~ '{pattern}'{other})]",
    relative(min_size=1),
    st.sampled_from(PATTERNS),
    st.sampled_from(["", " && @.a", " || @.a == 1"]),
)
right_step = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(FIELDS),
    st.sampled_from(KEYS),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from(["[*]", ".*", *UNIONS, *SLICES]),
    filters,
    regex_filters,
)


#: Documents of records nested in lists and objects, so that ``..`` meets many of them.
def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, min_size=1, max_size=4),
        st.dictionaries(
            st.sampled_from([*FIELDS, *FIELDS, *KEYS]), children, min_size=1, max_size=4
        ),
    )


nested_docs = _containers(
    st.recursive(st.one_of(json_docs, records, records), _containers, max_leaves=30)
)


def descent_text(head: list[Any], tails: list[tuple[Any, list[Any]]]) -> str:
    """``$`` + head steps, then for each tail ``..`` + its first step + the rest."""
    text = path_text(head)
    for first, rest in tails:
        first_text = path_text([first], "")
        # ``..`` takes a bracket or a name as it stands: $..['a'], $..[0], $..a, $..*
        text += ".." + first_text.removeprefix(".")
        text += path_text(rest, "")
    return text


descent_paths = st.builds(
    descent_text,
    st.lists(st.one_of(st.sampled_from(FIELDS), st.sampled_from(["[*]", *UNIONS])), max_size=1),
    st.lists(st.tuples(right_step, st.lists(right_step, max_size=1)), min_size=1, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(doc=nested_docs, text=descent_paths)
def test_descent_paths_find_what_jsonpath_ng_finds(doc: Any, text: str) -> None:
    """On random nested documents, every ``..`` path (one or two of them, with names,
    indexes, unions, slices, wildcards and filters before and after) compiles natively and
    finds the very same values, the same objects, in the same order as jsonpath-ng."""
    compiled = compile_path(text)
    assert isinstance(compiled, NativePath), text
    expected = [match.value for match in ext_parse(text).find(doc)]
    found = compiled.values(doc)
    assert found == expected, text
    assert [id(v) for v in found] == [id(v) for v in expected], text


@settings(max_examples=150, deadline=None)
@given(doc=nested_docs, path_steps=st.lists(right_step, min_size=1, max_size=3))
def test_unions_and_slices_find_what_jsonpath_ng_finds(doc: Any, path_steps: list[Any]) -> None:
    """Without ``..`` too, unions of names or indexes and slices among the other steps
    compile natively (they were left to jsonpath-ng) and find what jsonpath-ng finds."""
    text = path_text(path_steps)
    compiled = compile_path(text)
    assert isinstance(compiled, NativePath | SimplePath), text
    expected = [match.value for match in ext_parse(text).find(doc)]
    assert [id(v) for v in compiled.values(doc)] == [id(v) for v in expected], text


#: The descent paths of the audit, and the shapes the parser nests differently.
PATHS = [
    "$..email",
    "$..answers[*].email",
    "$..[?(@.type=='email')].email",
    "$..field.ref",
    "$.form_response..number",
    "$..*",
    "$..[*]",
    "$..[0]",
    "$..['email','text']",
    "$..[?(@.type =~ '^e-?mail$')].email",
    "$..answers[1:3].type",
    "$..a..b",
    "$.x..y.z",
    "$.a..b[0].c..d",
]


def realistic(size: int = 1_000_000) -> Any:
    """About ``size`` bytes of JSON: a form's leads, each with nested objects and lists."""
    leads: list[Any] = []
    doc = {"event_id": "ev1", "form_response": {"form_id": "abc", "leads": leads}}
    i = 0
    while i % 100 or len(orjson.dumps(doc)) < size:  # measured every hundred leads
        i += 1
        leads.append(
            {
                "id": f"lead-{i}",
                "contact": {
                    "name": {"first": "Jo", "last": f"Doe{i}"},
                    "email": f"jo{i}@example.com",
                    "phones": [{"kind": "mobile", "number": "+15550100"}],
                },
                "answers": [
                    {"type": "text", "field": {"id": "f1", "ref": "name"}, "text": "Jo"},
                    {"type": "email", "field": {"id": "f2", "ref": "email"}, "email": f"j{i}@x.io"},
                    {"type": "choices", "field": {"ref": "c"}, "choices": {"labels": ["a", "b"]}},
                    {"type": "number", "field": {"id": "f4", "ref": "age"}, "number": i % 90},
                ],
                "tags": ["x", "y", "hot" if i % 2 else "cold"],
                "meta": {"utm": {"source": "ads", "medium": "cpc"}, "ip": "10.0.0.1"},
            }
        )
    return orjson.loads(orjson.dumps(doc))


class WalkClock:
    """:mod:`hub.mapping.steps`' clock for the 1 MB document: a second passes between two of
    its readings (the walk from one value to the next) and a microsecond within one match
    (matches() reads it as a match starts and as it ends, in turn). The budget's real clock
    (the process's CPU time) depends on the machine; when it was the wall clock, a loaded
    machine's waits for a core spent the 0.2 s over a path's 12,000 short matches (a
    DocumentError, "took more than 0.2 s"). This clock makes the walk far longer than the
    budget and the matches far shorter, so a path passes only if the walk's time is not
    counted, and on any machine."""

    def __init__(self) -> None:
        self.now = 0.0
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += 1.0 if self.readings % 2 else 1e-6
        return self.now


@pytest.fixture(scope="module")
def megabyte_doc() -> Any:
    doc = realistic()
    assert 0.9e6 < len(orjson.dumps(doc)) < 1.2e6
    return doc


@pytest.fixture
def walk_clock(monkeypatch: pytest.MonkeyPatch) -> WalkClock:
    clock = WalkClock()
    monkeypatch.setattr(steps, "cpu_time", clock)
    return clock


@pytest.fixture
def megabyte(megabyte_doc: Any, walk_clock: WalkClock) -> Any:
    """The 1 MB document, its paths' regular expressions timed by :class:`WalkClock`."""
    return megabyte_doc


@pytest.mark.parametrize("text", PATHS)
def test_descent_paths_of_a_megabyte_agree_with_jsonpath_ng(megabyte: Any, text: str) -> None:
    """On the 1 MB document, each path finds what jsonpath-ng finds, natively."""
    compiled = compile_path(text)
    assert isinstance(compiled, NativePath)
    expected = [match.value for match in ext_parse(text).find(megabyte)]
    assert [id(v) for v in compiled.values(megabyte)] == [id(v) for v in expected]


def test_descent_never_calls_jsonpath_ng(megabyte: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluating a descent path builds no jsonpath-ng datum (what made it slow)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("jsonpath-ng evaluated the path")

    paths = [compile_path(text) for text in PATHS]
    monkeypatch.setattr(jsonpath.DatumInContext, "__init__", refuse)
    for path in paths:
        path.values(megabyte)


def nested(depth: int, leaf: Any) -> Any:
    """``depth`` levels of ``{"x": depth, "a": [...]}`` around ``leaf`` (no recursion)."""
    doc = leaf
    for level in range(depth):
        doc = {"x": level, "a": [doc]}
    return doc


@pytest.mark.parametrize("depth", [200, 5000])
def test_descent_walks_a_deep_document_without_recursion(depth: int) -> None:
    """A document nested 200 deep (the most ingest takes) or far deeper is walked without
    RecursionError, finding what jsonpath-ng finds (its walk has no recursion either)."""
    doc = nested(depth, "end")
    for text in ["$..x", "$..a[0].x", "$..[?(@.x == 3)].x"]:
        found = compile_path(text).values(doc)
        assert found == [match.value for match in ext_parse(text).find(doc)]
    assert compile_path("$..x").values(doc) == list(range(depth - 1, -1, -1))


def test_one_descent_over_the_densest_default_body_is_not_stopped() -> None:
    """A 1 MiB body of the smallest values, [0,0,...], is about 524,000 values: one ``..``
    from the root visits each once, well under the budget."""
    doc = orjson.loads(b"[" + b"0," * 524_000 + b"0]")
    assert len(compile_path("$..*").values(doc)) == 524_001
    assert steps.MAX_DESCENT > 3 * 524_001


@pytest.mark.timeout(20)
def test_descent_after_descent_stops_at_its_budget() -> None:
    """``..`` after ``..`` visits each value once per ``..`` above it: on a document 200 deep
    with 50 values a level (10,000 values) ``$..*..*..*`` would find some 70 million values
    (jsonpath-ng: minutes, and gigabytes of datums). It stops with a DocumentError naming the
    path and the fix (the speed of descent is measured in bench/, not here)."""
    doc: Any = []
    for _ in range(200):
        doc = [*range(50), doc]
    text = "$..*..*..*"
    with pytest.raises(DocumentError) as info:
        compile_path(text).values(doc)
    message = str(info.value)
    assert message.startswith(f"JSONPath {text} cannot be evaluated: its '..' would visit more")
    assert "use one '..'" in message
    assert len(compile_path("$..*..*").values(doc)) > 1_000_000  # one repeat is still fine


def test_a_harmless_regex_after_descent_keeps_its_budget(megabyte: Any) -> None:
    """jsonpath-ng's walk of the 1 MB document took longer than the 0.2 s a path's regular
    expressions may take: ``$..[?(@.type =~ '^e-?mail$')].email`` failed every such
    document with "the regular expression '^e-?mail$' took more than 0.2 s ... write it
    without nested repeats", blaming a pattern that cannot backtrack. The native walk and
    match find every lead's email well within it."""
    path = compile_path("$..[?(@.type =~ '^e-?mail$')].email")
    found = path.values(megabyte)
    assert found == [f"j{i}@x.io" for i in range(1, len(megabyte["form_response"]["leads"]) + 1)]


def test_the_regex_budget_counts_only_the_matching(megabyte: Any, walk_clock: WalkClock) -> None:
    """A path left to jsonpath-ng (a regex on ``@.*``) walks the 1 MB document for longer
    than the budget; only the time its pattern takes to match counts against it."""
    text = "$..answers[?(@.* =~ '^e-?mail$')].email"
    path = compile_path(text)
    assert isinstance(path, ExtendedPath) and path.timed
    assert path.values(megabyte) == [match.value for match in ext_parse(text).find(megabyte)]
    assert walk_clock.readings > 2 * 10_000  # some 12,000 matches: 12,000 s of walk
