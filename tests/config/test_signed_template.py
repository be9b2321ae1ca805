"""An hmac endpoint's ``signed`` template against its ``timestamp_header``, as check reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, load

ENDPOINT = """\
kind: endpoint
name: forms
source: hmac
header: X-Sig
secret: ${FORMS_SECRET}
timestamp_header: X-Ts
signed: "SIGNED"
---
name: forms
endpoint: forms
fields:
  EmailAddress: $.email
"""
ENV = {"FORMS_SECRET": "s3cret"}


def _write(tmp_path: Path, signed: str) -> Path:
    (tmp_path / "forms.yaml").write_text(ENDPOINT.replace("SIGNED", signed))
    return tmp_path / "forms.yaml"


def test_a_timestamp_checked_but_not_signed_is_warned_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``timestamp_header`` without ``{timestamp}`` in ``signed`` passed check without a word:
    the header's age was checked, but a delivery captured on the way verified under any
    timestamp, so sent again with a fresh one it passed. Check warns at the header's line
    with the fix, and the endpoint still loads (the sender may sign no timestamp)."""
    path = _write(tmp_path, "{body}")
    monkeypatch.setenv("FORMS_SECRET", "s3cret")
    assert main(["check", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(
        f"warning: {path}:6: 'timestamp_header' of endpoint 'forms' is set, but 'signed' "
        "'{body}' has no {timestamp}: the timestamp's age is checked but it is not signed"
    )
    assert "add {timestamp} to 'signed' where the sender signs it" in lines[0]
    assert lines[1].endswith("1 warning")
    config = load(tmp_path, ENV)
    assert len(config.warnings) == 1


@pytest.mark.parametrize("signed", ["{timestamp}.{body}", "v0:{timestamp}:{body}"])
def test_a_signed_timestamp_is_no_warning(tmp_path: Path, signed: str) -> None:
    _write(tmp_path, signed)
    assert load(tmp_path, ENV).warnings == ()


@pytest.mark.parametrize(
    ("signed", "says"),
    [
        ("{timestamp}.{body}.{body}", "holds {body} 2 times; a sender signs the body once"),
        # a format spec or conversion: the body was never put in (the template signed as text)
        ("{timestamp}.{body:s}", "must hold {body} and may hold {timestamp}, nothing else"),
        ("{timestamp}.{body!s}", "must hold {body} and may hold {timestamp}, nothing else"),
    ],
)
def test_a_body_written_otherwise_than_once_plainly_is_an_error(
    tmp_path: Path, signed: str, says: str
) -> None:
    """The source puts the body in at the first plain ``{body}`` only: with it twice, or
    written ``{body:s}``, the rest was signed as text and every delivery got a 401, while
    check said ok. One error at the line of ``signed``, and no warning besides."""
    path = _write(tmp_path, signed)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, ENV)
    assert len(info.value.issues) == 1, info.value.issues
    assert info.value.issues[0].startswith(f"{path}:7: 'signed' {signed!r} ")
    assert says in info.value.issues[0]
    assert info.value.warnings == []


TOLERANCE = """\
kind: endpoint
name: forms
source: hmac
header: X-Sig
secret: ${FORMS_SECRET}
TIMESTAMP
tolerance: TOLERANCE
---
kind: endpoint
name: std
source: standard
secret: ${STD_SECRET}
tolerance: TOLERANCE
---
name: forms
endpoint: forms
fields:
  EmailAddress: $.email
---
name: std
endpoint: std
fields:
  EmailAddress: $.email
"""
TOLERANCE_ENV = {**ENV, "STD_SECRET": "whsec_c2VjcmV0"}


def test_a_tolerance_too_short_for_a_timestamp_is_warned_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tolerance: 500ms`` (an hmac endpoint's with a timestamp_header, a standard one's)
    passed check, and refused valid deliveries: a timestamp in whole seconds is up to 1 s
    old when sent. Check warns at the line of each, with the fix; the endpoints still load."""
    text = TOLERANCE.replace("TIMESTAMP", "timestamp_header: X-Ts\nsigned: '{timestamp}.{body}'")
    path = tmp_path / "forms.yaml"
    path.write_text(text.replace("TOLERANCE", "500ms"))
    for name, value in TOLERANCE_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for line, name in ((8, "forms"), (14, "std")):
        said = (
            f"warning: {path}:{line}: 'tolerance' '500ms' of endpoint '{name}' is too short: a "
            "delivery's timestamp is older than that when it arrives"
        )
        assert any(s.startswith(said) for s in lines), lines
    assert all("give a few minutes, like 5m (the default)" in s for s in lines[:2])
    assert lines[-1].endswith("2 warnings")
    assert load(tmp_path, TOLERANCE_ENV).endpoints["forms"].options.tolerance == 0.5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("timestamp", "tolerance"),
    [("timestamp_header: X-Ts\nsigned: '{timestamp}.{body}'", "5s"), ("", "500ms")],
    ids=["5s", "no-timestamp-header"],
)
def test_a_tolerance_of_seconds_or_unused_is_no_warning(
    tmp_path: Path, timestamp: str, tolerance: str
) -> None:
    """5 s is no warning; nor is an hmac endpoint's tolerance without a timestamp_header
    (no age is checked), while the standard endpoint's 500ms still is."""
    text = TOLERANCE.replace("TIMESTAMP", timestamp)
    (tmp_path / "forms.yaml").write_text(text.replace("TOLERANCE", tolerance))
    warnings = load(tmp_path, TOLERANCE_ENV).warnings
    expected = 1 if tolerance == "500ms" else 0
    assert len(warnings) == expected, warnings
    assert all("endpoint 'std'" in w for w in warnings)
