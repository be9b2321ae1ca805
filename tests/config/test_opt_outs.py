"""Opt-out flags (DoNotEmail, DoNotCall, DoNotSMS, DoNotTrack) fed from a sender's values.

LeadSquared's flags take "1" (opted out) or "0"; a mapping sends what a path finds as it is
(interfaces.md: a JSON true as "true"), and the hub cannot turn a sender's answer into the
flag itself (a consent question's true means "0"). So ``check`` (and ``load``, as a
warning) says when such a field's transforms cannot be known to give only "0" or "1", and
``leadhub try`` says when a document's value is neither; the constants' warnings are
tests/config/test_values.py's, but for a constant with transforms, judged here by what
they make of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import load
from hub.mapping import CaptureRequest, map_document
from tests.support.server import leadhub_run

ENDPOINT = "kind: endpoint\nname: e\nsource: none\n---\n"
TAKES_EMAIL = 'LeadSquared\'s DoNotEmail takes "1" (do not email) or "0"'
TAKES_CALL = 'LeadSquared\'s DoNotCall takes "1" (do not call) or "0"'
FIX = (
    'add transform: {map: {true: "1", false: "0"}} (or the inverse, '
    '{map: {true: "0", false: "1"}}, when the question asks for consent)'
)
END_WITH_MAP = (
    'end them with a map to those, like {map: {true: "1", false: "0"}} (or the inverse, '
    '{map: {true: "0", false: "1"}}, when the question asks for consent)'
)

#: Each way an opt-out flag may read a path: warned (lines 10, 12, 13, 27 and 30) or not.
FIELDS = """\
name: m
endpoint: e
match: {$.form: a}
fields:
  EmailAddress: $.email
  DoNotEmail: $.form_response.answers[?(@.field.ref=='optout')].boolean
  DoNotCall:
    path: [$.call, $.phone_ok]
  DoNotSMS: {path: $.sms, transform: [trim, lower]}
  DoNotTrack: {path: $.track, transform: "map({true: 1, false: 0, '*': ''})", default: "0"}
---
name: n
endpoint: e
match: {$.form: b}
fields:
  EmailAddress: $.email
  DoNotEmail:
    path: $.consent
    transform: [trim, lower, {map: {"on": "0", "yes": "0", "true": "0", "*": "1"}}]
    default: "1"
  DoNotCall:
    path: $.call
    transform: {map: {true: "yes", false: "No", maybe: "1"}}
  DoNotSMS:
    path: $.sms
    transform: [lower, {map: {a: x1, b: x2, c: x3, d: x4, e: "0"}}]
  DoNotTrack: {path: $.track, transform: {map: {true: "1", false: "0"}}}
  mx_Newsletter: $.newsletter
"""


def _check(directory: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """``leadhub check DIRECTORY``'s opt-out warnings, each as ``LINE: message`` (exit 0)."""
    assert main(["check", str(directory)]) == 0
    out = capsys.readouterr().out
    prefix = f"warning: {directory / 'm.yaml'}:"
    return [
        line.removeprefix(prefix)
        for line in out.splitlines()
        if line.startswith(prefix) and "LeadSquared's DoNot" in line
    ]


