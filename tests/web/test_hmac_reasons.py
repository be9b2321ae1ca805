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
from tests.sources import fixtures as fx
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


#: The frozen clock of ``running_hub``, in seconds and in milliseconds.
NOW_S = int(fx.STANDARD_TIME)
NOW_MS = NOW_S * 1000
TIMED = 'signed: "{timestamp}.{body}"\ntimestamp_header: X-FormCraft-Timestamp\n'


@pytest.mark.parametrize(
    ("unit", "stamp", "why"),
    [
        (  # a sender's milliseconds where the endpoint reads seconds (the default)
            "",
            NOW_MS,
            f"timestamp {NOW_MS} is outside the 300 s tolerance (now {NOW_S}): it is the time "
            "in milliseconds, not seconds; set timestamp_unit: ms on the endpoint",
        ),
        (  # seconds where the endpoint reads milliseconds
            "timestamp_unit: ms",
            NOW_S,
            f"timestamp {NOW_S} is outside the 300 s tolerance (now {NOW_MS}): it is the time "
            "in seconds, not milliseconds; set timestamp_unit: s on the endpoint",
        ),
        (  # an old delivery in the right unit: no unit to blame
            "timestamp_unit: ms",
            NOW_MS - 3_600_000,
            f"timestamp {NOW_MS - 3_600_000} is outside the 300 s tolerance (now {NOW_MS})",
        ),
        (  # an hour old in seconds, read as ms, is no time now in seconds either
            "",
            (NOW_S - 3600) * 1000,
            f"timestamp {(NOW_S - 3600) * 1000} is outside the 300 s tolerance (now {NOW_S})",
        ),
    ],
)
def test_a_timestamp_in_the_other_unit_names_the_setting(
    tmp_path: Path, unit: str, stamp: int, why: str
) -> None:
    """A signed timestamp refused because the endpoint reads it in the other unit says so
    and names ``timestamp_unit`` (it said the timestamp was outside the tolerance of a now
    it equalled: ``timestamp 1761914821 is outside the 300 s tolerance (now 1761914821)``);
    "now" is written in the endpoint's unit. Set as it says, the same delivery is stored."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "formcraft.yaml").write_text(ENDPOINT % (TIMED + unit))
    endpoints = load(config, {"FORMCRAFT_SECRET": SECRET}).endpoints
    signed = str(stamp).encode() + b"." + BODY
    headers = {
        "content-type": "application/json",
        "x-formcraft-signature": _mac(body=signed).hex(),
        "x-formcraft-timestamp": str(stamp),
    }
    with running_hub(tmp_path, endpoints) as hub, capture_logs() as logs:
        response = hub.client.post("/hooks/formcraft", content=BODY, headers=headers)
        (line,) = logged(logs, "delivery_received")
        assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
        assert line["detail"] == why
        assert hub.events() == []
    if "set timestamp_unit" not in why:
        return
    fixed = why.rpartition("set ")[2].removesuffix(" on the endpoint")
    (config / "formcraft.yaml").write_text(ENDPOINT % (TIMED + fixed))
    endpoints = load(config, {"FORMCRAFT_SECRET": SECRET}).endpoints
    (tmp_path / "again").mkdir()
    with running_hub(tmp_path / "again", endpoints) as hub:
        response = hub.client.post("/hooks/formcraft", content=BODY, headers=headers)
        assert response.json() == {"status": "accepted", "id": 1}
