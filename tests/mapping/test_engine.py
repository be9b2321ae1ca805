"""apply and map_document: matching, skipping, required values, SearchBy, update behaviour."""

from __future__ import annotations

from typing import Any

import orjson

from hub.mapping import (
    CaptureRequest,
    CompiledMapping,
    Condition,
    FieldSpec,
    MappingError,
    Skip,
    Unmatched,
    apply,
    compile_path,
    map_document,
)
from hub.mapping.transforms import parse_transforms


def cond(path: str, *expected: Any) -> Condition:
    return Condition(compile_path(path), frozenset(None if e is None else str(e) for e in expected))


def mapping(name: str = "m", **kwargs: Any) -> CompiledMapping:
    fields = kwargs.pop(
        "fields",
        (
            FieldSpec("EmailAddress", compile_path("$.email"), required=True),
            FieldSpec("Phone", compile_path("$.phone"), transforms=parse_transforms("phone")),
        ),
    )
    return CompiledMapping(name=name, endpoint="e", target="default", fields=fields, **kwargs)


DOC = {"email": "A@Example.com", "phone": "+91 98765 43210", "form": "f1", "test": False}


def test_apply_builds_the_capture_request() -> None:
    """A matching document becomes string attributes in field order, and lead keys."""
    result = apply(mapping(default_region="IN"), DOC)
    assert isinstance(result, CaptureRequest)
    assert result.body == [
        {"Attribute": "EmailAddress", "Value": "A@Example.com"},
        {"Attribute": "Phone", "Value": "+91-9876543210"},
    ]
    assert result.query == {}
    assert result.lead_keys() == ("email:a@example.com", "phone:919876543210")


def test_missing_required_value_is_a_mapping_error() -> None:
    """A required field whose path finds nothing gives MappingError naming field and path."""
    result = apply(mapping(), {"phone": "+1 650 555 0123"})
    assert isinstance(result, MappingError)
    assert "EmailAddress" in result.reason and "$.email" in result.reason


def test_blank_and_null_values_are_left_out_or_defaulted() -> None:
    """Null or blank values leave the attribute out, unless a default is given."""
    fields = (
        FieldSpec("FirstName", compile_path("$.name")),
        FieldSpec("Source", compile_path("$.source"), default="Web"),
        FieldSpec("mx_Zero", compile_path("$.zero")),
    )
    result = apply(mapping(fields=fields), {"name": "  ", "source": None, "zero": 0})
    assert isinstance(result, CaptureRequest)
    assert result.body == [
        {"Attribute": "Source", "Value": "Web"},
        {"Attribute": "mx_Zero", "Value": "0"},
    ]


def test_several_values_yield_the_first_non_blank() -> None:
    """A path finding an array (or several values) sends the first non-blank one."""
    fields = (FieldSpec("mx_Times", compile_path("$.times")),)
    result = apply(mapping(fields=fields), {"times": ["", "morning", "evening"]})
    assert isinstance(result, CaptureRequest)
    assert result.body == [{"Attribute": "mx_Times", "Value": "morning"}]


def test_constants_and_related_company_are_plain_attributes() -> None:
    """A {value: ...} constant is sent like any attribute, RelatedCompanyId included."""
    fields = (
        FieldSpec("EmailAddress", compile_path("$.email")),
        FieldSpec("RelatedCompanyId", value="8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11"),
        FieldSpec("mx_Count", value=3),
    )
    result = apply(mapping(fields=fields), DOC)
    assert isinstance(result, CaptureRequest)
    assert result.value("RelatedCompanyId") == "8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11"
    assert result.value("mx_Count") == "3"


def test_search_by_and_update_behavior() -> None:
    """search_by adds the SearchBy attribute last; update_behavior fills the query."""
    result = apply(mapping(search_by="EmailAddress", update_behavior="DoNotUpdate"), DOC)
    assert isinstance(result, CaptureRequest)
    assert result.body[-1] == {"Attribute": "SearchBy", "Value": "EmailAddress"}
    assert result.query == {"LeadUpdateBehavior": "DoNotUpdate"}


def test_search_by_without_its_value_is_left_out_with_a_warning() -> None:
    """When the search_by attribute has no value, SearchBy is not sent (it would be a 400)."""
    result = apply(mapping(search_by="Phone"), {"email": "a@example.com"})
    assert isinstance(result, CaptureRequest)
    assert all(item["Attribute"] != "SearchBy" for item in result.body)
    assert any("SearchBy" in w for w in result.warnings)


