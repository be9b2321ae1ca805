"""Secrets: an empty one is a configuration error, whether its variable is unset or set but empty.

An empty secret would make an endpoint accept signatures made with an empty key, so
``check`` (and ``serve``) must refuse it, naming the file, the line and the variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import ConfigError, load
from tests.mappings.cases import ROOT

# One endpoint per source whose secret signs or authenticates deliveries; the secret
# under test is always on line 4 and written ${SECRET}, the other ones are set.
ENDPOINTS = {
    "typeform": "kind: endpoint\nname: e\nsource: typeform\nsecret: {secret}\n",
    "hmac": "kind: endpoint\nname: e\nsource: hmac\nsecret: {secret}\nheader: X-Sig\n",
    "standard": "kind: endpoint\nname: e\nsource: standard\nsecret: {secret}\n",
    "facebook": (
        "kind: endpoint\nname: e\nsource: facebook\napp_secret: {secret}\n"
        "verify_token: ${OTHER}\npage_access_token: ${OTHER}\n"
    ),
    "token": "kind: endpoint\nname: e\nsource: token\ntoken: {secret}\n",
    "google": "kind: endpoint\nname: e\nsource: google\nkey: {secret}\n",
}
MAPPING = "---\nname: m\nendpoint: e\nfields:\n  EmailAddress: $.email\n"


def _write(directory: Path, source: str, secret: str) -> Path:
    path = directory / "e.yaml"
    path.write_text(ENDPOINTS[source].replace("{secret}", secret) + MAPPING)
    return path


@pytest.mark.parametrize("written", ['"${SECRET}"', "${SECRET}", "'${SECRET}'"])
@pytest.mark.parametrize("source", sorted(ENDPOINTS))
def test_a_secret_set_but_empty_is_an_error_naming_the_variable(
    tmp_path: Path, source: str, written: str
) -> None:
    """A secret whose variable is set to '' is one error at its line naming the variable
    and the fix, for every source and however the value is quoted."""
    path = _write(tmp_path, source, written)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"SECRET": "", "OTHER": "o"})
    assert len(info.value.issues) == 1, info.value.issues
    issue = info.value.issues[0]
    assert issue.startswith(f"{path}:4: "), issue
    assert "is empty" in issue
    assert "${SECRET} is set but empty" in issue
    assert "export SECRET=" in issue


@pytest.mark.parametrize("source", sorted(ENDPOINTS))
def test_an_unset_secret_is_reported_once(tmp_path: Path, source: str) -> None:
    """An unset secret variable is reported once, as unset; its emptiness is no second error."""
    path = _write(tmp_path, source, '"${SECRET}"')
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"OTHER": "o"})
    assert info.value.issues == [
        f"{path}:4: variable ${{SECRET}} is not set; export SECRET=... before starting "
        "the hub (a reload sees only the environment the hub started with: restart it) "
        "(a value that is no secret may have a default: ${SECRET:value})"
    ]


def test_an_empty_literal_secret_is_an_error(tmp_path: Path) -> None:
    """A secret written as '' in the file is an error too (besides the warning to move it)."""
    path = _write(tmp_path, "typeform", '""')
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    assert len(info.value.issues) == 1
    assert info.value.issues[0].startswith(f"{path}:4: 'secret' of endpoint 'e' is empty")


@pytest.mark.slow
def test_check_refuses_a_secret_set_but_empty(tmp_path: Path) -> None:
    """`leadhub check` exits 1 on a quoted secret whose variable is set but empty, and
    exits 0 once it is set to a real secret (which it never prints)."""
    path = _write(tmp_path, "typeform", '"${TYPEFORM_SECRET}"')
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LEADHUB_", "TYPEFORM"))}

    def check(secret: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub", "check", str(tmp_path)],
            env={**base, "TYPEFORM_SECRET": secret},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    empty = check("")
    assert empty.returncode == 1, empty.stdout + empty.stderr
    assert f"{path}:4: 'secret' of endpoint 'e' is empty" in empty.stdout
    assert "Traceback" not in empty.stderr
    real = check("tf-s3cret-value")
    assert real.returncode == 0, real.stdout + real.stderr
    assert "tf-s3cret-value" not in real.stdout + real.stderr


#: A variable's value whose bytes are not UTF-8 (b"caf\xe9", Latin-1), as Python hands it over.
NOT_UTF8 = "caf\udce9"


@pytest.mark.parametrize("source", sorted(ENDPOINTS))
def test_a_variable_whose_bytes_are_not_utf8_is_an_error_at_its_line(
    tmp_path: Path, source: str
) -> None:
    """A variable holding bytes that are not UTF-8 is an error naming it and the fix, not
    its value (it was taken, and the source's key could not be made of it: serve stopped at
    start with a traceback, a reload failed after the dispatcher had reloaded)."""
    path = _write(tmp_path, source, "${SECRET}")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"SECRET": NOT_UTF8, "OTHER": "o"})
    (issue,) = info.value.issues
    assert issue.startswith(f"{path}:4: variable ${{SECRET}} holds bytes that are not UTF-8")
    assert "set it again in UTF-8" in issue and "caf" not in issue


@pytest.mark.slow
def test_check_refuses_a_variable_whose_bytes_are_not_utf8(tmp_path: Path) -> None:
    """`leadhub check` given such a variable by its environment exits 1 at its line (it said
    ok, and serve then stopped with a traceback)."""
    path = _write(tmp_path, "typeform", "${TYPEFORM_SECRET}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LEADHUB_", "TYPEFORM"))}
    checked = subprocess.run(
        [sys.executable, "-m", "hub", "check", str(tmp_path)],
        env={**base, "TYPEFORM_SECRET": NOT_UTF8},  # (the bytes b"caf\xe9")
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"{path}:4: variable ${{TYPEFORM_SECRET}} holds bytes that are not" in checked.stdout
    assert "Traceback" not in checked.stderr


# --- NAME_FILE: a secret handed over in a file (Docker and Kubernetes secrets) -------------


def _token(tmp_path: Path, environ: dict[str, str]) -> str:
    (tmp_path / "cfg").mkdir(exist_ok=True)
    _write(tmp_path / "cfg", "token", "${SECRET}")
    options = load(tmp_path / "cfg", environ).endpoints["e"].options
    return options.token.reveal()  # type: ignore[union-attr]


def test_a_secret_comes_from_the_file_its_name_file_variable_names(tmp_path: Path) -> None:
    """${SECRET} with SECRET_FILE set: the file's content, one trailing newline dropped
    (what `echo value > file` and Docker secrets write), nothing else touched."""
    secret = tmp_path / "secret"
    secret.write_text("  s3cr3t value \n")
    assert _token(tmp_path, {"SECRET_FILE": str(secret)}) == "  s3cr3t value "
    secret.write_bytes(b"crlf\r\n")
    assert _token(tmp_path, {"SECRET_FILE": str(secret)}) == "crlf"


@pytest.mark.parametrize(
    "content", [b"s3cr3t\n\n", b"s3cr3t\r\n\r\n", b"s3cr3t \n", b" s3cr3t", b"s3\ncr3t"]
)
def test_a_token_no_header_carries_is_a_warning_at_its_line(tmp_path: Path, content: bytes) -> None:
    """A token file ending in a blank line (one final line break is dropped, not two), or a
    token with a space around it: a header's value holds no line break and loses its
    surrounding spaces, so every delivery was a 401 and the configuration said ok."""
    secret = tmp_path / "secret"
    secret.write_bytes(content)
    (tmp_path / "cfg").mkdir()
    path = _write(tmp_path / "cfg", "token", "${SECRET}")
    warnings = load(tmp_path / "cfg", {"SECRET_FILE": str(secret)}).warnings
    said = [w for w in warnings if "'token' of endpoint 'e' starts or ends" in w]
    assert len(said) == 1, warnings
    assert said[0].startswith(f"{path}:4: ")
    assert "set ${SECRET} to the token alone" in said[0]
    assert "s3cr3t" not in said[0]
    secret.write_bytes(b"s3cr3t\n")  # (one final line break: dropped, as Docker writes it)
    assert not any(
        "'token'" in w for w in load(tmp_path / "cfg", {"SECRET_FILE": str(secret)}).warnings
    )


SIGNING = {"typeform": "secret", "hmac": "secret", "facebook": "app_secret", "google": "key"}


@pytest.mark.parametrize("source", sorted(SIGNING))
@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("s3cr3t-value\r", "a carriage return (\\r)"),  # an env file with CRLF line endings
        ("s3cr3t-value\n", "a space, tab or line break"),
        (" s3cr3t-value", "a space, tab or line break"),
    ],
)
def test_a_signing_secret_with_a_blank_around_it_is_a_warning_at_its_line(
    tmp_path: Path, source: str, value: str, said: str
) -> None:
    """A signing secret (or Google's key) ending in the \\r of an env file saved with Windows
    line endings (docker run --env-file keeps it), or with a space or line break around it:
    no sender signs with it, so every delivery was a 401 and check said ok. A warning at its
    line naming the variable, never the value; the secret alone is none."""
    (tmp_path / "cfg").mkdir()
    path = _write(tmp_path / "cfg", source, "${SECRET}")
    key = SIGNING[source]
    environ = {"SECRET": value, "OTHER": "other-value"}
    warnings = load(tmp_path / "cfg", environ).warnings
    found = [w for w in warnings if f"'{key}' of endpoint 'e' starts or ends with {said}" in w]
    assert len(found) == 1, warnings
    assert found[0].startswith(f"{path}:4: ")
    assert "set ${SECRET} to the secret alone" in found[0]
    assert "s3cr3t" not in found[0]
    environ["SECRET"] = value.strip()
    assert not any(f"'{key}'" in w for w in load(tmp_path / "cfg", environ).warnings)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "which cannot be read (No such file or directory)"),
        (b"\xff\xfe", "which cannot be read (UnicodeDecodeError)"),
        (b"x" * 70_000, "which holds more than 65536 characters"),
        (b"\n", "${SECRET} comes from SECRET_FILE, which names"),
    ],
)
def test_a_name_file_that_gives_no_secret_is_an_error_at_its_line(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_bytes(content)
    (tmp_path / "cfg").mkdir()
    path = _write(tmp_path / "cfg", "token", "${SECRET}")
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "cfg", {"SECRET_FILE": str(secret)})
    (issue,) = info.value.issues
    assert issue.startswith(f"{path}:4: ") and fragment in issue, issue


def test_an_empty_name_file_says_to_write_the_file_not_to_export_the_variable(
    tmp_path: Path,
) -> None:
    """A secret file emptied (a rotation that wrote nothing, before ``kill -HUP``): the error
    names the file to write. It said "${SECRET} is set but empty; ... (export SECRET=...)",
    and SECRET exported beside SECRET_FILE is an error of its own (both set)."""
    secret = tmp_path / "secret"
    secret.write_text("\n")
    (tmp_path / "cfg").mkdir()
    path = _write(tmp_path / "cfg", "token", "${SECRET}")
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "cfg", {"SECRET_FILE": str(secret)})
    (issue,) = info.value.issues
    assert issue == (
        f"{path}:4: 'token' of endpoint 'e' is empty: ${{SECRET}} comes from SECRET_FILE, "
        f"which names {str(secret)!r}, a file holding no text; write the real secret in that "
        "file"
    )


def test_name_and_name_file_both_set_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file")
    (tmp_path / "cfg").mkdir()
    path = _write(tmp_path / "cfg", "token", "${SECRET}")
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "cfg", {"SECRET": "from-env", "SECRET_FILE": str(secret)})
    (issue,) = info.value.issues
    assert issue == (
        f"{path}:4: variable ${{SECRET}}: both SECRET and SECRET_FILE are set; unset one "
        "(SECRET_FILE names a file holding the value)"
    )
    assert "from-file" not in issue and "from-env" not in issue
