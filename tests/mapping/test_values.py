"""values: opening arrays and dropping blanks (at any depth), and writing values as text."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mapping.values import MAX_DEPTH, DocumentError, flatten, is_blank, present, to_text

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.sampled_from(
            ["", " ", "\t\n", "\u00a0", "a", " b ", "0", "\u200b", " \ufeff", "\u2060c"]
        ),
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
    """present() gives exactly flatten() minus blanks (None, strings of only whitespace or
    zero-width characters), in order, keeping falsy values that are not blank (0, false,
    empty objects)."""
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


def test_arrays_nested_a_thousand_levels_deep_are_opened_without_recursion() -> None:
    """present() and flatten() open arrays nested 1000 levels deep (orjson reads 1024), as a
    stored document or a lead API may hold them."""
    deep = orjson.loads(b"[" * 1000 + b'" ", "x", [null, 2]' + b"]" * 1000)
    assert present([deep, "y"]) == ["x", 2, "y"]
    assert flatten([deep]) == [" ", "x", None, 2]


def test_a_value_nested_too_deeply_to_write_is_a_document_error() -> None:
    """to_text() refuses an object nested beyond MAX_DEPTH with a DocumentError, and writes
    one at MAX_DEPTH."""
    at_limit: Any = 1
    for _ in range(MAX_DEPTH):
        at_limit = {"a": at_limit}
    assert to_text(at_limit).startswith('{"a":{"a":')
    with pytest.raises(DocumentError, match=f"more than {MAX_DEPTH} levels deep"):
        to_text([at_limit])


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.00001, "0.00001"),
        (-1e-7, "-0.0000001"),
        (2.5e-3, "0.0025"),
        (1e21, "1000000000000000000000"),
        (1.5e22, "15000000000000000000000"),
        (123456789.123, "123456789.123"),
        (0.1, "0.1"),
        (180.0, "180"),
        (21000000002.0, "21000000002"),
        (-0.0, "0"),
        (21000000002, "21000000002"),
        (2**70, "1180591620717411303424"),
    ],
)
def test_numbers_are_written_in_plain_decimal(number: float, text: str) -> None:
    """Numbers become their decimal string: no exponent, integral floats without '.0'."""
    assert to_text(number) == text


@settings(max_examples=500, deadline=None)
@given(number=st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_is_written_with_its_shortest_digits_and_no_exponent(number: float) -> None:
    """Any finite float is written without an exponent and reads back as the same float: an
    integral one below 1e21 as its integer, any other with Python's shortest repr digits."""
    text = to_text(number)
    assert "e" not in text and "E" not in text
    assert float(text) == number
    if number.is_integer() and abs(number) < 1e21:
        assert text == str(int(number))
    else:
        assert Decimal(text) == Decimal(repr(number))
