"""HubSpot's legacy signatures (``X-HubSpot-Signature`` v1 and v2) over real HTTP.

Without ``X-HubSpot-Signature-v3`` a ``hubspot`` endpoint takes the legacy signature by its
``X-HubSpot-Signature-Version`` (missing: v1); with v3, v3 alone decides; ``signatures: v3``
takes v3 only. The expected legacy values are HubSpot's published examples, or computed here
with hashlib (plain SHA-256 of the secret and the request, not an HMAC).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hub.config import ConfigError, load
from hub.config.models import Endpoint, HubSpotOptions
from hub.secrets import Secret
from tests.sources import fixtures as fx
from tests.support.logs import logged
from tests.web.conftest import Hub, running_hub

PATH = "/hooks/hubspot-crm"
#: The app fixture: one contact.creation event (and a propertyChange, dropped).
APP_EVENTS = fx.load("hubspot", "app_events", "hubspot-crm").body
JSON = {"content-type": "application/json"}

# HubSpot's published examples (developers.hubspot.com/docs/faq/v1-request-validation and
# v2-request-validation; senders.md section 13 says they were reproduced).
DOC_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
DOC_URL = "https://www.example.com/webhook_uri"
DOC_V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
DOC_V1_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
DOC_V2_BODY = b'{"example_field":"example_value"}'
DOC_V2_SIGNATURE = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"


def v1(body: bytes, secret: str = fx.HUBSPOT_SECRET) -> str:
    """HubSpot's v1: hex SHA-256 of client secret + raw body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def v2(body: bytes, url: str = fx.HUBSPOT_URL, secret: str = fx.HUBSPOT_SECRET) -> str:
    """HubSpot's v2: hex SHA-256 of client secret + method + full URI + raw body."""
    return hashlib.sha256(secret.encode() + b"POST" + url.encode() + body).hexdigest()


def v3_headers(body: bytes, secret: str = fx.HUBSPOT_SECRET) -> dict[str, str]:
    """v3 as HubSpot signs it (as ``tests.web.test_ingest._hubspot_post`` does), at the
    frozen clock's time."""
    stamp = str(int(fx.STANDARD_TIME * 1000))
    signed = b"POST" + fx.HUBSPOT_URL.encode() + body + stamp.encode()
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "x-hubspot-request-timestamp": stamp,
        "x-hubspot-signature-v3": base64.b64encode(mac).decode(),
    }


def legacy(signature: str, version: str | None) -> dict[str, str]:
    headers = {**JSON, "x-hubspot-signature": signature}
    if version is not None:
        headers["x-hubspot-signature-version"] = version
    return headers


def post(hub: Hub, headers: dict[str, str], body: bytes = APP_EVENTS, path: str = PATH) -> Any:
    """POST and return (status, answer, the ``delivery_received`` line's ``detail``)."""
    with capture_logs() as logs:
        response = hub.client.post(path, content=body, headers={**JSON, **headers})
        received = logged(logs, "delivery_received")  # (written after the answer)
    (line,) = received
    return response.status_code, response.json(), line.get("detail")


