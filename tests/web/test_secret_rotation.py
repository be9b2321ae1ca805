"""Rotating a secret: an endpoint's secret or token written as a list takes deliveries made
with any of its values, so neither the old nor the new one is refused while both are listed.

Through a real ``leadhub serve`` over real HTTP: a delivery signed (or sent) with the old
value and one with the new are 200 while both are listed, one with neither is 401; once the
old value is taken out of the list and the hub gets SIGHUP, the old one is refused. Other
senders (Facebook, Google's key in the body, Standard Webhooks) through the app in-process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from hub.config import load
from tests.e2e.support import wait_until
from tests.e2e.test_reload import Log
from tests.sources import fixtures as fx
from tests.support.logs import logged
from tests.support.server import leadhub_process, serve_args
from tests.web.conftest import running_hub

NEW, OLD, NEITHER = "new-secret-7f3a9c", "old-secret-2b8d41", "neither-secret-05e6"
ENV = {"NEW_SECRET": NEW, "OLD_SECRET": OLD, "LEADHUB_SANDBOX_RATE_LIMIT": "100/1s"}
MAPPING = """---
kind: mapping
name: m
endpoint: e
fields:
  EmailAddress: { path: $.email, required: true }
"""
#: Each sender's endpoint, its secret-bearing key written ``{secrets}``.
ENDPOINTS = {
    "typeform": "kind: endpoint\nname: e\nsource: typeform\nsecret: {secrets}\n",
    "token": "kind: endpoint\nname: e\nsource: token\ntoken: {secrets}\n",
    "hmac": (
        "kind: endpoint\nname: e\nsource: hmac\nheader: Tally-Signature\nencoding: base64\n"
        "secret: {secrets}\n"
    ),
}


def _typeform(secret: str, body: bytes) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"typeform-signature": "sha256=" + base64.b64encode(mac).decode()}


def _token(secret: str, body: bytes) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _tally(secret: str, body: bytes) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"tally-signature": base64.b64encode(mac).decode()}


SIGN: dict[str, Callable[[str, bytes], dict[str, str]]] = {
    "typeform": _typeform,
    "token": _token,
    "hmac": _tally,
}


def _write(config: Path, source: str, secrets: str) -> None:
    (config / "e.yaml").write_text(ENDPOINTS[source].replace("{secrets}", secrets) + MAPPING)


@pytest.mark.parametrize("source", sorted(ENDPOINTS))
def test_old_and_new_secret_both_pass_until_the_old_is_removed(tmp_path: Path, source: str) -> None:
    """With ["${NEW_SECRET}", "${OLD_SECRET}"] deliveries made with either are 200 and one made
    with neither 401; with the old one removed and SIGHUP, the old one is 401, the new 200;
    no secret is in any log line."""
    listed = ENDPOINTS[source].replace("{secrets}", '["${NEW_SECRET}", "${OLD_SECRET}"]')
    args, base, _ = serve_args(tmp_path, {"e.yaml": listed + MAPPING})
    sent = iter(range(1000))

    def post(secret: str) -> int:
        number = next(sent)
        body = json.dumps({"event_id": f"ev-{number}", "email": f"l{number}@example.com"})
        headers = {"content-type": "application/json", **SIGN[source](secret, body.encode())}
        return httpx.post(f"{base}/hooks/e", content=body, headers=headers, timeout=30).status_code

    with leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc:
        log = Log(proc)
        assert (post(OLD), post(NEW), post(NEITHER)) == (200, 200, 401)
        _write(tmp_path / "cfg", source, "\n  - ${NEW_SECRET}")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: bool(log.events("config_reloaded")), what="the reload")
        assert (post(OLD), post(NEW), post(NEITHER)) == (401, 200, 401)

        def refused() -> int:
            return sum(e.get("status") == 401 for e in log.events("delivery_received"))

        # (a line may be read a moment after its answer: waited for, as the reload's is)
        wait_until(lambda: refused() >= 3, what="three refusals logged")
        assert refused() == 3
        written = str(log.lines) + str(log.text)
    assert not any(secret in written for secret in (NEW, OLD, NEITHER))


# --- other senders, in-process ----------------------------------------------------------------

FACEBOOK = """kind: endpoint
name: e
source: facebook
app_secret: ["${NEW_SECRET}", "${OLD_SECRET}"]
verify_token: ${VERIFY}
page_access_token: ${PAGE}
"""
GOOGLE = "kind: endpoint\nname: e\nsource: google\nkey:\n  - ${NEW_SECRET}\n  - ${OLD_SECRET}\n"
STANDARD = 'kind: endpoint\nname: e\nsource: standard\nsecret: ["${NEW_WHSEC}", "${OLD_WHSEC}"]\n'
NEW_WHSEC = "whsec_" + base64.b64encode(NEW.encode()).decode()
OLD_WHSEC = "whsec_" + base64.b64encode(OLD.encode()).decode()
NEITHER_WHSEC = "whsec_" + base64.b64encode(NEITHER.encode()).decode()


def _facebook(secret: str, number: int) -> tuple[bytes, dict[str, str]]:
    change = {"field": "leadgen", "value": {"leadgen_id": f"lg-{number}", "form_id": "f"}}
    body = json.dumps({"object": "page", "entry": [{"id": "p", "changes": [change]}]}).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"x-hub-signature-256": f"sha256={mac}"}


def _google(secret: str, number: int) -> tuple[bytes, dict[str, str]]:
    body = {"lead_id": f"g-{number}", "google_key": secret, "user_column_data": []}
    return json.dumps(body).encode(), {}


def _standard(secret: str, number: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"email": f"s{number}@example.com"}).encode()
    msg_id, stamp = f"msg_{number}", str(int(fx.STANDARD_TIME))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return body, {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}


@pytest.mark.parametrize(
    ("yaml", "make", "values"),
    [
        (FACEBOOK, _facebook, (OLD, NEW, NEITHER)),
        (GOOGLE, _google, (OLD, NEW, NEITHER)),
        (STANDARD, _standard, (OLD_WHSEC, NEW_WHSEC, NEITHER_WHSEC)),
    ],
    ids=["facebook", "google", "standard"],
)
def test_other_senders_take_either_listed_secret(
    tmp_path: Path,
    yaml: str,
    make: Callable[[str, int], tuple[bytes, dict[str, str]]],
    values: tuple[str, str, str],
) -> None:
    """Facebook's app_secret, Google's key (inside the body) and a Standard Webhooks secret
    written as lists: the old and the new value are 200, neither 401, and the refusal's log
    line holds no secret."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "e.yaml").write_text(yaml)
    env = {**ENV, "NEW_WHSEC": NEW_WHSEC, "OLD_WHSEC": OLD_WHSEC, "VERIFY": "v", "PAGE": "p"}
    endpoints = load(config, env).endpoints
    with running_hub(tmp_path, endpoints) as hub, capture_logs() as logs:
        statuses = []
        for number, secret in enumerate(values):
            body, headers = make(secret, number)
            headers["content-type"] = "application/json"
            statuses.append(hub.client.post("/hooks/e", content=body, headers=headers).status_code)
        received = logged(logs, "delivery_received", len(values))  # (written after the answers)
    assert statuses == [200, 200, 401]
    (refused,) = [e for e in received if e["status"] == 401]
    assert not any(secret in str(logs) for secret in (NEW, OLD, NEITHER, *values))
    assert refused["detail"]


