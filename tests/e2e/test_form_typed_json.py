"""A JSON body posted as a form (``curl -d``'s default Content-Type) is read as JSON.

Read as a form it was one key (the JSON text) with an empty value: its event went dead,
and posting the same bytes again as JSON was a duplicate (the delivery id is the body's
hash), so the lead could not be had back."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import FORMS_CONFIG, leads, wait_until
from tests.e2e.test_reload import Log
from tests.support.server import leadhub_process, leadhub_run, serve_args

TOKEN = "forms-token"
CONFIG = FORMS_CONFIG
FORM = "application/x-www-form-urlencoded"
#: As ``curl -d '{"email": ...}'`` sends it.
CURLED = b' {"email": "curl@example.com", "name": "Curl"}'


@pytest.mark.slow
def test_a_json_body_sent_as_a_form_is_read_as_json(tmp_path: Path) -> None:
    """A real ``leadhub serve``: the JSON object posted as a form is accepted, its line says
    it was read as JSON, and its lead reaches the sandbox with its fields; the same bytes
    posted again as JSON are a duplicate of it. A real form body, one that starts with a
    bracket too, is read as a form, its line saying nothing of JSON."""
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    hook = f"{base}/hooks/forms"
    with leadhub_process(args, ready_url=f"{base}/readyz", env={"FORMS_TOKEN": TOKEN}) as proc:
        log = Log(proc)
        curled = httpx.post(hook, content=CURLED, headers={**auth, "Content-Type": FORM})
        again = httpx.post(
            hook, content=CURLED, headers={**auth, "Content-Type": "application/json"}
        )
        form = httpx.post(
            hook,
            content=b"email=form%40example.com&%7Bnote%7D=%5Bx%5D",
            headers={**auth, "Content-Type": f"{FORM}; charset=utf-8"},
        )
        braced = httpx.post(
            hook, content=b"{a}=1&email=b%40example.com", headers={**auth, "Content-Type": FORM}
        )
        wait_until(lambda: len(leads(base)) == 3, what="three leads")
        sent = {lead["EmailAddress"]: lead.get("FirstName") for lead in leads(base)}
        lines = log.events("delivery_received")
    assert curled.json() == {"status": "accepted", "id": 1}
    assert again.json() == {"status": "duplicate", "id": 1}
    assert form.json() == {"status": "accepted", "id": 2}
    assert braced.json() == {"status": "accepted", "id": 3}
    assert sent == {"curl@example.com": "Curl", "form@example.com": None, "b@example.com": None}
    assert [line.get("form_body_read_as_json") for line in lines] == [True, None, None, None]


def test_try_reads_a_json_body_sent_as_a_form_as_json(tmp_path: Path) -> None:
    """``leadhub try --content-type application/x-www-form-urlencoded`` on a JSON body maps
    it as ingest reads it, as JSON, with a note; a form body is tried as a form, no note."""
    (tmp_path / "forms.yaml").write_text(CONFIG)
    curled = tmp_path / "curled.json"
    curled.write_bytes(CURLED)
    form = tmp_path / "form.txt"
    form.write_bytes(b"email=form%40example.com&name=Form")
    common = ["--config-dir", str(tmp_path), "--content-type", FORM, "--json"]
    done = leadhub_run(["try", "forms", str(curled), *common])
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["body"] == [
        {"Attribute": "EmailAddress", "Value": "curl@example.com"},
        {"Attribute": "FirstName", "Value": "Curl"},
    ]
    assert done.stderr.strip() == (
        "note: the body is JSON sent as a form (as curl -d sends it); ingest reads it as "
        "JSON, as here, and says so on its delivery_received line (form_body_read_as_json)"
    )
    plain = leadhub_run(["try", "forms", str(form), *common])
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert json.loads(plain.stdout)["body"][1] == {"Attribute": "FirstName", "Value": "Form"}
    assert "note:" not in plain.stderr
