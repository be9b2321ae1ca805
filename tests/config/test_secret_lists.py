"""A secret-bearing key written as a list (rotation): what is taken, what is refused where.

``secret``, ``token``, ``app_secret``, ``client_secret`` and ``key`` may list several values
while one is rotated; an empty list or an empty value is an error at its line, a value
listed twice a warning, a list under a key that takes one value (``verify_token``) an error.
No message shows a secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import ConfigError, load
from hub.config.models import FacebookOptions, HmacOptions, StandardOptions, TokenOptions
from hub.secrets import Secret
from tests.mappings.cases import ROOT

MAPPING = "---\nkind: mapping\nname: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"
ENV = {"NEW": "new-value-5c1d", "OLD": "old-value-9e2f", "EMPTY": "", "OTHER": "o"}
SHOWN = ("new-value-5c1d", "old-value-9e2f")


def _load(directory: Path, endpoint: str) -> Path:
    path = directory / "e.yaml"
    path.write_text(endpoint + MAPPING)
    return path


def _issues(directory: Path, environ: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(directory, environ)
    return list(info.value.issues)


def test_a_block_or_flow_list_gives_every_value_in_order(tmp_path: Path) -> None:
    """A block list and a quoted flow list both load; the first value is the secret, the
    others are kept in ``rotating``, for every source that takes a list."""
    _load(tmp_path, "kind: endpoint\nname: e\nsource: token\ntoken:\n  - ${NEW}\n  - ${OLD}\n")
    token = load(tmp_path, ENV).endpoints["e"].options
    assert isinstance(token, TokenOptions)
    assert token.token == Secret(ENV["NEW"]) and token.rotating == (Secret(ENV["OLD"]),)
    _load(
        tmp_path,
        'kind: endpoint\nname: e\nsource: hmac\nheader: X-Sig\nsecret: ["${NEW}", "${OLD}"]\n',
    )
    signed = load(tmp_path, ENV).endpoints["e"].options
    assert isinstance(signed, HmacOptions) and signed.rotating == (Secret(ENV["OLD"]),)


def test_an_empty_list_is_an_error_at_its_line(tmp_path: Path) -> None:
    """``secret: []`` would let no delivery in: one error at its line saying how to write it."""
    path = _load(tmp_path, "kind: endpoint\nname: e\nsource: typeform\nsecret: []\n")
    (issue,) = _issues(tmp_path)
    assert issue.startswith(f"{path}:4: 'secret' of endpoint 'e' is an empty list"), issue
    assert '["${NEW_VAR}", "${OLD_VAR}"]' in issue


def test_an_empty_value_in_the_list_is_an_error_at_its_line(tmp_path: Path) -> None:
    """A listed variable set but empty is an error at the value's own line, naming it."""
    path = _load(
        tmp_path, "kind: endpoint\nname: e\nsource: token\ntoken:\n  - ${NEW}\n  - ${EMPTY}\n"
    )
    (issue,) = _issues(tmp_path)
    assert issue.startswith(f"{path}:6: value 2 of 'token' of endpoint 'e' is empty"), issue
    assert "${EMPTY} is set but empty" in issue


def test_an_unset_variable_in_the_list_is_reported_once(tmp_path: Path) -> None:
    """An unset listed variable is the loader's one error; the list adds none of its own."""
    path = _load(
        tmp_path, 'kind: endpoint\nname: e\nsource: typeform\nsecret: ["${NEW}", "${GONE}"]\n'
    )
    (issue,) = _issues(tmp_path)
    assert issue.startswith(f"{path}:4: variable ${{GONE}} is not set"), issue


def test_a_value_that_is_no_text_is_an_error(tmp_path: Path) -> None:
    """A nested list or an empty item is an error at its line, not a secret."""
    path = _load(tmp_path, "kind: endpoint\nname: e\nsource: typeform\nsecret:\n  - ${NEW}\n  -\n")
    (issue,) = _issues(tmp_path)
    assert issue.startswith(f"{path}:6: value 2 of 'secret' of endpoint 'e' must be text"), issue


def test_a_list_under_a_key_that_takes_one_value_is_an_error(tmp_path: Path) -> None:
    """``verify_token`` answers Facebook's handshake with one value: a list there is an error
    at its line, saying which keys take a list."""
    path = _load(
        tmp_path,
        "kind: endpoint\nname: e\nsource: facebook\napp_secret: ${NEW}\n"
        'verify_token: ["${NEW}", "${OLD}"]\npage_access_token: ${OTHER}\n',
    )
    (issue,) = _issues(tmp_path)
    assert issue.startswith(f"{path}:5: 'verify_token' of endpoint 'e' must be text, not a list"), (
        issue
    )
    assert "takes one value" in issue


