"""What a sender is told, over HTTP, about a form or multipart body the hub cannot read:
which charset, which byte and where, in words rather than Python's numbers."""

from __future__ import annotations

import pytest

from tests.web.conftest import Hub

FORM = "application/x-www-form-urlencoded"
NO_CHARSET = (
    "UTF-8 is taken when the Content-Type names no charset: send UTF-8, or name the charset "
    "in the Content-Type"
)


def _post(hub: Hub, content_type: str, body: bytes) -> str:
    """The 400's reason for ``body`` posted to the open endpoint as ``content_type``."""
    answer = hub.client.post("/hooks/open", content=body, headers={"content-type": content_type})
    assert answer.status_code == 400, answer.text
    error: str = answer.json()["error"]
    return error


def test_a_form_body_its_charset_does_not_decode_says_which_byte_where(hub: Hub) -> None:
    """A Latin-1 form body ("Jos%E9", or José's raw byte) was a 400 "form body cannot be
    decoded (UnicodeDecodeError)": nothing said which charset, byte or place. Now it says
    all three, in the words a non-UTF-8 JSON body gets, and whether the charset was named;
    the same body named as Latin-1 is taken."""
    cases = [
        (FORM, b"email=a%40example.com&name=Jos%E9", "UTF-8", "0xe9", 30, ", escaped as %E9"),
        (FORM, "city=Zürich&name=Jos\xe9".encode("latin-1"), "UTF-8", "0xfc", 6, ""),
        (f"{FORM}; charset=utf-8", b"a=1&b=%C3%28", "utf-8", "0xc3", 6, ", escaped as %C3"),
        (f"{FORM}; charset=windows-1252", b"name=Jos\x81", "windows-1252", "0x81", 8, ""),
    ]
    for content_type, body, charset, byte, offset, how in cases:
        fix = (
            f"{charset} is the charset the Content-Type names: send that, or name the right one"
            if "charset" in content_type
            else NO_CHARSET
        )
        assert _post(hub, content_type, body) == (
            f"form body is not valid {charset} (byte {byte} at offset {offset}{how}); {fix}"
        )
    unknown = _post(hub, f"{FORM}; charset=klingon", b"a=1")
    assert (
        unknown == "form body's Content-Type names charset 'klingon', which the hub does not know"
    )
    taken = hub.client.post(
        "/hooks/open",
        content=b"email=a%40example.com&name=Jos%E9",
        headers={"content-type": f"{FORM}; charset=iso-8859-1"},
    )
    assert taken.status_code == 200, taken.text
    assert [e.document for e in hub.events()] == [{"email": "a@example.com", "name": "José"}]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b'--YY\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--YY--\r\n',
            "Expected boundary character 'X', got 'Y' at offset 2",
        ),
        (
            b"--XX\r\nCont ent: x\r\n\r\n1\r\n--XX--\r\n",
            "Found invalid character ' ' in header at offset 10",
        ),
        (
            b"preamble\r\n--XX\r\nN\xe9me: x\r\n\r\n1\r\n--XX--\r\n",
            "Found invalid character 0xe9 in header at offset 17",
        ),
        (
            b'--XX\r\nContent-Disposition: form-data; name="a"\rZ\r\n1\r\n--XX--\r\n',
            "Did not find LF character at end of header (found 'Z') at offset 47",
        ),
        (b"--XX\r\nA: b\r\n\r\x00", "Did not find LF at end of headers (found 0x00) at offset 13"),
        (b"--XXZ\r\n", "Did not find CR at end of boundary at offset 4"),
        (b"--XX\r\nA\\b: x\r\n", "Found invalid character '\\' in header at offset 7"),
    ],
)
def test_a_bad_multipart_body_names_bytes_as_characters_and_where(
    hub: Hub, body: bytes, reason: str
) -> None:
    """python-multipart names a byte by its number ("Expected boundary character 88, got 89
    at index 4", "found 90") and a place by its own index (past a preamble the hub cut off,
    or into the boundary): a sender read Python's numbers. Now the byte is shown as the
    character it is (or 0xNN) and the place as the offset in the body sent."""
    error = _post(hub, "multipart/form-data; boundary=XX", body)
    assert error == f"multipart body cannot be parsed ({reason})"
    assert hub.events() == []


def _multipart(value: bytes, part_type: bytes = b"") -> bytes:
    """A multipart body (boundary ``B``): an email part, then a name part holding ``value``
    (with the part headers ``part_type``)."""
    return (
        b'--B\r\nContent-Disposition: form-data; name="email"\r\n\r\na@example.com\r\n'
        b'--B\r\nContent-Disposition: form-data; name="name"\r\n'
        + part_type
        + b"\r\n"
        + value
        + b"\r\n--B--\r\n"
    )