def test_bad_phone_is_a_warning_not_a_failure() -> None:
    """An unparseable phone leaves Phone out, records a warning, and the lead is still sent."""
    result = apply(mapping(default_region="IN"), {"email": "a@example.com", "phone": "12"})
    assert isinstance(result, CaptureRequest)
    assert result.value("Phone") is None
    assert result.warnings and result.warnings[0].startswith("Phone: ")
    assert result.lead_keys() == ("email:a@example.com",)


def test_skip_if_records_a_skip() -> None:
    """When skip_if holds the result is Skip with the condition in the reason."""
    result = apply(mapping(skip_if=((cond("$.test", "true"),),)), {**DOC, "test": True})
    assert isinstance(result, Skip)
    assert "$.test" in result.reason
    assert isinstance(apply(mapping(skip_if=((cond("$.test", "true"),),)), DOC), CaptureRequest)


def test_match_compares_as_text_and_accepts_alternatives() -> None:
    """match values compare by string form; a list of values means any of them."""
    by_number = mapping(match=((cond("$.n", "1"),),))
    assert by_number.matches({"n": 1}) and by_number.matches({"n": "1"})
    assert not by_number.matches({"n": 2}) and not by_number.matches({})
    any_of = mapping(match=((cond("$.form", "f1", "f2"),),))
    assert any_of.matches({"form": "f2"}) and not any_of.matches({"form": "f3"})
    absent = mapping(match=((cond("$.x", None),),))
    assert absent.matches({}) and absent.matches({"x": ""}) and not absent.matches({"x": "y"})


def test_map_document_picks_the_one_matching_mapping() -> None:
    """Among an endpoint's mappings the one whose match holds is applied."""
    a = mapping("a", match=((cond("$.form", "f1"),),))
    b = mapping("b", match=((cond("$.form", "f2"),),))
    result = map_document([a, b], DOC)
    assert isinstance(result, CaptureRequest) and result.mapping == "a"


def test_map_document_unmatched_and_ambiguous() -> None:
    """No match gives Unmatched; two matches give MappingError naming both."""
    a = mapping("a", match=((cond("$.form", "zz"),),))
    unmatched = map_document([a], DOC)
    assert isinstance(unmatched, Unmatched) and unmatched.mapping is None
    assert "'a'" in unmatched.reason
    both = map_document([mapping("a"), mapping("b")], DOC)
    assert isinstance(both, MappingError) and "'a'" in both.reason and "'b'" in both.reason
    assert isinstance(map_document([], DOC), Unmatched)


def test_apply_is_pure() -> None:
    """The same document and mapping always give an equal result, and the document is untouched."""
    doc = {"email": " X@Y.com ", "phone": ["+1 650 555 0123"]}
    snapshot = repr(doc)
    m = mapping()
    assert apply(m, doc) == apply(m, doc)
    assert repr(doc) == snapshot


def _nested(depth: int, leaf: bytes) -> Any:
    """A value nested ``depth`` arrays deep, as orjson reads it (a stored document)."""
    return orjson.loads(b"[" * depth + leaf + b"]" * depth)


def test_a_value_inside_arrays_a_thousand_deep_is_found() -> None:
    """{"email": [[[...1000 deep "x"]]]} (what an older ingest accepted) maps to x."""
    result = map_document([mapping()], {"email": _nested(1000, b'"a@example.com"')})
    assert isinstance(result, CaptureRequest)
    assert result.value("EmailAddress") == "a@example.com"


def test_a_document_that_cannot_be_evaluated_is_a_mapping_error() -> None:
    """A value too deep to write as text, in a field or in a match, gives MappingError with
    the reason, from apply and from map_document alike; nothing raises."""
    deep = {"email": "a@example.com", "o": orjson.loads(b'{"a":' * 1000 + b"1" + b"}" * 1000)}
    as_text = FieldSpec("mx_O", compile_path("$.o"), transforms=parse_transforms("string"))
    in_field = mapping(fields=(as_text,))
    in_match = mapping(match=((cond("$.o", "1"),),))
    for result in (
        apply(in_field, deep),
        map_document([in_field], deep),
        apply(in_match, deep),
        map_document([mapping("other", match=((cond("$.form", "f9"),),)), in_match], deep),
    ):
        assert isinstance(result, MappingError) and result.mapping == "m"
        assert result.reason == (
            "mapping 'm' cannot evaluate this document: a value nests arrays and objects "
            "more than 400 levels deep, too deep to write as text"
        )