def test_an_opt_out_flag_read_from_a_path_is_warned_unless_a_map_gives_0_or_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field with a path into an opt-out flag sent the sender's "true" to LeadSquared
    without a word (the sandbox takes any text). ``check`` now warns at its line, with the
    map to add, when no transform, or a last one other than ``map``, makes "0" or "1" of
    it; and when the last map gives something else, naming those outputs and what to
    write. A map giving only "0", "1" or nothing (an empty output leaves the value out)
    passes, as does a custom field fed the same way."""
    (tmp_path / "m.yaml").write_text(ENDPOINT + FIELDS)
    assert _check(tmp_path, capsys) == [
        f"10: field 'DoNotEmail' of mapping 'm' sends what its path finds as it is (a JSON "
        f'true as "true"); {TAKES_EMAIL}: {FIX}',
        f"12: field 'DoNotCall' of mapping 'm' sends what its path finds as it is (a JSON "
        f'true as "true"); {TAKES_CALL}: {FIX}',
        "13: field 'DoNotSMS' of mapping 'm' ends its transforms with lower, which may give "
        'more than "1" and "0"; LeadSquared\'s DoNotSMS takes "1" (do not text) or "0": '
        + END_WITH_MAP,
        f"27: the map of field 'DoNotCall' of mapping 'n' sends 'yes' and 'No'; {TAKES_CALL}: "
        "in the map, write \"1\" instead of 'yes', \"0\" instead of 'No'",
        "30: the map of field 'DoNotSMS' of mapping 'n' sends 'x1', 'x2', 'x3' and 1 more; "
        'LeadSquared\'s DoNotSMS takes "1" (do not text) or "0": in the map, write "1" (do '
        'not text) or "0" instead of \'x1\', "1" (do not text) or "0" instead of \'x2\', "1" '
        "(do not text) or \"0\" instead of 'x3', and alike for the others",
    ]


def test_the_warning_is_one_of_load_not_an_error(tmp_path: Path) -> None:
    """The mapping loads and is used (serve starts, logging the warning): the value is
    sent as the mapping says, and only the user knows what the sender's answer means."""
    (tmp_path / "m.yaml").write_text(ENDPOINT + FIELDS)
    config = load(tmp_path, {})
    assert [m.name for m in config.mappings_for("e")] == ["m", "n"]
    file = tmp_path / "m.yaml"
    assert any(w.startswith(f"{file}:10: field 'DoNotEmail'") for w in config.warnings)


#: A Typeform opt-out question sent as it is, a map that lists true and false only, and a
#: default that is no flag.
TRY_CONFIG = (
    ENDPOINT + "name: m\nendpoint: e\nfields:\n"
    "  EmailAddress: {path: $.email, required: true}\n"
    "  DoNotEmail: $.form_response.answers[?(@.field.ref=='optout')].boolean\n"
    '  DoNotCall: {path: [$.call, $.c], transform: {map: {true: "1", false: "0"}}}\n'
    '  DoNotSMS: {path: $.sms, transform: {map: {true: "1", false: "0"}}, default: "no"}\n'
)


def _document(optout: object, call: object, **more: object) -> str:
    answers = [{"field": {"ref": "optout"}, "type": "boolean", "boolean": optout}]
    document = {"email": "a@example.com", "form_response": {"answers": answers}, "c": call}
    return json.dumps({**document, **more})


def test_try_shows_an_opt_out_flag_sent_other_than_0_or_1(tmp_path: Path) -> None:
    """``leadhub try`` on a document whose opt-out answer is JSON true (sent as "true"),
    whose call flag is a value the map does not list (sent as it is) and that gives no SMS
    flag (the default "no" sent) shows the request as it would be sent, values as written,
    with a warning for each naming the value, the path it came from and the fix; exit 0,
    the lead is still sent. In ``--json``'s ``warnings`` too. A document giving "1" and
    "0" has no warning."""
    (tmp_path / "c.yaml").write_text(TRY_CONFIG)
    payload = tmp_path / "doc.json"
    payload.write_text(_document(True, "maybe"))
    argv = ["try", "e", str(payload), "--config-dir", str(tmp_path)]
    human = leadhub_run(argv)
    assert human.returncode == 0, human.stderr
    warnings = [
        f"DoNotEmail: sent 'true' (from $.form_response.answers[?(@.field.ref=='optout')]"
        f".boolean); {TAKES_EMAIL}: {FIX}",
        f"DoNotCall: sent 'maybe' (from $.c); {TAKES_CALL}: its map does not list it: add it, "
        'mapped to "1" or "0" (or a \'*\' entry for every value the map does not list)',
        'DoNotSMS: sent \'no\'; LeadSquared\'s DoNotSMS takes "1" (do not text) or "0": it is '
        'the field\'s value or default: write "1" or "0" there',
    ]
    assert [f"warning: {w}" for w in warnings] == [
        line for line in human.stdout.splitlines() if line.startswith("warning: ")
    ]
    as_json = leadhub_run([*argv, "--json"])
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["body"] == [
        {"Attribute": "EmailAddress", "Value": "a@example.com"},
        {"Attribute": "DoNotEmail", "Value": "true"},
        {"Attribute": "DoNotCall", "Value": "maybe"},
        {"Attribute": "DoNotSMS", "Value": "no"},
    ]
    assert result["warnings"] == warnings
    payload.write_text(_document(1, False, sms=True))
    clean = leadhub_run([*argv, "--json"])
    assert clean.returncode == 0, clean.stderr
    result = json.loads(clean.stdout)
    assert result["warnings"] == []
    assert result["body"][1:] == [
        {"Attribute": "DoNotEmail", "Value": "1"},
        {"Attribute": "DoNotCall", "Value": "0"},
        {"Attribute": "DoNotSMS", "Value": "1"},
    ]


