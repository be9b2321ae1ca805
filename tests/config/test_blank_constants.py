"""A constant that can send nothing is said, not taken silently: ``{value: }`` is an
error, and a blank ``default`` (``default: ""``) is no default, with a warning.

Blank counts as absent everywhere else (a path finding ``"  "``, a ``value: ""``, a map's
empty target), but a blank default was sent as the value: a field ``{path: $.email,
required: true, default: ""}`` never failed, and leads went out with an empty
``EmailAddress`` (the embedded sandbox made a new lead for each). ``{value: }`` (a
constant not filled in) sent nothing for every event, where a field written as nothing is
refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import ConfigError, load
from hub.config.models import Config
from hub.mapping import CaptureRequest, MappingError, map_document

HEAD = "kind: endpoint\nname: e\nsource: none\n---\nname: m\nendpoint: e\nfields:\n"


def _write(tmp_path: Path, fields: str) -> None:
    (tmp_path / "m.yaml").write_text(HEAD + fields)


def _warnings(config: Config) -> list[str]:
    """The mapping's warnings (not the endpoint's, for its ``source: none``)."""
    return [w for w in config.warnings if "of mapping 'm'" in w]


def test_a_blank_default_does_not_satisfy_a_required_field(tmp_path: Path) -> None:
    """The event fails for its missing email, as without the default, and the default is
    named at its line with what it does."""
    _write(
        tmp_path,
        '  EmailAddress: {path: $.email, required: true, default: ""}\n'
        "  mx_Budget:\n    path: $.budget\n    default: '   '\n",
    )
    config = load(tmp_path, {})
    result = map_document(list(config.mappings.values()), {"budget": None})
    assert isinstance(result, MappingError), result
    assert "required value missing in mapping 'm': EmailAddress ($.email found nothing)" in (
        result.reason
    )
    sent = map_document(list(config.mappings.values()), {"email": "a@b.example"})
    assert isinstance(sent, CaptureRequest), sent
    assert sent.body == [{"Attribute": "EmailAddress", "Value": "a@b.example"}]
    file = tmp_path / "m.yaml"
    warnings = _warnings(config)
    assert [w.split(": ", 1)[0] for w in warnings] == [f"{file}:8", f"{file}:11"]
    assert warnings[0].endswith(
        ": 'default' of field 'EmailAddress' of mapping 'm' is blank, and blank counts as "
        "absent, so it is no default: a document without the value fails, as the field is "
        "required; write the text to send, or remove the 'default'"
    ), warnings
    assert warnings[1].endswith(
        ": 'default' of field 'mx_Budget' of mapping 'm' is blank, and blank counts as absent, "
        "so it is no default: the attribute is left out when the path finds no value; write "
        "the text to send, or remove the 'default'"
    ), warnings


def test_try_fails_the_document_a_blank_default_let_through(tmp_path: Path) -> None:
    """Through ``leadhub try``, as a user sees it: exit 1, the required email missing (it
    printed a request sending "EmailAddress": "" and exited 0)."""
    _write(tmp_path, '  EmailAddress: {path: $.email, required: true, default: ""}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    done = subprocess.run(
        [sys.executable, "-m", "hub", "try", "e", "-", "--config-dir", str(tmp_path), "--json"],
        input='{"name": "no email"}',
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "error", answer
    assert "EmailAddress ($.email found nothing)" in answer["reason"]


@pytest.mark.parametrize("written", ["{value: }", "{value: null}", "{value: ~}", "\n    value:"])
def test_a_constant_written_as_nothing_is_an_error_at_its_line(
    tmp_path: Path, written: str
) -> None:
    _write(tmp_path, "  EmailAddress: $.email\n  Source: " + written + "\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    line = 10 if written.startswith("\n") else 9
    assert info.value.issues == [
        f"{tmp_path / 'm.yaml'}:{line}: 'value' of field 'Source' of mapping 'm' is nothing, "
        "so the field never sends anything; write the constant, like {value: Typeform}, or "
        "remove the field"
    ]


def test_a_blank_constant_is_a_warning_unless_a_variable_left_it_empty(tmp_path: Path) -> None:
    """``value: ""`` written in the file is said; ``"${OWNER:}"``, an optional setting left
    unset, is meant to send nothing and is not."""
    _write(
        tmp_path,
        "  EmailAddress: $.email\n"
        '  Source: {value: ""}\n'
        '  OwnerId: {value: "${OWNER:}"}\n'
        '  mx_Team: {path: $.team, default: "${TEAM:}"}\n',
    )
    config = load(tmp_path, {})
    assert _warnings(config) == [
        f"{tmp_path / 'm.yaml'}:9: 'value' of field 'Source' of mapping 'm' is blank, and "
        "blank counts as absent, so the field never sends anything; write the text to send, "
        "or remove the 'value'"
    ]
    sent = map_document(list(config.mappings.values()), {"email": "a@b.example"})
    assert isinstance(sent, CaptureRequest), sent
    assert sent.body == [{"Attribute": "EmailAddress", "Value": "a@b.example"}]


def test_a_required_field_that_always_has_a_value_is_warned(tmp_path: Path) -> None:
    """``required: true`` beside a ``default`` or a ``value`` never fails (the document it was
    meant to refuse goes out with the constant): a warning at the ``required`` line says
    which key makes it so. Not for a blank one (it fails), nor without ``required``."""
    _write(
        tmp_path,
        "  EmailAddress: {path: $.email, required: true}\n"
        "  Source:\n    path: $.src\n    default: Web\n    required: true\n"
        "  mx_Form:\n    value: Contact\n    required: true\n"
        "  mx_Page:\n    path: $.page\n    default: Home\n"
        '  mx_Blank: {path: $.b, required: true, default: ""}\n',
    )
    config = load(tmp_path, {})
    file = tmp_path / "m.yaml"
    warnings = [w for w in _warnings(config) if "never fails" in w]
    assert warnings == [
        f"{file}:12: 'required' of field 'Source' of mapping 'm' never fails: its 'default' "
        "is sent when nothing else is; remove 'required', or the 'default' to have a "
        "document without the value fail",
        f"{file}:15: 'required' of field 'mx_Form' of mapping 'm' never fails: its 'value' "
        "is sent when nothing else is; remove 'required', or the 'value' to have a document "
        "without the value fail",
    ]
    result = map_document(list(config.mappings.values()), {"email": "a@b.example", "b": "x"})
    assert isinstance(result, CaptureRequest), result
    assert {"Attribute": "Source", "Value": "Web"} in result.body
