"""A sender's values that are hostile to the transforms: mapped quickly, never held long."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hub.mapping.transforms import Context, parse_transform
from tests.mappings.cases import SHIPPED
from tests.support.server import leadhub_run

#: A date the sender wrote as two letters with a long run of spaces between them.
SPACED_DATE = "a" + " " * 40_000 + "a"


def _try(tmp_path: Path, endpoint: str, document: Any) -> tuple[dict[str, Any], float]:
    """``leadhub try ENDPOINT --json`` on the shipped mappings, as a command of its own:
    its answer and the seconds it took."""
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(document))
    started = time.perf_counter()
    done = leadhub_run(["try", endpoint, str(payload), "--config-dir", str(SHIPPED), "--json"])
    took = time.perf_counter() - started
    assert done.stderr == "" or "Traceback" not in done.stderr, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer, took


def test_date_with_a_long_run_of_spaces_is_read_at_once() -> None:
    """A trailing "UTC"/"GMT" was found with a regular expression searched from every space
    of a run, in time the square of its length: 40,000 spaces took 18 s, 900 KB hours."""
    date = parse_transform("date")
    for text in (SPACED_DATE, "a" + " " * 900_000 + "a", "2024-05-01" + " " * 900_000 + "GMT"):
        ctx = Context("mx_Date", None)
        started = time.perf_counter()
        assert date.apply([text], ctx) == []
        assert time.perf_counter() - started < 0.5
    for text, written in (
        ("2024-05-01 10:20:30 UTC", "2024-05-01 10:20:30"),
        ("2024-05-01T10:20:30 \t gmt", "2024-05-01 10:20:30"),
        ("2024-05-01T10:20:30Utc", "2024-05-01 10:20:30"),
        ("2024-05-01T10:20:30+05:30", "2024-05-01 04:50:30"),
    ):
        assert date.apply([text], Context("mx_Date", None)) == [written]


def test_a_spaced_date_in_a_zapier_lead_is_left_out_quickly(tmp_path: Path) -> None:
    """`leadhub try` on the shipped Zapier mapping, as the dispatcher maps (on the event loop
    that also answers webhooks): the lead is sent without the date, at once."""
    document = {"email": "a@example.com", "created_time": SPACED_DATE}
    answer, took = _try(tmp_path, "zapier", document)
    assert answer["status"] == "send"
    assert {"Attribute": "EmailAddress", "Value": "a@example.com"} in answer["body"]
    assert not any(a["Attribute"] == "mx_Lead_Created_On" for a in answer["body"])
    assert took < 5, f"leadhub try took {took:.1f} s"
