"""A directory of broken files: every problem is reported at once as file:line: message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import ConfigError, load

# Line numbers matter: each comment names the line it is on.
ENDPOINTS = """\
kind: endpoint
name: forms
source: token
token: ${FORMS_TOKEN}
tokne: typo
---
kind: endpoint
name: forms
source: token
token: ${FORMS_TOKEN}
---
kind: endpoint
name: signed
source: hmac
header: X-Sig
secret: ${SIG_SECRET}
algorithm: md5
signed: "{body}{nonce}"
tolerance: soon
---
kind: endpoint
name: std
source: standard
secret: ${STD_SECRET}
max_body: huge
---
kind: endpoint
name: open
source: nonee
---
kind: endpoint
name: li
source: linkedin
client_secret: ${LI_SECRET}
access_token: ${LI_TOKEN}
api_url: api.linkedin.com/rest
api_version: v2
---
kind: endpoint
name: hs
source: hubspot
client_secret: ${LI_SECRET}
webhook_url: hub.example.com/hooks/hs
access_token: ${LI_TOKEN}
properties: 5
"""

MAPPINGS = """\
name: first
endpoint: forms
feilds:
  EmailAddress: $.email
---
name: second
endpoint: froms
target: crm
fields:
  EmailAddress: $.a b
  Phone: { path: $.phone, transform: [phone, lowr] }
  FirstName: Jane
  LastName: { path: $.last, value: x }
  mx_Tags: { path: $.tags, transform: join }
  mx_Count: { path: $.n, required: yes }
update_behavior: DontUpdate
search_by: Mobile
default_region: ZZ
---
name: catch-all
endpoint: forms
fields:
  EmailAddress: $.email
---
name: also-all
endpoint: forms
fields:
  EmailAddress: $.email
---
name: typeform-a
endpoint: forms
match:
  $.form_id: abc
fields:
  EmailAddress: $.email
---
name: typeform-a
endpoint: forms
fields: {}
"""

SYNTAX = """\
kind: mapping
name: broken
fields:
  EmailAddress: $.email
   Phone: $.phone
