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


def test_a_basic_iso_date_is_that_date(tmp_path: Path) -> None:
    """``20240115`` (ISO 8601's basic form, as some form builders and exports write a date)
    is 2024-01-15; it was read as a unix time and sent as 1970-08-23 06:15:15, no warning."""
    answer = _try(tmp_path, {"email": "a@example.com", "submitted": "20240115"})
    assert answer["body"] == [
        {"Attribute": "EmailAddress", "Value": "a@example.com"},
        {"Attribute": "mx_Submitted_On", "Value": "2024-01-15 00:00:00"},
    ]
    assert answer["warnings"] == []


LISTS = """\
kind: endpoint
name: e
source: none
---
name: m
endpoint: e
fields:
  EmailAddress: "$.lead['work_email','email']"
  mx_Interests: $.interests
  mx_Interests_All: {path: $.interests, transform: "join(;)"}
  mx_Budget: $.budget
  mx_Source_Form: {path: [$.form, $.forms], transform: trim}
"""


def test_the_first_of_a_list_sent_alone_is_a_warning(tmp_path: Path) -> None:
    """A multi-select answer (a list) mapped without join sends its first choice; the others
    were lost without a word. The warning names the path and the fix. A list of one, a list
    joined, and several matches of a union (the first on purpose) are not warned about."""
    (tmp_path / "m.yaml").write_text(LISTS)
    payload = tmp_path / "doc.json"
    document = {
        "lead": {"work_email": "w@example.com", "email": "a@example.com"},
        "interests": ["Solar", "Battery", "EV charger"],
        "budget": ["10k"],
        "forms": [" Spring ", "Summer"],
    }
    payload.write_text(json.dumps(document))
    argv = ["try", "e", str(payload), "--config-dir", str(tmp_path), "--json"]
    done = leadhub_run(argv)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["body"] == [
        {"Attribute": "EmailAddress", "Value": "w@example.com"},
        {"Attribute": "mx_Interests", "Value": "Solar"},
        {"Attribute": "mx_Interests_All", "Value": "Solar;Battery;EV charger"},
        {"Attribute": "mx_Budget", "Value": "10k"},
        {"Attribute": "mx_Source_Form", "Value": "Spring"},
    ]
    fix = (
        "the others not (add join(;) to its transforms to send them all, or end the path "
        "with [0] to take the first alone)"
    )
    assert answer["warnings"] == [
        f"mx_Interests: $.interests found a list of 3 values; sent the first, 'Solar', {fix}",
        f"mx_Source_Form: $.forms found a list of 2 values; sent the first, 'Spring', {fix}",
    ]


def test_letters_in_a_phone_are_not_read_as_digits(tmp_path: Path) -> None:
    """phonenumbers reads three or more letters as a vanity number's digits: a lead's
    '+91 98765 43210 ext' was sent as +91-9876543210398 (and, under default_region IN,
    '98765 mob' as +91-98765662), numbers nobody gave. Such a value is left out with its
    warning, also when the digits read would not have been a possible number."""
    answer = _try(tmp_path, {"email": "a@example.com", "phone": "+91 98765 43210 ext"})
    assert answer["body"] == [{"Attribute": "EmailAddress", "Value": "a@example.com"}]
    assert answer["warnings"] == [
        "Phone: '+91 98765 43210 ext' is not a phone number (its letters would be read as "
        "digits, as in 1-800-FLOWERS); left out"
    ]
    answer = _try(tmp_path, {"email": "a@example.com", "phone": "650 555 mob"})
    assert answer["body"] == [{"Attribute": "EmailAddress", "Value": "a@example.com"}]
    assert "'650 555 mob' is not a phone number (its letters" in answer["warnings"][0]
