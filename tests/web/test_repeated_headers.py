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