def test_a_path_jsonpath_ng_cannot_evaluate_is_a_mapping_error() -> None:
    """A field whose jsonpath-ng path runs out of stack on the document is a MappingError
    naming the path."""
    fields = (FieldSpec("mx_Sorted", compile_path("$.a[/b].c")),)
    doc = {"a": [{"b": _nested(1000, b"1"), "c": 1}, {"b": _nested(1000, b"2"), "c": 2}]}
    result = apply(mapping(fields=fields), doc)
    assert isinstance(result, MappingError)
    assert "JSONPath $.a[/b].c cannot be evaluated: the document is nested too deeply" in (
        result.reason
    )


def test_any_error_evaluating_a_document_is_a_mapping_error_naming_it() -> None:
    """An error nothing foresaw (an integer too long for str(), which only a document built
    in Python can hold) is a MappingError naming the exception, not an exception."""
    result = map_document([mapping()], {"email": 10**5000})
    assert isinstance(result, MappingError) and result.mapping == "m"
    assert result.reason.startswith("mapping 'm' cannot evaluate this document: ValueError: ")


def test_an_object_found_is_not_sent_unless_string_writes_it() -> None:
    """A path that finds an object ({"first": .., "last": ..}, a compound answer) sent its
    JSON as the attribute's value: now it is left out with a warning (the next value
    found, or the default, is used), unless `string` makes it JSON text on purpose."""
    fields = (
        FieldSpec("EmailAddress", compile_path("$.email")),
        FieldSpec("FirstName", compile_path("$.name")),
        FieldSpec("mx_Answers", compile_path("$.answers[*]")),
        FieldSpec("mx_Name", compile_path("$.name"), default="n/a"),
        FieldSpec("mx_Json", compile_path("$.name"), transforms=parse_transforms("string")),
    )
    doc = {"email": "a@example.com", "name": {"first": "Ana"}, "answers": [{"k": 1}, 7]}
    result = apply(mapping(fields=fields), doc)
    assert isinstance(result, CaptureRequest)
    assert result.body == [
        {"Attribute": "EmailAddress", "Value": "a@example.com"},
        {"Attribute": "mx_Answers", "Value": "7"},
        {"Attribute": "mx_Name", "Value": "n/a"},
        {"Attribute": "mx_Json", "Value": '{"first":"Ana"}'},
    ]
    assert [w.split(",")[0] for w in result.warnings] == [
        "FirstName: $.name found an object",
        "mx_Answers: $.answers[*] found an object",
        "mx_Name: $.name found an object",
    ]


def required(attribute: str, path: str, *transforms: str, **kwargs: Any) -> CompiledMapping:
    """A mapping of one required ``attribute`` from ``path`` through ``transforms``."""
    spec = FieldSpec(
        attribute,
        compile_path(path),
        transforms=parse_transforms(list(transforms)),
        required=True,
    )
    return mapping(fields=(spec,), **kwargs)


def test_a_required_object_says_what_was_found_and_how_to_send_it() -> None:
    """{"email": {"a": 1}} with EmailAddress from $.email was "$.email found nothing": the path
    found an object, which is not sent unless string writes it. The reason says so, and the
    two fixes; a field not required gets the same words as its warning."""
    result = apply(mapping(), {"email": {"a": 1}})
    assert isinstance(result, MappingError)
    assert result.reason == (
        "required value missing in mapping 'm': EmailAddress ($.email found an object, "
        '{"a":1}, not sent: add transform: string to send it as JSON text, or point the path '
        "at a value inside it, like $.email.a)"
    )
    fields = (FieldSpec("mx_Extra", compile_path("$.extra[*]")),)
    sent = apply(mapping(fields=fields), {"extra": [{"first name": "Ana"}]})
    assert isinstance(sent, CaptureRequest)
    assert sent.warnings == (
        'mx_Extra: $.extra[*] found an object, {"first name":"Ana"}, not sent: add transform: '
        "string to send it as JSON text, or point the path at a value inside it",
    )


