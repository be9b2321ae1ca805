"""Golden tests: each shipped mapping, fed real sender documents, gives the expected request."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import load
from tests.mappings.cases import DEMO_ENV, ROOT, SHIPPED, case_dirs

CASES = case_dirs()


@pytest.fixture(name="demo_env")
def _demo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DEMO_ENV.items():
        monkeypatch.setenv(name, value)


def _try(case: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    endpoint = (case / "endpoint").read_text().strip()
    code = main(["try", endpoint, str(case / "input.json"), "--config-dir", str(SHIPPED), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_there_are_cases_for_every_shipped_endpoint() -> None:
    """Every endpoint of the shipped examples has at least one golden case."""
    endpoints = {(case / "endpoint").read_text().strip() for case in CASES}
    assert endpoints == set(load(SHIPPED, DEMO_ENV).endpoints)
    assert {"facebook", "typeform", "tally", "webflow"} <= endpoints


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.usefixtures("demo_env")
def test_golden_case(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`leadhub try --json` on the case's input prints exactly expected.json, exit 0 iff sent."""
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    code, result = _try(case, capsys)
    assert result == expected
    assert code == (0 if expected["status"] == "send" else 1)


@pytest.mark.usefixtures("demo_env")
def test_special_cases_show_the_features(capsys: pytest.CaptureFixture[str]) -> None:
    """The golden outputs exercise skip, unmatched, SearchBy, LeadUpdateBehavior and accounts."""
    shown = {"google-test-lead", "typeform-other-form", "google-full", "typeform-full"}
    shown |= {"zapier-account", "zapier-flat"}
    results = {case.name: _try(case, capsys)[1] for case in CASES if case.name in shown}
    assert set(results) == shown  # (each case is there to be run)
    assert results["google-test-lead"]["status"] == "skipped"
    assert results["typeform-other-form"]["status"] == "unmatched"
    google_body = results["google-full"]["body"]
    assert {"Attribute": "SearchBy", "Value": "EmailAddress"} in google_body  # type: ignore[operator]
    assert results["typeform-full"]["query"] == {"LeadUpdateBehavior": "UpdateOnlyEmptyFields"}
    account = {"Attribute": "RelatedCompanyId", "Value": "8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11"}
    assert account in results["zapier-account"]["body"]  # type: ignore[operator]
    assert account not in results["zapier-flat"]["body"]  # type: ignore[operator]


@pytest.mark.slow
def test_golden_case_as_a_real_subprocess() -> None:
    """`python -m hub try` in a child process prints the expected JSON for the Facebook case."""
    case = next(c for c in CASES if c.name == "facebook-unicode")
    env = {**os.environ, **DEMO_ENV, "PYTHONIOENCODING": "utf-8"}
    argv = ["try", "facebook", str(case / "input.json"), "--config-dir", str(SHIPPED), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "hub", *argv],
        capture_output=True,
        encoding="utf-8",
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads((case / "expected.json").read_text("utf-8"))


@pytest.mark.usefixtures("demo_env")
def test_every_date_sent_is_in_leadsquareds_format(capsys: pytest.CaptureFixture[str]) -> None:
    """LeadSquared takes dates as UTC YYYY-MM-DD HH:MM:SS ("other formats may cause
    errors"): every date attribute (mx_..._On) the shipped mappings send is in that form
    (Unbounce's mx_Submitted_On was sent as Unbounce's bare 2025-10-31)."""
    dates = {}
    for case in CASES:
        result = _try(case, capsys)[1]
        for item in result.get("body", []):  # type: ignore[attr-defined]
            if item["Attribute"].endswith("_On"):
                dates[f"{case.name} {item['Attribute']}"] = item["Value"]
    assert len(dates) >= 12
    wrong = {
        k: v for k, v in dates.items() if not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", v)
    }
    assert wrong == {}
