"""How values are read: YAML 1.2 scalars in files, exact text from ``${VAR}``.

Values compare and are sent as text, so a value is only a number when it is written as
a plain decimal number: ``01234``, ``0x1F``, ``1_000`` or ``1:30`` stay the text written
(YAML 1.1 read them as 668, 31, 1000 and 90). A value that comes from ``${VAR}`` is
always the exact text of the variable; the fields that need a number parse it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError, load
from hub.config.models import FacebookOptions, TokenOptions

LEADHUB = str(Path(sys.executable).with_name("leadhub"))
ENDPOINT = "kind: endpoint\nname: e\nsource: none\n---\n"

# (as written in a file, the value it stands for)
PLAIN = [
    ("01234", "01234"),
    ("007", "007"),
    ("-012", "-012"),
    ("0x1F", "0x1F"),
    ("0o17", "0o17"),
    ("0b101", "0b101"),
    ("1_000", "1_000"),
    ("1:30", "1:30"),
    ("190:20:30", "190:20:30"),
    ("2024-01-01", "2024-01-01"),
    ("=", "="),
    ("yes", "yes"),
    ("NO", "NO"),
    ("on", "on"),
    ("Off", "Off"),
    ("y", "y"),
    ("tRUE", "tRUE"),
    ("NuLL", "NuLL"),
    ("1.5.1", "1.5.1"),
    ("01.5", "01.5"),
    ("1e", "1e"),
    ("inf", "inf"),
    ("nan", "nan"),
    ("0", 0),
    ("42", 42),
    ("-7", -7),
    ("+3", 3),
    ("21000000002", 21000000002),
    ("1.5", 1.5),
    ("1.50", 1.5),
    ("-0.25", -0.25),
    (".5", 0.5),
    ("1e3", 1000.0),
    ("2.5E-1", 0.25),
    (".inf", math.inf),
    ("-.Inf", -math.inf),
    ("+.INF", math.inf),
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("false", False),
    ("False", False),
    ("FALSE", False),
    ("null", None),
    ("Null", None),
    ("NULL", None),
    ("~", None),
    ("", None),
]


def _constants(tmp_path: Path, written: list[str], environ: dict[str, str] | None = None) -> Any:
    fields = "".join(f"  mx_{i}:\n    value: {text}\n" for i, text in enumerate(written))
    (tmp_path / "m.yaml").write_text(ENDPOINT + "name: m\nendpoint: e\nfields:\n" + fields)
    mapping = load(tmp_path, environ or {}).mappings["m"]
    return [spec.value for spec in mapping.fields]


def test_plain_scalars_resolve_the_yaml_1_2_way(tmp_path: Path) -> None:
    """Only plain decimal numbers, true/false and null/~/empty are more than text; leading
    zeros, hex, octal, underscores, sexagesimal, dates and yes/no stay the text written.
    A constant that is null is refused as nothing (it would never send anything)."""
    kept = [(text, expected) for text, expected in PLAIN if expected is not None]
    values = _constants(tmp_path, [text for text, _ in kept])
    for (text, expected), value in zip(kept, values, strict=True):
        assert type(value) is type(expected) and value == expected, (text, value)
    nulls = [text for text, expected in PLAIN if expected is None]
    with pytest.raises(ConfigError) as info:
        _constants(tmp_path, nulls)
    assert len(info.value.issues) == len(nulls), info.value.issues
    assert all("'value' of field 'mx_" in i and " is nothing, " in i for i in info.value.issues)


def test_nan_is_a_float(tmp_path: Path) -> None:
    """`.nan` is YAML 1.2's not-a-number (and `nan` without the dot is text)."""
    (value,) = _constants(tmp_path, [".NaN"])
    assert isinstance(value, float) and math.isnan(value)


def test_match_values_keep_their_leading_zeros(tmp_path: Path) -> None:
    """`match: {$.zip: 01234}` compares against the text 01234 (not 668), and
    `skip_if` values written 0x1F or 1:30 are that text (not 31 or 90)."""
    (tmp_path / "m.yaml").write_text(
        ENDPOINT + "name: m\nendpoint: e\nmatch: {$.zip: 01234, $.n: 42}\n"
        "skip_if: {$.code: [0x1F, 1:30, 007, 1.50]}\n"
        "fields:\n  EmailAddress: $.email\n  mx_Zip: {path: $.zip, default: 007}\n"
    )
    mapping = load(tmp_path, {}).mappings["m"]
    assert {c.path.text: c.expected for c in mapping.match[0]} == {
        "$.zip": frozenset({"01234"}),
        "$.n": frozenset({"42"}),
    }
    assert mapping.skip_if[0][0].expected == frozenset({"0x1F", "1:30", "007", "1.5"})
    assert mapping.fields[1].default == "007"


