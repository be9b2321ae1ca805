"""Google's key is checked before a form body is parsed, as every other sender's check runs on
the raw bytes: an unauthenticated mebibyte of percent-escapes costs the hub little, and holds
up no one; what the key check refuses, and takes, is as before."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from hub.config.models import GoogleOptions
from hub.secrets import Secret
from hub.sources.base import BodyError, Incoming, VerificationError
from hub.sources.bodies import parse
from hub.sources.google import GoogleSource
from tests.sources import fixtures as fx
from tests.web.conftest import Hub

FORM = "application/x-www-form-urlencoded"
#: A mebibyte of percent-escapes and, at its end, one that UTF-8 does not decode: parsing it
#: (and naming that escape in the 400) took about 0.1 s of the event loop here, 0.4-0.7 s on a
#: loaded machine; the body holds no google_key.
HOSTILE = b"notes=" + b"%41" * 349_000 + b"%E9"
#: The same with a google_key field that is not the key.
HOSTILE_KEYED = b"google_key=guess&" + HOSTILE
HOSTILE_COUNT = 20


def test_an_unauthenticated_form_is_refused_before_it_is_parsed(hub: Hub) -> None:
    """20 such bodies sent while a real delivery comes: each is refused 401 unauthorized (it
    was a 400 naming the bad escape, the body read whole for a sender that never showed the
    key), and the real delivery is taken. The 401 itself shows the body was not parsed: a
    parse would have refused the bad escape at its end first (400), as it did."""
    answers: list[httpx.Response] = []

    def hostile() -> None:
        with httpx.Client(base_url=hub.url, timeout=60) as client:
            for i in range(HOSTILE_COUNT):
                body = HOSTILE if i % 2 else HOSTILE_KEYED
                answers.append(client.post("/hooks/google", content=body, headers=_form()))

    good = fx.load("google_ads", "lead_full", "google")
    sender = threading.Thread(target=hostile)
    sender.start()
    taken = hub.client.post(good.path, content=good.body, headers=good.lower_headers())
    sender.join(timeout=120)
    assert taken.status_code == 200, taken.text
    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"error": "unauthorized"})
    ] * HOSTILE_COUNT
    assert len(hub.events()) == 1


def test_a_form_with_the_key_is_taken_and_a_bad_escape_beside_it_still_named(hub: Hub) -> None:
    """The key checked first takes a form that holds it, written any way the parser reads
    it (escaped, with '+', beside fields the check does not read), and the body is then read
    as before: a bad escape in a keyed body is still its 400."""
    key = "".join(f"%{b:02X}" for b in fx.GOOGLE_KEY.encode())
    taken = hub.client.post(
        "/hooks/google",
        content=f"lead_id=F1&g%6Fogle_key={key}&notes=a+b%2C+c".encode(),
        headers=_form(),
    )
    assert taken.status_code == 200, taken.text
    (event,) = hub.events()
    assert event.document == {"lead_id": "F1", "google_key": "[redacted]", "notes": "a b, c"}
    keyed = f"google_key={fx.GOOGLE_KEY}&".encode() + HOSTILE
    refused = hub.client.post("/hooks/google", content=keyed, headers=_form())
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("form body is not valid UTF-8 (byte 0xe9 at offset")


def _form() -> dict[str, str]:
    return {"content-type": FORM}


#: Forms the early check refuses, and what the full check (parse, then split) says of each.
REFUSED = [
    (b"email=a%40example.com", "missing or empty google_key in the body"),
    (b"google_key=&email=x", "missing or empty google_key in the body"),
    (b"google_key=k&google_key=k", "missing or empty google_key in the body"),
    (b"google_key=%5B1]", "missing or empty google_key in the body"),  # a list
    (b"google_key=wrong", "google_key does not match the endpoint's key"),
    (b"google%5Fkey=kk", "google_key does not match the endpoint's key"),
    (b"google+key=k", "missing or empty google_key in the body"),
    (b"Google_key=k", "missing or empty google_key in the body"),
]


@pytest.mark.parametrize(("body", "reason"), REFUSED)
def test_the_early_check_refuses_as_the_full_check_does(body: bytes, reason: str) -> None:
    source = GoogleSource(GoogleOptions(key=Secret("k")))
    request = Incoming("POST", {"content-type": FORM}, body, b"")
    with pytest.raises(VerificationError) as early:
        source.verify(request, 0.0)
    assert early.value.reason == reason
    with pytest.raises(VerificationError) as full:
        source.split(request, parse(FORM, body).document)
    assert full.value.reason == reason


#: Bodies the early check leaves to the full one (which may take them).
LEFT: list[tuple[bytes, str]] = [
    (b"google_key=k", FORM),
    (b"%67oogle_key=%6B", FORM),
    (b"\xef\xbb\xbfgoogle_key=k", FORM),  # a byte order mark before the first field
    (b'{"google_key":"k"}', FORM),  # JSON sent as a form: read as JSON
    ("google_key=k".encode("utf-16"), FORM + "; charset=utf-16"),  # (not ASCII's bytes)
    (b"google_key=k&" + b"a&" * 10_000, FORM),  # too many fields: the parser's 400
    (b'{"google_key":"k"}', "application/json"),
    (b'{"google_k\\u0065y":"k"}', "application/json"),
    (b'--B\r\nContent-Disposition: form-data; name="google_key"\r\n\r\nk\r\n--B--\r\n', ""),
]


@pytest.mark.parametrize(("body", "content_type"), LEFT)
def test_the_early_check_leaves_to_the_full_check_what_it_cannot_tell(
    body: bytes, content_type: str
) -> None:
    content_type = content_type or "multipart/form-data; boundary=B"
    source = GoogleSource(GoogleOptions(key=Secret("k")))
    request = Incoming("POST", {"content-type": content_type}, body, b"")
    source.verify(request, 0.0)  # no refusal
    try:
        document: Any = parse(content_type, body).document
    except BodyError:
        return  # (the parser's 400, as before)
    assert source.split(request, document)  # taken, as before


def test_a_compressed_body_is_left_to_ingests_415() -> None:
    source = GoogleSource(GoogleOptions(key=Secret("k")))
    headers = {"content-type": FORM, "content-encoding": "gzip"}
    source.verify(Incoming("POST", headers, b"\x1f\x8b\x08\x00", b""), 0.0)
    multipart = "multipart/form-data; boundary=B"
    with pytest.raises(VerificationError):
        source.verify(Incoming("POST", {"content-type": multipart}, b"--B--\r\n", b""), 0.0)