def accepted(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("status") == "accepted"


def hubspot_endpoint(name: str, **options: Any) -> Endpoint:
    values: dict[str, Any] = {
        "client_secret": Secret(fx.HUBSPOT_SECRET),
        "webhook_url": fx.HUBSPOT_URL,
        "access_token": Secret(fx.HUBSPOT_TOKEN),
        **options,
    }
    return Endpoint(name, "hubspot", HubSpotOptions(**values))


@pytest.mark.parametrize("version", ["v1", "V1", None])
def test_a_v1_signature_alone_is_accepted(hub: Hub, version: str | None) -> None:
    """Without v3, a valid v1 (secret + body) is taken; a missing version header means v1,
    as HubSpot's Webhooks API signs; the events are stored once each."""
    status, answer, _ = post(hub, legacy(v1(APP_EVENTS), version))
    assert (status, accepted(answer)) == (200, True), answer
    (event,) = hub.events()
    assert event.delivery_id == "contact.creation:96027715412:3271496810"
    assert "x-hubspot-signature" not in event.headers  # a credential: never stored
    assert event.headers.get("x-hubspot-signature-version", "v1").lower() == "v1"


def test_a_v2_signature_alone_is_accepted_over_the_configured_url(hub: Hub) -> None:
    """v2 covers POST + the endpoint's webhook_url (what v3 covers) + body: valid, it is
    taken; made over another URL, or sent as v1, it is refused, naming the scheme."""
    status, answer, _ = post(hub, legacy(v2(APP_EVENTS), "v2"))
    assert (status, accepted(answer)) == (200, True), answer
    elsewhere = v2(APP_EVENTS, url="https://hub.example.com/hooks/hubspot-crm")
    status, answer, detail = post(hub, legacy(elsewhere, "v2"))
    assert (status, answer) == (401, {"error": "unauthorized"})
    assert detail == "legacy signature v2: X-HubSpot-Signature does not match the body"
    status, _, detail = post(hub, legacy(v2(APP_EVENTS), "v1"))
    assert status == 401
    assert detail.startswith("legacy signature v1: X-HubSpot-Signature does not match")


def test_hubspots_published_v1_and_v2_examples_pass(tmp_path: Path) -> None:
    """HubSpot's own examples (its secret, URL, bodies and hashes) pass the check: the v1
    one, a contact.creation event, is stored; the v2 one is verified and then refused as
    not an array of events (400, not 401)."""
    docs = hubspot_endpoint("hubspot-docs", client_secret=Secret(DOC_SECRET), webhook_url=DOC_URL)
    with running_hub(tmp_path, {"hubspot-docs": docs}) as hub:
        path = "/hooks/hubspot-docs"
        status, answer, _ = post(hub, legacy(DOC_V1_SIGNATURE, "v1"), DOC_V1_BODY, path)
        assert (status, accepted(answer)) == (200, True), answer
        assert [e.delivery_id for e in hub.events()] == ["contact.creation:123:1"]
        status, answer, _ = post(hub, legacy(DOC_V2_SIGNATURE, "v2"), DOC_V2_BODY, path)
        assert (status, answer) == (
            400,
            {"error": "not a HubSpot webhook delivery: expected a JSON array of events"},
        )
        status, _, detail = post(hub, legacy(DOC_V1_SIGNATURE, "v2"), DOC_V1_BODY, path)
        assert (status, detail.split(":")[0]) == (401, "legacy signature v2")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (
            legacy(v1(APP_EVENTS + b" "), "v1"),
            "legacy signature v1: X-HubSpot-Signature does not match the body",
        ),
        (
            legacy(v1(APP_EVENTS, secret="another-secret"), "v1"),
            "legacy signature v1: X-HubSpot-Signature does not match the body",
        ),
        (
            legacy(v2(APP_EVENTS, secret="another-secret"), "v2"),
            "legacy signature v2: X-HubSpot-Signature does not match the body",
        ),
        (
            legacy("", "v1"),
            "legacy signature v1: X-HubSpot-Signature does not match the body",
        ),
        (
            legacy(v1(APP_EVENTS), "v9"),
            "legacy signature: X-HubSpot-Signature-Version 'v9' is neither v1 nor v2 "
            "(and the request has no X-HubSpot-Signature-v3)",
        ),
        (
            legacy(v1(APP_EVENTS), "v3"),
            "legacy signature: X-HubSpot-Signature-Version 'v3' is neither v1 nor v2 "
            "(and the request has no X-HubSpot-Signature-v3)",
        ),
        (
            {"x-hubspot-signature-version": "v1"},
            "missing X-HubSpot-Signature-v3 header (and no legacy X-HubSpot-Signature)",
        ),
    ],
    ids=["tampered", "v1-other-secret", "v2-other-secret", "empty", "v9", "v3-version", "none"],
)
def test_a_wrong_legacy_signature_is_a_401_naming_the_scheme(
    hub: Hub, headers: dict[str, str], detail: str
) -> None:
    """A legacy signature that does not match, or of a version that is neither v1 nor v2, is
    a bare 401; the log line says which scheme failed and why. Nothing is stored."""
    status, answer, logged = post(hub, headers)
    assert (status, answer, logged) == (401, {"error": "unauthorized"}, detail)
    assert hub.events() == []


def test_a_missing_version_is_v1_only(hub: Hub) -> None:
    """Without X-HubSpot-Signature-Version the signature is read as v1: a v2 one is not
    tried in its place, and the reason says the version was taken as v1."""
    status, _, detail = post(hub, legacy(v2(APP_EVENTS), None))
    assert status == 401
    assert detail == (
        "legacy signature v1: X-HubSpot-Signature does not match the body "
        "(no X-HubSpot-Signature-Version: taken as v1)"
    )
    status, answer, _ = post(hub, legacy(v1(APP_EVENTS), ""))  # empty: missing
    assert (status, accepted(answer)) == (200, True)


