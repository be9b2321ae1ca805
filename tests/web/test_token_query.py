"""A token source's ``?token=`` holding a ``+``, over HTTP: taken as written, as well as
percent-encoded."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hub.config.models import Endpoint, TokenOptions
from hub.secrets import Secret
from tests.sources import fixtures as fx
from tests.web.conftest import running_hub

#: A token as ``openssl rand -base64 12`` makes them: with a ``+`` (and a ``/``).
TOKEN = "q7+Vd/3kXw9+Lm2z"


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_token_with_a_plus_pasted_into_the_url_is_taken(tmp_path: Path, writer: str) -> None:
    """``?token=q7+Vd/...`` as pasted into Unbounce's or Jotform's webhook URL was read the
    form way, the ``+`` a space: every delivery was a 401 ("the token does not match"),
    the URL looking right. Now the value as written is compared too; the percent-encoded
    URL still works, and a wrong token is still refused."""
    endpoints = {"unbounce": Endpoint("unbounce", "token", TokenOptions(token=Secret(TOKEN)))}
    delivery = fx.load("unbounce", "submission_basic", "unbounce")
    with running_hub(tmp_path, endpoints, writer=writer) as hub:

        def post(query: str) -> httpx.Response:
            return hub.client.post(
                f"/hooks/unbounce?{query}", content=delivery.body, headers=delivery.headers
            )

        pasted = post(f"token={TOKEN}")
        assert pasted.status_code == 200, pasted.text
        assert pasted.json()["status"] == "accepted"
        encoded = post("token=" + TOKEN.replace("+", "%2B").replace("/", "%2F"))
        assert encoded.status_code == 200, encoded.text
        assert encoded.json()["status"] == "duplicate"
        for wrong in ("token=" + TOKEN.replace("+", "-"), "token=" + TOKEN.replace("+", "%20")):
            refused = post(wrong)
            assert refused.status_code == 401, refused.text
        assert len(hub.events()) == 1
