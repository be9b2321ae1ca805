"""apply with a field whose ``path`` lists several JSONPaths: the first that gives a value is
read (a value as one path gives one: not null or blank), judged before the transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.config import load
from hub.mapping import CaptureRequest, CompiledMapping, MappingError, apply

ENDPOINT = "kind: endpoint\nname: site\nsource: none\n---\n"


def _mapping(tmp_path: Path, fields: str, extra: str = "") -> CompiledMapping:
    """The mapping ``m`` as ``check`` compiles it from these fields."""
    (tmp_path / "site.yaml").write_text(
        ENDPOINT + f"name: m\nendpoint: site\n{extra}fields:\n{fields}", encoding="utf-8"
    )
    mapping: CompiledMapping = load(tmp_path, {}).mappings["m"]
    return mapping


EMAIL = "  EmailAddress: { path: [$.lead.email, $.email, $.contact.email], required: true }\n"


def _sent(result: Any) -> list[dict[str, str]]:
    assert isinstance(result, CaptureRequest), result
    return result.body


def test_the_first_path_that_gives_a_value_wins(tmp_path: Path) -> None:
    """Every path giving a value: the first is sent; the first missing: the second."""
    mapping = _mapping(tmp_path, EMAIL)
    both = {"lead": {"email": "a@x.example"}, "email": "b@x.example", "contact": {"email": "c"}}
    assert _sent(apply(mapping, both)) == [{"Attribute": "EmailAddress", "Value": "a@x.example"}]
    later = {"email": "b@x.example", "contact": {"email": "c@x.example"}}
    assert _sent(apply(mapping, later)) == [{"Attribute": "EmailAddress", "Value": "b@x.example"}]


@pytest.mark.parametrize(
    "nothing",
    [{}, {"email": None}, {"email": "   "}, {"email": []}, {"email": [None, "", []]}],
    ids=["missing", "null", "blank", "empty-list", "only-blanks"],
)
def test_a_path_finding_nothing_null_or_blank_falls_back(tmp_path: Path, nothing: Any) -> None:
    """Nothing, null, a blank text or only blanks in a list give no value, as for one path:
    the next path is read (here past two such paths to the third)."""
    mapping = _mapping(tmp_path, EMAIL)
    doc = {"lead": nothing, **nothing, "contact": {"email": "c@x.example"}}
    assert _sent(apply(mapping, doc)) == [{"Attribute": "EmailAddress", "Value": "c@x.example"}]


def test_default_when_no_path_gives_a_value(tmp_path: Path) -> None:
    """No path giving a value sends the ``default``; without one the attribute is left out."""
    fields = (
        "  EmailAddress: $.email\n"
        "  Company: { path: [$.lead.company, $.company], default: Unknown }\n"
        "  mx_Ref: { path: [$.ref, $.lead.ref] }\n"
    )
    mapping = _mapping(tmp_path, fields)
    doc = {"email": "a@x.example", "lead": {"company": None}, "company": ""}
    assert _sent(apply(mapping, doc)) == [
        {"Attribute": "EmailAddress", "Value": "a@x.example"},
        {"Attribute": "Company", "Value": "Unknown"},
    ]


def test_a_required_field_no_path_gives_names_each_path_and_what_it_found(tmp_path: Path) -> None:
    """The error names every path tried, in order, each as one path's error words it."""
    result = apply(_mapping(tmp_path, EMAIL), {"lead": {"email": " "}, "contact": {"email": None}})
    assert isinstance(result, MappingError)
    assert result.reason == (
        "required value missing in mapping 'm': EmailAddress ($.lead.email found only null, "
        "blank or empty values; $.email found nothing; $.contact.email found only null, blank "
        "or empty values)"
    )


def test_a_value_its_transforms_leave_out_is_not_replaced_by_a_later_path(tmp_path: Path) -> None:
    """Which path is read is judged before the transforms: a mobile that is no phone number is
    left out with its warning (then ``default``), not swapped for the later path's number; the
    required error says what the paths before it found, then why its value was left out."""
    fields = "  Mobile: { path: [$.mobile, $.phone], transform: phone, required: true }\n"
    mapping = _mapping(tmp_path, fields, extra="default_region: IN\n")
    doc = {"mobile": "n/a", "phone": "+91 98765 43210"}
    result = apply(mapping, doc)
    assert isinstance(result, MappingError)
    assert result.reason == (
        "required value missing in mapping 'm': Mobile ('n/a' is not a phone number; left out)"
    )
    fell_back = apply(mapping, {"mobile": None, "phone": "abc"})
    assert isinstance(fell_back, MappingError)
    assert fell_back.reason == (
        "required value missing in mapping 'm': Mobile ($.mobile found only null, blank or "
        "empty values; 'abc' is not a phone number; left out)"
    )
    read = apply(mapping, {"phone": "+91 98765 43210"})
    assert _sent(read) == [{"Attribute": "Mobile", "Value": "+91-9876543210"}]


def test_warnings_name_the_path_read_and_join_takes_only_its_values(tmp_path: Path) -> None:
    """An object found by the fallback path is left out with a warning naming that path (and
    its member to write); ``join`` joins the values of the one path read, never two paths'."""
    fields = (
        "  EmailAddress: { path: [$.lead.email, $.email] }\n"
        "  mx_Tags:\n"
        "    path:\n"
        "      - $.lead.tags[*]\n"
        "      - $.tags[*]\n"
        "    transform: join(; )\n"
    )
    mapping = _mapping(tmp_path, fields)
    result = apply(mapping, {"email": {"work": "w@x.example"}, "tags": ["a", "b"]})
    assert isinstance(result, CaptureRequest)
    assert result.body == [{"Attribute": "mx_Tags", "Value": "a; b"}]
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("EmailAddress: $.email found an object")
    assert result.warnings[0].endswith("like $.email.work")
    both = apply(mapping, {"lead": {"tags": ["x"]}, "tags": ["a", "b"]})
    assert _sent(both) == [{"Attribute": "mx_Tags", "Value": "x"}]
