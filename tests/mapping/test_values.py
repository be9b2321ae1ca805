"""values: opening arrays and dropping blanks in one pass agrees with doing it in two."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mapping.values import flatten, is_blank, present

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.sampled_from(["", " ", "\t\n", "\u00a0", "a", " b ", "0"]),
        st.text(max_size=3),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=2), children, max_size=3),
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(found=st.lists(values, max_size=5))
def test_present_is_flatten_without_blanks(found: list[Any]) -> None:
    """present() gives exactly flatten() minus blanks (None, whitespace-only strings), in
    order, keeping falsy values that are not blank (0, false, empty objects)."""
    expected = [v for v in flatten(found) if not is_blank(v)]
    assert [id(v) for v in present(found)] == [id(v) for v in expected]


def test_present_keeps_falsy_values_that_are_not_blank() -> None:
    """0, false and {} are values; None, '' and whitespace are not."""
    kept = present([0, False, {}, None, "", " \t", [None, ["x", []]], " y "])
    assert [(type(v), v) for v in kept] == [
        (int, 0),
        (bool, False),
        (dict, {}),
        (str, "x"),
        (str, " y "),
    ]
