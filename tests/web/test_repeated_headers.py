"""A header a sender repeats, over HTTP: the same value twice is that value; a Content-Type
with several different values is a 415 that says so."""

from __future__ import annotations

from tests.sources import fixtures as fx
from tests.web.conftest import Hub


def _twice(headers: dict[str, str], *names: str) -> list[tuple[str, str]]:
    """``headers`` as a list, with each of ``names`` sent twice (same value)."""
    pairs = list(headers.items())
    pairs += [(k, v) for k, v in headers.items() if k.lower() in names]
    return pairs


def test_a_header_sent_twice_with_the_same_value_is_taken_once(hub: Hub) -> None:
    """A Zapier or Make author adds the Content-Type the tool sends already; a proxy repeats
    a signature or a key. Joined as "application/json, application/json", the Content-Type
    was a 415 telling the sender to send application/json; a repeated Typeform-Signature or
    X-Api-Key was a 401 (the log: "does not match the body")."""
    typeform = fx.load("typeform", "form_response_full", "typeform")
    make = fx.load("generic_json", "make_http_module_lead", "make")
    for delivery, names in (
        (typeform, ("content-type", "typeform-signature")),
        (make, ("content-type", "x-api-key")),
    ):
        headers = _twice(delivery.headers, *names)
        assert sum(k.lower() == "content-type" for k, _ in headers) == 2
        answer = hub.client.post(delivery.path, content=delivery.body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted"
        again = hub.send(delivery)  # the sender's retry, each header once: the same delivery
        assert again.status_code == 200, again.text
        assert again.json() == {"status": "duplicate", "id": answer.json()["id"]}
    events = hub.events()
    assert [e.endpoint for e in events] == ["typeform", "make"]
    assert events[0].headers["content-type"] == "application/json"


def test_a_content_type_sent_with_different_values_is_told_so(hub: Hub) -> None:
    """Two different values joined read "unsupported content type 'application/json,
    application/json'; send application/json, ...": the sender did. Now the 415 says the
    header names several types, and to send it once."""
    delivery = fx.load("generic_json", "make_http_module_lead", "make")
    headers = [(k, v) for k, v in delivery.headers.items() if k.lower() != "content-type"]
    for types in (
        ("application/json", "application/json; charset=utf-8"),
        ("application/json", "text/plain"),
    ):
        sent = headers + [("Content-Type", t) for t in types]
        answer = hub.client.post(delivery.path, content=delivery.body, headers=sent)
        assert answer.status_code == 415
        assert answer.json()["error"] == (
            f"Content-Type names several types ({', '.join(types)!r}), as when the header is "
            "sent more than once with different values; send it once, as one of "
            "application/json, application/x-www-form-urlencoded or multipart/form-data"
        )
    assert hub.events() == []


def test_standard_webhooks_signatures_in_several_header_lines_are_each_read(hub: Hub) -> None:
    """Standard Webhooks signatures sent as several ``webhook-signature`` lines (a key being
    rotated) are joined with ", "; the comma then ended the first line's signature, which
    no longer matched: a delivery signed only there was a 401."""
    delivery = fx.load("generic_json", "standard_webhooks_lead_created", "standard")
    entries = delivery.headers["webhook-signature"].split()
    others = [(k, v) for k, v in delivery.headers.items() if k.lower() != "webhook-signature"]
    refused = 0
    for order in (entries, entries[::-1]):
        sent = others + [("webhook-signature", entry) for entry in order]
        answer = hub.client.post(delivery.path, content=delivery.body, headers=sent)
        assert answer.status_code == 200, (order, answer.text)
        wrong = others + [("webhook-signature", entry.replace("v1,", "v1,x")) for entry in order]
        refused += (
            hub.client.post(delivery.path, content=delivery.body, headers=wrong).status_code == 401
        )
    assert refused == 2
    assert len(hub.events()) == 1
