"""``leadhub try --content-type TYPE``: a payload tried as the sender posts it (a form-encoded
or multipart body), parsed by the very parser ingest uses, as real ``leadhub`` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.sources import bodies
from hub.sources.base import BodyError
from tests.mappings.cases import ROOT, SHIPPED
from tests.support.server import leadhub_run

FIXTURES = ROOT / "tests/fixtures"
FORM = "application/x-www-form-urlencoded"
#: What ingest answers a form body with a Latin-1 byte sent without a charset (the reason
#: tests/web/test_form_body_reasons.py sees over HTTP).
LATIN1_FORM = b"email=a%40example.com&name=Jos%E9"
LATIN1_REASON = (
    "form body is not valid UTF-8 (byte 0xe9 at offset 30, escaped as %E9); UTF-8 is taken "
    "when the Content-Type names no charset: send UTF-8, or name the charset in the "
    "Content-Type"
)


def _content_type(sample: str) -> str:
    """The Content-Type the sender of fixture ``sample`` posts it with."""
    headers = json.loads((FIXTURES / f"{sample}.headers.json").read_text())
    found: str = headers["headers"]["Content-Type"]
    return found


def _try(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``leadhub try ARGS`` on the shipped mappings, as a command of its own."""
    return leadhub_run(["try", *args, "--config-dir", str(SHIPPED)], env=env)


def _clean_env() -> dict[str, str]:
    """This process's environment without its ``LEADHUB_*`` variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}


def _sent(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The Lead.Capture body attributes of a ``--json`` run that would send one lead."""
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "send", result
    return {item["Attribute"]: item["Value"] for item in result["body"]}


@pytest.mark.parametrize(
    ("endpoint", "sample", "expected"),
    [
        (
            "zapier",
            "zapier/post_form_default",
            {
                "EmailAddress": "aarav.shah@example.com",
                "Phone": "+91-5550011223",
                "Source": "Facebook Lead Ads",
                "mx_Interested_In": "Home loan,Car loan",
            },
        ),
        (
            "elementor",
            "elementor/advanced_data",
            {
                "FirstName": "Rohan",
                "LastName": "Mehta",
                "EmailAddress": "rohan.mehta@example.com",
                "mx_Services": "Solar panels, Home battery",
            },
        ),
        (
            "unbounce",
            "unbounce/submission_basic",
            {
                "EmailAddress": "lucas.ferreira@example.com",
                "SourceContent": "A",
                "mx_Submitted_On": "2025-10-31 00:00:00",
            },
        ),
        (
            "jotform",
            "jotform/submission_basic",
            {
                "FirstName": "Olivia",
                "EmailAddress": "olivia.bennett@example.com",
                "Company": "Bennett Bakery LLC",
                "mx_Jotform_Submission_Id": "6201234567890123456",
            },
        ),
    ],
    ids=["zapier-form", "elementor-form", "unbounce-form-data.json", "jotform-multipart"],
)
def test_a_sender_body_is_tried_as_ingest_parses_it(
    endpoint: str, sample: str, expected: dict[str, Any]
) -> None:
    """A form-encoded or multipart body, exactly as the sender posts it, with its own
    Content-Type, gives the lead the shipped mapping makes of it: try read JSON only, so a
    user had to guess the document the hub makes of form fields (Elementor's bracketed keys,
    Unbounce's ``data.json`` and Jotform's ``rawRequest`` parsed inside it)."""
    payload = str(FIXTURES / f"{sample}.body")
    sent = _sent(_try(endpoint, payload, "--content-type", _content_type(sample), "--json"))
    assert sent.items() >= expected.items(), sent


def test_the_content_type_may_come_from_its_variable_and_the_body_from_stdin() -> None:
    """``LEADHUB_CONTENT_TYPE`` sets the flag as every ``LEADHUB_<FLAG>`` does, and ``-`` reads
    the body from standard input: the human form prints the request."""
    body = (FIXTURES / "zapier/post_form_default.body").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "hub", "try", "zapier", "-", "--config-dir", str(SHIPPED)],
        cwd=str(ROOT),
        env={**_clean_env(), "LEADHUB_CONTENT_TYPE": FORM},
        input=body,
        capture_output=True,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "mapping: zapier-flat-json -> target: default" in out
    assert '"Value": "aarav.shah@example.com"' in out


