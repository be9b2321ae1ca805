"""Onboarding an ``hmac`` sender: a signature refused for a setting of the endpoint says which.

The endpoint is read by the real loader from a YAML file and served over real HTTP; the
signature is the right HMAC of the body written as the sender writes it. The sender gets a
bare 401 whatever the reason; the ``delivery_received`` line names the settings that would
take it, so the fix is one line of YAML.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hub.config import load
from tests.support.logs import logged
from tests.web.conftest import running_hub

SECRET = "fc_secret_123"
BODY = b'{"submission":{"id":"fc-1","fields":{"email":"jane@example.com"}}}'
ENDPOINT = """\
kind: endpoint
name: formcraft
source: hmac
header: X-FormCraft-Signature
secret: ${FORMCRAFT_SECRET}
%s
---
kind: mapping
name: formcraft-contact
endpoint: formcraft
fields: {EmailAddress: $.submission.fields.email}
"""


def _mac(algorithm: str = "sha256", body: bytes = BODY, secret: str = SECRET) -> bytes:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()


@pytest.mark.parametrize(
    ("settings", "header", "why"),
    [
        (  # the sender writes "sha256=", the endpoint names no prefix
            "",
            "sha256=" + _mac().hex(),
            " as the endpoint is set; it is the body's signature made with prefix: 'sha256=': "
            "set that on the endpoint",
        ),
        (  # a prefix is set, the sender writes none
            "prefix: sha256=",
            _mac().hex(),
            " as the endpoint is set; it is the body's signature made with prefix: '': "
            "set that on the endpoint",
        ),
        (  # Tally-like: base64, the endpoint left at hex
            "",
            base64.b64encode(_mac()).decode(),
            " as the endpoint is set; it is the body's signature made with encoding: base64: "
            "set that on the endpoint",
        ),
        (
            "encoding: base64\nprefix: sha1=",
            "sha1=" + _mac("sha1").hex(),
            " as the endpoint is set; it is the body's signature made with algorithm: sha1, "
            "encoding: hex: set that on the endpoint",
        ),
        ("prefix: sha256=", "sha256=" + _mac(secret="another").hex(), ""),  # a wrong secret
        ("", _mac(body=BODY + b" ").hex(), ""),  # a body changed on the way
        ("", "x" * 40 + _mac().hex(), ""),  # more than a prefix before it: never logged
    ],
)
def test_a_refused_signature_names_the_setting_it_was_made_with(
    tmp_path: Path, settings: str, header: str, why: str
) -> None:
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "formcraft.yaml").write_text(ENDPOINT % settings)
    endpoints = load(config, {"FORMCRAFT_SECRET": SECRET}).endpoints
    with running_hub(tmp_path, endpoints) as hub, capture_logs() as logs:
        response = hub.client.post(
            "/hooks/formcraft",
            content=BODY,
            headers={"content-type": "application/json", "x-formcraft-signature": header},
        )
        (line,) = logged(logs, "delivery_received")
        assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
        assert line["detail"] == "X-FormCraft-Signature does not match the body" + why
        assert hub.events() == []


def test_the_setting_named_takes_the_delivery(tmp_path: Path) -> None:
    """Set as the reason says, the same delivery is stored."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "formcraft.yaml").write_text(ENDPOINT % "prefix: sha256=")
    endpoints = load(config, {"FORMCRAFT_SECRET": SECRET}).endpoints
    with running_hub(tmp_path, endpoints) as hub:
        response = hub.client.post(
            "/hooks/formcraft",
            content=BODY,
            headers={
                "content-type": "application/json",
                "x-formcraft-signature": "sha256=" + _mac().hex().upper(),
            },
        )
        assert response.json() == {"status": "accepted", "id": 1}