ENV_TEXTS = [
    "0123",
    "0042",
    "1.50",
    "1_000",
    "0x10",
    "1e3",
    "+1",
    "true",
    "false",
    "NO",
    "null",
    "~",
    "2024-01-01",
    "1:30",
    " padded ",
    "a: b",
    "[x, y]",
    "{k: v}",
    "&a",
    "*a",
    "!!int 5",
    "# no comment",
    "'quoted'",
]


@pytest.mark.parametrize("style", ["plain", "quoted"])
def test_a_variable_gives_its_exact_text(tmp_path: Path, style: str) -> None:
    """A value from ${VAR} is the variable's text exactly, never read again as YAML
    (0123 stays 0123, not 83; true and null stay text), quoted or not."""
    written = [f"${{V{i}}}" if style == "plain" else f'"${{V{i}}}"' for i in range(len(ENV_TEXTS))]
    environ = {f"V{i}": text for i, text in enumerate(ENV_TEXTS)}
    assert _constants(tmp_path, written, environ) == ENV_TEXTS


def test_a_default_gives_its_exact_text(tmp_path: Path) -> None:
    """The default of ${VAR:default} is text too: ${Z:0123} is 0123."""
    assert _constants(tmp_path, ["${Z:0123}", "${Z:true}", "${Z:1.50}"]) == ["0123", "true", "1.50"]


@pytest.mark.parametrize("token", ["0123", "0042", "true", "null", "1.50", "1_000", "0x10"])
def test_a_secret_from_a_variable_is_its_exact_text(tmp_path: Path, token: str) -> None:
    """ZTOK=0123 makes the token 0123 (not 83), and true or null are tokens too (not errors)."""
    (tmp_path / "e.yaml").write_text("kind: endpoint\nname: z\nsource: token\ntoken: ${ZTOK}\n")
    options = load(tmp_path, {"ZTOK": token}).endpoints["z"].options
    assert isinstance(options, TokenOptions)
    assert options.token.reveal() == token


def test_number_fields_parse_the_text_of_a_variable(tmp_path: Path) -> None:
    """Durations, sizes, limits, flags and the multiplier read a variable's text as they
    read the value written in the file."""
    (tmp_path / "c.yaml").write_text(
        "kind: target\nname: crm\nurl: https://api.example.com\naccess_key: ${AK}\n"
        "secret_key: ${SK}\ntimeout: ${TIMEOUT}\nconcurrency: ${CONC}\nrate_limit: ${RATE}\n"
        "retry:\n  initial: ${INITIAL}\n  multiplier: ${MULT}\n  give_up_after: ${GIVE_UP:1h}\n"
        "---\nkind: endpoint\nname: fb\nsource: facebook\napp_secret: ${AK}\n"
        "verify_token: ${AK}\npage_access_token: ${AK}\nallow_sha1: ${SHA1}\n"
        "max_body: ${MAX_BODY}\n"
        "---\nname: m\nendpoint: fb\ntarget: crm\n"
        "fields:\n  EmailAddress:\n    path: $.email\n    required: ${REQUIRED}\n"
    )
    environ = {
        "AK": "a",
        "SK": "s",
        "TIMEOUT": "15",
        "CONC": "0042",
        "RATE": "10/1s",
        "INITIAL": "2.5",
        "MULT": "1.5",
        "SHA1": "true",
        "MAX_BODY": "2048",
        "REQUIRED": "True",
    }
    config = load(tmp_path, environ)
    target = config.targets["crm"]
    assert (target.timeout, target.concurrency, str(target.rate_limit)) == (15.0, 42, "10/1s")
    assert (target.retry.initial, target.retry.multiplier) == (2.5, 1.5)
    assert target.retry.give_up_after == 3600.0
    endpoint = config.endpoints["fb"]
    assert isinstance(endpoint.options, FacebookOptions)
    assert endpoint.options.allow_sha1 is True
    assert endpoint.max_body == 2048
    assert config.mappings["m"].fields[0].required is True