def test_a_value_listed_twice_is_a_warning_without_the_secret(tmp_path: Path) -> None:
    """Two variables holding one value: a warning at the second naming both variables (never
    the value), and the value is kept once."""
    path = _load(
        tmp_path,
        "kind: endpoint\nname: e\nsource: facebook\napp_secret:\n  - ${NEW}\n  - ${SAME}\n"
        "verify_token: ${OTHER}\npage_access_token: ${OTHER}\n",
    )
    config = load(tmp_path, {**ENV, "SAME": ENV["NEW"]})
    options = config.endpoints["e"].options
    assert isinstance(options, FacebookOptions) and options.rotating == ()
    (warning,) = [w for w in config.warnings if "same" in w]
    assert warning.startswith(f"{path}:6: value 2 of 'app_secret' of endpoint 'e' is the same")
    assert "${NEW} and ${SAME}" in warning
    assert not any(secret in warning for secret in SHOWN)


def test_a_literal_in_the_list_is_a_warning_without_the_value(tmp_path: Path) -> None:
    """A value written in the file is warned about at its own line, like a single one."""
    path = _load(
        tmp_path, 'kind: endpoint\nname: e\nsource: token\ntoken: ["${NEW}", "lit-tok-88"]\n'
    )
    config = load(tmp_path, ENV)
    (warning,) = config.warnings
    assert warning.startswith(
        f"{path}:4: value 2 of 'token' of endpoint 'e' is written in the file"
    )
    assert "lit-tok-88" not in warning


def test_each_standard_secret_must_be_whsec(tmp_path: Path) -> None:
    """Every listed Standard Webhooks secret is checked for its ``whsec_`` form, at its line."""
    good = "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ="
    path = _load(
        tmp_path, "kind: endpoint\nname: e\nsource: standard\nsecret:\n  - ${NEW}\n  - ${OLD}\n"
    )
    (issue,) = _issues(tmp_path, {**ENV, "NEW": good})
    assert issue.startswith(f"{path}:6: 'secret' of a standard endpoint must be 'whsec_'"), issue
    options = load(tmp_path, {**ENV, "NEW": good, "OLD": good.replace("c3", "d3")}).endpoints["e"]
    assert isinstance(options.options, StandardOptions) and len(options.options.rotating) == 1


@pytest.mark.slow
def test_check_shows_no_listed_secret(tmp_path: Path) -> None:
    """``leadhub check`` on an endpoint with two listed secrets (one twice) exits 0 and
    prints neither."""
    _load(
        tmp_path,
        "kind: endpoint\nname: e\nsource: typeform\nsecret:\n  - ${NEW}\n  - ${OLD}\n  - ${SAME}\n",
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    done = subprocess.run(
        [sys.executable, "-m", "hub", "check", str(tmp_path)],
        env={**base, **ENV, "SAME": ENV["OLD"]},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is the same as value 2" in done.stdout + done.stderr
    assert not any(secret in done.stdout + done.stderr for secret in SHOWN)


@pytest.mark.parametrize("written", ["${NEW}", '"whsec_${NEW}"'], ids=["variable", "prefixed"])
def test_a_standard_secret_with_no_key_is_refused(tmp_path: Path, written: str) -> None:
    """``whsec_`` with nothing after it is an empty HMAC key, which anyone signs with: an
    error at its line (alone or in a rotation's list), where it loaded and every forged
    delivery was taken. A ``whsec_${VAR}`` whose variable is set but empty is the way in."""
    single = f"kind: endpoint\nname: e\nsource: standard\nsecret: {written}\n"
    path = _load(tmp_path, single)
    environ = {**ENV, "NEW": "whsec_" if written == "${NEW}" else ""}
    (issue,) = _issues(tmp_path, environ)
    assert issue.startswith(f"{path}:4: 'secret' of a standard endpoint is 'whsec_' with no key")
    good = "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ="
    listed = f"kind: endpoint\nname: e\nsource: standard\nsecret:\n  - ${{OLD}}\n  - {written}\n"
    path = _load(tmp_path, listed)
    (issue,) = _issues(tmp_path, {**environ, "OLD": good})
    assert issue.startswith(f"{path}:6: 'secret' of a standard endpoint is 'whsec_' with no key")
