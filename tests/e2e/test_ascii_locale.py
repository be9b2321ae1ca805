"""serve under an ASCII locale (``LC_ALL=C`` with Python's UTF-8 mode and locale coercion
off, as a minimal container or an init system's bare environment may run it), its files in
a directory whose name is not ASCII: Python then reads that name from the filesystem with
surrogate escapes, which ``hub.sqlite_file.uri`` encoded as UTF-8 for SQLite's ``file:`` URI,
and serve died at start with a traceback (``UnicodeEncodeError: ... surrogates not allowed``).
The URI now carries the name's bytes as the filesystem has them. A real process.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.support import FORMS_CONFIG, lead_by_email, wait_until
from tests.support.server import leadhub_process, serve_args

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