def test_a_required_value_its_transforms_drop_says_why() -> None:
    """A required Phone of "abc" (no phone number) was "$.phone found nothing": the reason is
    now the transform's own warning; a value a transform drops without one (map to
    nothing), and only blanks, say what the path found."""
    phone = required("Phone", "$.phone", "phone", default_region="IN")
    result = apply(phone, {"phone": "abc"})
    assert isinstance(result, MappingError)
    assert result.reason == (
        "required value missing in mapping 'm': Phone ('abc' is not a phone number; left out)"
    )
    dropped = apply(required("Source", "$.src", "trim", "map({x: ''})"), {"src": " x "})
    assert isinstance(dropped, MappingError)
    assert dropped.reason.endswith(
        "Source ($.src found ' x ', which its transforms (trim, map) left out)"
    )
    blank = apply(mapping(), {"email": [None, " ", []]})
    assert isinstance(blank, MappingError)
    assert blank.reason.endswith("EmailAddress ($.email found only null, blank or empty values)")
    nothing = apply(mapping(), {})
    assert isinstance(nothing, MappingError)
    assert nothing.reason.endswith("EmailAddress ($.email found nothing)")


def test_a_phone_that_is_no_number_is_left_out_with_a_warning() -> None:
    """A phone of "abc" (which phonenumbers cannot parse, unlike "12", a wrong length) is
    left out of a field not required with a warning naming it; the lead is still sent."""
    result = apply(mapping(default_region="IN"), {"email": "a@example.com", "phone": "abc"})
    assert isinstance(result, CaptureRequest)
    assert result.value("Phone") is None
    assert result.warnings == ("Phone: 'abc' is not a phone number; left out",)


def test_a_missing_required_value_ends_with_what_else_was_left_out() -> None:
    """A required EmailAddress missing where the phone was "12" (no number) said only
    "EmailAddress ($.email found nothing)", and the result carried no warnings: the phone,
    often the cause, went unsaid. The reason now ends with the other fields' warnings,
    brief (no advice on how to send them; at most three, then a count), the missing field's
    own not repeated; the result carries every warning whole."""
    fields = (
        FieldSpec("EmailAddress", compile_path("$.email"), required=True),
        FieldSpec("Phone", compile_path("$.phone[*]"), transforms=parse_transforms("phone")),
        FieldSpec("mx_Extra", compile_path("$.extra")),
        FieldSpec("mx_Name", compile_path("$.name"), transforms=parse_transforms("trim")),
    )
    doc = {"email": {"a": 1}, "phone": ["12", "34"], "extra": {"b": 2}, "name": {"c": 3}}
    result = apply(mapping(fields=fields, default_region="IN"), doc)
    assert isinstance(result, MappingError)
    assert result.reason == (
        "required value missing in mapping 'm': EmailAddress ($.email found an object, "
        '{"a":1}, not sent: add transform: string to send it as JSON text, or point the path '
        "at a value inside it, like $.email.a); also left out: Phone: '12' is not a phone "
        "number (wrong length); Phone: '34' is not a phone number (wrong length); mx_Extra: "
        '$.extra found an object, {"b":2}, not sent; and 1 more'
    )
    assert result.warnings == (
        'EmailAddress: $.email found an object, {"a":1}, not sent: add transform: string to '
        "send it as JSON text, or point the path at a value inside it, like $.email.a",
        "Phone: '12' is not a phone number (wrong length); left out",
        "Phone: '34' is not a phone number (wrong length); left out",
        'mx_Extra: $.extra found an object, {"b":2}, not sent: add transform: string to send '
        "it as JSON text, or point the path at a value inside it, like $.extra.b",
        'mx_Name: trim got an object, {"c":3}, not a value; left out (give the path of one of '
        "its members, or use the string transform to send it as JSON text)",
    )
    alone = apply(mapping(default_region="IN"), {"phone": "12"})
    assert isinstance(alone, MappingError)
    assert alone.reason == (
        "required value missing in mapping 'm': EmailAddress ($.email found nothing); "
        "also left out: Phone: '12' is not a phone number (wrong length)"
    )
    long = apply(mapping(default_region="IN"), {"phone": "x" * 300})
    assert isinstance(long, MappingError)
    assert long.reason.endswith("; also left out: Phone: '" + "x" * 109 + "...")  # 120 characters
    clean = apply(mapping(), {"phone": "+14155550100"})
    assert isinstance(clean, MappingError) and clean.warnings == ()
    assert (
        clean.reason
        == "required value missing in mapping 'm': EmailAddress ($.email found nothing)"
    )