"""


@pytest.fixture(name="issues")
def _issues(tmp_path: Path) -> list[str]:
    (tmp_path / "endpoints.yaml").write_text(ENDPOINTS)
    (tmp_path / "mappings.yml").write_text(MAPPINGS)
    (tmp_path / "syntax.yaml").write_text(SYNTAX)
    (tmp_path / "notes.txt").write_text("not read: only *.yaml / *.yml are")
    environ = {
        "FORMS_TOKEN": "t",
        "SIG_SECRET": "s",
        "STD_SECRET": "not-whsec",
        "LI_SECRET": "c",
        "LI_TOKEN": "a",
    }
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ)
    prefix = str(tmp_path) + "/"
    assert all(issue.startswith(prefix) for issue in info.value.issues)
    return [issue.removeprefix(prefix) for issue in info.value.issues]


EXPECTED = [
    ("endpoints.yaml:5:", "unknown key 'tokne'", "did you mean 'token'?"),
    ("endpoints.yaml:8:", "duplicate endpoint name 'forms'", "endpoints.yaml:1)"),
    ("endpoints.yaml:17:", "'algorithm' of endpoint 'signed' is 'md5'", "sha256"),
    ("endpoints.yaml:18:", "'signed' '{body}{nonce}'", "{timestamp}.{body}"),
    ("endpoints.yaml:19:", "'tolerance' of endpoint 'signed': 'soon'", "'5m'"),
    ("endpoints.yaml:24:", "'secret' of a standard endpoint", "whsec_"),
    ("endpoints.yaml:25:", "'max_body' of endpoint 'std': 'huge'", "'1MiB'"),
    ("endpoints.yaml:29:", "'source' of endpoint 'open' is 'nonee'", "did you mean 'none'?"),
    ("endpoints.yaml:36:", "'api_url' 'api.linkedin.com/rest'", "must start with https://"),
    ("endpoints.yaml:37:", "'api_version' 'v2'", "YYYYMM like '202606'"),
    ("endpoints.yaml:43:", "'webhook_url' 'hub.example.com/hooks/hs'", "https://hub.example.com"),
    ("endpoints.yaml:45:", "'properties' must be a list of names", "[email, firstname]"),
    ("mappings.yml:1:", "mapping 'first' needs 'fields'", ""),
    ("mappings.yml:3:", "unknown key 'feilds'", "did you mean 'fields'?"),
    ("mappings.yml:7:", "endpoint 'froms'", "did you mean 'forms'?"),
    ("mappings.yml:8:", "target 'crm'", "defined targets: default"),
    ("mappings.yml:10:", "'$.a b' does not compile", "quote"),
    ("mappings.yml:11:", "unknown transform 'lowr'", "did you mean 'lower'?"),
    ("mappings.yml:12:", "'Jane' is not a JSONPath", "{value: ...}"),
    ("mappings.yml:13:", "exactly one of 'path'", "'value'"),
    ("mappings.yml:14:", "transform 'join' needs an argument", "join(;)"),
    ("mappings.yml:15:", "'required' of field 'mx_Count'", "true or false, not 'yes'"),
    ("mappings.yml:16:", "'DontUpdate'", "did you mean 'DoNotUpdate'?"),
    ("mappings.yml:17:", "search_by 'Mobile'", "not among its fields"),
    ("mappings.yml:18:", "default_region 'ZZ'", "two letters"),
    ("mappings.yml:20:", "'first'", "'catch-all' both take every event of endpoint 'forms'"),
    ("mappings.yml:25:", "'first'", "'also-all' both take every event"),
    ("mappings.yml:32:", "'typeform-a' both take", "when $.form_id == 'abc'"),
    ("mappings.yml:37:", "duplicate mapping name 'typeform-a'", "mappings.yml:30)"),
    ("mappings.yml:39:", "'fields' of mapping 'typeform-a'", "{EmailAddress: $.email}"),
    ("syntax.yaml:5:", "YAML syntax error", "indentation"),
]


@pytest.mark.parametrize(("where", "what", "fix"), EXPECTED, ids=[e[0] + e[1] for e in EXPECTED])
def test_each_problem_is_reported_with_its_line(
    issues: list[str], where: str, what: str, fix: str
) -> None:
    """The expected file:line carries a message naming the bad value and the fix."""
    at_line = [issue for issue in issues if issue.startswith(where + " ")]
    assert any(what in issue and fix in issue for issue in at_line), "\n".join(issues)


def test_nothing_else_is_reported(issues: list[str]) -> None:
    """Every reported error is one of the expected ones (no noise, no duplicates)."""
    assert len(issues) == len(EXPECTED), "\n".join(issues)


def test_unset_variables_are_named(tmp_path: Path) -> None:
    """An unset ${VAR} is an error naming the variable; a default keeps it quiet."""
    (tmp_path / "e.yaml").write_text(
        "kind: endpoint\nname: z\nsource: token\ntoken: ${ZAP_TOKEN}\ndedupe: ${DEDUPE_PATH:$.id}\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert len(info.value.issues) == 1
    assert info.value.issues[0].endswith(
        "e.yaml:4: variable ${ZAP_TOKEN} is not set; export "
        "ZAP_TOKEN=... before starting the hub (a reload sees only the environment the "
        "hub started with: restart it) (a value that is no secret may have a default: "
        "${ZAP_TOKEN:value})"
    )


def test_stand_ins_skip_the_form_checks_of_the_values_they_stand_for(tmp_path: Path) -> None:
    """For ``leadhub try`` an unset secret stands in as ``unset-NAME``: a standard
    endpoint's ``whsec_`` check does not apply to it, while a real value that is no
    whsec_ secret is still refused."""
    (tmp_path / "e.yaml").write_text("kind: endpoint\nname: s\nsource: standard\nsecret: ${S}\n")
    config = load(tmp_path, {}, stand_ins=True)
    assert config.endpoints["s"].options.secret.reveal() == "unset-S"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="whsec_"):
        load(tmp_path, {"S": "not-whsec"}, stand_ins=True)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    """A missing directory or one without YAML files is an error, not an empty config."""
    with pytest.raises(ConfigError, match="not a directory"):
        load(tmp_path / "nope", {})
    with pytest.raises(ConfigError, match=r"no \*\.yaml"):
        load(tmp_path, {})


UNSET = """\
kind: endpoint
name: zapier
source: token
token: ${NOPE_TOKEN}
header: ${NOPE_HEADER:X-Key}
dedupe: ${NOPE_DEDUPE}
max_body: ${NOPE_MAX}
---
kind: target
name: crm
url: ${NOPE_URL}
access_key: ${NOPE_A}
secret_key: ${NOPE_B}
timeout: ${NOPE_TIMEOUT}
rate_limit: ${NOPE_RATE}
concurrency: ${NOPE_CONC}
retry:
  initial: ${NOPE_INITIAL}
  multiplier: ${NOPE_MULT}
