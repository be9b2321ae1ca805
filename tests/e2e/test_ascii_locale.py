"""serve under an ASCII locale (``LC_ALL=C`` with Python's UTF-8 mode and locale coercion
off, as a minimal container or an init system's bare environment may run it), its files in
a directory whose name is not ASCII: Python then reads that name from the filesystem with
surrogate escapes, which ``hub.sqlite_file.uri`` encoded as UTF-8 for SQLite's ``file:`` URI,
and serve died at start with a traceback (``UnicodeEncodeError: ... surrogates not allowed``).
The URI now carries the name's bytes as the filesystem has them. A real process.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.e2e.support import FORMS_CONFIG, enqueue_document, lead_by_email, wait_until
from tests.support.server import leadhub_process, leadhub_run, serve_args

TOKEN = "ascii-locale-token"
#: Python's own view of the locale: ASCII (no UTF-8 mode, no coercion to C.UTF-8).
ASCII = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def test_serve_under_an_ascii_locale_keeps_its_files_in_a_non_ascii_directory(
    tmp_path: Path,
) -> None:
    home = tmp_path / "données"
    home.mkdir()
    args, base, db = serve_args(home, {"forms.yaml": FORMS_CONFIG})
    env = {**ASCII, "FORMS_TOKEN": TOKEN}
    with leadhub_process(args, ready_url=f"{base}/healthz", env=env):
        answer = httpx.post(
            f"{base}/hooks/forms",
            json={"email": "ravi@example.com", "name": "रवि"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200
        wait_until(lambda: bool(lead_by_email(base, "ravi@example.com")), what="the lead sent")
    assert db.is_file()  # the store where it was told to be, not elsewhere
    assert (home / "hub.db.sandbox.sqlite").is_file()  # the embedded sandbox's, beside it


#: A sender's name in every width: Latin-1, the BMP, beyond it, an escape sequence, U+2028.
NAME = "Zo\u00eb \u2603 \U0001f600 \x1b[31m\u2028"


def test_commands_under_an_ascii_locale_print_a_senders_characters_escaped(
    tmp_path: Path,
) -> None:
    """``events`` and ``try`` under an ASCII locale (or ``PYTHONIOENCODING=ascii``), a lead's
    name not ASCII: each died with a UnicodeEncodeError traceback (exit 1) at the first
    such character. Their text now shows it backslash-escaped, and ``--json`` is valid JSON
    (non-ASCII as JSON escapes) that reads back as the very name. Real processes."""
    db = tmp_path / "hub.db"
    url = f"sqlite:///{db}"
    event_id = enqueue_document(url, "forms", "d-1", {"email": "zoe@example.com", "name": NAME})
    (tmp_path / "forms.yaml").write_text(FORMS_CONFIG)
    payload = tmp_path / "lead.json"
    payload.write_text(json.dumps({"email": "zoe@example.com", "name": NAME}))
    for env in (ASCII, {"PYTHONIOENCODING": "ascii"}):
        listed = leadhub_run(["events", "--db", url, "--json"], env=env)
        assert listed.returncode == 0, listed.stderr
        assert "Traceback" not in listed.stderr
        (line,) = listed.stdout.splitlines()
        assert line.isascii()
        event = json.loads(line)
        assert (event["id"], event["document"]["name"]) == (event_id, NAME)

        table = leadhub_run(["events", "--db", url], env=env)
        assert table.returncode == 0, table.stderr
        assert "d-1" in table.stdout and table.stdout.isascii()

        tried = leadhub_run(
            ["try", "forms", str(payload), "--config-dir", str(tmp_path), "--json"], env=env
        )
        assert tried.returncode == 0, tried.stderr
        (line,) = tried.stdout.splitlines()
        assert line.isascii()
        assert {"Attribute": "FirstName", "Value": NAME} in json.loads(line)["body"]

        shown = leadhub_run(["try", "forms", str(payload), "--config-dir", str(tmp_path)], env=env)
        assert shown.returncode == 0, shown.stderr
        body = shown.stdout.split("body:\n", 1)[1].split("\n]\n", 1)[0] + "\n]"
        assert {"Attribute": "FirstName", "Value": NAME} in json.loads(body)


#: A sender's name holding what a terminal does not show as itself: a right-to-left
#: override (the rest of the line reads backwards), DEL, a C1 CSI, a zero-width space, a
#: line separator and an isolate, among letters that are shown.
HIDDEN = "Zoë \u202eevil\x7f\x9b2J\u200b\u2028\u2066x"


def test_commands_print_what_a_terminal_would_not_show_escaped(tmp_path: Path) -> None:
    """``try`` (its body, plain and ``--json``) and ``events --json`` under a UTF-8 locale
    wrote a sender's bidi override and C1 controls raw: the override reordered the line on
    the operator's terminal. Each such character is now its JSON escape, letters outside
    ASCII are written as they are, and the JSON reads back as the very name. Real
    processes."""
    db = tmp_path / "hub.db"
    url = f"sqlite:///{db}"
    enqueue_document(url, "forms", "d-1", {"email": "zoe@example.com", "name": HIDDEN})
    (tmp_path / "forms.yaml").write_text(FORMS_CONFIG)
    payload = tmp_path / "lead.json"
    payload.write_text(json.dumps({"email": "zoe@example.com", "name": HIDDEN}))
    utf8 = {"PYTHONIOENCODING": "utf-8"}
    tried = leadhub_run(["try", "forms", str(payload), "--config-dir", str(tmp_path)], env=utf8)
    listed = leadhub_run(["events", "--db", url, "--json"], env=utf8)
    as_json = ["try", "forms", str(payload), "--config-dir", str(tmp_path), "--json"]
    tried_json = leadhub_run(as_json, env=utf8)
    for done in (tried, listed, tried_json):
        assert done.returncode == 0, done.stderr
        assert "Zoë" in done.stdout  # (shown as itself)
        assert not any(ch in done.stdout for ch in HIDDEN if not ch.isprintable()), done.stdout
        assert "\\u202e" in done.stdout
    body = tried.stdout.split("body:\n", 1)[1].split("\n]\n", 1)[0] + "\n]"
    assert {"Attribute": "FirstName", "Value": HIDDEN} in json.loads(body)
    assert json.loads(listed.stdout)["document"]["name"] == HIDDEN
    assert {"Attribute": "FirstName", "Value": HIDDEN} in json.loads(tried_json.stdout)["body"]