#: Opt-out constants with transforms: what each sends is what its transforms make of it.
CONSTANTS = """\
name: m
endpoint: e
match: {$.form: a}
fields:
  EmailAddress: $.email
  DoNotEmail: {value: true, transform: {map: {true: "1", false: "0"}}}
  DoNotCall: {value: "1", transform: {map: {"1": "yes"}}}
  DoNotSMS: {value: " Yes ", transform: [trim, lower]}
  DoNotTrack: {value: maybe, transform: upper, default: "0"}
---
name: n
endpoint: e
match: {$.form: b}
fields:
  EmailAddress: $.email
  DoNotEmail: {value: yes, transform: date}
  DoNotCall: {value: x, transform: {map: {x: ""}}, default: "yes"}
  DoNotSMS: {value: "1", transform: trim}
  DoNotTrack: {value: "0", transform: {map: {"0": "0", "1": "1"}}}
"""


def test_an_opt_out_constant_is_judged_by_what_its_transforms_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A constant ``value`` passes through its field's transforms before it is sent (a
    ``default`` does not), so ``check`` judges what they make of it: true mapped to "1"
    is quiet (it was warned as "true"), "1" mapped to "yes" is warned (it was not), with
    what was written and the fix. A value a transform cannot take (``date`` of "yes") is
    judged as written, as before; one its map leaves out sends nothing (its default, judged
    as written, does). What ``check`` says is sent is what the engine sends."""
    (tmp_path / "m.yaml").write_text(ENDPOINT + CONSTANTS)
    assert _check(tmp_path, capsys) == [
        "11: 'value' of field 'DoNotCall' of mapping 'm' sends 'yes', which its transforms "
        f"make of '1'; {TAKES_CALL}: a constant needs no transform: drop them and write "
        'value: "1"',
        "12: 'value' of field 'DoNotSMS' of mapping 'm' sends 'yes', which its transforms "
        'make of \' Yes \'; LeadSquared\'s DoNotSMS takes "1" (do not text) or "0": a constant '
        'needs no transform: drop them and write value: "1"',
        "13: 'value' of field 'DoNotTrack' of mapping 'm' sends 'MAYBE', which its "
        "transforms make of 'maybe'; LeadSquared's DoNotTrack takes \"1\" (do not track) or "
        '"0": a constant needs no transform: drop them and write value: "1" (do not track) '
        'or value: "0"',
        f"20: 'value' of field 'DoNotEmail' of mapping 'n' sends 'yes'; {TAKES_EMAIL}: "
        'write value: "1"',
        "21: 'default' of field 'DoNotCall' of mapping 'n' sends 'yes'; "
        f'{TAKES_CALL}: write default: "1"',
    ]
    mappings = load(tmp_path, {}).mappings_for("e")
    sent = {}
    for form in "ab":
        result = map_document(mappings, {"form": form, "email": "a@example.com"})
        assert isinstance(result, CaptureRequest)
        sent[form] = {item["Attribute"]: item["Value"] for item in result.body}
    assert sent["a"] == {
        "EmailAddress": "a@example.com",
        "DoNotEmail": "1",
        "DoNotCall": "yes",
        "DoNotSMS": "yes",
        "DoNotTrack": "MAYBE",
    }
    assert sent["b"] == {
        "EmailAddress": "a@example.com",
        "DoNotCall": "yes",
        "DoNotSMS": "1",
        "DoNotTrack": "0",
    }