def test_a_flag_from_a_variable_must_be_true_or_false(tmp_path: Path) -> None:
    """allow_sha1: ${SHA1} with SHA1=yes is an error naming the variable's text."""
    (tmp_path / "e.yaml").write_text(
        "kind: endpoint\nname: fb\nsource: facebook\napp_secret: ${AK}\n"
        "verify_token: ${AK}\npage_access_token: ${AK}\nallow_sha1: ${SHA1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"AK": "a", "SHA1": "yes"})
    assert info.value.issues == [
        f"{tmp_path}/e.yaml:7: 'allow_sha1' of endpoint 'fb' must be true or false, "
        "not 'yes' (from ${SHA1})"
    ]


def test_a_name_written_as_a_number_keeps_its_digits(tmp_path: Path) -> None:
    """`name: 007` names the endpoint 007 (YAML 1.1 made it 7)."""
    (tmp_path / "e.yaml").write_text("kind: endpoint\nname: 007\nsource: none\n")
    assert list(load(tmp_path, {}).endpoints) == ["007"]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("${ZAP-TOKEN}", "'${ZAP-TOKEN}' is not a variable name; write ${ZAP_TOKEN} or"),
        ("${ZAP_TOKEN", "'${ZAP_TOKEN' has no closing '}'; write ${ZAP_TOKEN} or"),
        ("${ ZAP_TOKEN }", "'${ ZAP_TOKEN }' is not a variable name; write ${ZAP_TOKEN} or"),
        ("${1TOKEN}", "'${1TOKEN}' is not a variable name; write ${NAME} or ${NAME:default}"),
        ("x${}y", "'${}' is not a variable name; write ${NAME} or"),
    ],
)
def test_a_malformed_variable_is_an_error_not_its_text(
    tmp_path: Path, written: str, message: str
) -> None:
    """`token: ${ZAP-TOKEN}` used to make the token the text "${ZAP-TOKEN}" (check only
    warned that a secret was written in the file): a ${ that is no variable is an error at
    its line naming the fix, in check and in try alike, and nothing else is said of it."""
    (tmp_path / "e.yaml").write_text(
        f"kind: endpoint\nname: z\nsource: token\ntoken: {written}\n---\n"
        "name: m\nendpoint: z\nfields:\n  EmailAddress: $.e\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    env["ZAP_TOKEN"] = "t"
    check = subprocess.run(
        [LEADHUB, "check", str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert "Traceback" not in check.stderr
    lines = check.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path}/e.yaml:4: {message}"), check.stdout
    assert "or $${ for a literal ${" in lines[0]
    assert lines[1:] == [f"{tmp_path}: 1 error"], check.stdout
    (tmp_path / "p.json").write_text('{"e": "a@example.com"}')
    tried = subprocess.run(
        [LEADHUB, "try", "z", str(tmp_path / "p.json"), "--config-dir", str(tmp_path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tried.returncode == 1
    assert json.loads(tried.stdout)["status"] == "error"
    assert message in json.loads(tried.stdout)["reason"]


def test_a_literal_dollar_brace_is_still_written_with_two_dollars(tmp_path: Path) -> None:
    """$${ stays the way to write ${ (next to a real variable too)."""
    assert _constants(tmp_path, ["'$${A-B}'", "'$${X}${Z:1}'"]) == ["${A-B}", "${X}1"]


OPT_OUTS = """\
name: m
endpoint: e
match: {$.form: site}
fields:
  EmailAddress: $.email
  DoNotEmail: {value: yes}
  DoNotCall: {value: on}
  DoNotSMS: {value: true}
  DoNotTrack: {path: $.track, transform: {map: {true: "1", false: "0"}}, default: no}
  mx_Newsletter: {value: on}
---
name: n
endpoint: e
match: {$.form: other}
fields:
  EmailAddress: $.email
  DoNotEmail: {value: "1"}
  DoNotCall: {value: 0}
  DoNotSMS: {value: maybe}
  DoNotTrack: {value: "${TRACK:off}"}
"""


def test_an_opt_out_constant_other_than_0_or_1_is_a_warning_with_the_fix(
    tmp_path: Path,
) -> None:
    """LeadSquared's DoNotEmail, DoNotCall, DoNotSMS and DoNotTrack take "1" or "0". A
    constant written as a flag (yes, on: text in these files; true: sent as "true") went
    out as that word, the sandbox took it, and nothing said so: `leadhub check` warns at
    its line with the value to write. "1", 0 and a Boolean custom field's on are quiet."""
    (tmp_path / "m.yaml").write_text(ENDPOINT + OPT_OUTS)
    done = subprocess.run(
        [sys.executable, "-m", "hub", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "TRACK"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    file = tmp_path / "m.yaml"
    warned = [
        line.removeprefix(f"warning: {file}:")
        for line in done.stdout.splitlines()
        if "LeadSquared's DoNot" in line
    ]
    assert warned == [
        "10: 'value' of field 'DoNotEmail' of mapping 'm' sends 'yes'; LeadSquared's "
        'DoNotEmail takes "1" (do not email) or "0": write value: "1"',
        "11: 'value' of field 'DoNotCall' of mapping 'm' sends 'on'; LeadSquared's "
        'DoNotCall takes "1" (do not call) or "0": write value: "1"',
        "12: 'value' of field 'DoNotSMS' of mapping 'm' sends 'true'; LeadSquared's "
        'DoNotSMS takes "1" (do not text) or "0": write value: "1"',
        "13: 'default' of field 'DoNotTrack' of mapping 'm' sends 'no'; LeadSquared's "
        'DoNotTrack takes "1" (do not track) or "0": write default: "0"',
        "23: 'value' of field 'DoNotSMS' of mapping 'n' sends 'maybe'; LeadSquared's "
        'DoNotSMS takes "1" (do not text) or "0": write value: "1" (do not text) or '
        'value: "0"',
        "24: 'value' of field 'DoNotTrack' of mapping 'n' sends 'off'; LeadSquared's "
        'DoNotTrack takes "1" (do not track) or "0": set what ${TRACK:off} gives to 1 '
        "(do not track) or 0",
    ]


def test_an_integer_too_long_for_python_is_its_text(tmp_path: Path) -> None:
    """An integer of more digits than Python converts (4,300 by default) is the text written,
    as a value, a match value and a map's output (int() raised ValueError: `check`, `serve`
    and `try` stopped with a traceback); a key that needs a number says it is none."""
    digits = "9" * 5000
    (value,) = _constants(tmp_path, [digits])
    assert value == digits
    (tmp_path / "m.yaml").write_text(
        ENDPOINT + f"name: m\nendpoint: e\nmatch: {{$.id: {digits}}}\n"
        f"fields:\n  mx_Id:\n    path: $.id\n    transform: {{map: {{a: !!int {digits}}}}}\n"
    )
    mapping = load(tmp_path, {}).mappings["m"]
    assert mapping.match[0][0].expected == frozenset({digits})
    assert mapping.fields[0].transforms[0].arg == {"a": digits}
    (tmp_path / "m.yaml").write_text(
        "kind: target\nname: crm\nurl: https://api.example.com\naccess_key: a\nsecret_key: s\n"
        "retry:\n  multiplier: ${MULT}\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"MULT": digits})
    (issue,) = info.value.issues
    assert issue.startswith(f"{tmp_path}/m.yaml:7: 'multiplier' must be a number of at least 1")


@pytest.mark.parametrize(
    ("key", "written", "message"),
    [
        ("max_body", "9" * 400 + "KiB", "is too large for a size; write it like '1MiB'."),
        ("rate_limit", "9" * 5000 + "/5s", "is too large for a rate limit; write it like '25/5s'"),
        ("rate_limit", "5/" + "9" * 400 + "s", "is too large for a rate limit; write it like"),
    ],
)
def test_a_quantity_too_large_to_compute_is_an_error_at_its_line(
    tmp_path: Path, key: str, written: str, message: str
) -> None:
    """A size of 400 digits (int() of its infinite float raised OverflowError) and a rate
    limit of 5,000 digits of calls (ValueError) or 400 of seconds were tracebacks from
    `check`; each is an error at its line, quoting it short."""
    head = (
        "kind: endpoint\nname: e\nsource: none\n"
        if key == "max_body"
        else (
            "kind: target\nname: crm\nurl: https://api.example.com\naccess_key: a\nsecret_key: s\n"
        )
    )
    (tmp_path / "c.yaml").write_text(f"{head}{key}: {written}\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    line = head.count("\n") + 1
    assert issue.startswith(f"{tmp_path}/c.yaml:{line}: '{key}' of "), issue
    assert message in issue and len(issue) < 300, issue