---
name: m
endpoint: ${NOPE_ENDPOINT}
target: ${NOPE_TARGET}
default_region: ${NOPE_REGION}
update_behavior: ${NOPE_UB}
fields:
  EmailAddress: ${NOPE_PATH}
  Source: {value: "${NOPE_SRC}"}
  Phone:
    path: ${NOPE_PATH2}
    transform: ${NOPE_TR}
    required: ${NOPE_REQ}
---
kind: endpoint
name: ${NOPE_NAME}
source: ${NOPE_SOURCE}
"""


def test_an_unset_variable_is_the_only_error_about_its_value(tmp_path: Path) -> None:
    """An unset ${VAR} is reported once, and the empty text in its place brings no follow-on
    error ('url' '' must start with https://, endpoint '' is not defined...)."""
    (tmp_path / "a.yaml").write_text(UNSET)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    lines = UNSET.splitlines()
    expected = [
        f"{tmp_path}/a.yaml:{number}: variable ${{{name}}} is not set"
        for number, line in enumerate(lines, start=1)
        for name in re.findall(r"\$\{(\w+)\}", line)
    ]
    assert len(expected) == 22
    assert len(info.value.issues) == len(expected), "\n".join(info.value.issues)
    for issue, start in zip(info.value.issues, expected, strict=True):
        assert issue.startswith(start), issue


def test_overlaps_are_told_in_line_order(tmp_path: Path) -> None:
    """Of two overlapping mappings, the later one (line 10, after line 5 though '10' < '5' as
    text) is reported, naming the earlier one as the first."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\n"
        "name: early\nendpoint: e\nfields:\n  EmailAddress: $.email\n---\n"
        "name: late\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert len(info.value.issues) == 1
    assert info.value.issues[0].startswith(
        f"{tmp_path}/a.yaml:10: mappings 'early' ({tmp_path}/a.yaml:5) and 'late' both take"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("\"$.answers[?(@.ref=='form')].v\"", "\"$.answers[?(@.ref == 'form')].v\""),
        ("\"$.answers[?(@.ref=='form')].v\"", '\'$.answers[?(@["ref"]=="form")]["v"]\''),
        ("$.tags[*]", "\"$['tags'][*]\""),
    ],
)
def test_overlapping_matches_on_one_filter_written_two_ways_are_found(
    tmp_path: Path, first: str, second: str
) -> None:
    """Two mappings matching on the same filter, written with other spacing or quoting (one
    copied from an example, one typed): their overlap was not found, as their texts differ,
    and each event both took was dead at run time. Paths that only look alike are not."""
    mapping = "---\nname: {}\nendpoint: e\nmatch:\n  {}: x\nfields:\n  EmailAddress: $.email\n"
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n"
        + mapping.format("early", first)
        + mapping.format("late", second)
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = info.value.issues
    assert issue.startswith(f"{tmp_path}/a.yaml:14: mappings 'early' ({tmp_path}/a.yaml:5) and ")
    assert "both take every event of endpoint 'e' when" in issue
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n"
        + mapping.format("early", "\"$['a.b'][*]\"")
        + mapping.format("late", "$.a.b[*]")
    )
    assert set(load(tmp_path, {}).mappings) == {"early", "late"}


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ('"${FORM_PATH}"', "'${FORM_PATH}' is a key, and ${VAR} is replaced in values only"),
        ('"$.a["', "does not compile"),
    ],
)
def test_a_bad_match_key_is_one_error_not_an_overlap_too(
    tmp_path: Path, key: str, says: str
) -> None:
    """A match rule that cannot be used is its own error, at its line; its mapping is not
    then taken as one without a match ("both take every event" with the next mapping was a
    second, misleading error). A ${VAR} in a key (never replaced there) says so."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\n"
        f"name: first\nendpoint: e\nmatch: {{{key}: x}}\nfields:\n  EmailAddress: $.email\n---\n"
        "name: second\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"FORM_PATH": "$.form"})
    assert len(info.value.issues) == 1, "\n".join(info.value.issues)
    assert info.value.issues[0].startswith(f"{tmp_path}/a.yaml:7: match of mapping 'first': ")
    assert says in info.value.issues[0]


HUGE = "9" * 400 + "s"  # a float beyond 1.8e308: infinite
DURATIONS = """\
kind: endpoint
name: h
source: hmac
header: X-Sig
secret: ${S}
tolerance: 0s
---
kind: endpoint
name: s
source: standard
secret: whsec_c2VjcmV0
tolerance: .inf
---
kind: target
name: crm
url: https://api.example.com
access_key: ${S}
secret_key: ${S}
timeout: .inf
retry:
  initial: 0s
  max_interval: 0
  give_up_after: .nan
---
kind: target
name: crm2
url: https://api.example.com
access_key: ${S}
secret_key: ${S}
timeout: 0ms
retry:
  initial: HUGE
  give_up_after: 0s
""".replace("HUGE", HUGE)


def test_a_target_timeout_over_two_minutes_is_an_error(tmp_path: Path) -> None:
    """A call holds its shared rate-limit slot for up to twice its timeout: past 120 s, another
    process could take that slot for one from before a clock set back (hub.store.base's
    SLOT_HORIZON). 120 s itself is allowed."""
    (tmp_path / "a.yaml").write_text(
        "kind: target\nname: crm\nurl: https://api.leadsquared.com\naccess_key: ${K}\n"
        "secret_key: ${K}\ntimeout: 5m\n---\nkind: target\nname: slow\n"
        "url: https://api-in21.leadsquared.com\naccess_key: ${K}\nsecret_key: ${K}\n"
        "timeout: 2m\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"K": "k"})
    issues = [i.removeprefix(f"{tmp_path}/") for i in info.value.issues]
    assert issues == [
        "a.yaml:6: 'timeout' of target 'crm' must be at most 120s, like 10s, not 300s: "
        "Lead.Capture answers in seconds, and the rate limit shared with other processes "
        "counts a call for at most twice its timeout"
    ]


def test_durations_are_finite_and_positive_where_zero_means_nothing(tmp_path: Path) -> None:
    """A zero tolerance, timeout, initial or max_interval (every signature refused, every
    call timed out, retries in a hot loop) and an infinite or NaN duration are errors;
    give_up_after: 0s (dead at the first failure) is allowed."""
    (tmp_path / "a.yaml").write_text(DURATIONS)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"S": "s"})
    issues = [i.removeprefix(f"{tmp_path}/") for i in info.value.issues]
    assert issues == [
        "a.yaml:6: 'tolerance' of endpoint 'h' must be a finite duration more than zero, "
        "like 5m, not '0s'",
        "a.yaml:12: 'tolerance' of endpoint 's' must be a finite duration more than zero, "
        "like 5m, not '.inf'",
        "a.yaml:19: 'timeout' of target 'crm' must be a finite duration more than zero, "
        "like 10s, not '.inf'",
        "a.yaml:21: 'initial' of retry of target 'crm' must be a finite duration more than "
        "zero, like 10s, not '0s'",
        "a.yaml:22: 'max_interval' of retry of target 'crm' must be a finite duration more "
        "than zero, like 1h, not '0'",
        "a.yaml:23: 'give_up_after' of retry of target 'crm' must be a finite duration of "
        "zero or more, like 72h, not '.nan'",
        "a.yaml:30: 'timeout' of target 'crm2' must be a finite duration more than zero, "
        "like 10s, not '0ms'",
        f"a.yaml:32: 'initial' of retry of target 'crm2' must be a finite duration more than "
        f"zero, like 10s, not '{HUGE}'",
    ]


