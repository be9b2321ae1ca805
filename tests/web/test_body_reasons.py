"""What a sender is told, over HTTP, about a body the hub cannot read, and what is logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from hub.logs import StdlibBridge
from tests.support.logs import logged
from tests.web.conftest import Hub

ACCEPTED = "application/json, application/x-www-form-urlencoded or multipart/form-data"


@pytest.fixture
def bridged() -> Iterator[None]:
    """Other libraries' records reach structlog, as ``leadhub serve`` sets them up."""
    root = logging.getLogger()
    handler, level = StdlibBridge(), root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_latin1_json_body_is_told_it_is_not_utf8_and_where(hub: Hub) -> None:
    """A Latin-1 "José" was a 400 "str is not valid UTF-8: surrogates not allowed: line 1
    column 1 (char 0)", orjson's decoder speaking, pointing at the start; or, with a long
    number in the body, Python's codec message. Now both say which byte, where, and that
    JSON is UTF-8."""
    for body, offset in (
        (b'{"name":"Jos\xe9"}', 12),
        (b'{"n":12345678901234567890123,"name":"Jos\xe9"}', 40),
    ):
        answer = hub.client.post(
            "/hooks/open", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            f"body is not valid UTF-8 (byte 0xe9 at offset {offset}); JSON must be sent as "
            "UTF-8, not Latin-1 or another charset"
        )
    assert hub.events() == []


def test_a_json_body_after_a_byte_order_mark_is_taken(hub: Hub) -> None:
    """A UTF-8 byte order mark before the JSON (.NET's UTF-8 encoder writes one, so does
    Notepad in a payload posted with curl --data-binary @lead.json) was a 400 "UTF-8 byte
    order mark (BOM) is not supported", and a sender that does not retry a 4xx lost every
    lead. RFC 8259 lets a reader ignore it: the lead is stored, its document the JSON after
    the mark. After the mark, a body that is no JSON is still
    the 400 it would be without it."""
    lead = b'{"email":"ann@example.com","name":"Ann \xc3\xa9","n":12345678901234567890123}'
    short = lead.replace(b"12345678901234567890123", b"7")  # (read by orjson, not json)
    for body in (b"\xef\xbb\xbf" + lead, b"\xef\xbb\xbf" + short):
        answer = hub.client.post(
            "/hooks/open", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 200, answer.text
    documents = sorted((e.document for e in hub.events()), key=lambda d: str(d["n"]))
    assert documents == [
        {"email": "ann@example.com", "n": "12345678901234567890123", "name": "Ann é"},
        {"email": "ann@example.com", "n": 7, "name": "Ann é"},
    ]
    refused = hub.client.post(
        "/hooks/open", content=b"\xef\xbb\xbf{bad", headers={"content-type": "application/json"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("body is not valid JSON (")
    assert len(hub.events()) == 2


def test_json_after_a_byte_order_mark_sent_as_a_form_is_read_as_json(hub: Hub) -> None:
    """``curl -d @lead.json`` posts a file as a form; the hub reads a form body that is JSON
    as JSON. A file saved by Notepad starts with a byte order mark: that body was read as a
    form of one key (the JSON text), and its event went dead for want of every field."""
    answer = hub.client.post(
        "/hooks/open",
        content=b'\xef\xbb\xbf{"email":"ann@example.com"}\r\n',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    assert [e.document for e in hub.events()] == [{"email": "ann@example.com"}]


def test_a_text_plain_body_that_is_not_json_says_what_the_hub_accepts(hub: Hub) -> None:
    """text/plain (and no Content-Type) is read as JSON for senders that mislabel it: such a
    body that holds JSON is still taken. One that does not was told only "not valid JSON";
    now it is told what it was sent as and what the hub accepts."""
    taken = hub.client.post(
        "/hooks/open", content=b'{"email":"a@example.com"}', headers={"content-type": "text/plain"}
    )
    assert taken.status_code == 200, taken.text
    for headers, sent in (
        ({"content-type": "text/plain; charset=utf-8"}, "sent as text/plain, which"),
        ({}, "sent without a Content-Type, which"),
    ):
        answer = hub.client.post("/hooks/open", content=b"email=a@example.com", headers=headers)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error.startswith("body is not valid JSON (")
        assert sent in error and f"the hub accepts {ACCEPTED}" in error
    assert len(hub.events()) == 1


@pytest.mark.usefixtures("bridged")
def test_a_bad_multipart_body_logs_only_the_hubs_400_line(hub: Hub) -> None:
    """python-multipart warned on its own logger ("Expected boundary character 88, got 89
    at index 4") before raising: a line naming no endpoint or delivery beside the hub's
    own delivery_received, which already carries those words. Now only the hub's line."""
    bodies = (
        b'--YY\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--YY--\r\n',
        b"--XX\r\nCont ent: x\r\n\r\n1\r\n--XX--\r\n",
    )
    with capture_logs() as logs:
        for body in bodies:
            answer = hub.client.post(
                "/hooks/open",
                content=body,
                headers={"content-type": "multipart/form-data; boundary=XX"},
            )
            assert answer.status_code == 400
            assert answer.json()["error"].startswith("multipart body cannot be parsed (")
        logged(logs, "delivery_received", len(bodies))  # (written after the answers)
    assert [(e["event"], e.get("endpoint"), e.get("status")) for e in logs] == [
        ("delivery_received", "open", 400)
    ] * len(bodies)
    assert logs[0]["detail"].startswith("multipart body cannot be parsed (Expected boundary")
