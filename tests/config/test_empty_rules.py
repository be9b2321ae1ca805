"""Rules that hold nothing are errors, not silent "always" / "never": ``match: []``,
``skip_if: []``, ``match: {}``, a ``{}`` rule in a list, a condition on no value
(``$.tag: []``) or on blank text alone (``$.utm: ""``, which no value equals: blank counts as
absent), and ``join`` without a separator. Blank text among other values, or from a
``${VAR}`` left empty, loads (a warning at most)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load
from hub.mapping.model import CompiledMapping, rules_hold
from hub.mapping.transforms import Context

HEAD = "kind: endpoint\nname: e\nsource: token\ntoken: x\n---\nname: m\nendpoint: e\n"
FIELDS = "fields:\n  EmailAddress: $.email\n"
#: Another mapping of the endpoint, without a match: a mapping left out for its rule's error
#: must not bring a second, misleading "both take every event" error.
OTHER = "---\nname: other\nendpoint: e\n" + FIELDS

# (id, the mapping's lines after its endpoint, line of the error, the message from its start)
EMPTY = [
    (
        "match-empty-list",
        "match: []\n" + FIELDS,
        8,
        "match: [] of mapping 'm' holds no rule; remove it to take every event, "
        "or add rules like match: {$.form_id: abc123}",
    ),
    (
        "skip_if-empty-list",
        "skip_if: []\n" + FIELDS,
        8,
        "skip_if: [] of mapping 'm' holds no rule; remove it to skip no event, "
        "or add rules like skip_if: {$.form_id: abc123}",
    ),
    (
        "match-empty-mapping",
        "match: {}\n" + FIELDS,
        8,
        "match: {} of mapping 'm' holds no condition; remove it to take every event, "
        "or add conditions like match: {$.form_id: abc123}",
    ),
    (
        "skip_if-empty-mapping",
        FIELDS + "skip_if: {}\n",
        10,
        "skip_if: {} of mapping 'm' holds no condition; remove it to skip no event, "
        "or add conditions like skip_if: {$.form_id: abc123}",
    ),
    (
        "empty-rule-in-a-list",
        "match:\n  - $.form: a\n  - {}\n" + FIELDS,
        10,
        "a rule in match of mapping 'm' is {}, which holds no condition (so it holds for "
        "every event); remove it, or write its conditions like {$.form_id: abc123}",
    ),
    (
        "skip_if-empty-list-of-values",
        "skip_if: {$.tag: []}\n" + FIELDS,
        8,
        "skip_if of mapping 'm': $.tag: [] lists no value, so the condition never holds; "
        "list the values it may equal, like $.tag: [a, b], or write null for absent",
    ),
    (
        "match-empty-list-of-values-block",
        "match:\n  $.form: a\n  $.tag: []\n" + FIELDS,
        10,
        "match of mapping 'm': $.tag: [] lists no value, so the condition never holds",
    ),
    (
        "match-blank-value",
        'match: {$.utm_source: ""}\n' + FIELDS,
        8,
        "match of mapping 'm': $.utm_source equals '', which no value does (blank counts as "
        "absent), so the condition never holds; write null for absent or blank",
    ),
    (
        "skip_if-spaces-value-in-a-list-of-rules",
        "skip_if:\n  - $.test: true\n  - $.email: '  '\n" + FIELDS,
        10,
        "skip_if of mapping 'm': $.email equals '  ', which no value does",
    ),
    (
        "match-only-blank-values",
        "match:\n  $.form: ['', ' ']\n" + FIELDS,
        9,
        "match of mapping 'm': $.form equals only blank text ('', ' '), which no value does "
        "(blank counts as absent), so the condition never holds; write null for absent or blank",
    ),
    (
        "join-null",
        "fields:\n  mx_Tags:\n    path: $.tags\n    transform: [trim, {join: }]\n",
        11,
        "field 'mx_Tags' of mapping 'm': join needs a separator string, e.g. {join: ', '} "
        "or join(;); none is written (join('') joins with nothing)",
    ),
    (
        "join-null-block",
        "fields:\n  mx_Tags:\n    path: $.tags\n    transform:\n      - join:\n",
        12,
        "field 'mx_Tags' of mapping 'm': join needs a separator string, e.g. {join: ', '}",
    ),
    (
        "join-empty-parentheses",
        "fields:\n  mx_Tags: {path: $.tags, transform: 'join()'}\n",
        9,
        "field 'mx_Tags' of mapping 'm': join needs a separator string, e.g. {join: ', '}",
    ),
    (
        "join-list",
        "fields:\n  mx_Tags: {path: $.tags, transform: {join: [';']}}\n",
        9,
        "field 'mx_Tags' of mapping 'm': join needs a separator string, e.g. {join: ', '} "
        "or join(;); not [';']",
    ),
]


@pytest.mark.parametrize(
    ("mapping", "line", "message"), [e[1:] for e in EMPTY], ids=[e[0] for e in EMPTY]
)
def test_a_rule_that_holds_nothing_is_one_error_at_its_line(
    tmp_path: Path, mapping: str, line: int, message: str
) -> None:
    """Each is the only error, at its file:line, naming what it would mean and the fix."""
    (tmp_path / "a.yaml").write_text(HEAD + mapping + (OTHER if "join" not in mapping else ""))
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert len(info.value.issues) == 1, "\n".join(info.value.issues)
    assert info.value.issues[0].startswith(f"{tmp_path}/a.yaml:{line}: {message}")


@pytest.mark.parametrize("key", ["match", "skip_if"])
@pytest.mark.parametrize("empty", ["[]", "{}"])
def test_match_and_skip_if_say_the_same_of_their_empty_forms(
    tmp_path: Path, key: str, empty: str
) -> None:
    """[] and {} are refused alike under either key (match: {} was refused as "each rule is
    a mapping", match: [] taken as every event, skip_if: [] as no event)."""
    (tmp_path / "a.yaml").write_text(HEAD + f"{key}: {empty}\n" + FIELDS)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    assert f": {key}: {empty} of mapping 'm' holds no " in issue
    assert "; remove it to " in issue


def test_absent_or_null_rules_and_a_deliberate_empty_separator_are_fine(tmp_path: Path) -> None:
    """No match (absent or null) takes every event and no skip_if skips none, as documented;
    join('') and {join: ''} join with nothing, on purpose."""
    (tmp_path / "a.yaml").write_text(
        HEAD
        + "match:\nskip_if: ~\nfields:\n"
        + "  mx_A: {path: $.a, transform: \"join('')\"}\n"
        + "  mx_B: {path: $.b, transform: [{join: ''}]}\n"
    )
    mapping = load(tmp_path, {}).mappings["m"]
    assert mapping.match == () and mapping.skip_if == ()
    assert mapping.matches({"anything": 1})
    context = Context("mx_A", None)
    for spec in mapping.fields:
        (join,) = spec.transforms
        assert join.apply(["1", "2"], context) == ["12"]


def test_null_the_fix_for_a_blank_value_holds_for_absent_and_blank(tmp_path: Path) -> None:
    """What the blank value's error says to write instead: null holds for a blank or absent
    value, and not for a value given."""
    (tmp_path / "a.yaml").write_text(HEAD + "match: {$.utm_source: null}\n" + FIELDS)
    mapping = load(tmp_path, {}).mappings["m"]
    assert mapping.matches({"utm_source": ""}) and mapping.matches({"utm_source": "  "})
    assert mapping.matches({})
    assert not mapping.matches({"utm_source": "google"})


def _skips(mapping: CompiledMapping, document: dict[str, str]) -> bool:
    return rules_hold(mapping.skip_if, document) is not None


def test_a_blank_value_among_others_loads_with_a_warning(tmp_path: Path) -> None:
    """Blank text listed with other values ([null, ""], [a, '']) is dead weight, not a
    condition that never holds: it loads, and the others decide, with a warning at the blank
    value's line (it was an error that refused the mapping)."""
    (tmp_path / "a.yaml").write_text(
        HEAD + "match:\n  $.form:\n    - a\n    - ''\n" + FIELDS + 'skip_if: {$.utm: [null, ""]}\n'
    )
    config = load(tmp_path, {})
    mapping = config.mappings["m"]
    assert mapping.matches({"form": "a", "utm": "x"})
    assert not mapping.matches({"form": "b", "utm": "x"})
    assert _skips(mapping, {"form": "a"}) and _skips(mapping, {"form": "a", "utm": " "})
    assert not _skips(mapping, {"form": "a", "utm": "x"})
    assert [w for w in config.warnings if "of mapping 'm'" in w] == [
        f"{tmp_path}/a.yaml:11: match of mapping 'm': $.form lists '', which no value equals "
        "(blank counts as absent); remove it, or write null for absent or blank",
        f"{tmp_path}/a.yaml:14: skip_if of mapping 'm': $.utm lists '', which no value equals "
        "(blank counts as absent); remove it, or write null for absent or blank",
    ]


def test_a_blank_value_from_a_variable_is_no_error(tmp_path: Path) -> None:
    """An optional setting left empty (skip_if: {$.utm: "${SKIP_UTM:}"}, the variable unset)
    is meant, as for a field's value: it loads and skips no event, unwarned. Under match, a
    form id left empty takes no event by that condition: a warning naming the variable, at
    its line (both were errors that refused the mapping)."""
    (tmp_path / "a.yaml").write_text(
        HEAD
        + 'match: {$.form_id: "${FORM_ID}"}\n'
        + FIELDS
        + 'skip_if: {$.utm: "${SKIP_UTM:}"}\n'
        + OTHER
    )
    config = load(tmp_path, {"FORM_ID": ""})
    mapping = config.mappings["m"]
    assert not mapping.matches({"form_id": "abc"}) and not mapping.matches({"form_id": ""})
    assert not _skips(mapping, {"utm": "x"}) and not _skips(mapping, {"utm": ""})
    assert [w for w in config.warnings if "of mapping 'm'" in w] == [
        f"{tmp_path}/a.yaml:8: match of mapping 'm': $.form_id equals '' (from ${{FORM_ID}}), "
        "which no value does (blank counts as absent), so the condition never holds; set the "
        "variable to the value to match, or write null for absent"
    ]