WRONG_SHAPES = """\
kind: target
name: crm
url: https://api-in21.leadsquared.com
access_key: ${AK}
secret_key: ${AK}
timeout: [10s]
concurrency: [4]
rate_limit: {calls: 25}
retry: {multiplier: [2]}
---
kind: endpoint
name: f
source: hmac
header: X-Sig
secret: ${AK}
tolerance: {minutes: 5}
max_body: [1MiB]
---
name: m
endpoint: f
target: crm
fields:
  EmailAddress: { path: $.e, required: "true" }
  Phone: { path: {p: $.p} }
  mx_Flag: { path: $.f, required: [true] }
  mx_Empty:
  "": $.x
"""

# (line, the whole message after "file:line: ")
WRONG_SHAPE_ISSUES = [
    (6, "'timeout' of target 'crm': ['10s'] is not a duration; write it like '10s', '5m' or '1h'."),
    (
        7,
        "'concurrency' of target 'crm' must be a whole number from 1 to 256 (calls in flight "
        "at once), not [4]; like concurrency: 16",
    ),
    (
        8,
        "'rate_limit' of target 'crm': \"{'calls': 25}\" is not a rate limit; write it like "
        "'25/5s', or 'off'.",
    ),
    (9, "'multiplier' must be a number of at least 1, like 2, not [2]"),
    (
        16,
        "'tolerance' of endpoint 'f': {'minutes': 5} is not a duration; write it like '10s', "
        "'5m' or '1h'.",
    ),
    (17, "'max_body' of endpoint 'f': ['1MiB'] is not a size; write it like '1MiB' or '512KiB'."),
    (
        23,
        "'required' of field 'EmailAddress' of mapping 'm' must be true or false, not the text "
        "'true' (in quotes); write true without quotes",
    ),
    (24, "'path' of field 'Phone' of mapping 'm' must be text, not a mapping"),
    (25, "'required' of field 'mx_Flag' of mapping 'm' must be true or false, not a list"),
    (
        26,
        "field 'mx_Empty' of mapping 'm' is nothing; write a JSONPath like $.email, "
        "or {value: Typeform} for a constant",
    ),
    (
        27,
        "an attribute name in 'fields' of mapping 'm' is empty; write the LeadSquared "
        "attribute, like EmailAddress or mx_City",
    ),
]