LINKEDIN = """kind: endpoint
name: e
source: linkedin
client_secret:
  - ${NEW_SECRET}
  - ${OLD_SECRET}
access_token: ${PAGE}
"""
CHALLENGE = "890e4bd7-0b1c-4f4c-9f0e-6a6c2c1f3b11"


def test_linkedin_takes_either_and_answers_its_challenges_under_each_in_turn(
    tmp_path: Path,
) -> None:
    """A LinkedIn notification signed with the old or the new client secret is 200, with
    neither 401; the validation challenges are answered under the new one, the old one, then
    the new one again: whichever LinkedIn uses, no two validations in a row fail (it blocks
    a webhook after 3; always under the first, each failed until LinkedIn was moved)."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "e.yaml").write_text(LINKEDIN)
    endpoints = load(config, {**ENV, "PAGE": "p"}).endpoints
    statuses = []
    with running_hub(tmp_path, endpoints) as hub:
        for number, secret in enumerate((OLD, NEW, NEITHER)):
            body = json.dumps(
                {"type": "LEAD_ACTION", "leadGenFormResponse": f"urn:li:r:{number}"}
            ).encode()
            mac = hmac.new(secret.encode(), b"hmacsha256=" + body, hashlib.sha256).hexdigest()
            headers = {"content-type": "application/json", "x-li-signature": mac}
            statuses.append(hub.client.post("/hooks/e", content=body, headers=headers).status_code)
        answers = [
            hub.client.get("/hooks/e", params={"challengeCode": CHALLENGE}).json() for _ in range(3)
        ]
    assert statuses == [200, 200, 401]
    signed = [
        hmac.new(secret.encode(), CHALLENGE.encode(), hashlib.sha256).hexdigest()
        for secret in (NEW, OLD, NEW)
    ]
    assert answers == [{"challengeCode": CHALLENGE, "challengeResponse": s} for s in signed]