def test_a_split_endpoint_splits_a_form_body_as_a_json_one(tmp_path: Path) -> None:
    """An endpoint with ``split`` tries a form body lead by lead, the path run on the document
    the form becomes (a field holding a JSON array is parsed into it, as at ingest)."""
    (tmp_path / "c.yaml").write_text(
        "kind: endpoint\nname: e\nsource: none\nsplit: $.leads[*]\n---\n"
        "name: m\nendpoint: e\nfields:\n  EmailAddress: {path: $.email, required: true}\n"
    )
    payload = tmp_path / "post.body"
    payload.write_bytes(b"form=bulk&leads=%5B%7B%22email%22%3A%22a%40x.example%22%7D%2C%7B%7D%5D")
    argv = ["try", "e", str(payload), "--config-dir", str(tmp_path), "--content-type", FORM]
    done = leadhub_run([*argv, "--json"])
    assert done.returncode == 1, done.stderr  # the second lead has no email
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["body"] == [{"Attribute": "EmailAddress", "Value": "a@x.example"}]
    assert second["status"] == "error"
    human = leadhub_run(argv)
    assert "lead 1 of 2:" in human.stdout and "lead 2 of 2:" in human.stdout


def _ingest_reason(content_type: str, body: bytes) -> str:
    """``status reason`` of what ingest answers ``body`` posted as ``content_type``."""
    with pytest.raises(BodyError) as info:
        bodies.parse(content_type, body)
    return f"{info.value.status} {info.value.reason}"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, LATIN1_FORM),
        ("multipart/form-data", b'--XX\r\nContent-Disposition: form-data; name="a"\r\n\r\n1'),
        (
            "multipart/form-data; boundary=XX",
            b'--YY\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--YY--\r\n',
        ),
        ("text/html", b"<p>hello</p>"),
    ],
    ids=["form-not-utf8", "multipart-no-boundary", "multipart-wrong-boundary", "unsupported"],
)
def test_a_body_ingest_refuses_is_refused_with_its_reason(
    tmp_path: Path, content_type: str, body: bytes
) -> None:
    """A body ingest answers 400 (or 415) makes try exit 1 with that status and reason, in
    both forms, and no traceback; the hint to pass JSON (wrong for a sender's body) is not
    added."""
    payload = tmp_path / "post.body"
    payload.write_bytes(body)
    expected = f"{str(payload)!r} would be refused at ingest ({_ingest_reason(content_type, body)})"
    human = _try("zapier", str(payload), "--content-type", content_type)
    assert human.returncode == 1 and human.stdout == ""
    assert human.stderr == f"error: {expected}\n"
    as_json = _try("zapier", str(payload), "--content-type", content_type, "--json")
    assert as_json.returncode == 1, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "status": "error",
        "mapping": None,
        "reason": expected,
        "warnings": [],
    }


def test_a_form_body_reason_is_ingests_own_words(tmp_path: Path) -> None:
    """The reason for a Latin-1 form body is the 400 a sender gets over HTTP, word for word."""
    payload = tmp_path / "post.body"
    payload.write_bytes(LATIN1_FORM)
    done = _try("zapier", str(payload), "--content-type", FORM)
    assert done.returncode == 1
    assert f"would be refused at ingest (400 {LATIN1_REASON})" in done.stderr


def test_plain_json_reads_as_it_did_and_as_application_json(tmp_path: Path) -> None:
    """Without the flag a payload is still JSON, read as before; ``--content-type
    application/json`` gives the same answer, and a form body without the flag is still
    refused as not JSON, now pointing at the flag."""
    payload = FIXTURES / "zapier/post_json_flat.json"
    plain = _try("zapier", str(payload), "--json")
    named = _try("zapier", str(payload), "--json", "--content-type", "application/json")
    assert plain.stdout == named.stdout and plain.returncode == named.returncode == 0
    assert _sent(plain)["EmailAddress"]
    form = _try("zapier", str(FIXTURES / "zapier/post_form_default.body"))
    assert form.returncode == 1
    assert "would be refused at ingest (400 body is not valid JSON" in form.stderr
    assert form.stderr.rstrip().endswith("with --content-type TYPE")
