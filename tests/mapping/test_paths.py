"""JSONPath compilation: the fast path agrees with jsonpath-ng; filters work; bad paths fail."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonpath_ng.ext.parser import parse as ext_parse

from hub.mapping.paths import ExtendedPath, PathError, SimplePath, compile_path

KEYS = ["a", "b", "c", "x y", "data.json", "0", "é"]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3)
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


def path_text(path_steps: list[Any]) -> str:
    parts = ["$"]
    for step in path_steps:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", step):  # what the lexer takes bare
            parts.append(f".{step}")
        else:
            parts.append(f"['{step}']")
    return "".join(parts)


@settings(max_examples=400, deadline=None)
@given(doc=json_docs, path_steps=steps)
def test_fast_path_returns_what_jsonpath_ng_returns(doc: Any, path_steps: list[Any]) -> None:
    """On random documents and random simple paths, the fast getter equals jsonpath-ng's find."""
    text = path_text(path_steps)
    compiled = compile_path(text)
    assert isinstance(compiled, SimplePath)
    expected = [match.value for match in ext_parse(text).find(doc)]
    assert compiled.values(doc) == expected


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
    assert isinstance(path, ExtendedPath)
    assert path.values(doc) == ["j@example.com"]


def test_facebook_filter_on_field_name_then_index() -> None:
    """Facebook's field_data filter with values[0] gives the first value of that question."""
    doc = {"field_data": [{"name": "email", "values": ["p@example.com", "x"]}]}
    path = compile_path("$.field_data[?(@.name=='email')].values[0]")
    assert path.values(doc) == ["p@example.com"]


def test_wildcards_and_descendants_find_every_value() -> None:
    """Non-simple paths (wildcards, descendants) go through jsonpath-ng and find all."""
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
    ],
)
def test_bad_paths_raise_with_the_fix(text: str, fragment: str) -> None:
    """A path that does not parse, or is not rooted at $, raises PathError with the fix."""
    with pytest.raises(PathError) as info:
        compile_path(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)
