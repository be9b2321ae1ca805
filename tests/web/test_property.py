"""Arbitrary requests at every endpoint kind: no 5xx, the server stays up, rejects store nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config.models import Endpoint, NoneOptions
from tests.sources import fixtures as fx
from tests.web.conftest import running_hub

ENDPOINTS = {
    **fx.endpoints(),
    "tiny": Endpoint("tiny", "none", NoneOptions(), max_body=64),
}
NAMES = [*ENDPOINTS, "unknown", "a/b", "%00", ""]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=B",
    "multipart/form-data",
    "text/plain",
    "text/xml",
    "application/vnd.x+json",
    "",
]
HEADER_NAMES = [
    "x-hub-signature-256",
    "x-hub-signature",
    "typeform-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "x-api-key",
    "x-webflow-signature",
    "x-webflow-timestamp",
    "x-li-signature",
    "user-agent",
]
# printable ASCII without surrounding blanks (the HTTP client refuses anything else)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
).map(str.strip)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),  # stdlib: big ints too
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda parts: (
            b"".join(
                b'--B\r\nContent-Disposition: form-data; name="' + k + b'"\r\n\r\n' + v + b"\r\n"
                for k, v in parts
            )
            + b"--B--\r\n"
        ),
        st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=30)), max_size=4),
    ),
)


def sign(endpoint: str, body: bytes, headers: dict[str, str]) -> None:
    """Sign ``body`` correctly for ``endpoint`` so the request reaches the parsers."""
    if endpoint == "facebook":
        hex_mac = hmac.new(fx.FB_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["x-hub-signature-256"] = "sha256=" + hex_mac
    elif endpoint == "linkedin":
        key = fx.LINKEDIN_SECRET.encode()
        headers["x-li-signature"] = hmac.new(key, b"hmacsha256=" + body, hashlib.sha256).hexdigest()
    elif endpoint == "typeform":
        mac = hmac.new(fx.TYPEFORM_SECRET.encode(), body, hashlib.sha256).digest()
        headers["typeform-signature"] = "sha256=" + base64.b64encode(mac).decode()
    elif endpoint in ("make", "zapier-json"):
        headers["x-api-key"] = fx.API_KEY
    elif endpoint == "pipedream":
        headers["authorization"] = f"Bearer {fx.BEARER}"


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_arbitrary_requests_never_get_a_5xx(tmp_path: Path, writer: str) -> None:
    """Random bodies, types, sizes and headers: no 5xx, still healthy, rejects store nothing."""
    accepted: set[int] = set()
    with running_hub(tmp_path, ENDPOINTS, writer=writer) as hub:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            name=st.sampled_from(NAMES),
            method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
            content_type=st.sampled_from(CONTENT_TYPES) | header_text,
            body=bodies,
            headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_text, max_size=4),
            signed=st.booleans(),
            query=st.sampled_from(
                ["", "token=" + fx.URL_TOKEN, "token=x", "hub.mode=subscribe", "challengeCode=%FF"]
            ),
        )
        def check(
            name: str,
            method: str,
            content_type: str,
            body: bytes,
            headers: dict[str, str],
            signed: bool,
            query: str,
        ) -> None:
            headers = dict(headers)
            if content_type:
                headers["content-type"] = content_type
            if signed:
                sign(name, body, headers)
            url = f"/hooks/{name}" + (f"?{query}" if query else "")
            response = hub.client.request(method, url, content=body, headers=headers)
            assert response.status_code < 500, (response.status_code, response.text)
            if response.status_code == 200 and method == "POST":
                answer = response.json()
                if answer["status"] == "accepted":
                    accepted.update(answer.get("ids", [answer.get("id")]))
                    accepted.discard(None)

        check()
        assert hub.client.get("/healthz").status_code == 200
        assert hub.client.get("/readyz").status_code == 200
        stored = {e.id for e in hub.events()}
    assert stored == accepted
