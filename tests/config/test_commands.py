"""`leadhub check` and `leadhub try` as users run them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.cli import main
from hub.sources import bodies
from hub.sources.base import BodyError
from tests.mappings.cases import DEMO_ENV, ROOT, SHIPPED
from tests.support.server import leadhub_run


@pytest.fixture(name="demo_env")
def _demo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("demo_env")
def test_check_passes_on_the_shipped_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`leadhub check mappings` loads every shipped example cleanly: no warning, exit 0."""
    assert main(["check", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines() == [
        f"{SHIPPED}: ok: 15 endpoints, 15 mappings, 1 target (default: the embedded sandbox), "
        "0 warnings"
    ]


def test_check_names_every_unset_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the environment, check lists each unset variable with its file and line, exit 1."""
    for name in DEMO_ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(["check", str(SHIPPED)]) == 1
    out = capsys.readouterr().out
    for name in DEMO_ENV:
        assert f"variable ${{{name}}} is not set" in out
    assert f"{SHIPPED}/facebook.yaml:17: variable ${{FB_APP_SECRET}} is not set" in out
    # nothing but unset variables (the HubSpot client secret is used by two files)
    assert out.strip().endswith(f"{SHIPPED}: {out.count(' is not set;')} errors")


def test_check_prints_errors_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check prints each error as file:line: message and the warnings marked, then exits 1."""
    (tmp_path / "a.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\n---\nname: m\nendpoint: e\nfeilds: {}\n"
    )
    assert main(["check", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path}/a.yaml:5: mapping 'm' needs 'fields'")
    assert lines[1].startswith(f"{tmp_path}/a.yaml:7: unknown key 'feilds'")
    assert lines[2].startswith(f"warning: {tmp_path}/a.yaml:3: endpoint 'e' has source: none")
    assert lines[-1] == f"{tmp_path}: 2 errors"


#: A target whose timeout (30s) needs serve --lease 66s, and what sends to it.
LEASE_TEST_CONFIG = (
    "kind: target\nname: default\nurl: https://api.example.com\n"
    "access_key: ${LEASE_TEST_K}\nsecret_key: ${LEASE_TEST_S}\ntimeout: 30s\n"
    "---\nkind: endpoint\nname: e\nsource: token\ntoken: ${LEASE_TEST_T}\n"
    "---\nname: m\nendpoint: e\nfields: {EmailAddress: $.email}\n"
)


def test_check_warns_of_a_target_timeout_the_default_lease_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target timeout of 30s needs serve --lease 66s: serve refuses its default 60s (exit 2),
    so check, which said "ok" and nothing more, warns with the lease to give."""
    for name in ("K", "S", "T"):
        monkeypatch.setenv(f"LEASE_TEST_{name}", "secret-value")
    monkeypatch.delenv("LEADHUB_LEASE", raising=False)
    (tmp_path / "t.yaml").write_text(LEASE_TEST_CONFIG)
    assert main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    said = f"warning: {tmp_path}/t.yaml:1: serve's default --lease 60s is too short: a call to"
    assert f"{said} target 'default'" in out  # (at the target, as every warning is)
    assert "give --lease 66s or more" in out
    assert out.strip().endswith("1 warning")


def _check_agrees_with_serve(tmp_path: Path, settings: dict[str, str], refused: str | None) -> str:
    """Run ``check`` on :data:`LEASE_TEST_CONFIG` with the ``LEADHUB_*`` ``settings`` in the
    environment: ok (exit 0) when ``refused`` is None, else exit 1 saying ``refused``, and
    ``serve`` in the same environment exits 2 saying it too. What check printed."""
    (tmp_path / "t.yaml").write_text(LEASE_TEST_CONFIG)
    env = {f"LEASE_TEST_{name}": "secret-value" for name in ("K", "S", "T")} | settings
    checked = leadhub_run(["check", str(tmp_path)], env=env, leadhub_env=False)
    if refused is None:
        assert checked.returncode == 0, checked.stdout
        return checked.stdout
    assert checked.returncode == 1, checked.stdout
    assert refused in checked.stdout
    db = f"sqlite:///{tmp_path}/hub.db"
    served = leadhub_run(
        ["serve", "--config-dir", str(tmp_path), "--port", "0", "--db", db],
        env=env,
        leadhub_env=False,
    )
    assert served.returncode == 2, served.stderr
    assert refused in served.stderr
    return checked.stdout


@pytest.mark.parametrize(
    ("lease", "refused"),
    [("120s", None), ("40s", "LEADHUB_LEASE=40s is too short"), ("abc", "'abc' is not a duration")],
)
def test_check_judges_the_lease_leadhub_lease_gives_serve(
    tmp_path: Path, lease: str, refused: str | None
) -> None:
    """check judged serve's default lease alone: with LEADHUB_LEASE=120s in the environment
    (a container's, shared by check and serve) it warned that 60s was too short, and with
    LEADHUB_LEASE=40s it said ok while serve, in the same environment, refused to start
    (exit 2). Now check judges the lease serve will run with, and agrees with serve."""
    said = _check_agrees_with_serve(tmp_path, {"LEADHUB_LEASE": lease}, refused)
    assert "serve's default --lease" not in said
    if refused is None:
        assert said.strip().endswith("0 warnings"), said


@pytest.mark.parametrize(
    ("purge_after", "refused"),
    [
        ("off", None),
        ("30d", None),
        ("1d", "LEADHUB_PURGE_AFTER: '1d' is shorter than senders retry"),
        ("soon", "LEADHUB_PURGE_AFTER: 'soon' is not a duration"),
    ],
)
def test_check_refuses_the_leadhub_purge_after_serve_refuses(
    tmp_path: Path, purge_after: str, refused: str | None
) -> None:
    """A LEADHUB_PURGE_AFTER serve refuses (exit 2: shorter than senders retry, or no
    duration) was ok to check in the same environment; now check says what serve says."""
    settings = {"LEADHUB_PURGE_AFTER": purge_after, "LEADHUB_LEASE": "120s"}  # (the timeout's)
    _check_agrees_with_serve(tmp_path, settings, refused)


@pytest.mark.parametrize(
    ("role", "refused"),
    [
        ("Web", None),
        ("bogus", "LEADHUB_ROLE='bogus': invalid choice: 'bogus' (choose from 'all', 'web', "),
        (" web", "LEADHUB_ROLE=' web': invalid choice: ' web' (choose from 'all', 'web', "),
    ],
)
def test_check_refuses_the_leadhub_role_serve_refuses(
    tmp_path: Path, role: str, refused: str | None
) -> None:
    """A LEADHUB_ROLE serve refuses (exit 2: no role, or one with a blank around it) was ok
    to check in the same environment; now check says what serve says. A role in another
    case is serve's role, ok to both."""
    settings = {"LEADHUB_ROLE": role, "LEADHUB_LEASE": "120s"}  # (the timeout's)
    _check_agrees_with_serve(tmp_path, settings, refused)


@pytest.mark.slow
def test_check_as_a_real_subprocess() -> None:
    """`python -m hub check` in a child process: exit 0 with the environment set, 1 without."""
    base = {k: v for k, v in os.environ.items() if k not in DEMO_ENV}
    options: dict[str, Any] = {
        "cwd": ROOT,
        "capture_output": True,
        "text": True,
        "timeout": 60,
        "check": False,
    }
    ok = subprocess.run(
        [sys.executable, "-m", "hub", "check", "mappings"], env={**base, **DEMO_ENV}, **options
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "mappings: ok: 15 endpoints" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "hub", "check"],
        env={**base, "LEADHUB_CONFIG_DIR": "mappings"},
        **options,
    )
    assert bad.returncode == 1
    assert "variable ${TYPEFORM_SECRET} is not set" in bad.stdout


@pytest.mark.usefixtures("demo_env")
def test_try_prints_the_request_for_humans(capsys: pytest.CaptureFixture[str]) -> None:
    """try without --json shows the URL without keys, the query, the pretty body, exit 0."""
    payload = ROOT / "tests/mappings/typeform-full/input.json"
    assert main(["try", "typeform", str(payload), "--config-dir", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "POST (embedded sandbox)/v2/LeadManagement.svc/Lead.Capture\n" in out
    assert "query: LeadUpdateBehavior=UpdateOnlyEmptyFields\n" in out
    body = json.loads(out.split("body:\n", 1)[1])
    assert {"Attribute": "EmailAddress", "Value": "jordan.lee@example.com"} in body
    assert "accessKey" not in out and "sandbox\n" not in out


def test_try_shows_a_real_target_url_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a configured target the URL is its host (no keys); phone warnings are printed."""
    (tmp_path / "c.yaml").write_text(
        "kind: target\nname: default\nurl: https://api-in21.leadsquared.com\n"
        "access_key: ${AK:ak-secret}\nsecret_key: ${SK:sk-secret}\n---\n"
        "kind: endpoint\nname: e\nsource: none\n---\n"
        "name: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
        "  Phone: {path: $.p, transform: phone}\n"
    )
    payload = tmp_path / "doc.json"
    payload.write_text('{"email": "a@example.com", "p": "12"}')
    assert main(["try", "e", str(payload), "--config-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "POST https://api-in21.leadsquared.com/v2/LeadManagement.svc/Lead.Capture\n" in out
    assert "query: (none)\n" in out
    assert "headers: x-LSQ-AccessKey and x-LSQ-SecretKey (the target's keys, not shown)\n" in out
    assert "warning: Phone: '12' is not a phone number" in out
    assert "ak-secret" not in out and "sk-secret" not in out


WARNING_CONFIG = (
    "kind: endpoint\nname: e\nsource: none\n---\n"
    "name: m\nendpoint: e\nmatch: {$.kind: lead}\n"
    "skip_if: {$.test: 'yes'}\nfields:\n"
    "  EmailAddress: {path: $.email, required: true}\n"
    "  Phone: {path: $.p, transform: phone}\n"
    "  mx_Submitted_On: {path: $.at, transform: date}\n"
)
PHONE_WARNING = "Phone: '12' is not a phone number"
DATE_WARNING = "mx_Submitted_On: 'last tuesday' is not a date (ISO 8601 or unix time); left out"


def _try_both(
    config_dir: Path, endpoint: str, document: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """``leadhub try ENDPOINT`` on ``document`` (JSON text) with the config in ``config_dir``,
    as a command of its own: the human form's run, then ``--json``'s."""
    payload = config_dir / "doc.json"
    payload.write_text(document)
    argv = ["try", endpoint, str(payload), "--config-dir", str(config_dir)]
    return leadhub_run(argv), leadhub_run([*argv, "--json"])


def test_try_json_carries_the_warnings_the_human_form_prints(tmp_path: Path) -> None:
    """``try --json`` printed no field for the mapping's warnings (a phone that is no number, a
    date it cannot read): a script reading the JSON never learnt the body left them out.
    Each object now has ``warnings``, the very lines the human form prints after
    ``warning:``, beside every key it had; an empty list when there is none."""
    (tmp_path / "c.yaml").write_text(WARNING_CONFIG)
    human, as_json = _try_both(
        tmp_path, "e", '{"kind": "lead", "email": "a@example.com", "p": "12", "at": "last tuesday"}'
    )
    assert human.returncode == as_json.returncode == 0, human.stderr + as_json.stderr
    shown = [
        line.removeprefix("warning: ")
        for line in human.stdout.splitlines()
        if line.startswith("warning: ")
    ]
    result = json.loads(as_json.stdout)
    assert set(result) == {"status", "mapping", "target", "query", "body", "warnings"}
    assert result["warnings"] == shown
    assert len(shown) == 2 and shown[0].startswith(PHONE_WARNING) and shown[1] == DATE_WARNING
    assert result["body"] == [{"Attribute": "EmailAddress", "Value": "a@example.com"}]
    clean_lead = '{"kind": "lead", "email": "a@example.com", "p": "+14155550100"}'
    _, clean = _try_both(tmp_path, "e", clean_lead)
    assert clean.returncode == 0 and json.loads(clean.stdout)["warnings"] == []


@pytest.mark.parametrize(
    ("document", "status"),
    [
        ('{"kind": "other", "email": "a@example.com"}', "unmatched"),
        ('{"kind": "lead", "test": "yes", "p": "12"}', "skipped"),
        ('{"kind": "lead"}', "error"),
    ],
)
def test_try_json_has_warnings_when_nothing_would_be_sent(
    tmp_path: Path, document: str, status: str
) -> None:
    """An unmatched, skipped or failing document's object has ``warnings`` too (an empty list
    when the mapping left nothing else out), so that every object printed has the same keys
    to read."""
    (tmp_path / "c.yaml").write_text(WARNING_CONFIG)
    payload = tmp_path / "doc.json"
    payload.write_text(document)
    done = leadhub_run(["try", "e", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == status
    assert set(result) == {"status", "mapping", "reason", "warnings"}
    assert result["warnings"] == []


def test_try_a_missing_required_value_names_what_else_was_left_out(tmp_path: Path) -> None:
    """A lead missing its required EmailAddress whose phone was no number and whose date was
    unreadable failed with "EmailAddress ($.email found nothing)" alone: the warnings, often
    the cause, were dropped, and ``--json`` gave ``"warnings": []``. The reason now ends with
    what else was left out, briefly (no advice), and ``--json`` lists the warnings whole, as
    for a request to send (and on standard error)."""
    (tmp_path / "c.yaml").write_text(WARNING_CONFIG)
    human, as_json = _try_both(tmp_path, "e", '{"kind": "lead", "p": "12", "at": "last tuesday"}')
    assert human.returncode == as_json.returncode == 1, human.stderr + as_json.stderr
    reason = (
        "required value missing in mapping 'm': EmailAddress ($.email found nothing); "
        "also left out: Phone: '12' is not a phone number (no default_region set); "
        "mx_Submitted_On: 'last tuesday' is not a date (ISO 8601 or unix time)"
    )
    assert human.stdout == f"error (mapping m): {reason}\n"
    result = json.loads(as_json.stdout)
    assert result == {
        "status": "error",
        "mapping": "m",
        "reason": reason,
        "warnings": [
            "Phone: '12' is not a phone number (no default_region set); left out",
            DATE_WARNING,
        ],
    }
    shown = [f"warning: {w}" for w in result["warnings"]]
    assert as_json.stderr.splitlines() == shown


#: Two forms on one endpoint, the second's match with a typo (formid for form_id).
TWO_FORMS_CONFIG = (
    "kind: endpoint\nname: typeform\nsource: none\n---\n"
    "name: typeform-demo\nendpoint: typeform\n"
    "match: { $.form_response.form_id: aB3xYz9Q }\n"
    "skip_if: { $.form_response.hidden.source: [qa, test] }\n"
    "fields: { EmailAddress: $.form_response.email }\n---\n"
    "name: typeform-webinar\nendpoint: typeform\n"
    "match: { $.form_response.formid: Wb7Kq2Lm }\n"
    "fields: { EmailAddress: $.form_response.email }\n"
)


def test_try_says_why_no_mapping_matched(tmp_path: Path) -> None:
    """try said "unmatched: no mapping matched; tried 'typeform-demo', 'typeform-webinar'",
    no hint that the second match's path has a typo: it now says, for each mapping, which
    condition failed and what its path found, in the human form and --json's reason."""
    (tmp_path / "c.yaml").write_text(TWO_FORMS_CONFIG)
    human, as_json = _try_both(
        tmp_path, "typeform", '{"form_response": {"form_id": "Wb7Kq2Lm", "email": "a@b.example"}}'
    )
    assert human.returncode == as_json.returncode == 1, human.stderr + as_json.stderr
    reason = (
        "no mapping matched; tried 'typeform-demo': $.form_response.form_id is 'Wb7Kq2Lm' "
        "(wants 'aB3xYz9Q'); 'typeform-webinar': $.form_response.formid found nothing"
    )
    assert human.stdout == f"unmatched: {reason}\n"
    assert json.loads(as_json.stdout) == {
        "status": "unmatched",
        "mapping": None,
        "reason": reason,
        "warnings": [],
    }


def test_try_says_which_value_a_skip_found(tmp_path: Path) -> None:
    """A skip_if wanting one of several values said "$.x == 'qa' or 'test'"; it now says
    which one the document has."""
    (tmp_path / "c.yaml").write_text(TWO_FORMS_CONFIG)
    payload = tmp_path / "doc.json"
    payload.write_text('{"form_response": {"form_id": "aB3xYz9Q", "hidden": {"source": "test"}}}')
    done = leadhub_run(["try", "typeform", str(payload), "--config-dir", str(tmp_path), "--json"])
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["reason"] == (
        "skip_if of mapping 'typeform-demo' held: $.form_response.hidden.source == 'qa' or "
        "'test' (found 'test')"
    )


@pytest.mark.usefixtures("demo_env")
def test_try_explains_skips_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A skipped document prints why and exits 1, in both output forms."""
    payload = str(ROOT / "tests/mappings/google-test-lead/input.json")
    assert main(["try", "google", payload, "--config-dir", str(SHIPPED)]) == 1
    assert capsys.readouterr().out.startswith("skipped (mapping google-lead-form): skip_if")


@pytest.mark.usefixtures("demo_env")
@pytest.mark.parametrize(
    ("endpoint", "content", "reason"),
    [
        (
            "nope",
            "{}",
            "unknown endpoint 'nope'; defined endpoints: elementor, facebook, google",
        ),
        (  # a typo of a defined one: named, as check names them
            "type-form",
            "{}",
            "unknown endpoint 'type-form' (did you mean 'typeform'?); defined endpoints: ",
        ),
        ("zapier", "{not json", "would be refused at ingest (400 body is not valid JSON"),
        ("zapier", '{"first_name": "A"}', "required value missing"),
    ],
)
def test_try_json_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: str, content: str, reason: str
) -> None:
    """Unknown endpoints, bad JSON and missing required values give status error, exit 1."""
    payload = tmp_path / "doc.json"
    payload.write_text(content)
    assert main(["try", endpoint, str(payload), "--config-dir", str(SHIPPED), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "error"
    assert reason in result["reason"]
    assert set(result) == {"status", "mapping", "reason", "warnings"}
    assert result["warnings"] == []


def test_try_on_a_broken_config_says_run_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration with errors makes try refuse, pointing at leadhub check."""
    (tmp_path / "c.yaml").write_text("kind: endpont\n")
    (tmp_path / "doc.json").write_text("{}")
    assert main(["try", "e", str(tmp_path / "doc.json"), "--config-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "run leadhub check" in err and "did you mean 'endpoint'" in err


def test_try_needs_no_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """try maps a document with the shipped config even when no secret variable is set."""
    for name in DEMO_ENV:
        monkeypatch.delenv(name, raising=False)
    payload = ROOT / "tests/mappings/typeform-full/input.json"
    assert main(["try", "typeform", str(payload), "--config-dir", str(SHIPPED), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "send"
    assert {"Attribute": "EmailAddress", "Value": "jordan.lee@example.com"} in result["body"]
    # check, which loads the directory as serve does, still names every unset variable.
    assert main(["check", str(SHIPPED)]) == 1
    assert "variable ${TYPEFORM_SECRET} is not set" in capsys.readouterr().out


TRY_CONFIG = (
    "kind: endpoint\nname: e\nsource: none\n---\n"
    "name: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
    "  mx_Big: \"$.rows[?(@.n == '1180591620717411303424')].v\"\n"
)


def _ingest_reason(body: bytes) -> str:
    """The 400 reason ingest answers for a JSON ``body``."""
    with pytest.raises(BodyError) as info:
        bodies.parse_json(body)
    assert info.value.status == 400
    return info.value.reason


@pytest.mark.parametrize(
    "content",
    [
        "[" * 5000 + "]" * 5000,  # deeper than orjson reads
        '{"email": ' + "[" * 201 + "1" + "]" * 201 + "}",  # deeper than ingest takes
        '{"email": NaN}',
        '{"email": 1e400}',
        "",
    ],
    ids=["5000-deep", "201-deep", "nan", "1e400", "empty"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_try_refuses_what_ingest_refuses_with_its_400_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, as_json: bool
) -> None:
    """A payload ingest answers 400 makes try exit 1 with that very reason, no traceback."""
    (tmp_path / "c.yaml").write_text(TRY_CONFIG)
    payload = tmp_path / "doc.json"
    payload.write_text(content)
    args = ["try", "e", str(payload), "--config-dir", str(tmp_path)]
    assert main(args + (["--json"] if as_json else [])) == 1
    out, err = capsys.readouterr()
    expected = (
        f"{str(payload)!r} would be refused at ingest (400 {_ingest_reason(content.encode())})"
    )
    if as_json:
        result = json.loads(out)
        assert result["status"] == "error" and result["mapping"] is None
        assert result["reason"].startswith(expected)
    else:
        assert out == "" and err.startswith(f"error: {expected}")
    assert "Traceback" not in out + err


def test_try_from_a_closed_standard_input_says_so(tmp_path: Path) -> None:
    """`leadhub try e - <&-` (standard input closed, as a job may run): exit 1 saying it
    cannot read '-', no traceback (it was an AttributeError one)."""
    (tmp_path / "c.yaml").write_text(TRY_CONFIG)
    argv = [sys.executable, "-m", "hub", "try", "e", "-", "--config-dir", str(tmp_path)]
    done = subprocess.run(
        ["sh", "-c", f"{shlex.join(argv)} <&-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: cannot read '-': standard input is closed\n"


def test_try_reads_integers_beyond_64_bits_as_text_as_ingest_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An integer beyond 64 bits is the text of its digits for try, as for the hub: a
    filter comparing it with that text finds it."""
    (tmp_path / "c.yaml").write_text(TRY_CONFIG)
    payload = tmp_path / "doc.json"
    payload.write_text(
        '{"email": "a@example.com", "rows": [{"n": 1180591620717411303424, "v": 1}]}'
    )
    assert main(["try", "e", str(payload), "--config-dir", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"Attribute": "mx_Big", "Value": "1"} in result["body"]
    # thousands of digits too (Python's int() refuses them: it was a 400 at ingest)
    payload.write_text('{"email": "a@example.com", "huge": ' + "7" * 5000 + "}")
    assert main(["try", "e", str(payload), "--config-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "send"


def test_check_and_try_on_an_unreadable_directory(tmp_path: Path) -> None:
    """A configuration directory that cannot be listed says permission denied and how to
    fix it (exit 1); it said it holds no *.yaml files, sending the operator to look for
    the wrong directory."""
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "forms.yaml").write_text("kind: endpoint\nname: forms\nsource: none\n")
    payload = tmp_path / "lead.json"
    payload.write_text('{"email": "a@example.com"}')
    config.chmod(0)
    try:
        for argv in (
            ["check", str(config)],
            ["try", "forms", str(payload), "--config-dir", str(config)],
        ):
            done = leadhub_run(argv, unprivileged=True)
            assert done.returncode == 1, done.stdout + done.stderr
            shown = done.stdout + done.stderr
            assert f"{config}: the directory cannot be read: permission denied" in shown
            assert f"chmod a+rx {config}" in shown
            assert "holds no *.yaml" not in shown
    finally:
        config.chmod(0o755)


def test_serve_and_check_refuse_an_empty_embedded_sandbox_key(tmp_path: Path) -> None:
    """``serve`` with an empty LEADHUB_SANDBOX_ACCESS_KEY used to run an embedded sandbox that
    took any call sending an empty key (its leads readable by anyone); now serve exits 2 and
    check 1, naming the variable, before anything listens. Named plainly: it is no file, and
    ``LEADHUB_SANDBOX_ACCESS_KEY:0:`` read as a place in one."""
    env = {**DEMO_ENV, "LEADHUB_SANDBOX_ACCESS_KEY": ""}
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    result = leadhub_run(
        ["serve", "--config-dir", str(SHIPPED), "--db", db, "--port", "0"], env=env
    )
    assert result.returncode == 2, result.stderr
    assert "\nLEADHUB_SANDBOX_ACCESS_KEY is empty: an empty key" in f"\n{result.stderr}"
    assert "LEADHUB_SANDBOX_ACCESS_KEY:" not in result.stderr
    assert "hub_ready" not in result.stderr + result.stdout
    result = leadhub_run(["check", str(SHIPPED)], env=env)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("LEADHUB_SANDBOX_ACCESS_KEY is empty: ")


@pytest.mark.usefixtures("demo_env")
def test_a_bad_sandbox_rate_limit_is_one_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad LEADHUB_SANDBOX_RATE_LIMIT is the one error check reports: the mappings that
    send to the default target (the sandbox it would have made) are not also each reported
    as sending to a target 'default' that "is not defined; defined targets: " (nothing), 15
    false errors on the shipped examples that buried the real one. The variable is named as
    the sandbox command names it, not as a ``file:0:`` place."""
    monkeypatch.setenv("LEADHUB_SANDBOX_RATE_LIMIT", "fast")
    assert main(["check", str(SHIPPED)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "LEADHUB_SANDBOX_RATE_LIMIT: 'fast' is not a rate limit; write it like '25/5s', or 'off'.",
        f"{SHIPPED}: 1 error",
    ]


FOUND_NOTHING_CONFIG = (
    "kind: endpoint\nname: e\nsource: token\ntoken: t\n---\nname: m\nendpoint: e\n"
    "default_region: IN\nfields:\n"
    "  EmailAddress: {path: $.answers.email, required: true}\n"
    "  Mobile: $.answers.mobile\n"  # the document has "phone"
    "  FirstName: {path: $.answers.name, transform: first_word}\n"
    "  LastName: {path: $.answers.name, transform: rest_words}\n"  # one word: nothing
    "  Phone: {path: $.answers.phone, transform: phone}\n"
    "  mx_Source: {path: [$.utm.source, $.source]}\n"
    "  mx_Plan: {path: $.answers.plan, transform: {map: {free: ''}}}\n"  # mapped to nothing
    "  Notes: $.answers.notes\n"
)


def test_try_names_the_fields_whose_paths_found_nothing(tmp_path: Path) -> None:
    """A path with a typo left its attribute out of the body with no word (``Mobile`` read
    ``$.answers.mobile`` where the sender sends ``phone``): ``try``, the tool for catching
    it, showed a request that merely lacked it. The human form now ends with a note naming
    each field whose paths found no value (each path of a fallback list), and only those:
    a value its transforms left out (a single word's ``rest_words``, a map to nothing, a
    phone that is no number, which has its warning) was found, and is not named."""
    (tmp_path / "c.yaml").write_text(FOUND_NOTHING_CONFIG)
    answers = {"email": "a@b.example", "phone": "12", "name": "Meera", "plan": "free"}
    document = {"answers": answers, "utm": {"source": "  "}, "source": None}
    human, as_json = _try_both(tmp_path, "e", json.dumps(document))
    assert human.returncode == as_json.returncode == 0, human.stderr + as_json.stderr
    notes = [line for line in human.stdout.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: not in the body, as their paths found nothing (or only null or blank values) "
        "in this document: Mobile ($.answers.mobile); mx_Source ($.utm.source or $.source); "
        "Notes ($.answers.notes); if the document holds a value for one, its path is wrong"
    ]
    assert json.loads(as_json.stdout)["body"] == [
        {"Attribute": "EmailAddress", "Value": "a@b.example"},
        {"Attribute": "FirstName", "Value": "Meera"},
    ]
    full = {"answers": {**answers, "mobile": "+91 98765 43210", "notes": "hi"}, "source": "ads"}
    human, _ = _try_both(tmp_path, "e", json.dumps(full))
    assert human.returncode == 0, human.stderr
    assert "note: " not in human.stdout, human.stdout


def test_check_loads_no_http_client_and_no_dispatcher() -> None:
    """``leadhub check`` judges the lease and the proxy settings from modules of their own
    (``hub.dispatch.lease``, ``hub.dispatch.proxies``): it loads neither the dispatcher nor
    the HTTP clients it sends with (0.36 -> 0.27 s of CPU at each start); nor, given no
    LEADHUB_PURGE_AFTER to check, the retention task's metrics (prometheus_client)."""
    probe = (
        "import sys\n"
        "from hub.commands import check\n"
        "check.environment_problems()\n"
        "check._lease_problems(check.load(sys.argv[1], dict(DEMO)), [])\n"
        "print(' '.join(m for m in ('aiohttp', 'httpx', 'hub.dispatch.worker', "
        "'hub.dispatch.transport', 'prometheus_client') if m in sys.modules))"
    ).replace("DEMO", repr(DEMO_ENV))
    done = subprocess.run(
        [sys.executable, "-c", probe, str(SHIPPED)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "LEADHUB_PURGE_AFTER"},
            "PYTHONPATH": str(ROOT),
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
