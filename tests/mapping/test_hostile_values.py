"""A sender's values that are hostile to the transforms: mapped quickly, never held long."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import httpx

from hub.mapping import transforms
from hub.mapping.transforms import Context, parse_transform
from hub.mapping.values import SHOWN
from tests.mappings.cases import SHIPPED
from tests.support.server import leadhub_process, leadhub_run, serve_args

#: A date the sender wrote as two letters with a long run of spaces between them.
SPACED_DATE = "a" + " " * 40_000 + "a"


def _children_cpu() -> float:
    """CPU seconds used by this process's children that have ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _try(tmp_path: Path, endpoint: str, document: Any) -> tuple[dict[str, Any], float]:
    """``leadhub try ENDPOINT --json`` on the shipped mappings, as a command of its own:
    its answer and the seconds of CPU it used (its own, not the time it waited for a core on
    a loaded machine)."""
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(document))
    started = _children_cpu()
    done = leadhub_run(["try", endpoint, str(payload), "--config-dir", str(SHIPPED), "--json"])
    took = _children_cpu() - started
    assert done.stderr == "" or "Traceback" not in done.stderr, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer, took


def test_date_with_a_long_run_of_spaces_is_read_at_once() -> None:
    """A trailing "UTC"/"GMT" was found with a regular expression searched from every space
    of a run, in time the square of its length: 40,000 spaces took 18 s, 900 KB hours."""
    date = parse_transform("date")
    for text in (SPACED_DATE, "a" + " " * 900_000 + "a", "2024-05-01" + " " * 900_000 + "GMT"):
        ctx = Context("mx_Date", None)
        # The CPU time of this thread, which does the work: neither a loaded machine's waits
        # for a core nor the process's other threads (servers of other tests) count.
        started = time.thread_time()
        assert date.apply([text], ctx) == []
        assert time.thread_time() - started < 0.5
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
    assert took < 5, f"leadhub try used {took:.1f} s of CPU"


#: A phone and a date of 500 KB each: the sender's text, far beyond any real value.
HUGE_PHONE = "9" * 500_000
HUGE_DATE = "2024-05-01" + "x" * 500_000
#: The longest a warning about one such value may be: the quoted text is cut at SHOWN.
WARNING_MOST = SHOWN + 120


def test_a_huge_phone_is_not_memoised_and_its_warning_quotes_a_short_part() -> None:
    """The phone memo kept each text it was asked about, a sender's megabyte included (40 of
    them kept 36 MB; the memo holds 4,096), and the warning quoted the whole text."""
    transforms.clear_memos()
    phone = parse_transform("phone")
    for n in range(3):
        ctx = Context("Phone", "US")
        assert phone.apply([f"{n}{HUGE_PHONE}"], ctx) == []
        (warning,) = ctx.warnings
        assert warning.startswith(f"Phone: '{n}999") and warning.endswith("; left out")
        assert len(warning) < WARNING_MOST
    assert transforms._format_phone.cache_info().currsize == 0
    assert phone.apply(["+1 415 555 0100"], Context("Phone", "US")) == ["+1-4155550100"]
    assert transforms._format_phone.cache_info().currsize == 1
    ctx = Context("Phone", "US")
    assert phone.apply(["9" * 251], ctx) == []  # (phonenumbers reads at most 250 characters)
    assert "is not a phone number; left out" in ctx.warnings[0]


def test_try_quotes_a_short_part_of_a_huge_phone_or_date(tmp_path: Path) -> None:
    """`leadhub try --json` printed both 500 KB values in its warnings (1 MB)."""
    document = {"email": "a@example.com", "phone": HUGE_PHONE, "created_time": HUGE_DATE}
    answer, _ = _try(tmp_path, "zapier", document)
    assert answer["status"] == "send"
    phone, date = answer["warnings"]
    assert phone.startswith("Phone: '999") and "is not a phone number" in phone
    assert date.startswith("mx_Lead_Created_On: '2024-05-01xxx") and "is not a date" in date
    assert max(len(phone), len(date)) < WARNING_MOST


ZAPIER = (SHIPPED / "zapier.yaml").read_text()


def test_serve_logs_a_short_part_of_a_huge_phone_or_date(tmp_path: Path) -> None:
    """A real `leadhub serve` with the shipped Zapier mapping sends the lead without the
    phone and the date, and its log line about them quoted both whole (a 1 MB line)."""
    args, url, _ = serve_args(tmp_path, {"zapier.yaml": ZAPIER})
    env = {"ZAPIER_TOKEN": "zap-hostile-values"}
    document = {"email": "a@example.com", "phone": HUGE_PHONE, "created_time": HUGE_DATE}
    with leadhub_process(args, ready_url=f"{url}/readyz", env=env) as proc:
        answer = httpx.post(
            f"{url}/hooks/zapier",
            json=document,
            headers={"x-api-key": "zap-hostile-values"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        log = ""
        while '"lead_sent"' not in log and time.monotonic() < deadline:
            time.sleep(0.1)
            log += proc.stdout.read()
    assert '"lead_sent"' in log, log[-2000:]
    lines = log.splitlines()
    warned = [line for line in lines if "is not a phone number" in line]
    assert warned, log[-2000:]
    assert max(len(line) for line in lines) < 4000


def test_a_path_finding_many_dropped_values_records_a_few_warnings(tmp_path: Path) -> None:
    """Each value a transform dropped was a warning: 100,000 phones "1" (a 640 KB body) made
    a real `leadhub serve` write one 8.9 MB log line. Now five, and one that says more were
    left out."""
    phone = parse_transform("phone")
    ctx = Context("Phone", "US")
    assert phone.apply(["1"] * 100_000 + ["+1 415 555 0100"], ctx) == ["+1-4155550100"]
    assert ctx.warnings == [
        *["Phone: '1' is not a phone number; left out"] * transforms.MAX_WARNINGS,
        "Phone: more of its values were left out too; only the first 5 are listed",
    ]
    ctx.attribute = "mx_Date"  # another attribute of the same mapping has its own five
    assert parse_transform("date").apply(["x"] * 10, ctx) == []
    assert len(ctx.warnings) == 2 * (transforms.MAX_WARNINGS + 1)
    document = {"email": "a@example.com", "phone": ["1"] * 100_000, "created_time": ["x"] * 60_000}
    answer, _ = _try(tmp_path, "zapier", document)
    assert answer["status"] == "send"
    assert len(answer["warnings"]) == 2 * (transforms.MAX_WARNINGS + 1)
    assert len(json.dumps(answer)) < 3000
