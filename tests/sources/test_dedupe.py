"""``dedupe:`` as a list of JSONPaths: a delivery id made of all their values.

Every endpoint here is a real file on disk read by the loader; deliveries go through
``hub.sources.delivery_ids`` as ingest runs it, and through the hub app over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.config import ConfigError, load
from hub.config.models import Endpoint
from hub.sources import Incoming, delivery_ids
from hub.sources.bodies import parse_body
from hub.sources.build import build_source
from hub.web.ingest import HookRoute
from tests.e2e.support import fixture
from tests.mappings.cases import DEMO_ENV, SHIPPED
from tests.web.conftest import running_hub

TOKEN = "dedupe-test-token"
WORKFLOW = """\
kind: endpoint
name: workflow
source: token
token: ${WORKFLOW_TOKEN}
dedupe: [$.vid, "$['form-submissions'][0]['conversion-id']"]
"""
HEAD = "kind: endpoint\nname: e\nsource: token\ntoken: x\n"
#: The HubSpot workflow fixture's contact id and form submission, as the delivery id.
WORKFLOW_ID = '["85203","1f3c8d2e-7a6b-4c59-9e21-3b8a7f0d4c11"]'


def _load(tmp_path: Path, text: str) -> dict[str, Endpoint]:
    (tmp_path / "endpoints.yaml").write_text(text)
    return dict(load(tmp_path, {"WORKFLOW_TOKEN": TOKEN, "TYPEFORM_SECRET": "s"}).endpoints)


def _ids(endpoint: Endpoint, body: bytes, content_type: str = "application/json") -> list[str]:
    """The delivery ids ingest gives ``body`` (verification left out: not what is tested)."""
    request = Incoming("POST", {"content-type": content_type}, body)
    splits = build_source(endpoint).split(request, parse_body(content_type, body))
    return delivery_ids(endpoint, splits, body)


def _workflow_body(**changes: Any) -> bytes:
    """The HubSpot workflow fixture, its first form submission's keys changed."""
    document = orjson.loads(fixture("hubspot", "workflow_contact")[0])
    document["form-submissions"][0].update(changes)
    return orjson.dumps(document)


def _hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def test_a_list_names_the_delivery_by_all_its_values_as_a_json_array(tmp_path: Path) -> None:
    """The id is each path's value, in order, as a JSON array of strings; a resend whose body
    differs elsewhere (a timestamp) gets the same id, another submission another id."""
    endpoint = _load(tmp_path, WORKFLOW)["workflow"]
    assert endpoint.dedupe is not None
    assert endpoint.dedupe.text == "[$.vid, $['form-submissions'][0]['conversion-id']]"
    body, _ = fixture("hubspot", "workflow_contact")
    assert _ids(endpoint, body) == [WORKFLOW_ID]
    assert _ids(endpoint, _workflow_body(timestamp=1762424771032)) == [WORKFLOW_ID]
    again = _ids(endpoint, _workflow_body(**{"conversion-id": "another-submission"}))
    assert again == ['["85203","another-submission"]']


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"a": "x,y", "b": "z"}, {"a": "x", "b": "y,z"}),  # a separator inside a value
        ({"a": 'x","y', "b": "z"}, {"a": "x", "b": 'y","z'}),  # JSON's own quote
        ({"a": "x|", "b": "y"}, {"a": "x", "b": "|y"}),
        ({"a": "x\\", "b": "y"}, {"a": "x", "b": "\\y"}),  # JSON's escape character
    ],
)
def test_the_parts_never_run_together(
    tmp_path: Path, first: dict[str, str], second: dict[str, str]
) -> None:
    """Two documents whose values differ never get one id, whatever the values hold."""
    endpoint = _load(tmp_path, HEAD + "dedupe: [$.a, $.b]\n")["e"]
    one, two = _ids(endpoint, orjson.dumps(first)), _ids(endpoint, orjson.dumps(second))
    assert one != two
    assert orjson.loads(one[0]) == [first["a"], first["b"]]