def test_a_wrong_v3_is_refused_even_beside_a_valid_v1(hub: Hub) -> None:
    """v3 alone decides when the request carries it: the v1 that is accepted on its own is
    refused beside a v3 made with another secret, a stale v3, or an empty one."""
    good_v1 = legacy(v1(APP_EVENTS), "v1")
    wrong = v3_headers(APP_EVENTS, secret="another-secret")
    stale = {**v3_headers(APP_EVENTS), "x-hubspot-request-timestamp": "1761914000000"}
    empty = {**v3_headers(APP_EVENTS), "x-hubspot-signature-v3": ""}
    for v3, detail in [
        (wrong, "signature v3: x-hubspot-signature-v3 does not match the body"),
        (stale, "signature v3: timestamp 1761914000000 is outside the 300 s tolerance"),
        (empty, "signature v3: x-hubspot-signature-v3 does not match the body"),
    ]:
        status, answer, logged = post(hub, {**good_v1, **v3})
        assert (status, answer) == (401, {"error": "unauthorized"})
        assert logged.startswith(detail), logged
    assert hub.events() == []
    status, answer, _ = post(hub, good_v1)
    assert (status, accepted(answer)) == (200, True)
    status, answer, _ = post(hub, {**good_v1, **v3_headers(APP_EVENTS)})
    assert (status, answer) == (200, {"status": "duplicate", "id": answer["id"]})


def test_a_v3_timestamp_in_seconds_says_so_and_names_no_setting(hub: Hub) -> None:
    """A v3 whose timestamp is the time in seconds (HubSpot's is milliseconds) is refused,
    its reason saying so with "now" in milliseconds; it names no ``timestamp_unit``, which
    a ``hubspot`` endpoint does not have (the unit is HubSpot's)."""
    seconds = str(int(fx.STANDARD_TIME))
    signed = b"POST" + fx.HUBSPOT_URL.encode() + APP_EVENTS + seconds.encode()
    mac = hmac.new(fx.HUBSPOT_SECRET.encode(), signed, hashlib.sha256).digest()
    headers = {
        "x-hubspot-request-timestamp": seconds,
        "x-hubspot-signature-v3": base64.b64encode(mac).decode(),
    }
    status, answer, detail = post(hub, headers)
    assert (status, answer) == (401, {"error": "unauthorized"})
    assert detail == (
        f"signature v3: timestamp {seconds} is outside the 300 s tolerance "
        f"(now {seconds}000): it is the time in seconds, not milliseconds"
    )
    assert hub.events() == []


def test_signatures_v3_refuses_the_legacy_signatures(tmp_path: Path) -> None:
    """An endpoint with ``signatures: v3`` takes X-HubSpot-Signature-v3 only: a valid v1 or
    v2 alone is a 401 whose reason says so; v3 is accepted as before."""
    strict = hubspot_endpoint("hubspot-crm", signatures="v3")
    with running_hub(tmp_path, {"hubspot-crm": strict}) as hub:
        for headers in (legacy(v1(APP_EVENTS), "v1"), legacy(v2(APP_EVENTS), "v2")):
            status, answer, detail = post(hub, headers)
            assert (status, answer) == (401, {"error": "unauthorized"})
            assert detail == (
                "signature v3: missing x-hubspot-signature-v3 header; the legacy "
                "X-HubSpot-Signature is not taken here (signatures: v3)"
            )
        status, _, detail = post(hub, {})
        assert (status, detail) == (401, "signature v3: missing x-hubspot-signature-v3 header")
        assert hub.events() == []
        status, answer, _ = post(hub, v3_headers(APP_EVENTS))
        assert (status, accepted(answer)) == (200, True)


HUBSPOT_YAML = """\
kind: endpoint
name: e
source: hubspot
client_secret: ${HS_SECRET}
access_token: ${HS_TOKEN}
webhook_url: https://h.example/hooks/e
"""
ENV = {"HS_SECRET": "s", "HS_TOKEN": "t"}


