"""Sender verification and splitting, on the shipped fixtures and hand-made edge cases."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from hub.config.models import HmacOptions, TokenOptions
from hub.mapping.paths import compile_path
from hub.secrets import Secret
from hub.sources import BodyError, Incoming, Split, VerificationError, delivery_ids
from hub.sources.bodies import parse_body
from hub.sources.build import build_source
from hub.sources.hmac_ import HmacSource
from hub.sources.token_ import TokenSource
from tests.sources import fixtures as fx

ENDPOINTS = fx.endpoints()


def request_for(d: fx.Delivery, body: bytes | None = None, **headers: str) -> Incoming:
    hdrs = d.lower_headers()
    hdrs.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
    return Incoming("POST", hdrs, d.body if body is None else body, d.query.encode())


def run(d: fx.Delivery, req: Incoming | None = None, now: float = fx.STANDARD_TIME) -> list[Split]:
    """Verify, parse and split like ingest does; raises what ingest would answer with."""
    endpoint = ENDPOINTS[d.endpoint]
    source = build_source(endpoint)
    req = req or request_for(d)
    source.verify(req, now)
    document = parse_body(req.headers.get("content-type"), req.body)
    return source.split(req, document)


@pytest.mark.parametrize("delivery", fx.accepted(), ids=lambda d: d.name)
def test_every_fixture_verifies_and_splits(delivery: fx.Delivery) -> None:
    """Each shipped fixture passes its endpoint's check as sent and yields at least one event."""
    splits = run(delivery)
    assert splits
    ids = delivery_ids(ENDPOINTS[delivery.endpoint], splits, delivery.body)
    assert all(isinstance(i, str) and i for i in ids)