def test_values_are_their_text_as_with_one_path(tmp_path: Path) -> None:
    """A number and its text are one id (as with a single path); an object is its JSON with
    sorted keys; a path finding several values gives its first."""
    endpoint = _load(tmp_path, HEAD + 'dedupe: [$.n, $.o, "$.l[*]", $.vid, $.c]\n')["e"]
    base = {"vid": 1, "c": "c", "o": {"b": 1, "a": 2}}
    expected = ['["7","{\\"a\\":2,\\"b\\":1}","x","1","c"]']
    assert _ids(endpoint, orjson.dumps({**base, "n": 7, "l": ["x", "y"]})) == expected
    assert _ids(endpoint, orjson.dumps({**base, "n": "7", "l": [None, "x"]})) == expected


@pytest.mark.parametrize(
    "conversion",
    [
        pytest.param({"conversion-id": None}, id="null"),
        pytest.param({"conversion-id": ""}, id="empty"),
        pytest.param({"conversion-id": False}, id="boolean"),
        pytest.param({"other": "no conversion-id"}, id="absent"),
    ],
)
def test_a_path_that_finds_no_id_names_the_delivery_as_a_single_path_does(
    tmp_path: Path, conversion: dict[str, Any]
) -> None:
    """A path that finds nothing (or null, empty text, a boolean) gives the list no id, as a
    single path that finds nothing gives none: the delivery is named by the sender's id
    when it has one (Typeform's event_id), else by the body's hash, never by the other
    parts alone."""
    endpoints = _load(
        tmp_path,
        WORKFLOW
        + "---\nkind: endpoint\nname: single\nsource: token\ntoken: x\n"
        + "dedupe: \"$['form-submissions'][0]['conversion-id']\"\n"
        + "---\nkind: endpoint\nname: typeform\nsource: typeform\nsecret: ${TYPEFORM_SECRET}\n"
        + "dedupe: [$.vid, \"$['form-submissions'][0]['conversion-id']\"]\n",
    )
    document = orjson.loads(fixture("hubspot", "workflow_contact")[0])
    document["form-submissions"] = [conversion]
    body = orjson.dumps(document)
    assert _ids(endpoints["workflow"], body) == [_hash(body)]
    assert _ids(endpoints["single"], body) == [_hash(body)]
    with_event_id = orjson.dumps({**document, "event_id": "01JBQ7ZK3M"})
    assert _ids(endpoints["typeform"], with_event_id) == ["01JBQ7ZK3M"]
    # ...and with every path finding its value, the list names it, not the sender's id
    document["form-submissions"] = [{"conversion-id": "c-1"}]
    with_event_id = orjson.dumps({**document, "event_id": "01JBQ7ZK3M"})
    assert _ids(endpoints["typeform"], with_event_id) == ['["85203","c-1"]']


def test_a_list_of_one_path_is_that_path(tmp_path: Path) -> None:
    """``dedupe: [$.id]`` names a delivery exactly as ``dedupe: $.id`` does."""
    endpoints = _load(
        tmp_path,
        "kind: endpoint\nname: one\nsource: token\ntoken: x\ndedupe: [$.id]\n---\n"
        "kind: endpoint\nname: bare\nsource: token\ntoken: x\ndedupe: $.id\n",
    )
    body = b'{"id": 42}'
    assert _ids(endpoints["one"], body) == _ids(endpoints["bare"], body) == ["42"]


def test_a_list_on_a_typeform_endpoint_is_not_skimmed(tmp_path: Path) -> None:
    """The store's skim reads one top-level key (Typeform's event_id) without parsing; with
    a list the id needs every path, so the body takes the full parse. Without a dedupe the
    skim is still used."""
    endpoints = _load(
        tmp_path,
        "kind: endpoint\nname: tf\nsource: typeform\nsecret: ${TYPEFORM_SECRET}\n"
        "dedupe: [$.event_id, $.form_response.token]\n---\n"
        "kind: endpoint\nname: plain\nsource: typeform\nsecret: ${TYPEFORM_SECRET}\n",
    )
    assert HookRoute(endpoints["tf"]).skim is None
    assert HookRoute(endpoints["plain"]).skim is not None


