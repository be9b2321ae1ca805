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


def test_a_value_its_transforms_leave_out_sends_the_default() -> None:
    """A path's one value that a transform drops (a phone number that does not parse, a
    name of one word for rest_words, an empty map target) sends the field's default, with
    the transform's warning; the same value in a list does too."""
    fields = (
        FieldSpec(
            "Phone", compile_path("$.phone"), transforms=parse_transforms("phone"), default="none"
        ),
        FieldSpec(
            "LastName",
            compile_path("$.name"),
            transforms=parse_transforms(["trim", "rest_words"]),
            default="Unknown",
        ),
        FieldSpec(
            "mx_Plan",
            compile_path("$.plan"),
            transforms=parse_transforms("map({basic: ''})"),
            default="n/a",
        ),
    )
    for document in (
        {"phone": "abc", "name": " Madonna ", "plan": "basic"},
        {"phone": ["abc"], "name": [" Madonna "], "plan": ["basic"]},
    ):
        result = apply(mapping(fields=fields, default_region="IN"), document)
        assert isinstance(result, CaptureRequest)
        assert result.body == [
            {"Attribute": "Phone", "Value": "none"},
            {"Attribute": "LastName", "Value": "Unknown"},
            {"Attribute": "mx_Plan", "Value": "n/a"},
        ]
        assert result.warnings == ("Phone: 'abc' is not a phone number; left out",)


#: Answers that show nothing though ``str.strip`` keeps them: a zero-width space, joiners, a
#: word joiner, a byte-order mark, alone or among spaces.
SHOWING_NOTHING = ["\u200b", " \u200c\u200d ", "\u2060", "\ufeff", "\u200b \u00a0\ufeff"]


def test_a_value_showing_nothing_is_blank_wherever_it_is_read() -> None:
    """Zero-width characters alone (a form answer of one zero-width space) are blank as
    whitespace is: found alone, in a list, given by a transform, or joined, they leave the
    attribute out (a default sent instead, a required field failing) rather than sending
    an invisible name; a value holding more than them is sent as it came."""
    for nothing in SHOWING_NOTHING:
        fields = (
            FieldSpec("FirstName", compile_path("$.name")),
            FieldSpec("Source", compile_path("$.source"), default="Web"),
            FieldSpec("mx_Times", compile_path("$.times")),
            FieldSpec(
                "LastName", compile_path("$.full"), transforms=parse_transforms("rest_words")
            ),
            FieldSpec("mx_All", compile_path("$.times"), transforms=parse_transforms("join(,)")),
            FieldSpec("mx_Kept", compile_path("$.kept")),
        )
        document = {
            "name": nothing,
            "source": nothing,
            "times": [nothing, "evening"],
            "full": f"Ann {nothing}",  # (its words after the first show nothing)
            "kept": f"{nothing}x",
        }
        result = apply(mapping(fields=fields), document)
        assert isinstance(result, CaptureRequest), nothing
        assert result.body == [
            {"Attribute": "Source", "Value": "Web"},
            {"Attribute": "mx_Times", "Value": "evening"},
            {"Attribute": "mx_All", "Value": "evening"},
            {"Attribute": "mx_Kept", "Value": f"{nothing}x"},
        ], repr(nothing)
        required = (FieldSpec("EmailAddress", compile_path("$.email"), required=True),)
        failed = apply(mapping(fields=required), {"email": nothing})
        assert isinstance(failed, MappingError), repr(nothing)
        absent = mapping(skip_if=((cond("$.email", None),),))  # (null: nothing but blanks)
        assert isinstance(apply(absent, {"email": nothing}), Skip), repr(nothing)


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
    # the warning quotes at most SHOWN characters of the value (it quoted all 300)
    assert long.reason.endswith(
        "; also left out: Phone: '" + "x" * 57 + "...' is not a phone number"
    )
    clean = apply(mapping(), {"phone": "+14155550100"})
    assert isinstance(clean, MappingError) and clean.warnings == ()
    assert (
        clean.reason
        == "required value missing in mapping 'm': EmailAddress ($.email found nothing)"
    )


def _form(name: str, path: str, *expected: Any) -> CompiledMapping:
    return mapping(name, match=((cond(path, *expected),),))


def test_unmatched_says_for_each_mapping_what_its_match_found() -> None:
    """ "no mapping matched; tried 'a', 'b'" gave no hint of a typo in a match path: the reason
    now names, for each mapping in the order tried, the condition that failed and what its
    path found in the document."""
    demo = _form("typeform-demo", "$.form_response.form_id", "aB3xYz9Q")
    typo = _form("typeform-webinar", "$.form_response.formid", "Wb7Kq2Lm")
    result = map_document([demo, typo], {"form_response": {"form_id": "Zz9"}})
    assert isinstance(result, Unmatched) and result.mapping is None
    assert result.reason == (
        "no mapping matched; tried 'typeform-demo': $.form_response.form_id is 'Zz9' "
        "(wants 'aB3xYz9Q'); 'typeform-webinar': $.form_response.formid found nothing"
    )