@pytest.mark.parametrize("row", fx.SIGNED, ids=lambda r: f"{r[0]}/{r[1]}")
def test_flipped_byte_is_rejected(row: tuple[str, str, str, str]) -> None:
    """Changing one byte of a signed body makes its signature check fail."""
    d = fx.load(*row)
    body = bytearray(d.body)
    body[len(body) // 2] ^= 0x01
    with pytest.raises(VerificationError):
        run(d, request_for(d, bytes(body)))


@pytest.mark.parametrize("row", fx.SIGNED, ids=lambda r: f"{r[0]}/{r[1]}")
def test_missing_signature_header_is_rejected(row: tuple[str, str, str, str]) -> None:
    """Without its signature header a signed fixture is rejected."""
    d = fx.load(*row)
    hdrs = {k: v for k, v in d.lower_headers().items() if k not in fx.SIGNATURE_HEADERS}
    with pytest.raises(VerificationError):
        run(d, Incoming("POST", hdrs, d.body))


def test_wrong_secrets_reject_the_fixtures() -> None:
    """The same signed bodies fail against endpoints configured with other secrets."""
    from dataclasses import replace

    for row in fx.SIGNED:
        d = fx.load(*row)
        endpoint = ENDPOINTS[d.endpoint]
        opts: Any = endpoint.options
        field = {
            "facebook": "app_secret",
            "linkedin": "client_secret",
            "hubspot-crm": "client_secret",
            "typeform": "secret",
            "standard": "secret",
        }[d.endpoint]
        wrong = "whsec_" + base64.b64encode(b"another-key").decode()
        source = build_source(replace(endpoint, options=replace(opts, **{field: Secret(wrong)})))
        with pytest.raises(VerificationError):
            source.verify(request_for(d), fx.STANDARD_TIME)


def test_facebook_rejects_a_reserialised_body() -> None:
    """A Facebook body re-serialised from its parsed JSON no longer matches the signature."""
    d = fx.load("facebook", "leadgen_notification_batched_mixed_types", "facebook")
    reserialised = orjson.dumps(orjson.loads(d.body), option=orjson.OPT_INDENT_2)
    assert reserialised != d.body
    with pytest.raises(VerificationError):
        run(d, request_for(d, reserialised))


def test_facebook_sha1_only_when_allowed() -> None:
    """The legacy SHA-1 header is refused by default and accepted with allow_sha1."""
    from dataclasses import replace

    d = fx.load("facebook", "leadgen_notification_single", "facebook")
    hdrs = {k: v for k, v in d.lower_headers().items() if k != "x-hub-signature-256"}
    req = Incoming("POST", hdrs, d.body)
    endpoint = ENDPOINTS["facebook"]
    with pytest.raises(VerificationError, match="allow_sha1"):
        build_source(endpoint).verify(req, 0)
    opts: Any = endpoint.options
    build_source(replace(endpoint, options=replace(opts, allow_sha1=True))).verify(req, 0)


def test_facebook_batch_splits_every_leadgen_change_with_string_ids() -> None:
    """A batch of three leadgen changes gives three events, every id a string."""
    d = fx.load("facebook", "leadgen_notification_batched_mixed_types", "facebook")
    splits = run(d)
    assert [s.natural_id for s in splits] == [
        "1287634509898765",
        "1287634509800001",
        "5412398761234567",
    ]
    third = splits[2].document
    assert third["page_id"] == "998877665544332"
    assert third["ad_id"] == "0"
    assert third["entry_id"] == "998877665544332"
    assert third["entry_time"] == 1761918000
    assert third["created_time"] == 1761917990


def test_facebook_ids_beyond_64_bits_stay_exact() -> None:
    """Integer ids too big for 64 bits reach the document digit for digit."""
    big = 123456789012345678901234567890
    body = (
        b'{"object":"page","entry":[{"id":1,"time":2,"changes":[{"field":"leadgen",'
        b'"value":{"leadgen_id":' + str(big).encode() + b',"page_id":9007199254740993}}]}]}'
    )
    sig = "sha256=" + hmac.new(fx.FB_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    d = fx.Delivery("big", "facebook", body, {"Content-Type": "application/json"})
    splits = run(d, request_for(d, x_hub_signature_256=sig))
    assert splits[0].natural_id == str(big)
    assert splits[0].document["page_id"] == "9007199254740993"


def test_facebook_without_leadgen_changes_has_no_events() -> None:
    """A verified notification about another field splits into zero events."""
    body = b'{"object":"page","entry":[{"id":"1","changes":[{"field":"feed","value":{}}]}]}'
    sig = "sha256=" + hmac.new(fx.FB_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    d = fx.Delivery("feed", "facebook", body, {"Content-Type": "application/json"})
    assert run(d, request_for(d, x_hub_signature_256=sig)) == []


def test_facebook_handshake() -> None:
    """The handshake echoes the challenge with the right token and answers 403 otherwise."""
    source = build_source(ENDPOINTS["facebook"])
    good = b"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=hub-verify-token-example"
    answer = source.handshake(Incoming("GET", {}, b"", good))
    assert answer is not None and (answer.status, answer.body) == (200, b"1158201444")
    bad = good.replace(b"example", b"wrong")
    answer = source.handshake(Incoming("GET", {}, b"", bad))
    assert answer is not None and answer.status == 403
    unsubscribe = good.replace(b"subscribe", b"unsubscribe")
    answer = source.handshake(Incoming("GET", {}, b"", unsubscribe))
    assert answer is not None and answer.status == 403


def _linkedin(document: dict[str, Any]) -> list[Split]:
    body = orjson.dumps(document)
    sig = hmac.new(fx.LINKEDIN_SECRET.encode(), b"hmacsha256=" + body, hashlib.sha256)
    d = fx.Delivery("li", "linkedin", body, {"Content-Type": "application/json"})
    return run(d, request_for(d, x_li_signature=sig.hexdigest().upper()))


def test_linkedin_notification_is_one_event_per_response_and_action() -> None:
    """A LEAD_ACTION notification is one event named by its response URN and action (a
    deletion is another delivery than the creation); other types have no event."""
    (created,) = run(fx.load("linkedin", "lead_notification", "linkedin"))
    urn = "urn:li:leadGenFormResponse:6f1c2b3a-4d5e-4f60-8a71-b2c3d4e5f607-3"
    assert created.natural_id == f"{urn}:CREATED"
    assert created.document["leadGenFormResponse"] == urn
    (deleted,) = _linkedin({**created.document, "leadAction": "DELETED"})
    assert deleted.natural_id == f"{urn}:DELETED"
    assert _linkedin({"type": "SOCIAL_ACTION", "leadGenFormResponse": urn}) == []
    with pytest.raises(BodyError, match="no 'leadGenFormResponse'"):
        _linkedin({"type": "LEAD_ACTION"})
    with pytest.raises(BodyError, match="expected a JSON object"):
        _linkedin([created.document])  # type: ignore[arg-type]


def test_linkedin_lead_action_is_read_in_any_case() -> None:
    """``created`` is the creation and ``Deleted`` the deletion (their ids and documents
    upper-cased, so a retry in another case is the same delivery and ``skip_if`` on
    ``DELETED`` holds); no action is a creation; another is kept as sent."""
    (sent,) = run(fx.load("linkedin", "lead_notification", "linkedin"))
    urn = sent.document["leadGenFormResponse"]
    for given, action in [("created", "CREATED"), ("Deleted", "DELETED"), (None, "CREATED")]:
        (split,) = _linkedin({**sent.document, "leadAction": given})
        assert split.natural_id == f"{urn}:{action}"
        assert split.document == {**sent.document, "leadAction": action}
    (other,) = _linkedin({**sent.document, "leadAction": "updated"})
    assert other.natural_id == f"{urn}:UPDATED" and other.document["leadAction"] == "updated"


def test_linkedin_signature_is_over_the_prefixed_body() -> None:
    """X-LI-Signature is the HMAC of "hmacsha256=" + body: the HMAC of the body alone fails."""
    d = fx.load("linkedin", "lead_notification", "linkedin")
    bare = hmac.new(fx.LINKEDIN_SECRET.encode(), d.body, hashlib.sha256).hexdigest()
    with pytest.raises(VerificationError, match="X-LI-Signature does not match"):
        run(d, request_for(d, x_li_signature=bare))


def test_linkedin_challenge_is_answered_under_the_client_secret() -> None:
    """GET ?challengeCode= answers JSON with the code and its HMAC under the client secret;
    without a code, 400."""
    source = build_source(ENDPOINTS["linkedin"])
    code = "890e4665-4dfe-4ab1-b689-ed553bceeed3"
    answer = source.handshake(Incoming("GET", {}, b"", f"challengeCode={code}".encode()))
    assert answer is not None
    assert (answer.status, answer.content_type) == (200, "application/json")
    expected = hmac.new(fx.LINKEDIN_SECRET.encode(), code.encode(), hashlib.sha256).hexdigest()
    assert orjson.loads(answer.body) == {"challengeCode": code, "challengeResponse": expected}
    missing = source.handshake(Incoming("GET", {}, b"", b"applicationId=77"))
    assert missing is not None and missing.status == 400


def test_hubspot_app_events_of_the_subscribed_types_are_events() -> None:
    """Of an array of thin events, those of the configured subscription types are events,
    named by type, object and event id; the others are dropped. Not an array: 400."""
    d = fx.load("hubspot", "app_events", "hubspot-crm")
    (created,) = run(d)
    assert created.natural_id == "contact.creation:96027715412:3271496810"
    assert created.document["objectId"] == 96027715412
    source = build_source(ENDPOINTS["hubspot-crm"])
    with pytest.raises(BodyError, match="expected a JSON array"):
        source.split(request_for(d), {"eventId": 1})
    with pytest.raises(BodyError, match="no 'objectId'"):
        source.split(request_for(d), [{"subscriptionType": "contact.creation", "eventId": 1}])
    assert source.split(request_for(d), [{"subscriptionType": "deal.creation"}, 7]) == []


def test_hubspot_app_signature_covers_the_target_url_and_the_time() -> None:
    """The v3 signature is over POST + the configured URL + body + timestamp: another URL,
    or a timestamp moved after signing, or one older than 5 minutes, fails."""
    from dataclasses import replace

    d = fx.load("hubspot", "app_events", "hubspot-crm")
    endpoint = ENDPOINTS["hubspot-crm"]
    options: Any = endpoint.options
    elsewhere = replace(options, webhook_url="https://hub.example.com/x")
    with pytest.raises(VerificationError, match="does not match"):
        build_source(replace(endpoint, options=elsewhere)).verify(request_for(d), fx.STANDARD_TIME)
    moved = request_for(d, x_hubspot_request_timestamp="1761914821001")
    with pytest.raises(VerificationError, match="does not match"):
        run(d, moved)
    with pytest.raises(VerificationError, match="tolerance"):
        run(d, now=fx.STANDARD_TIME + 301)


def test_google_rejects_an_empty_or_wrong_key() -> None:
    """Google's fixture with an empty google_key, and a body with another key, are rejected."""
    d = fx.load("google_ads", "lead_wrong_google_key", "google")
    with pytest.raises(VerificationError, match="google_key"):
        run(d)
    body = fx.load("google_ads", "lead_full", "google").body.replace(b"gk_test_7c1e2b", b"gk_x")
    with pytest.raises(VerificationError, match="does not match"):
        run(d, request_for(d, body))


def test_natural_ids_per_sender() -> None:
    """Google dedupes on lead_id, Typeform on event_id, Standard Webhooks on webhook-id."""
    cases = {
        ("google_ads", "lead_full", "google"): "lead_id",
        ("typeform", "form_response_full", "typeform"): "event_id",
    }
    for (sender, stem, endpoint), key in cases.items():
        d = fx.load(sender, stem, endpoint)
        split = run(d)[0]
        assert split.natural_id == str(orjson.loads(d.body)[key])
    d = fx.load("generic_json", "standard_webhooks_lead_created", "standard")
    assert run(d)[0].natural_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_standard_webhooks_timestamp_tolerance() -> None:
    """A Standard Webhooks delivery verifies within five minutes of its timestamp only."""
    d = fx.load("generic_json", "standard_webhooks_lead_created", "standard")
    run(d, now=fx.STANDARD_TIME + 299)
    run(d, now=fx.STANDARD_TIME - 299)
    with pytest.raises(VerificationError, match="tolerance"):
        run(d, now=fx.STANDARD_TIME + 301)


def test_standard_webhooks_accepts_any_rotated_signature() -> None:
    """Only one of several v1 signatures has to match; none matching is rejected."""
    d = fx.load("generic_json", "standard_webhooks_lead_created", "standard")
    entries = d.headers["webhook-signature"].split()
    matching = []
    for entry in entries:
        try:
            run(d, request_for(d, webhook_signature=entry))
            matching.append(entry)
        except VerificationError:
            pass
    assert len(matching) == 1
    bogus = "v1," + base64.b64encode(b"x" * 32).decode()
    run(d, request_for(d, webhook_signature=f"{bogus} {matching[0]}"))
    with pytest.raises(VerificationError):
        run(d, request_for(d, webhook_signature=bogus))
    with pytest.raises(VerificationError):
        run(d, request_for(d, webhook_signature=matching[0].replace("v1,", "v2,")))


def _webflow(body: bytes, ts: int, secret: str = fx.HMAC_SECRET) -> Incoming:
    mac = hmac.new(secret.encode(), f"{ts}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"x-webflow-signature": mac.upper(), "x-webflow-timestamp": str(ts)}
    return Incoming("POST", headers, body)


def test_hmac_webflow_style_with_millisecond_timestamp() -> None:
    """The hmac source checks {timestamp}:{body} with a millisecond timestamp and a tolerance."""
    source = build_source(ENDPOINTS["webflow"])
    body = b'{"triggerType":"form_submission","payload":{"id":"abc"}}'
    now = 1_761_914_821.0
    source.verify(_webflow(body, int(now * 1000)), now)
    with pytest.raises(VerificationError, match="tolerance"):
        source.verify(_webflow(body, int((now - 600) * 1000)), now)
    with pytest.raises(VerificationError, match="does not match"):
        source.verify(_webflow(body, int(now * 1000), secret="other"), now)
    with pytest.raises(VerificationError, match="missing"):
        source.verify(Incoming("POST", {}, body), now)


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix"),
    [("sha256", "base64", ""), ("sha1", "hex", "sha1="), ("sha512", "hex", "")],
)
def test_hmac_algorithms_encodings_and_prefixes(algorithm: str, encoding: str, prefix: str) -> None:
    """Each algorithm/encoding/prefix combination verifies its own signature and no other."""
    opts = HmacOptions(
        header="X-Sig", secret=Secret("k"), algorithm=algorithm, encoding=encoding, prefix=prefix
    )
    source = HmacSource(opts)
    body = b'{"a":1}'
    mac = hmac.new(b"k", body, getattr(hashlib, algorithm)).digest()
    text = mac.hex() if encoding == "hex" else base64.b64encode(mac).decode()
    source.verify(Incoming("POST", {"x-sig": prefix + text}, body), 0)
    with pytest.raises(VerificationError):
        source.verify(Incoming("POST", {"x-sig": text if prefix else "x" + text}, body), 0)
    assert source.credential_headers == frozenset({"x-sig"})


def test_token_is_taken_from_bearer_basic_header_or_query() -> None:
    """The token source accepts the token in any of its four places and rejects a wrong one."""
    source = TokenSource(TokenOptions(token=Secret("t0k"), header="X-Key"))
    basic = "Basic " + base64.b64encode(b"user:t0k").decode()
    for headers, query in [
        ({"authorization": "Bearer t0k"}, b""),
        ({"authorization": basic}, b""),
        ({"x-key": "t0k"}, b""),
        ({}, b"token=t0k"),
    ]:
        source.verify(Incoming("POST", headers, b"{}", query), 0)
    for headers, query in [
        ({"authorization": "Bearer nope"}, b""),
        ({"authorization": "Basic !!!"}, b""),
        ({"x-other": "t0k"}, b""),
        ({}, b"token=t0"),
        ({}, b""),
    ]:
        with pytest.raises(VerificationError):
            source.verify(Incoming("POST", headers, b"{}", query), 0)


def test_body_hash_and_dedupe_path_name_deliveries() -> None:
    """Without a natural id the body hash names a delivery; a dedupe path overrides both."""
    d = fx.load("zapier", "post_form_default", "zapier-form")
    ids = delivery_ids(ENDPOINTS["zapier-form"], run(d), d.body)
    assert ids == ["sha256:" + hashlib.sha256(d.body).hexdigest()]
    d = fx.load("zapier", "post_json_flat", "zapier-json")
    assert delivery_ids(ENDPOINTS["zapier-json"], run(d), d.body) == ["1287634509812345"]
    d = fx.load("unbounce", "submission_basic", "unbounce", f"token={fx.URL_TOKEN}")
    assert delivery_ids(ENDPOINTS["unbounce"], run(d), d.body) == ["lucas.ferreira@example.com"]


@pytest.mark.timeout(30)
def test_a_dedupe_regex_that_backtracks_falls_back_to_the_body_hash() -> None:
    """A dedupe path whose regex backtracks without end on the posted value stops at its
    budget (re would hold the web loop for good): the delivery is named by its body's hash,
    as when the path finds nothing; a value the pattern matches still names it."""
    endpoint = dataclasses.replace(
        ENDPOINTS["zapier-json"], dedupe=compile_path("$.ids[?(@ =~ '^(a|aa)+$')]")
    )
    body = b'{"ids": ["' + b"a" * 40 + b'b"]}'
    assert delivery_ids(endpoint, [Split(None, orjson.loads(body))], body) == [
        "sha256:" + hashlib.sha256(body).hexdigest()
    ]
    fine = b'{"ids": ["b", "aaa"]}'
    assert delivery_ids(endpoint, [Split(None, orjson.loads(fine))], fine) == ["aaa"]


@pytest.mark.parametrize(
    ("stem", "endpoint", "header"),
    [
        ("generic_json/standard_webhooks_lead_created", "standard", "webhook-timestamp"),
        ("hubspot/app_events", "hubspot-crm", "x-hubspot-request-timestamp"),
    ],
)
@pytest.mark.parametrize("value", ["9" * 400, "-" + "9" * 30, "1" * 21])
def test_an_absurd_timestamp_is_unauthorized_not_a_crash(
    stem: str, endpoint: str, header: str, value: str
) -> None:
    """A timestamp header too long for any clock (a float of it would overflow) fails the
    check like any stale timestamp, before any arithmetic on it."""
    sender, name = stem.split("/")
    d = fx.load(sender, name, endpoint)
    with pytest.raises(VerificationError, match="not a timestamp"):
        run(d, request_for(d, None, **{header.replace("-", "_"): value}))


@pytest.mark.parametrize(
    "code",
    ["hmacsha256={}", "not-a-uuid", "890e4665-4dfe-4ab1-b689-ed553bceeed3x", "890e4665"],
)
def test_linkedin_challenge_signs_uuids_only(code: str) -> None:
    """The challenge answer is an HMAC under the same secret as X-LI-Signature, whose input is
    "hmacsha256=" + body: signing any code would hand out signatures for forged
    notifications. Only a UUID, the shape LinkedIn sends, is answered; the rest is 400."""
    d = fx.load("linkedin", "lead_notification", "linkedin")
    source = build_source(ENDPOINTS["linkedin"])
    code = code.replace("{}", d.body.decode())
    answer = source.handshake(Incoming("GET", {}, b"", urlencode({"challengeCode": code}).encode()))
    assert answer is not None
    assert (answer.status, answer.body) == (400, b'{"error":"challengeCode is not a UUID"}')
    upper = "890E4665-4DFE-4AB1-B689-ED553BCEEED3"
    ok = source.handshake(Incoming("GET", {}, b"", f"challengeCode={upper}".encode()))
    assert ok is not None and ok.status == 200


def test_redacted_replaces_a_credential_field_as_written_and_nothing_else() -> None:
    """The value of a credential field is replaced where the body writes it, as is or with
    non-ASCII escaped; other keys, other values and a body that is no object stay as they are."""
    from hub.sources.base import redacted

    fields = frozenset({"google_key"})
    plain = b'{"google_key": "gk_1", "lead_id": "gk_2"}'
    assert redacted(plain, orjson.loads(plain), fields) == (
        b'{"google_key": "[redacted]", "lead_id": "gk_2"}'
    )
    escaped = b'{"lead_id":"7","google_key":"cl\\u00e9"}'
    assert redacted(escaped, orjson.loads(escaped), fields) == (
        b'{"lead_id":"7","google_key":"[redacted]"}'
    )
    for body in (b'["gk_1"]', b'{"google_key": ""}', b'{"other": "gk_1"}'):
        assert redacted(body, orjson.loads(body), fields) == body


def test_a_standard_secret_with_no_key_verifies_nothing() -> None:
    """An endpoint built with ``whsec_`` alone (the loader refuses it; a source is built from
    options all the same) takes no delivery, not even one signed with the empty key it
    names: anyone can make that signature."""
    from hub.config.models import Endpoint, StandardOptions

    endpoint = Endpoint("std", "standard", StandardOptions(secret=Secret("whsec_")))
    source = build_source(endpoint)
    body = b'{"email":"forged@example.com"}'
    stamp = str(int(fx.STANDARD_TIME))
    mac = hmac.new(b"", f"msg_1.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    with pytest.raises(VerificationError, match="not a valid whsec_ secret"):
        source.verify(Incoming("POST", headers, body), fx.STANDARD_TIME)