# --- config errors ---------------------------------------------------------------------------

# (id, text after HEAD, line, what the message says, the fix it names)
BROKEN = [
    ("empty", "dedupe: []\n", 5, "'dedupe' of endpoint 'e' is an empty list", "[$.vid, $.form_id]"),
    (
        "number",
        "dedupe: [$.vid, 5]\n",
        5,
        "path 2 of 'dedupe' of endpoint 'e' is a number",
        "each item of the list is a JSONPath in text",
    ),
    (
        "nested-list",
        "dedupe:\n  - $.vid\n  - [$.a, $.b]\n",
        7,
        "path 2 of 'dedupe' of endpoint 'e' is a list",
        "each item of the list is a JSONPath in text",
    ),
    (
        "null-item",
        "dedupe:\n  - $.vid\n  -\n",
        7,
        "path 2 of 'dedupe' of endpoint 'e' is nothing",
        "each item of the list is a JSONPath in text",
    ),
    (
        "bad-path",
        "dedupe:\n  - $.vid\n  - $.a b\n",
        7,
        "path 2 of 'dedupe' of endpoint 'e': JSONPath '$.a b' does not compile",
        "quote keys with spaces",
    ),
    (
        "not-a-path",
        "dedupe: [$.vid, form_id]\n",
        5,
        "path 2 of 'dedupe' of endpoint 'e': 'form_id' is not a JSONPath",
        "paths start with '$'",
    ),
    (
        "mapping",
        "dedupe: {$.vid: 1}\n",
        5,
        "'dedupe' of endpoint 'e' must be a JSONPath like $.id, or a list of JSONPaths",
        "not a mapping",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "what", "fix"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_a_dedupe_that_names_no_usable_id_is_one_error_at_its_line(
    tmp_path: Path, text: str, line: int, what: str, fix: str
) -> None:
    """Each is one ``file:line: message`` naming what is wrong and how to write it."""
    (tmp_path / "a.yaml").write_text(HEAD + text)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert len(info.value.issues) == 1, "\n".join(info.value.issues)
    (issue,) = info.value.issues
    assert issue.startswith(f"{tmp_path}/a.yaml:{line}: {what}"), issue
    assert fix in issue


def test_every_bad_path_of_a_list_is_reported(tmp_path: Path) -> None:
    """All at once, each at its own line."""
    (tmp_path / "a.yaml").write_text(HEAD + "dedupe:\n  - 5\n  - $.ok\n  - $.a b\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    lines = [issue.removeprefix(f"{tmp_path}/a.yaml:").split(":")[0] for issue in info.value.issues]
    assert lines == ["6", "8"]


# --- over HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_resend_with_another_timestamp_is_a_duplicate_over_http(
    tmp_path: Path, writer: str
) -> None:
    """The HubSpot workflow fixture posted, then posted again with another timestamp, is a
    duplicate (it was stored twice, under two body hashes); the one stored event's id is
    the contact's vid and the submission's conversion-id. Another submission is accepted."""
    endpoints = _load(tmp_path, WORKFLOW)
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    body, _ = fixture("hubspot", "workflow_contact")
    with running_hub(tmp_path, endpoints, writer=writer) as hub:
        first = hub.client.post("/hooks/workflow", content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "accepted"
        resent = _workflow_body(timestamp=1762424771032)
        assert resent != body
        second = hub.client.post("/hooks/workflow", content=resent, headers=headers)
        assert second.json() == {"status": "duplicate", "id": first.json()["id"]}
        (event,) = hub.events()
        assert event.delivery_id == WORKFLOW_ID
        print(f"stored delivery id: {event.delivery_id}")
        other = _workflow_body(**{"conversion-id": "6e0f-another-submission"})
        third = hub.client.post("/hooks/workflow", content=other, headers=headers)
        assert third.json()["status"] == "accepted"
        assert [e.delivery_id for e in hub.events()] == [
            WORKFLOW_ID,
            '["85203","6e0f-another-submission"]',
        ]


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_list_on_a_typeform_endpoint_names_its_deliveries_over_http(
    tmp_path: Path, writer: str
) -> None:
    """A Typeform delivery (a sender the store would skim for its event_id) is named by the
    list: a resend under a new event_id of the same response is a duplicate."""
    endpoints = _load(
        tmp_path,
        "kind: endpoint\nname: typeform\nsource: typeform\nsecret: ${TYPEFORM_SECRET}\n"
        "dedupe: [$.form_response.form_id, $.form_response.token]\n",
    )
    document = orjson.loads(fixture("typeform", "form_response_full")[0])
    expected = orjson.dumps(
        [document["form_response"]["form_id"], document["form_response"]["token"]]
    ).decode()

    def signed(body: bytes) -> dict[str, str]:
        mac = hmac.new(b"s", body, hashlib.sha256).digest()
        signature = "sha256=" + base64.b64encode(mac).decode()
        return {"content-type": "application/json", "typeform-signature": signature}

    body = orjson.dumps(document)
    resent = orjson.dumps({**document, "event_id": "01JBQ7ZK3M9X2R4T6V8W0RESENT"})
    with running_hub(tmp_path, endpoints, writer=writer) as hub:
        first = hub.client.post("/hooks/typeform", content=body, headers=signed(body))
        assert first.json()["status"] == "accepted", first.text
        second = hub.client.post("/hooks/typeform", content=resent, headers=signed(resent))
        assert second.json() == {"status": "duplicate", "id": first.json()["id"]}
        assert [e.delivery_id for e in hub.events()] == [expected]


def test_the_shipped_unbounce_endpoint_takes_a_resend_as_a_duplicate(tmp_path: Path) -> None:
    """mappings/unbounce.yaml names a submission by page, day, minute and email: the
    fixture resent with another field is a duplicate (it was a second lead), the same
    person a minute later is another delivery."""
    endpoints = load(SHIPPED, DEMO_ENV).endpoints
    body, sent = fixture("unbounce", "submission_basic")
    headers = {k: v for k, v in sent.items() if k != "Content-Length"}  # (bodies change)
    path = f"/hooks/unbounce?token={DEMO_ENV['UNBOUNCE_TOKEN']}"
    expected = (
        '["7648177d-7323-4330-b4f9-9951a52138b6","2025-10-31","12:47 PM UTC",'
        '"lucas.ferreira@example.com"]'
    )
    with running_hub(tmp_path, endpoints, writer="process") as hub:
        first = hub.client.post(path, content=body, headers=headers)
        assert first.json()["status"] == "accepted", first.text
        second = hub.client.post(path, content=body + b"&resent=1", headers=headers)
        assert second.json() == {"status": "duplicate", "id": first.json()["id"]}
        later = body.replace(b"12%3A47+PM+UTC", b"12%3A48+PM+UTC")
        assert hub.client.post(path, content=later, headers=headers).json()["status"] == (
            "accepted"
        )
        assert [e.delivery_id for e in hub.events()] == [
            expected,
            expected.replace("12:47", "12:48"),
        ]


def test_the_shipped_hubspot_workflow_endpoint_names_a_submission(tmp_path: Path) -> None:
    """mappings/hubspot.yaml names a workflow delivery by the contact's vid and its form
    submission's conversion-id."""
    endpoint = load(SHIPPED, DEMO_ENV).endpoints["hubspot"]
    body, _ = fixture("hubspot", "workflow_contact")
    assert _ids(endpoint, body) == [WORKFLOW_ID]
    assert _ids(endpoint, _workflow_body(timestamp=1762424771032)) == [WORKFLOW_ID]
