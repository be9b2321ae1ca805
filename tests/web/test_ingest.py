"""Webhook ingest over real HTTP: statuses, answers, what is stored and what is not."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from structlog.testing import capture_logs

from hub.sources.bodies import parse
from tests.sources import fixtures as fx
from tests.support.logs import logged
from tests.web.conftest import Hub


def as_stored(delivery: fx.Delivery) -> bytes:
    """The body of ``delivery`` as the hub stores it: as received, but for Google's
    google_key (a credential, stored as "[redacted]")."""
    if delivery.endpoint != "google":
        return delivery.body
    key = json.loads(delivery.body)["google_key"]
    return delivery.body.replace(json.dumps(key).encode(), b'"[redacted]"')


@pytest.mark.parametrize("delivery", fx.accepted(), ids=lambda d: d.name)
def test_every_fixture_is_accepted_and_stored(hub: Hub, delivery: fx.Delivery) -> None:
    """Each shipped fixture, sent with its own headers, answers 200 accepted and is stored raw
    (a credential inside the body excepted: Google's key)."""
    response = hub.send(delivery)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    events = hub.events()
    assert events and answer["id"] == events[0].id
    assert all(e.endpoint == delivery.endpoint for e in events)
    assert all(e.body == as_stored(delivery) for e in events)
    assert all(e.received_at == fx.STANDARD_TIME for e in events)


#: Fixtures of one lead whose document is the whole body (Facebook's and HubSpot apps' are
#: parts of a batch).
SINGLE_LEAD = [d for d in fx.accepted() if d.endpoint not in ("facebook", "hubspot-crm")]


@pytest.mark.parametrize("delivery", SINGLE_LEAD, ids=lambda d: d.name)
def test_stored_document_is_the_full_parse_of_the_body(
    hub: Hub, delivery: fx.Delivery, tmp_path: Path
) -> None:
    """Skimmed or parsed at ingest, a single-lead event reads back as the parsed body.

    Single-lead JSON senders without a dedupe path (Typeform here) are only skimmed at
    ingest: no document is stored, and the dispatcher's read of the row parses the body.
    """
    hub.send(delivery)
    events = hub.events()
    assert len(events) == 1
    content_type = delivery.lower_headers().get("content-type")
    assert events[0].document == parse(content_type, as_stored(delivery)).document
    with sqlite3.connect(tmp_path / "data" / "hub.db") as conn:
        (stored,) = conn.execute("SELECT document FROM events").fetchone()
    if delivery.endpoint == "typeform":
        assert stored is None  # skimmed: the body is the document


REDELIVERIES = [
    (
        ("facebook", "leadgen_notification_single", "facebook", ""),
        ("facebook", "leadgen_notification_single_retry_duplicate", "facebook", ""),
    ),
    (
        ("google_ads", "lead_full", "google", ""),
        ("google_ads", "lead_full_duplicate_delivery", "google", ""),
    ),
    (
        ("typeform", "form_response_full", "typeform", ""),
        ("typeform", "form_response_full_redelivery", "typeform", ""),
    ),
    (
        ("zapier", "post_json_flat", "zapier-json", ""),
        ("zapier", "post_json_flat_replayed_duplicate", "zapier-json", ""),
    ),
    (
        ("generic_json", "standard_webhooks_lead_created", "standard", ""),
        ("generic_json", "standard_webhooks_lead_created", "standard", ""),
    ),
    (
        ("zapier", "post_form_default", "zapier-form", ""),
        ("zapier", "post_form_default", "zapier-form", ""),
    ),
]


@pytest.mark.parametrize(("first", "again"), REDELIVERIES, ids=lambda r: r[1])
def test_redelivery_is_a_duplicate_and_stores_nothing(
    hub: Hub, first: tuple[str, ...], again: tuple[str, ...]
) -> None:
    """A redelivered fixture answers duplicate with the first event's id and adds no event."""
    original = hub.send(fx.load(*first)).json()
    before = hub.events()
    response = hub.send(fx.load(*again))
    assert response.status_code == 200
    assert response.json() == {"status": "duplicate", "id": original["id"]}
    assert [e.id for e in hub.events()] == [e.id for e in before]


def test_the_google_key_is_not_stored(hub: Hub) -> None:
    """Google's google_key authenticates a delivery at ingest and is never needed again: the
    stored body (and so the document) holds "[redacted]" in its place, every other byte as
    received. It was stored, printed by leadhub events --json and kept in every backup, where
    a credential header never is."""
    d = fx.load("google_ads", "lead_full", "google")
    key = json.loads(d.body)["google_key"]
    assert hub.send(d).status_code == 200
    (event,) = hub.events()
    assert key.encode() not in event.body
    assert event.body == d.body.replace(json.dumps(key).encode(), b'"[redacted]"')
    assert event.document["google_key"] == "[redacted]"
    assert event.delivery_id == json.loads(d.body)["lead_id"]


def test_facebook_batch_stores_one_event_per_leadgen_change(hub: Hub) -> None:
    """A Facebook POST with three leadgen changes stores three events and lists their ids."""
    d = fx.load("facebook", "leadgen_notification_batched_mixed_types", "facebook")
    answer = hub.send(d).json()
    events = hub.events()
    assert len(events) == 3
    assert answer == {"status": "accepted", "id": events[0].id, "ids": [e.id for e in events]}
    assert [e.delivery_id for e in events] == [
        "1287634509898765",
        "1287634509800001",
        "5412398761234567",
    ]
    assert events[2].document["leadgen_id"] == "5412398761234567"
    # redelivering the batch is a duplicate as a whole
    assert hub.send(d).json()["status"] == "duplicate"
    assert len(hub.events()) == 3


def test_facebook_batch_with_one_known_lead_stores_only_the_new_ones(hub: Hub) -> None:
    """When part of a batch was already stored, only the new leads are added and counted."""
    hub.send(fx.load("facebook", "leadgen_notification_single", "facebook"))
    body = fx.load("facebook", "leadgen_notification_batched_mixed_types", "facebook").body
    # same leadgen_id as the single fixture inside a two-change batch, signed afresh
    import hashlib
    import hmac

    single = orjson.loads(fx.load("facebook", "leadgen_notification_single", "facebook").body)
    batch = orjson.loads(body)
    batch["entry"][0]["changes"][1] = single["entry"][0]["changes"][0]
    raw = orjson.dumps(batch)
    sig = "sha256=" + hmac.new(fx.FB_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = hub.client.post(
        "/hooks/facebook",
        content=raw,
        headers={"content-type": "application/json", "x-hub-signature-256": sig},
    )
    answer = response.json()
    assert answer["status"] == "accepted"
    assert len(answer["ids"]) == 2 and answer["duplicates"] == 1
    assert len(hub.events()) == 3


def test_facebook_notification_without_leadgen_is_accepted_with_no_ids(hub: Hub) -> None:
    """A signed page notification without leadgen changes answers accepted with no events."""
    import hashlib
    import hmac

    raw = b'{"object":"page","entry":[{"id":"1","time":2,"changes":[{"field":"feed","value":{}}]}]}'
    sig = "sha256=" + hmac.new(fx.FB_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = hub.client.post("/hooks/facebook", content=raw, headers={"x-hub-signature-256": sig})
    assert (response.status_code, response.json()) == (200, {"status": "accepted", "ids": []})
    assert hub.events() == []


def test_facebook_batch_with_a_malformed_leadgen_change_keeps_the_good_ones(hub: Hub) -> None:
    """A leadgen change without a ``value`` object (none, or not an object) is left out of
    its batch, the good changes stored, the ``delivery_received`` line a warning counting
    it; a batch with no good change is still a 400 naming the fault, nothing stored."""
    import hashlib
    import hmac

    def post(document: object) -> tuple[int, dict[str, object]]:
        raw = orjson.dumps(document)
        sig = "sha256=" + hmac.new(fx.FB_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"content-type": "application/json", "x-hub-signature-256": sig}
        response = hub.client.post("/hooks/facebook", content=raw, headers=headers)
        return response.status_code, response.json()

    good = {"field": "leadgen", "value": {"leadgen_id": "111", "form_id": "9"}}
    bad = [{"field": "leadgen"}, {"field": "leadgen", "value": "222"}]
    changes = [bad[0], good, bad[1]]
    with capture_logs() as logs:
        mixed = post({"object": "page", "entry": [{"id": "1", "time": 2, "changes": changes}]})
        only_bad = post({"object": "page", "entry": [{"id": "1", "time": 3, "changes": bad}]})
        lines = logged(logs, "delivery_received", 2)  # (written after the answers)
    events = hub.events()
    assert mixed == (200, {"status": "accepted", "id": events[0].id, "ids": [events[0].id]})
    assert [e.delivery_id for e in events] == ["111"]
    assert only_bad == (400, {"error": "a leadgen change has no 'value' object"})
    assert (lines[0]["log_level"], lines[0]["outcome"]) == ("warning", "accepted")
    assert lines[0]["leadgen_malformed"] == 2 and "split_partial_miss" not in lines[0]
    assert (lines[1]["outcome"], len(hub.events())) == ("rejected", 1)


def test_facebook_handshake_over_http(hub: Hub) -> None:
    """GET with the right verify token echoes the challenge as text, which a browser must not
    sniff as HTML (nosniff); a wrong token gets 403 with a JSON reason."""
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": fx.FB_VERIFY_TOKEN,
    }
    ok = hub.client.get("/hooks/facebook", params=params)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["content-type"].startswith("text/plain")
    assert ok.headers["x-content-type-options"] == "nosniff"
    bad = hub.client.get("/hooks/facebook", params={**params, "hub.verify_token": "nope"})
    assert bad.status_code == 403 and bad.headers["x-content-type-options"] == "nosniff"
    assert "1158201444" not in bad.text
    # a short JSON reason, as every other refusal (it was the text "forbidden")
    assert bad.headers["content-type"].startswith("application/json")
    assert bad.json()["error"].startswith("subscription not verified: hub.mode must be")


def test_a_handshake_head_has_the_gets_headers(hub: Hub) -> None:
    """HEAD on a handshake answers GET's status and headers, Content-Length included, with
    no body (RFC 9110 9.3.2); it said Content-Length: 0 for a 10-byte challenge."""
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": fx.FB_VERIFY_TOKEN,
    }
    get = hub.client.get("/hooks/facebook", params=params)
    head = hub.client.head("/hooks/facebook", params=params)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"] == "10"
    assert head.headers["content-type"] == get.headers["content-type"]


def test_a_hubspot_batch_answers_every_new_event_id(hub: Hub) -> None:
    """Two contact.creation events in one signed HubSpot delivery are two events, both
    ids in the answer; sent again with a third, only the third is new."""

    def post(events: list[dict[str, object]]) -> object:
        return _hubspot_post(hub, json.dumps(events).encode())[1]

    def event(n: int) -> dict[str, object]:
        return {"eventId": n, "subscriptionType": "contact.creation", "objectId": 100 + n}

    first = post([event(1), event(2)])
    stored = [e.id for e in sorted(hub.events(), key=lambda e: e.id)]
    assert first == {"status": "accepted", "id": stored[0], "ids": stored}
    second = post([event(1), event(2), event(3)])
    (third,) = (e.id for e in hub.events() if e.id not in stored)
    assert second == {"status": "accepted", "id": third, "ids": [third], "duplicates": 2}


def _hubspot_post(hub: Hub, body: bytes) -> tuple[int, object]:
    """POST ``body`` to the HubSpot app endpoint, signed (v3) as HubSpot signs it."""
    import base64
    import hashlib
    import hmac

    stamp = str(int(fx.STANDARD_TIME * 1000))
    signed = b"POST" + fx.HUBSPOT_URL.encode() + body + stamp.encode()
    mac = hmac.new(fx.HUBSPOT_SECRET.encode(), signed, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "x-hubspot-request-timestamp": stamp,
        "x-hubspot-signature-v3": base64.b64encode(mac).decode(),
    }
    response = hub.client.post("/hooks/hubspot-crm", content=body, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "kind", ['["contact.creation"]', '{"type":"contact.creation"}', "7", "null"]
)
def test_a_hubspot_event_whose_type_is_not_text_is_dropped_never_a_500(hub: Hub, kind: str) -> None:
    """A signed HubSpot event whose ``subscriptionType`` is an array or an object is of no
    subscribed type: accepted and dropped like any other, as the event beside it is kept
    (a list is not hashable: the type check answered 500)."""
    body = (
        f'[{{"eventId":1,"subscriptionType":{kind},"objectId":5}},'
        '{"eventId":2,"subscriptionType":"contact.creation","objectId":6}]'
    ).encode()
    status, answer = _hubspot_post(hub, body)
    (event,) = hub.events()
    assert (status, answer) == (200, {"status": "accepted", "id": event.id, "ids": [event.id]})
    assert event.delivery_id == "contact.creation:6:2"


@pytest.mark.parametrize("object_id", ["{}", "[6]", "true", '""', "null"])
def test_a_hubspot_event_without_a_usable_object_id_is_a_400(hub: Hub, object_id: str) -> None:
    """A subscribed event's ``objectId`` names the CRM object read at dispatch: an object, an
    array, a boolean or an empty one is a 400 like a missing one, not an event that can
    only die at dispatch (``contact.creation:{}:1`` was stored)."""
    body = f'[{{"eventId":1,"subscriptionType":"contact.creation","objectId":{object_id}}}]'
    status, answer = _hubspot_post(hub, body.encode())
    assert (status, answer) == (400, {"error": "a contact.creation event has no 'objectId'"})
    assert hub.events() == []


def test_a_hubspot_batch_with_an_event_without_object_id_keeps_the_good_ones(hub: Hub) -> None:
    """A subscribed event without a usable ``objectId`` is left out of its batch, the good
    events stored, the ``delivery_received`` line a warning counting it: the whole batch was
    a 400, which HubSpot does not retry, and its good events were lost. A batch with no good
    subscribed event is still a 400 naming the fault, nothing stored."""

    def event(n: int, object_id: object) -> dict[str, object]:
        return {"eventId": n, "subscriptionType": "contact.creation", "objectId": object_id}

    bad = [{"eventId": 1, "subscriptionType": "contact.creation"}, event(2, "")]
    batch = [bad[0], event(3, 103), bad[1], event(4, 104)]
    with capture_logs() as logs:
        mixed = _hubspot_post(hub, json.dumps(batch).encode())
        only_bad = _hubspot_post(hub, json.dumps(bad).encode())
        lines = logged(logs, "delivery_received", 2)  # (written after the answers)
    events = sorted(hub.events(), key=lambda e: e.id)
    ids = [e.id for e in events]
    assert mixed == (200, {"status": "accepted", "id": ids[0], "ids": ids})
    assert [e.delivery_id for e in events] == ["contact.creation:103:3", "contact.creation:104:4"]
    assert only_bad == (400, {"error": "a contact.creation event has no 'objectId'"})
    assert (lines[0]["log_level"], lines[0]["outcome"]) == ("warning", "accepted")
    assert lines[0]["object_id_missing"] == 2 and "split_partial_miss" not in lines[0]
    assert (lines[1]["outcome"], len(hub.events())) == ("rejected", 2)


def test_a_large_batchs_line_lists_its_first_ids_and_counts_them_all(hub: Hub) -> None:
    """A batch of 1,000 leads (HubSpot's events here) logged every event id and delivery id
    in its ``delivery_received`` line, some 45 KB: log drivers cut a line at 16 KiB. The
    line lists the first 50 of each and counts the others; a batch of 50 lists them all."""

    def events(first: int, count: int) -> bytes:
        return json.dumps(
            [
                {"eventId": n, "subscriptionType": "contact.creation", "objectId": 10**12 + n}
                for n in range(first, first + count)
            ]
        ).encode()

    with capture_logs() as logs:
        small = _hubspot_post(hub, events(0, 50))
        large = _hubspot_post(hub, events(50, 1000))
        small_line, large_line = logged(logs, "delivery_received", 2)  # (after the answers)
    assert (small[0], large[0]) == (200, 200)
    stored = sorted(e.id for e in hub.events())
    assert small_line["event_ids"] == stored[:50] and len(small_line["delivery_ids"]) == 50
    assert "ids_left_out" not in small_line and "events" not in small_line
    assert large_line["event_ids"] == stored[50:100]
    assert large_line["delivery_ids"][0] == f"contact.creation:{10**12 + 50}:50"
    assert len(large_line["delivery_ids"]) == 50
    assert (large_line["events"], large_line["ids_left_out"]) == (1000, 950)
    assert len(orjson.dumps(large_line)) < 16 * 1024


def test_linkedin_challenge_over_http(hub: Hub) -> None:
    """LinkedIn's validation GET gets the code back with its HMAC as JSON; without a code,
    400; a notification is stored once per response and action, its repeat a duplicate."""
    import hashlib
    import hmac

    code = "890e4665-4dfe-4ab1-b689-ed553bceeed3"
    ok = hub.client.get("/hooks/linkedin", params={"challengeCode": code, "applicationId": "7"})
    mac = hmac.new(fx.LINKEDIN_SECRET.encode(), code.encode(), hashlib.sha256).hexdigest()
    assert (ok.status_code, ok.json()) == (200, {"challengeCode": code, "challengeResponse": mac})
    assert ok.headers["content-type"] == "application/json"
    assert hub.client.get("/hooks/linkedin").status_code == 400
    d = fx.load("linkedin", "lead_notification", "linkedin")
    forged = "hmacsha256=" + d.body.decode()
    forge = hub.client.get("/hooks/linkedin", params={"challengeCode": forged})
    assert (forge.status_code, forge.json()) == (400, {"error": "challengeCode is not a UUID"})
    d = fx.load("linkedin", "lead_notification", "linkedin")
    first = hub.client.post(d.path, content=d.body, headers=d.headers)
    again = hub.client.post(d.path, content=d.body, headers=d.headers)
    assert first.json()["status"] == "accepted"
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    assert len(hub.events()) == 1


@pytest.mark.parametrize("row", fx.SIGNED, ids=lambda r: f"{r[0]}/{r[1]}")
def test_tampered_or_unsigned_deliveries_get_a_bare_401(hub: Hub, row: tuple[str, ...]) -> None:
    """A flipped byte or a missing signature answers 401 with no detail and stores nothing."""
    d = fx.load(*row)
    body = bytearray(d.body)
    body[10] ^= 0x20
    tampered = hub.client.post(d.path, content=bytes(body), headers=d.headers)
    unsigned_headers = {k: v for k, v in d.headers.items() if k.lower() not in fx.SIGNATURE_HEADERS}
    unsigned = hub.client.post(d.path, content=d.body, headers=unsigned_headers)
    for response in (tampered, unsigned):
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}
    assert hub.events() == []


