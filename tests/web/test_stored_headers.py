"""Which request headers a delivery is stored with, over real HTTP into a real hub, read
back from its SQLite store and from the store's files byte for byte: no header whose name
says it may hold a credential, whatever the endpoint checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from structlog.testing import capture_logs

from hub.config.models import Endpoint, HmacOptions
from hub.secrets import Secret
from tests.sources import fixtures as fx
from tests.support.logs import logged
from tests.web.conftest import Hub, running_hub

#: Credential-like headers users of Zapier-style tools and site builders add under names of
#: their own, each with a value of its own (the value is what must not come to rest).
CREDENTIAL_LIKE = (
    "X-Auth",
    "X-Auth-Key",
    "X-AuthKey",
    "X-WebhookAuth",
    "X-Webhook-Key",
    "X-Key",
    "Key",
    "X-Access",
    "X-Pass",
    "X-Passphrase",
    "X-Passwd",
    "X-Pwd",
    "X-Credential",
    "X-Credentials",
    "X-Creds",
    "X-Session",
    "X-Session-Id",
    "X-Sid",
    "X-Csrf-Token",
    "X-XSRF-TOKEN",
    "X-Shopify-Hmac-Sha256",
    "X-Sig",
    "X-Bearer",
    "X-Jwt",
    "X-Otp",
    "X-Vercel-Protection-Bypass",
    "Proxy-Authorization",
)
#: Headers that are facts about the delivery, kept.
FACTS = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Request-Id": "req-42",
    "Idempotency-Key": "delivery-7",
    "X-Shopify-Topic": "orders/create",
}


def _value(name: str) -> str:
    return f"kept-nowhere-{name.lower()}-0a1b2c"


def _store_bytes(db_dir: Path) -> bytes:
    """Every byte of the store's files (the database and its write-ahead log)."""
    return b"".join(p.read_bytes() for p in sorted(db_dir.iterdir()) if p.is_file())


def test_credential_like_headers_of_any_name_are_not_stored(hub: Hub) -> None:
    """A reviewer found ``X-Auth``, ``X-Webhook-Key``, ``X-Pass``, ``X-Session``,
    ``X-Shopify-Hmac-Sha256``... stored with the delivery (only names with ``token``,
    ``secret``, ``password``, ``signature``, ``api_key`` and the like were left out), and
    so in every backup of the store, on an endpoint that checks none of them."""
    d = fx.load("zapier", "post_form_default", "zapier-form")  # checks Authorization only
    sent = {**d.headers, **FACTS, **{name: _value(name) for name in CREDENTIAL_LIKE}}
    answer = hub.client.post(d.path, content=d.body, headers=sent)
    assert answer.status_code == 200, answer.text
    (event,) = hub.events()
    for name in CREDENTIAL_LIKE:
        assert name.lower() not in event.headers, name
    assert "authorization" not in event.headers
    for name, value in FACTS.items():
        assert event.headers[name.lower()] == value, name
    assert event.headers["user-agent"] == "Zapier"
    everything = _store_bytes(hub.db_dir)
    assert b"203.0.113.9" in everything  # (the kept headers are in the files, as text)
    for name in CREDENTIAL_LIKE:
        assert _value(name).encode() not in everything, name


def test_the_timestamp_header_an_endpoint_names_is_kept(tmp_path: Path) -> None:
    """An ``hmac`` endpoint's ``timestamp_header`` holds no credential, whatever its name
    (Discord-style ``X-Signature-Timestamp``): the delivery keeps it; its signature header,
    named alike, is not stored."""
    endpoint = Endpoint(
        "signed",
        "hmac",
        HmacOptions(
            header="X-Signature-Hex",
            secret=Secret(fx.HMAC_SECRET),
            signed="{timestamp}.{body}",
            timestamp_header="X-Signature-Timestamp",
        ),
    )
    with running_hub(tmp_path, {"signed": endpoint}) as hub:
        body = json.dumps({"email": "asha.rao@example.com"}).encode()
        stamp = str(int(fx.STANDARD_TIME))
        mac = hmac.new(fx.HMAC_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        answer = hub.client.post(
            "/hooks/signed",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Signature-Timestamp": stamp,
                "X-Signature-Hex": mac.hexdigest(),
            },
        )
        assert answer.status_code == 200, answer.text
        (event,) = hub.events()
        assert event.headers["x-signature-timestamp"] == stamp
        assert "x-signature-hex" not in event.headers
        assert mac.hexdigest().encode() not in _store_bytes(hub.db_dir)