def test_unmatched_explains_each_form_of_match() -> None:
    """A list of values, null (absent), several values found, blanks, an object found, a
    filter with a regular expression, several conditions (only those that failed are named)
    and several rules (any one): each says what the document has."""
    doc = {
        "form": "f3",
        "tags": ["a", "b", "a"],
        "blank": " ",
        "test": True,
        "obj": {"x": 1},
        "answers": [{"ref": "mail", "v": "a@b.example"}],
    }
    mappings = [
        _form("values", "$.form", "f1", "f2"),
        _form("absent", "$.test", None),
        _form("several", "$.tags[*]", "c"),
        _form("blank", "$.blank", "x"),
        _form("object", "$.obj", "y"),
        _form("regex", "$.answers[?(@.ref =~ '^e-?mail$')].v", "a@b.example"),
    ]
    result = map_document(mappings, doc)
    assert isinstance(result, Unmatched)
    assert (
        result.reason
        == (
            "no mapping matched; tried 'values': $.form is 'f3' (wants 'f1' or 'f2'); "
            "'absent': $.test is 'true' (wants null); "
            "'several': $.tags[*] found 'a', 'b' (wants 'c'); "
            "'blank': $.blank found only null, blank or empty values; "
            """'object': $.obj is '{"x":1}' (wants 'y')"""
        )
        + "; and 1 more"
    )
    rules = mapping(
        "rules",
        match=(
            (cond("$.form", "f3"), cond("$.kind", "lead"), cond("$.test", "false")),
            (cond("$.answers[?(@.ref =~ '^e-?mail$')].v", "a@b.example"),),
        ),
    )
    shown = map_document([rules], doc)
    assert isinstance(shown, Unmatched)
    assert shown.reason == (
        "no mapping matched; tried 'rules': $.kind found nothing and $.test is 'true' "
        "(wants 'false') or $.answers[?(@.ref =~ '^e-?mail$')].v found nothing"
    )


def test_apply_unmatched_says_what_its_match_found() -> None:
    """apply on one mapping whose match fails says what the document has, not the rule alone."""
    result = apply(_form("m", "$.form", "zz"), DOC)
    assert isinstance(result, Unmatched)
    assert result.reason == "match of mapping 'm' does not hold: $.form is 'f1' (wants 'zz')"


def test_unmatched_reason_is_bounded() -> None:
    """A long value is quoted to 60 characters; past 3 values, failed conditions or rules, and
    past 5 mappings, the rest are counted: a dead event's reason stays short."""
    long = "x" * 200
    conditions = tuple(cond(f"$.c{i}", "yes") for i in range(5))
    many = mapping("many", match=(conditions, *[(cond("$.v", long),)] * 4))
    doc = {"v": long[:-1], "list": list(range(10))}
    values = _form("values", "$.list[*]", *(f"w{i}" for i in range(5)))
    others = [_form(f"m{i}", "$.form", "f") for i in range(6)]
    result = map_document([many, values, *others], doc)
    assert isinstance(result, Unmatched)
    cut = repr("x" * 57 + "...")
    assert result.reason == (
        "no mapping matched; tried 'many': $.c0 found nothing and $.c1 found nothing and "
        f"$.c2 found nothing and 2 more or $.v is {cut} (wants {cut}) or $.v is {cut} "
        f"(wants {cut}) or 2 more rules; 'values': $.list[*] found '0', '1', '2' and 7 more "
        "(wants 'w0' or 'w1' or 'w2' or 2 more); 'm0': $.form found nothing; "
        "'m1': $.form found nothing; 'm2': $.form found nothing; and 3 more"
    )


def test_unmatched_names_a_condition_it_cannot_evaluate() -> None:
    """A condition the match never evaluated (an earlier one of its rule failed) that cannot
    be evaluated is named so, rather than failing the explanation."""
    rule = (cond("$.form", "zz"), cond("$.deep", "x"))
    deep = orjson.loads(b'{"a":' * 1000 + b"1" + b"}" * 1000)  # too deep to write as text
    result = map_document([mapping("m", match=(rule,))], {**DOC, "deep": deep})
    assert isinstance(result, Unmatched)
    assert result.reason == (
        "no mapping matched; tried 'm': $.form is 'f1' (wants 'zz') and "
        "$.deep cannot be evaluated on this document"
    )


def test_skip_reason_names_the_value_found_among_several() -> None:
    """A skip_if wanting one of several values says which the document has; one wanting a
    single value (or null) already says it."""
    rule = (cond("$.src", "IMPORT", "CRM_UI"),)
    several = apply(mapping(skip_if=(rule,)), {**DOC, "src": "IMPORT"})
    assert isinstance(several, Skip)
    assert several.reason == (
        "skip_if of mapping 'm' held: $.src == 'CRM_UI' or 'IMPORT' (found 'IMPORT')"
    )
    absent = apply(mapping(skip_if=((cond("$.src", None, "x"), cond("$.form", "f1")),)), DOC)
    assert isinstance(absent, Skip)
    assert absent.reason == (
        "skip_if of mapping 'm' held: $.src == 'x' or null (found nothing) and $.form == 'f1'"
    )


class _Counted:
    """A compiled path that counts how often it is evaluated."""

    def __init__(self, text: str) -> None:
        self.path = compile_path(text)
        self.text = self.path.text
        self.calls = 0

    def values(self, document: Any) -> list[Any]:
        self.calls += 1
        return self.path.values(document)


def test_a_matching_document_evaluates_each_match_path_once() -> None:
    """The explanation is worked out only when no mapping matched: a document one mapping
    takes evaluates each mapping's match path once, as before."""
    paths = [_Counted("$.form"), _Counted("$.form")]
    a = mapping("a", match=((Condition(paths[0], frozenset({"zz"})),),))
    b = mapping("b", match=((Condition(paths[1], frozenset({"f1"})),),))
    assert isinstance(map_document([a, b], DOC), CaptureRequest)
    assert [p.calls for p in paths] == [1, 1]
