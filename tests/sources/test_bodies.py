"""Bodies to documents: JSON, form-encoded, multipart, with 400/415 for what cannot be taken."""

from __future__ import annotations

import logging

import orjson
import pytest

from hub.sources import BodyError
from hub.sources.bodies import Parsed, parse, parse_body
from tests.sources import fixtures as fx


def test_json_body_is_parsed() -> None:
    """A JSON body becomes its document."""
    assert parse_body("application/json; charset=utf-8", b'{"a": [1, "x"]}') == {"a": [1, "x"]}


def test_json_variants_and_missing_content_type_are_json() -> None:
    """+json media types, text/plain and a missing Content-Type are parsed as JSON."""
    for ctype in ("application/vnd.api+json", "text/plain", None, ""):
        assert parse_body(ctype, b"[1]") == [1]


def test_integers_beyond_64_bits_become_strings() -> None:
    """Integers outside the 64-bit range are kept exact as strings; others stay integers."""
    body = (
        b'{"big": 123456789012345678901234, "neg": -9223372036854775809,'
        b' "ok": 18446744073709551615}'
    )
    doc = parse_body("application/json", body)
    assert doc == {
        "big": "123456789012345678901234",
        "neg": "-9223372036854775809",
        "ok": 18446744073709551615,
    }


def test_an_integer_of_thousands_of_digits_is_kept_as_text_too() -> None:
    """Python refuses to convert integers of more than 4,300 digits (it was a 400 quoting
    sys.set_int_max_str_digits); such a number is as far beyond 64 bits as any other."""
    digits = "7" * 5000
    doc = parse_body("application/json", f'{{"n": {digits}, "m": -{digits}}}'.encode())
    assert doc == {"n": digits, "m": "-" + digits}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b'{"a":1}x',
        b"NaN",
        b"[1e400]",
        b"[" * 5000,
        b"\xff\xfe{}",
        b'{"a": 1' + b"9" * 30,
    ],
)
def test_invalid_json_is_a_400(body: bytes) -> None:
    """Empty, truncated, trailing-garbage, non-finite, too deep or non-UTF-8 JSON answers 400."""
    with pytest.raises(BodyError) as info:
        parse_body("application/json", body)
    assert info.value.status == 400


@pytest.mark.parametrize("ctype", ["application/xml", "text/html", "image/png", "multipart/mixed"])
def test_unsupported_content_types_are_a_415(ctype: str) -> None:
    """Media types the hub does not take answer 415, naming the type."""
    with pytest.raises(BodyError) as info:
        parse_body(ctype, b"<x/>")
    assert info.value.status == 415
    assert ctype in info.value.reason


def test_form_body_flattens_with_lists_for_repeated_keys() -> None:
    """A form body becomes a flat object; repeated keys become lists in order."""
    body = b"a=1&b=x+y&a=2&c=&a=3&j=%7B%22k%22%3A1%7D&s=%7Bnot+json%7D&n=%5B1%5D"
    doc = parse_body("application/x-www-form-urlencoded", body)
    assert doc == {
        "a": ["1", "2", "3"],
        "b": "x y",
        "c": "",
        "j": {"k": 1},
        "s": "{not json}",
        "n": [1],
    }


def test_form_strings_that_are_json_scalars_stay_strings() -> None:
    """Only JSON objects and arrays are parsed out of fields; numbers and words stay strings."""
    doc = parse_body("application/x-www-form-urlencoded", b"n=12&t=true&q=%22x%22")
    assert doc == {"n": "12", "t": "true", "q": '"x"'}


def test_unbounce_data_json_is_parsed() -> None:
    """Unbounce's form body gets its data.json field parsed into an object."""
    d = fx.load("unbounce", "submission_basic", "unbounce")
    doc = parse_body(d.headers["Content-Type"], d.body)
    assert doc["page_name"] == "Solar Quote LP"
    assert doc["data.json"]["email"] == ["lucas.ferreira@example.com"]
    assert isinstance(doc["data.xml"], str)


def test_jotform_multipart_with_raw_request_is_parsed() -> None:
    """Jotform's multipart body becomes a flat object with rawRequest parsed."""
    d = fx.load("jotform", "submission_basic", "jotform")
    doc = parse_body(d.headers["Content-Type"], d.body)
    assert doc["formTitle"] == "Book a Free Demo"
    assert doc["submissionID"] == "6201234567890123456"
    assert isinstance(doc["rawRequest"], dict)
    assert isinstance(doc["pretty"], str)