def test_the_signatures_option_loads_and_a_bad_value_is_an_error_at_its_line(
    tmp_path: Path,
) -> None:
    """``signatures`` is ``any`` by default, or ``v3`` (also from a variable); another value
    is an error at its file:line naming the choices."""
    file = tmp_path / "e.yaml"
    file.write_text(HUBSPOT_YAML)
    options: Any = load(tmp_path, ENV).endpoints["e"].options
    assert options.signatures == "any"
    for written in ("v3", "${HS_SIGNATURES}"):
        file.write_text(HUBSPOT_YAML + f"signatures: {written}\n")
        options = load(tmp_path, {**ENV, "HS_SIGNATURES": "v3"}).endpoints["e"].options
        assert options.signatures == "v3"
    line = HUBSPOT_YAML.count("\n") + 1
    for bad, shown in [("v2", "'v2'"), ("[v3]", "a list"), ("legacy", "'legacy'")]:
        file.write_text(HUBSPOT_YAML + f"signatures: {bad}\n")
        with pytest.raises(ConfigError) as info:
            load(tmp_path, ENV)
        (issue,) = info.value.issues
        assert issue.startswith(f"{file}:{line}: 'signatures' of endpoint 'e' ")
        assert shown in issue
        if not bad.startswith("["):
            assert issue.endswith("use one of: any, v3")


def test_legacy_deliveries_never_log_the_secret_or_a_signature(hub: Hub) -> None:
    """Accepted and refused legacy deliveries log one line each, holding neither the client
    secret nor any signature sent."""
    sent = [
        legacy(v1(APP_EVENTS), "v1"),
        legacy(v2(APP_EVENTS), "v2"),
        legacy(v1(APP_EVENTS + b"x"), "v1"),
        legacy(v2(APP_EVENTS, secret="x"), "v2"),
        {**legacy(v1(APP_EVENTS), "v1"), **v3_headers(APP_EVENTS, secret="x")},
    ]
    with capture_logs() as logs:
        statuses = [
            hub.client.post(PATH, content=APP_EVENTS, headers=headers).status_code
            for headers in sent
        ]
        lines = logged(logs, "delivery_received", len(sent))  # (written after the answers)
    assert statuses == [200, 200, 401, 401, 401]
    assert [e["outcome"] for e in lines] == [
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
    ]
    text = repr(logs)
    signatures = {v for h in sent for k, v in h.items() if "signature" in k and v.strip()}
    signatures.discard("v1")
    signatures.discard("v2")
    assert signatures
    for secret in (*fx.ALL_SECRETS, *signatures):
        assert secret not in text


def test_v3_is_checked_over_the_url_with_hubspots_escapes_decoded(tmp_path: Path) -> None:
    """HubSpot decodes ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B`` in the URI before it
    signs v3 (its request-validation page): an app target URL whose query holds a token with
    a ``/`` and a ``:`` written escaped is signed with them decoded, and is accepted; so is
    v3 made over the URL as written, and v2, which is over the URI exactly as written. A
    signature over another URL is still refused."""
    written = "https://hub.example.com/hooks/hubspot-crm?key=ab%2Fcd%3Aef%20g"
    decoded = "https://hub.example.com/hooks/hubspot-crm?key=ab/cd:ef%20g"
    endpoint = hubspot_endpoint("hubspot-crm", webhook_url=written)
    stamp = str(int(fx.STANDARD_TIME * 1000))

    def v3(url: str, body: bytes) -> dict[str, str]:
        signed = b"POST" + url.encode() + body + stamp.encode()
        mac = hmac.new(fx.HUBSPOT_SECRET.encode(), signed, hashlib.sha256).digest()
        return {
            "x-hubspot-request-timestamp": stamp,
            "x-hubspot-signature-v3": base64.b64encode(mac).decode(),
        }

    def events(object_id: int) -> bytes:
        return (
            b'[{"eventId":%d,"subscriptionType":"contact.creation","objectId":%d,"portalId":1}]'
            % (object_id, object_id)
        )

    with running_hub(tmp_path, {"hubspot-crm": endpoint}) as hub:
        status, answer, detail = post(hub, v3(decoded, events(1)), events(1))
        assert (status, accepted(answer)) == (200, True), (answer, detail)
        status, answer, _ = post(hub, v3(written, events(2)), events(2))
        assert (status, accepted(answer)) == (200, True), answer
        status, answer, _ = post(hub, legacy(v2(events(3), url=written), "v2"), events(3))
        assert (status, accepted(answer)) == (200, True), answer
        elsewhere = "https://hub.example.com/hooks/hubspot-crm?key=ab/cd:ef g"
        status, answer, detail = post(hub, v3(elsewhere, events(4)), events(4))
        assert (status, answer) == (401, {"error": "unauthorized"})
        assert detail == "signature v3: x-hubspot-signature-v3 does not match the body"
        assert [e.delivery_id for e in hub.events()] == [
            "contact.creation:1:1",
            "contact.creation:2:2",
            "contact.creation:3:3",
        ]
