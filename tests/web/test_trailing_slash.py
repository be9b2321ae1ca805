"""A hook URL pasted with a trailing slash (``/hooks/typeform/``, as some site builders and
people write URLs) reaches its endpoint: it was a 404 "unknown endpoint 'typeform/'", every
delivery refused. Only one slash: ``/hooks/typeform//`` and ``/hooks//typeform`` stay 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sources import fixtures as fx
from tests.web.conftest import running_hub


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_hook_url_with_a_trailing_slash_reaches_its_endpoint(tmp_path: Path, writer: str) -> None:
    delivery = fx.load("typeform", "form_response_full", "typeform")
    with running_hub(tmp_path, writer=writer) as hub:
        slashed = hub.client.post(
            delivery.path + "/", content=delivery.body, headers=delivery.headers
        )
        assert slashed.status_code == 200, slashed.text
        assert slashed.json()["status"] == "accepted"
        again = hub.send(delivery)
        assert again.json()["status"] == "duplicate", again.text
        for path in (delivery.path + "//", "/hooks//typeform"):
            refused = hub.client.post(path, content=delivery.body, headers=delivery.headers)
            assert refused.status_code == 404, (path, refused.text)
        (event,) = hub.events()
        assert event.endpoint == "typeform"