def test_a_multipart_value_its_charset_does_not_decode_is_refused_not_mangled(hub: Hub) -> None:
    """A multipart text part was decoded as UTF-8 with replacement characters, whatever
    charset was named: a Latin-1 "José" was answered 200 and stored (and sent on) as
    "Jos\\ufffd". Now such a value is a 400 naming the field, the byte and where, as a form
    body's is; the charset the part's own Content-Type names, else the request's, is used."""
    latin = _multipart(b"Jos\xe9")
    error = _post(hub, "multipart/form-data; boundary=B", latin)
    assert error == (
        f"multipart field 'name' is not valid UTF-8 (byte 0xe9 at offset 3 of its value); "
        f"{NO_CHARSET}"
    )
    assert hub.events() == []
    for content_type, body in (
        ("multipart/form-data; boundary=B; charset=iso-8859-1", latin),
        (
            "multipart/form-data; boundary=B",
            _multipart(b"Ren\xe9", b"Content-Type: text/plain; charset=windows-1252\r\n"),
        ),
        ("multipart/form-data; boundary=B", _multipart("Zoë".encode())),
    ):
        answer = hub.client.post(
            "/hooks/open", content=body, headers={"content-type": content_type}
        )
        assert answer.status_code == 200, answer.text
    assert [e.document["name"] for e in hub.events()] == ["José", "René", "Zoë"]


def test_a_multipart_form_s_charset_field_names_its_text_parts_charset(hub: Hub) -> None:
    """RFC 7578 section 4.6: a ``_charset_`` field names the charset of the text parts that
    name none of their own (browsers send it). It was not read: a Latin-1 form saying so
    was a 400 "not valid UTF-8". A part's own charset still comes first; a charset the field
    names that the hub does not know, or that does not decode a part, is a 400 naming it."""

    def form(charset: bytes, name: bytes, own: bytes = b"") -> bytes:
        return (
            b'--B\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\n'
            + charset
            + b'\r\n--B\r\nContent-Disposition: form-data; name="name"\r\n'
            + own
            + b"\r\n"
            + name
            + b"\r\n--B--\r\n"
        )

    multipart = "multipart/form-data; boundary=B"
    for body in (
        form(b"iso-8859-1", b"Jos\xe9"),
        form(b"utf-16-le", "Zoë".encode("utf-16-le")),
        form(b"iso-8859-1", "Ren\u00e9".encode(), b"Content-Type: text/plain; charset=utf-8\r\n"),
    ):
        answer = hub.client.post("/hooks/open", content=body, headers={"content-type": multipart})
        assert answer.status_code == 200, answer.text
    stored = [(e.document["_charset_"], e.document["name"]) for e in hub.events()]
    assert stored == [("iso-8859-1", "José"), ("utf-16-le", "Zoë"), ("iso-8859-1", "René")]
    assert _post(hub, multipart, form(b"no-such-set", b"x")) == (
        "the form's _charset_ field names charset 'no-such-set', which the hub does not know"
    )
    assert _post(hub, multipart, form(b"utf-8", b"Jos\xe9")) == (
        "multipart field 'name' is not valid utf-8 (byte 0xe9 at offset 3 of its value); "
        "utf-8 is the charset the _charset_ field names: send that, or name the right one"
    )
    assert len(hub.events()) == 3


def test_a_field_that_decodes_to_an_unpaired_surrogate_is_a_400_not_a_500(hub: Hub) -> None:
    """UTF-7 (``+2DA-``) and ``unicode_escape`` (``\\ud800``) decode to an unpaired surrogate
    without an error, raw or percent-escaped, in a form body or a multipart part: the
    document could not be stored (orjson writes no such text) and each such delivery was a
    500 (``ingest_failed``; a 503 "store unavailable" with the in-process writer), which its
    sender retries for good. It is a 400 naming the field,
    the code point and the charset; nothing is stored, and a UTF-7 field that is text is
    taken."""
    part = (
        b'--b\r\nContent-Disposition: form-data; name="note"\r\n'
        b"Content-Type: text/plain; charset=utf-7\r\n\r\n+2DA-\r\n--b--\r\n"
    )
    cases = [
        (f"{FORM}; charset=utf-7", b"email=a%40b.c&name=+2DA-", "form body", "'name'", "utf-7"),
        (f"{FORM}; charset=utf-7", b"name=%2B2DA-", "form body", "'name'", "utf-7"),
        (f"{FORM}; charset=utf-7", b"+2DA-=1", "form body", "'\\ud830'", "utf-7"),
        (f"{FORM}; charset=unicode_escape", b"a=\\ud800", "form body", "'a'", "unicode_escape"),
        ("multipart/form-data; boundary=b", part, "multipart body", "'note'", ""),
    ]
    for content_type, body, what, field, charset in cases:
        code = "D800" if charset == "unicode_escape" else "D830"
        named = f" as {charset}" if charset else ""
        assert _post(hub, content_type, body) == (
            f"{what} field {field} decodes{named} to an unpaired surrogate (U+{code}), which is "
            "not text; send the body as UTF-8"
        )
    assert hub.events() == []
    taken = hub.client.post(
        "/hooks/open", content=b"name=Jos+AOk-", headers={"content-type": f"{FORM}; charset=utf-7"}
    )
    assert taken.status_code == 200, taken.text
    assert [e.document for e in hub.events()] == [{"name": "José"}]