def test_a_token_in_the_url_a_proxy_hands_on_is_not_stored(hub: Hub) -> None:
    """Unbounce and Jotform send a ``token`` endpoint's token as ``?token=``; a proxy in
    front of the hub hands the URL on in a header of its own (``X-Forwarded-Uri``,
    ``X-Original-URL``...), which was stored as it came, token and all. Now each
    credential's query parameter in a kept header, and a URL's password, is
    ``[redacted]``; the rest of the value is kept."""
    d = fx.load("unbounce", "submission_basic", "unbounce", f"token={fx.URL_TOKEN}")
    url = f"/hooks/unbounce?page=7&token={fx.URL_TOKEN}&api_key=ak-kept-nowhere"
    proxy = {
        "X-Forwarded-Uri": url,
        "X-Original-URL": url,
        "X-Envoy-Original-Path": url,
        "X-Rewrite-URL": url,
        "Referer": f"https://form:pw-kept-nowhere@lp.example{url};sig=sg-kept-nowhere",
    }
    answer = hub.client.post(d.path, content=d.body, headers={**d.headers, **proxy})
    assert answer.status_code == 200, answer.text
    (event,) = hub.events()
    shown = "/hooks/unbounce?page=7&token=[redacted]&api_key=[redacted]"
    for name in ("x-forwarded-uri", "x-original-url", "x-envoy-original-path", "x-rewrite-url"):
        assert event.headers[name] == shown, name
    assert event.headers["referer"] == f"https://form:[redacted]@lp.example{shown};sig=[redacted]"
    everything = _store_bytes(hub.db_dir)
    assert b"/hooks/unbounce?page=7" in everything
    for secret in (fx.URL_TOKEN, "ak-kept-nowhere", "pw-kept-nowhere", "sg-kept-nowhere"):
        assert secret.encode() not in everything, secret


def test_credentials_in_the_url_or_basic_auth_are_neither_logged_nor_stored(hub: Hub) -> None:
    """A ``?token=``, right or wrong, Basic credentials (user and password), right or
    wrong, and Facebook's ``hub.verify_token``, right or wrong, come to rest nowhere: the
    query string is not stored, no log line names it or the Authorization header, and a
    refusal's reason says what failed, never with what."""
    unbounce = fx.load("unbounce", "submission_basic", "unbounce")
    zapier = fx.load("zapier", "post_form_default", "zapier-form")
    wrong_basic = "Basic " + base64.b64encode(b"form-user-zz:wrong-pass-zz").decode()
    handshake = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
    with capture_logs() as logs:
        for token, status in (("wrong-query-token-zz", 401), (fx.URL_TOKEN, 200)):
            answer = hub.client.post(
                f"/hooks/unbounce?token={token}", content=unbounce.body, headers=unbounce.headers
            )
            assert answer.status_code == status, answer.text
        for headers, status in (({"Authorization": wrong_basic}, 401), ({}, 200)):
            answer = hub.client.post(
                zapier.path, content=zapier.body, headers={**zapier.headers, **headers}
            )
            assert answer.status_code == status, answer.text
        for verify, status in (("wrong-verify-zz", 403), (fx.FB_VERIFY_TOKEN, 200)):
            params = {**handshake, "hub.verify_token": verify}
            assert hub.client.get("/hooks/facebook", params=params).status_code == status
        lines = [*logged(logs, "delivery_received", 4), *logged(logs, "handshake_answered", 2)]
    assert len(lines) == 6
    assert [line["detail"] for line in lines if line.get("status") == 401] == [
        "the token does not match"
    ] * 2
    events = hub.events()
    assert [e.endpoint for e in events] == ["unbounce", "zapier-form"]
    # (a body of 512 bytes or more is stored compressed: read back through the store too)
    everything = _store_bytes(hub.db_dir)
    read = repr([(e.delivery_id, e.content_type, e.headers, e.body, e.document) for e in events])
    written = repr(logs)
    basic = zapier.headers["Authorization"].split()[1]
    for secret in (
        "wrong-query-token-zz",
        fx.URL_TOKEN,
        "form-user-zz",
        "wrong-pass-zz",
        base64.b64decode(basic).decode().partition(":")[0],
        fx.ZAPIER_PASSWORD,
        basic,
        wrong_basic.split()[1],
        "wrong-verify-zz",
        fx.FB_VERIFY_TOKEN,
    ):
        assert secret not in written, secret
        assert secret.encode() not in everything, secret
        assert secret not in read, secret
