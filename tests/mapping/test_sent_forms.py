"""What ``leadhub try`` says a sender's phone numbers and dates become in Lead.Capture's
body: the +CC-NUMBER and UTC ``YYYY-MM-DD HH:MM:SS`` forms LeadSquared documents, and a
warning for whatever part of a value those forms cannot carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.server import leadhub_run

CONFIG = """\
kind: endpoint
name: e
source: none
---
name: m
endpoint: e
default_region: US
fields:
  EmailAddress: $.email
  Phone: {path: $.phone, transform: phone}
  mx_Submitted_On: {path: $.submitted, transform: date}
"""


def _try(tmp_path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """``leadhub try e DOC --json``'s answer for ``document`` (exit 0: it would be sent)."""
    (tmp_path / "m.yaml").write_text(CONFIG)
    payload = tmp_path / "doc.json"
    payload.write_text(json.dumps(document))
    argv = ["try", "e", str(payload), "--config-dir", str(tmp_path), "--json"]
    done = leadhub_run(argv)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_a_phone_extension_left_out_is_a_warning(tmp_path: Path) -> None:
    """A work number with an extension is sent as +CC-NUMBER, which holds none; the warning
    names the extension (it was dropped without a word)."""
    answer = _try(tmp_path, {"email": "a@example.com", "phone": "(650) 555-0123 ext. 45"})
    assert answer["body"] == [
        {"Attribute": "EmailAddress", "Value": "a@example.com"},
        {"Attribute": "Phone", "Value": "+1-6505550123"},
    ]
    assert answer["warnings"] == [
        "Phone: '(650) 555-0123 ext. 45' sent as +1-6505550123, its extension 45 left out "
        "(LeadSquared's +CC-NUMBER form holds no extension; map the value to an mx_ field "
        "too to keep it)"
    ]
