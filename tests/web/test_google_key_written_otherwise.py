"""Google's key is never stored, however the sender's JSON writes it (escaped, beside a long
number, in a form): not in the body, not in the document, not in ``leadhub events --json``."""

from __future__ import annotations

import json

import orjson

from tests.sources import fixtures as fx
from tests.support.server import leadhub_run
from tests.web.conftest import Hub

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
ANSWERS = '"user_column_data":[{"column_id":"EMAIL","string_value":"a@example.com"}]'
#: The key with its first letter written as a \u escape (valid JSON, the same text).
ESCAPED = json.dumps(fx.GOOGLE_KEY).replace(fx.GOOGLE_KEY[0], f"\\u{ord(fx.GOOGLE_KEY[0]):04x}", 1)


def _secret_free(text: str | bytes) -> bool:
    key = fx.GOOGLE_KEY.encode() if isinstance(text, bytes) else fx.GOOGLE_KEY
    return key not in text  # type: ignore[operator]


def test_a_google_key_written_otherwise_is_not_stored(hub: Hub) -> None:
    """Redaction replaced the key where the body wrote it as JSON encoders do: a \\u escape
    (or a slash written \\/, as PHP writes it), a body with a number beyond 64 bits (whose
    document is stored beside the body) or a form body kept it in the clear, and
    `leadhub events --json` showed it."""
    bodies = [
        (f'{{"lead_id":"L1","google_key":{ESCAPED},{ANSWERS}}}'.encode(), JSON),
        (
            f'{{"lead_id":"L2","campaign_id":123456789012345678901234,'
            f'"google_key":"{fx.GOOGLE_KEY}",{ANSWERS}}}'.encode(),
            JSON,
        ),
        (f"lead_id=L3&google_key={fx.GOOGLE_KEY}&email=a%40example.com".encode(), FORM),
    ]
    for body, headers in bodies:
        answer = hub.client.post("/hooks/google", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    events = hub.events()
    assert [e.delivery_id for e in events] == ["L1", "L2", "L3"]
    for event in events:
        assert event.document["google_key"] == "[redacted]"
        assert _secret_free(event.body), event.body
        assert _secret_free(orjson.dumps(event.document))
    # the key as JSON encoders write it is still replaced in place, every other byte kept
    assert events[1].body == bodies[1][0].replace(fx.GOOGLE_KEY.encode(), b"[redacted]")
    assert events[1].document["campaign_id"] == "123456789012345678901234"
    # a body written otherwise is stored as the JSON of its redacted document
    assert events[0].content_type == events[2].content_type == "application/json"
    assert orjson.loads(events[0].body) == events[0].document
    assert events[2].document["email"] == "a@example.com"
    listed = leadhub_run(["events", "--db", hub.db_url, "--json"])
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 3
    assert _secret_free(listed.stdout)