def test_multipart_file_parts_and_repeated_names() -> None:
    """File parts are described rather than inlined and repeated part names become lists."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="tag"\r\n\r\none\r\n'
        b'--B\r\nContent-Disposition: form-data; name="tag"\r\n\r\ntwo\r\n'
        b'--B\r\nContent-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF-1\x00\x01\r\n--B--\r\n"
    )
    doc = parse_body('multipart/form-data; boundary="B"', body)
    assert doc == {
        "tag": ["one", "two"],
        "cv": {"filename": "cv.pdf", "content_type": "application/pdf", "size": 8},
    }


def test_multipart_preamble_is_skipped() -> None:
    """Text before the first boundary (RFC 2046's preamble) is not a part, and no error."""
    body = (
        b"This is a multi-part message in MIME format.\r\n"
        b'--B\r\nContent-Disposition: form-data; name="email"\r\n\r\na@example.com\r\n--B--\r\n'
    )
    assert parse_body("multipart/form-data; boundary=B", body) == {"email": "a@example.com"}


def test_form_body_with_raw_utf8_is_taken() -> None:
    """Raw UTF-8 in a form body (not percent-escaped) is decoded like its escaped form."""
    raw = parse_body("application/x-www-form-urlencoded", "name=José+Núñez&c=%C3%A9".encode())
    assert raw == {"name": "José Núñez", "c": "é"}
    latin = parse_body("application/x-www-form-urlencoded; charset=iso-8859-1", b"name=Jos\xe9")
    assert latin == {"name": "José"}


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("multipart/form-data", b"--B\r\n\r\n"),
        ("multipart/form-data; boundary=B", b"garbage without boundaries"),
        (
            "multipart/form-data; boundary=B",
            b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n",
        ),
        (
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nx',
        ),
        ("application/x-www-form-urlencoded", b"a=\xff\xfe"),
        ("application/x-www-form-urlencoded", b"a=%ff%fe"),
        ("application/x-www-form-urlencoded; charset=nonsense", b"a=%41"),
        ("application/x-www-form-urlencoded; charset=undefined", b"a=%41"),
        ("application/x-www-form-urlencoded; charset=punycode", b"a=%E9"),
    ],
)
def test_broken_forms_are_a_400(ctype: str, body: bytes) -> None:
    """Malformed multipart and undecodable form bodies answer 400 rather than crash."""
    with pytest.raises(BodyError) as info:
        parse_body(ctype, body)
    assert info.value.status == 400


def test_long_digit_runs_inside_strings_keep_the_orjson_path() -> None:
    """Ids with 19+ digits inside strings parse with orjson and are marked as the body."""
    body = b'{"id":"bench000000000000000000001","n":"x-12345678901234567890","k":1}'
    parsed = parse("application/json", body)
    assert parsed.document == orjson.loads(body)
    assert parsed.is_body


@pytest.mark.parametrize(
    "body",
    [
        b"[12345678901234567890123]",
        b'{"a":-9223372036854775809}',
        b'{"a": 1,\n"b":\t99999999999999999999}',
        b"[1, 1e-12345678901234567890]",
        b"12345678901234567890123",
        b'{"s":"text 1234567890123456789", "big": 123456789012345678901}',
    ],
)
def test_big_numbers_leave_the_body_unmarked(body: bytes) -> None:
    """Numbers with 19+ digits (or exponents) take the exact stdlib path, left unmarked."""
    parsed = parse("application/json", body)
    assert not parsed.is_body
    assert parsed.document == parse_body("application/json", body)


def test_only_verbatim_json_is_marked() -> None:
    """Form and multipart documents are never marked as the body; JSON ones are."""
    assert parse("application/json; charset=utf-8", b'{"a":1}') == Parsed({"a": 1}, True)
    assert parse(None, b"[1]").is_body
    assert parse("application/x-www-form-urlencoded", b"a=1") == Parsed({"a": "1"}, False)


def test_content_type_cache_keeps_parameters() -> None:
    """A Content-Type seen before is still read with its charset (the cache keeps params)."""
    body = b"a=%E9"
    for _ in range(2):
        assert parse("application/x-www-form-urlencoded; charset=latin-1", body).document == {
            "a": "é"
        }


def test_a_form_of_too_many_fields_says_so() -> None:
    """More fields than MAX_FIELDS is a 400 that says why (it said "cannot be decoded
    (ValueError)"); exactly MAX_FIELDS is read."""
    from hub.sources.bodies import MAX_FIELDS

    with pytest.raises(BodyError, match=f"more than {MAX_FIELDS} fields"):
        parse_body("application/x-www-form-urlencoded", b"&".join([b"a=1"] * (MAX_FIELDS + 1)))
    doc = parse_body("application/x-www-form-urlencoded", b"&".join([b"a=1"] * MAX_FIELDS))
    assert doc == {"a": ["1"] * MAX_FIELDS}