def test_facebook_reserialised_body_is_rejected_over_http(hub: Hub) -> None:
    """Facebook's body re-serialised from parsed JSON, with the original signature, gets 401."""
    d = fx.load("facebook", "leadgen_notification_single", "facebook")
    body = json.dumps(json.loads(d.body)).encode()  # Python's default separators add spaces
    assert body != d.body
    assert hub.client.post(d.path, content=body, headers=d.headers).status_code == 401


def test_wrong_tokens_and_google_keys_get_401(hub: Hub) -> None:
    """Google's wrong-key fixture and token endpoints without the right token answer 401."""
    wrong_key = fx.load("google_ads", "lead_wrong_google_key", "google")
    assert hub.send(wrong_key).status_code == 401
    jotform = fx.load("jotform", "submission_basic", "jotform", "token=wrong")
    assert hub.send(jotform).status_code == 401
    jotform = fx.load("jotform", "submission_basic", "jotform")
    assert hub.send(jotform).status_code == 401
    assert hub.events() == []


def test_status_codes_for_bad_requests(hub: Hub) -> None:
    """Unknown endpoint 404, wrong method 405, bad type 415, bad JSON 400, each with a reason."""
    cases = [
        (hub.client.post("/hooks/nope", content=b"{}"), 404),
        (hub.client.put("/hooks/open", content=b"{}"), 405),
        (hub.client.get("/hooks/open"), 405),
        (
            hub.client.post("/hooks/open", content=b"<a/>", headers={"content-type": "text/xml"}),
            415,
        ),
        (
            hub.client.post(
                "/hooks/open", content=b"{nope", headers={"content-type": "application/json"}
            ),
            400,
        ),
        (
            hub.client.post(
                "/hooks/open", content=b"", headers={"content-type": "application/json"}
            ),
            400,
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert hub.events() == []


def test_a_compressed_body_is_a_415_that_names_its_content_encoding(hub: Hub) -> None:
    """A body sent with Content-Encoding (gzip, say) was read as if plain: a 400 "not valid
    JSON" for the skimmed Typeform path and the parsed one alike. Now a 415 naming the
    encoding (after the signature, which covers the bytes as sent); identity is the body as
    it is."""
    import base64
    import gzip
    import hashlib
    import hmac

    plain = '{"event_id":"enc-1","form_response":{"form_id":"x"}}'
    packed = gzip.compress(plain.encode())
    mac = hmac.new(fx.TYPEFORM_SECRET.encode(), packed, hashlib.sha256).digest()
    signed = {**JSON, "typeform-signature": "sha256=" + base64.b64encode(mac).decode()}
    for path, headers in (("/hooks/typeform", signed), ("/hooks/open", JSON)):
        gzipped = {**headers, "content-encoding": "gzip"}
        answer = hub.client.post(path, content=packed, headers=gzipped)
        assert answer.status_code == 415, answer.text
        assert "Content-Encoding gzip" in answer.json()["error"]
    assert hub.events() == []
    identity = {**_typeform(plain), "content-encoding": "identity"}
    assert hub.client.post("/hooks/typeform", content=plain, headers=identity).status_code == 200


LONG = "12345678901234567890123"  # 23 digits: the exact (standard library) parse
DEEP = "[" * 300 + "]" * 300


def _typeform(body: str) -> dict[str, str]:
    import base64
    import hashlib
    import hmac

    mac = hmac.new(fx.TYPEFORM_SECRET.encode(), body.encode(), hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "typeform-signature": "sha256=" + base64.b64encode(mac).decode(),
    }


JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
#: Bodies a sender may post that no stored document can hold: too deep for orjson to write,
#: an unpaired surrogate escape or an infinite number (which only the exact parser of long
#: numbers let through). Each is a 400 for the sender, never the store's 503 or a 500.
UNSTORABLE = [
    ("open", "", JSON, '{"x":' + DEEP + "}"),
    ("open", "", JSON, '{"m":' + LONG + ',"x":' + DEEP + "}"),
    ("open", "", JSON, '{"email":"\\udc00","n":' + LONG + "}"),
    ("open", "", JSON, '{"m":' + LONG + ',"n":1e999}'),
    ("zapier-json", "", {**JSON, "x-api-key": fx.API_KEY}, '{"lead_id":{"a":' + DEEP + "}}"),
    (
        "google",
        "",
        JSON,
        '{"google_key":"\\ud800","lead_id":"1","n":' + LONG + "}",
    ),
    ("typeform", "", "typeform", '{"event_id":"\\ud800x","n":' + LONG + "}"),
    ("typeform", "", "typeform", '{"event_id":"e1","form_response":' + DEEP + "}"),
]


@pytest.mark.parametrize(
    ("endpoint", "query", "headers", "body"), UNSTORABLE, ids=lambda v: str(v)[:20]
)
def test_bodies_no_document_can_hold_are_a_400(
    hub: Hub, endpoint: str, query: str, headers: dict[str, str] | str, body: str
) -> None:
    """A JSON body nested deeper than 200 levels, holding a lone surrogate escape, or 1e999
    answers 400 with a reason, whichever parser read it, and stores nothing."""
    sent = _typeform(body) if headers == "typeform" else headers
    assert isinstance(sent, dict)
    response = hub.client.post(f"/hooks/{endpoint}{query}", content=body.encode(), headers=sent)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert hub.events() == []


def test_nesting_up_to_the_limit_is_stored(hub: Hub) -> None:
    """200 levels, and brackets inside strings however many, are a lead like any other; a
    form field holding deeper JSON is kept as its text."""
    body = '{"x":' + "[" * 199 + "]" * 199 + ',"s":"' + "[" * 500 + '"}'
    response = hub.client.post("/hooks/open", content=body.encode(), headers=JSON)
    assert response.status_code == 200, response.text
    (event,) = hub.events()
    assert event.document == orjson.loads(body)
    deep = '{"x":' + DEEP + "}"  # a form field holding deeper JSON stays the text it was
    form = ("data.json=" + quote(deep)).encode()
    response = hub.client.post(f"/hooks/unbounce?token={fx.URL_TOKEN}", content=form, headers=FORM)
    assert response.status_code == 200, response.text
    assert hub.events()[-1].document == {"data.json": deep}


def test_405_says_what_the_endpoint_takes_and_every_404_is_json(hub: Hub) -> None:
    """Allow lists GET and HEAD only where a handshake answers them; unknown paths, /hooks
    itself and a wrong method on a health route answer JSON too, not Starlette's text."""
    for method, path, allow in [
        ("GET", "/hooks/open", "POST"),
        ("PUT", "/hooks/open", "POST"),
        ("PUT", "/hooks/facebook", "POST, GET, HEAD"),
        ("DELETE", "/hooks/linkedin", "POST, GET, HEAD"),
    ]:
        response = hub.client.request(method, path)
        assert (response.status_code, response.headers["allow"]) == (405, allow), path
        assert response.json()["error"]
    for path in ("/hooks", "/nothing/here"):
        response = hub.client.post(path, content=b"{}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]
    wrong = hub.client.post("/healthz")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}  # Starlette's set order
    assert wrong.json() == {"error": "Method Not Allowed"}


def test_body_over_the_limit_is_a_413_declared_or_streamed(hub: Hub) -> None:
    """A body over max_body answers 413 whether Content-Length says so or it arrives chunked."""
    big = b'{"x":"' + b"a" * (1024 * 1024) + b'"}'
    declared = hub.client.post(
        "/hooks/open", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = hub.client.post(
        "/hooks/open", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert hub.events() == []
    small = hub.client.post(
        "/hooks/open", content=b'{"x":1}', headers={"content-type": "application/json"}
    )
    assert small.status_code == 200


def test_stored_headers_never_hold_credentials(hub: Hub) -> None:
    """Stored headers keep Content-Type, User-Agent and forwarding facts but no credentials."""
    d = fx.load("zapier", "post_form_default", "zapier-form")
    extra = {
        "X-Forwarded-For": "203.0.113.9",
        "Cookie": "session=abc",
        "X-Session-Token": "leak-me-not",
    }
    assert (
        hub.client.post(d.path, content=d.body, headers={**d.headers, **extra}).status_code == 200
    )
    s = fx.load("generic_json", "standard_webhooks_lead_created", "standard")
    assert hub.send(s).status_code == 200
    m = fx.load("generic_json", "make_http_module_lead", "make")
    assert hub.send(m).status_code == 200
    zapier, standard, make = hub.events()
    assert zapier.headers["content-type"] == "application/x-www-form-urlencoded"
    assert zapier.headers["user-agent"] == "Zapier"
    assert zapier.headers["x-forwarded-for"] == "203.0.113.9"
    assert standard.headers["webhook-id"] == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    everything = repr([e.headers for e in (zapier, standard, make)])
    for name in ("authorization", "cookie", "x-session-token", "webhook-signature", "x-api-key"):
        assert name not in everything
    for secret in ("aHVidXNlcjpodWJwYXNzLWV4YW1wbGU=", "leak-me-not", fx.API_KEY):
        assert secret not in everything


def test_store_failure_answers_503_and_recovers(hub: Hub) -> None:
    """When the database's directory vanishes, ingest answers 503; once back, it accepts again."""
    d = fx.load("typeform", "form_response_full", "typeform")
    moved = hub.db_dir.with_name("moved")
    os.rename(hub.db_dir, moved)
    try:
        response = hub.send(d)
        assert (response.status_code, response.json()) == (503, {"error": "store unavailable"})
    finally:
        os.rename(moved, hub.db_dir)
    assert hub.send(d).json()["status"] == "accepted"
    assert len(hub.events()) == 1


def test_a_store_that_is_down_is_logged_once_a_second_not_per_request(hub: Hub) -> None:
    """Every delivery to a failing store gets its 503, but ``store_enqueue_failed`` comes at
    most once a second for an endpoint and kind of error (a store that is down under load
    wrote thousands of them), and the next says how many went unlogged meanwhile."""
    d = fx.load("typeform", "form_response_full", "typeform")
    moved = hub.db_dir.with_name("moved")
    os.rename(hub.db_dir, moved)
    try:
        with capture_logs() as logs:
            for _ in range(4):
                assert hub.send(d).status_code == 503
            hub.clock.advance(1.0)
            assert hub.send(d).status_code == 503
    finally:
        os.rename(moved, hub.db_dir)
    failed = [e for e in logs if e["event"] == "store_enqueue_failed"]
    assert len(failed) == 2, failed
    assert "unlogged" not in failed[0] and failed[1]["unlogged"] == 3
    assert failed[0]["error"] == failed[1]["error"] and failed[0]["endpoint"] == "typeform"
    assert hub.send(d).json()["status"] == "accepted"


def test_the_first_delivery_taken_after_a_store_failure_says_the_store_is_back(
    hub: Hub,
) -> None:
    """After ``store_enqueue_failed`` (an error), the first delivery the store takes logs
    ``store_enqueue_recovered`` (a warning: how many were refused, for how long), once: a log
    filtered to warnings (and a PostgreSQL web instance's, where no writer of its own logs a
    recovery) ended on the failure, as if the store were still down."""
    d = fx.load("typeform", "form_response_full", "typeform")
    moved = hub.db_dir.with_name("moved")
    with capture_logs() as logs:
        os.rename(hub.db_dir, moved)
        try:
            for _ in range(3):
                assert hub.send(d).status_code == 503
            hub.clock.advance(2.0)
        finally:
            os.rename(moved, hub.db_dir)
        assert hub.send(d).json()["status"] == "accepted"
        assert hub.send(d).json()["status"] == "duplicate"
    told = [e for e in logs if e["event"] in ("store_enqueue_failed", "store_enqueue_recovered")]
    assert [e["event"] for e in told] == ["store_enqueue_failed", "store_enqueue_recovered"]
    recovered = told[1]
    assert (recovered["log_level"], recovered["failed"]) == ("warning", 3)
    assert recovered["seconds"] >= 2.0


def test_health_and_readiness(hub: Hub) -> None:
    """healthz is always 200; readyz is 503 while the store is unreachable and 200 after."""
    assert hub.client.get("/healthz").status_code == 200
    assert hub.client.get("/readyz").json() == {"status": "ready"}
    moved = hub.db_dir.with_name("moved")
    os.rename(hub.db_dir, moved)
    try:
        down = hub.client.get("/readyz")
        assert down.status_code == 503
        assert hub.client.get("/healthz").status_code == 200
    finally:
        os.rename(moved, hub.db_dir)
    assert hub.client.get("/readyz").status_code == 200


def test_a_form_body_after_a_byte_order_mark_keeps_its_first_key(hub: Hub) -> None:
    """A form body that starts with a UTF-8 byte order mark (as .NET's UTF8Encoding writes
    one) is stored with its first key as sent (``email``, not ``\\ufeffemail``, which
    ``$.email`` did not find); a UTF-16 body's mark is no part of it either."""
    sent = [
        (FORM, b"\xef\xbb\xbfemail=a%40example.com&name=Ann"),
        (
            {"content-type": f"{FORM['content-type']}; charset=utf-16-le"},
            "\ufeffemail=b".encode("utf-16-le"),
        ),
    ]
    for headers, body in sent:
        response = hub.client.post("/hooks/open", content=body, headers=headers)
        assert response.json()["status"] == "accepted", response.text
    documents = [e.document for e in hub.events()]
    assert documents == [{"email": "a@example.com", "name": "Ann"}, {"email": "b"}]