def test_values_of_the_wrong_shape_are_named_as_written(tmp_path: Path) -> None:
    """A list or mapping where a duration, size, number or flag belongs is shown as the
    user wrote it (these showed Node(value=..., file=..., line=...) reprs); a quoted
    "true" is named as text in quotes (the message said: must be true or false, not
    'true'); a path written as a list is one error, not also "needs exactly one of 'path'
    or 'value'"; an empty field suggests a real constant ({value: } before); an empty
    attribute name is an error (it was sent as "Attribute": "")."""
    (tmp_path / "a.yaml").write_text(WRONG_SHAPES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    env["AK"] = "k"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("leadhub")), "check", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stdout.splitlines() if not line.startswith("warning: ")]
    assert errors == [
        *(f"{tmp_path}/a.yaml:{line}: {message}" for line, message in WRONG_SHAPE_ISSUES),
        f"{tmp_path}: {len(WRONG_SHAPE_ISSUES)} errors",
    ]


def test_a_misspelt_source_key_lists_each_known_key_once(tmp_path: Path) -> None:
    """`sorce: hmac`: the endpoint has no source, so every source's keys are allowed; the
    list named read_timeout three times, secret four, header twice."""
    (tmp_path / "e.yaml").write_text("kind: endpoint\nname: e\nsorce: hmac\nheader: X-Sig\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (unknown,) = [issue for issue in info.value.issues if "unknown key 'sorce'" in issue]
    assert "(did you mean 'source'?)" in unknown
    known = unknown.split("known keys: ")[1].split(", ")
    assert len(known) == len(set(known)), unknown
    assert {"secret", "header", "read_timeout", "token"} <= set(known)


def test_a_name_no_document_may_have_is_not_registered(tmp_path: Path) -> None:
    """An endpoint (or target) named with a character a name may not hold was registered
    after its error: it was listed among the "defined endpoints", and the mapping naming
    it was not told its endpoint is not defined (renaming the endpoint, as the error says,
    must rename the mapping's too). Now it is not registered, and the mapping is told."""
    (tmp_path / "c.yaml").write_text(
        "kind: endpoint\n"
        'name: "forms leads"\n'
        "source: none\n"
        "---\n"
        "kind: target\n"
        "name: crm/eu\n"
        "url: https://api.example.com\n"
        "access_key: a\n"
        "secret_key: b\n"
        "---\n"
        "kind: endpoint\n"
        "name: good\n"
        "source: none\n"
        "---\n"
        "kind: mapping\n"
        "name: m1\n"
        'endpoint: "forms leads"\n'
        "target: crm/eu\n"
        "fields:\n"
        "  EmailAddress: $.email\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "hub", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if not line.startswith("warning:")]
    assert done.returncode == 1, done.stdout + done.stderr
    assert errors == [
        f"{tmp_path}/c.yaml:2: endpoint name 'forms leads' may hold only letters, digits, '-', "
        "'_' and '.'; rename it like 'facebook-leads'",
        f"{tmp_path}/c.yaml:6: target name 'crm/eu' may hold only letters, digits, '-', '_' "
        "and '.'; rename it like 'facebook-leads'",
        f"{tmp_path}/c.yaml:17: mapping 'm1' takes events of endpoint 'forms leads', which is "
        "not defined; defined endpoints: good",
        f"{tmp_path}/c.yaml:18: mapping 'm1' sends to target 'crm/eu', which is not defined; "
        "defined targets: default",
        f"{tmp_path}: 4 errors",
    ]
    assert "endpoint 'forms leads' has source: none" not in done.stdout


def test_a_name_ending_in_a_line_break_is_refused(tmp_path: Path) -> None:
    """A name written as a block (``name: |``) ends in a line break: it was taken (``$``
    matched before it), an endpoint then served at ``/hooks/forms%0A``, its metrics labelled
    ``endpoint="forms\\n"``, while ``check`` says a name holds only letters, digits, '-', '_'
    and '.'. It is refused at its line, as any other character a name may not hold."""
    (tmp_path / "c.yaml").write_text(
        "kind: endpoint\n"
        "name: |\n"
        "  forms\n"
        "source: none\n"
        "---\n"
        "kind: target\n"
        'name: "eu\\n"\n'
        "url: https://api.example.com\n"
        "access_key: a\n"
        "secret_key: b\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert list(info.value.issues) == [
        f"{tmp_path}/c.yaml:2: endpoint name 'forms\\n' may hold only letters, digits, '-', "
        "'_' and '.'; rename it like 'facebook-leads'",
        f"{tmp_path}/c.yaml:7: target name 'eu\\n' may hold only letters, digits, '-', '_' "
        "and '.'; rename it like 'facebook-leads'",
    ]