def test_a_multipart_body_of_too_many_parts_is_refused_at_the_part_past_the_limit() -> None:
    """A part past MAX_FIELDS is refused as it begins: what follows it is not read (a body
    cut off after it says "more than ... parts", not that it ends early; it was parsed in
    full first, 0.14 s of the event loop for a 1 MiB body of tiny parts, 9 s for 64 MiB).
    Exactly MAX_FIELDS parts are read."""
    from hub.sources.bodies import MAX_FIELDS

    part = b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
    kind = "multipart/form-data; boundary=B"
    for body in (part * (MAX_FIELDS + 1) + b"--B--\r\n", part * (MAX_FIELDS + 1) + b"--B\r\nx"):
        with pytest.raises(BodyError, match=f"^multipart body has more than {MAX_FIELDS} parts$"):
            parse_body(kind, body)
    assert parse_body(kind, part * MAX_FIELDS + b"--B--\r\n") == {"a": ["1"] * MAX_FIELDS}


@pytest.mark.parametrize(
    ("body", "byte", "offset"),
    [
        (b'{"name": "Jos\xe9"}', "0xe9", 13),
        (b"\xff\xfe{}", "0xff", 0),
        (b'{"n": 12345678901234567890123, "name": "Ren\xe9e"}', "0xe9", 43),
    ],
)
def test_json_that_is_not_utf8_says_so_and_where(body: bytes, byte: str, offset: int) -> None:
    """A Latin-1 body was "not valid JSON (str is not valid UTF-8: surrogates not allowed:
    line 1 column 1 (char 0))", orjson's decoder's words (or Python's codec's, with a long
    number); the reason now names the byte, its offset, and that JSON is UTF-8."""
    with pytest.raises(BodyError) as info:
        parse_body("application/json", body)
    assert info.value.status == 400
    assert info.value.reason == (
        f"body is not valid UTF-8 (byte {byte} at offset {offset}); JSON must be sent as "
        "UTF-8, not Latin-1 or another charset"
    )


@pytest.mark.parametrize(
    ("ctype", "sent"),
    [
        ("text/plain", "it was sent as text/plain, which the hub reads only as JSON"),
        (
            "Text/Plain; charset=utf-8",
            "it was sent as text/plain, which the hub reads only as JSON",
        ),
        (None, "it was sent without a Content-Type, which the hub reads only as JSON"),
    ],
)
def test_a_loosely_typed_body_that_is_not_json_says_what_is_accepted(
    ctype: str | None, sent: str
) -> None:
    """text/plain and no Content-Type are read as JSON (senders that mislabel JSON), and a
    body of those holding JSON is still taken; one that is not JSON said only "not valid
    JSON". Now it also says what it was sent as and what the hub accepts. A JSON type's
    reason is unchanged."""
    assert parse_body(ctype, b'{"a": 1}') == {"a": 1}
    for body in (b"email=a@example.com", b""):
        with pytest.raises(BodyError) as info:
            parse_body(ctype, body)
        assert info.value.status == 400
        assert sent in info.value.reason
        assert info.value.reason.endswith(
            "the hub accepts application/json, application/x-www-form-urlencoded or "
            "multipart/form-data, named in the Content-Type"
        )
    with pytest.raises(BodyError) as info:
        parse_body("application/json", b"email=a@example.com")
    assert "Content-Type" not in info.value.reason


def test_python_multiparts_own_warnings_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The parser warned on python-multipart's logger before each error it raised; the 400
    carries those words, so the parser's warnings are dropped."""
    body = b'--YY\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--YY--\r\n'
    with caplog.at_level(logging.DEBUG), pytest.raises(BodyError) as info:
        parse_body("multipart/form-data; boundary=XX", body)
    assert "Expected boundary character" in info.value.reason
    assert caplog.records == []


@pytest.mark.parametrize(
    ("ctype", "body", "reason"),
    [
        (
            "application/x-www-form-urlencoded",
            "x=é&name=Jos%E9".encode(),
            "form body is not valid UTF-8 (byte 0xe9 at offset 13, escaped as %E9)",
        ),
        (
            "application/x-www-form-urlencoded",
            b"a=%C3=%A9",
            "form body is not valid UTF-8 (byte 0xc3 at offset 2, escaped as %C3)",
        ),
        (
            "application/x-www-form-urlencoded; charset=utf-16",
            b"a=%41",
            "form body is not valid utf-16 (byte 0x31 at offset 4)",
        ),
    ],
)
def test_an_undecodable_form_body_names_the_charset_byte_and_offset(
    ctype: str, body: bytes, reason: str
) -> None:
    """Each was "form body cannot be decoded (UnicodeDecodeError)". The offset is in the body
    as sent: past raw UTF-8 before the escape (é is two bytes), at the escape that starts the
    bad sequence, and at the byte a named charset cannot take."""
    with pytest.raises(BodyError) as info:
        parse_body(ctype, body)
    assert info.value.status == 400
    assert info.value.reason.startswith(reason + "; ")
