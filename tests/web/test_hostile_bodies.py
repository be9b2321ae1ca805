"""Hostile bodies over HTTP: each is answered quickly with its 400, and holds no one else up."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from hub.sources.base import BodyError
from hub.sources.bodies import parse, too_deep
from tests.web.conftest import Hub

JSON = {"content-type": "application/json"}


def _unclosed_escaped_quotes(count: int) -> bytes:
    """``"x\\"x\\"...`` never closed, then more brackets than the depth limit: invalid JSON
    whose every quote starts a string that runs to the end of the body."""
    return b'"' + b'x\\"' * count + b"[" * 201


def test_depth_scan_is_linear_on_a_string_that_never_closes() -> None:
    """too_deep skips a JSON string in one pass; one that never closed was scanned again
    from each of its quotes (48 KB took 7.6 s, 90 KB 27 s, 900 KB about an hour)."""
    body = _unclosed_escaped_quotes(30_000)  # 90 KB
    # The CPU time of this thread, which does the work: neither a loaded machine's waits
    # for a core nor the process's other threads (servers of other tests) count.
    started = time.thread_time()
    assert too_deep(body) is False  # the brackets are inside the unclosed string
    assert time.thread_time() - started < 0.5
    # strings that close still hide their brackets, and brackets outside still count
    assert too_deep(b"[" * 150 + b'"]]]\\"[[[' + b"[" * 100 + b'"' + b"]" * 150) is False
    assert too_deep(b"[" * 201 + b'"\\\n"' + b"]" * 201) is True


def _hub_cpu(hub: Hub) -> float:
    """CPU seconds the hub has used so far: this process's (its server, and its writer
    thread) and its store's writer process's, if it has one (``writer="process"``)."""
    used = time.process_time()
    ingest = getattr(cast(Any, hub.app).state.store, "_ingest", None)
    if ingest is not None and ingest._child is not None:
        stat = Path(f"/proc/{ingest._child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        used += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return used


def test_an_unclosed_string_body_is_a_quick_400_and_holds_up_no_other_delivery(hub: Hub) -> None:
    """The store checks a single-lead body where it writes (the skim): a 60 KB body of
    escaped quotes never closed took 11.7 s of its CPU there, and every delivery to any
    endpoint waited behind it. Now the 400 comes at once and the good delivery with it."""
    body = _unclosed_escaped_quotes(20_000)  # 60 KB
    answers: dict[str, httpx.Response] = {}

    # The timeouts are hang guards: the CPU the hub spends is what this test measures (a
    # loaded machine's waits for a core do not count).
    def hostile() -> None:
        with httpx.Client(base_url=hub.url, timeout=60) as client:
            answers["hostile"] = client.post("/hooks/open", content=body, headers=JSON)

    sender = threading.Thread(target=hostile)
    before = _hub_cpu(hub)
    sender.start()
    time.sleep(0.1)
    good = hub.client.post("/hooks/open", json={"email": "a@example.com"}, timeout=60)
    sender.join(timeout=60)
    used = _hub_cpu(hub) - before
    assert good.status_code == 200, good.text
    assert answers["hostile"].status_code == 400
    assert answers["hostile"].json()["error"].startswith("body is not valid JSON")
    assert used < 3, f"the hostile body took {used:.1f} s of the hub's CPU"
    assert [e.document for e in hub.events()] == [{"email": "a@example.com"}]


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_a_form_field_of_escapes_is_read_without_growing_the_hub_by_much(hub: Hub) -> None:
    """A form field of 300,000 percent-escapes (900 KB, within the limit) grew the process
    by 67 MB while urllib unescaped it (an object per escape); now by little more than the
    body, the field read as before."""
    body = b"email=a%40example.com&notes=" + b"%C3%A9" * 150_000  # "é" 150,000 times
    tracemalloc.start()
    try:
        answer = hub.client.post("/hooks/open", content=body, headers=FORM)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200, answer.text
    assert peak < 12 * len(body), f"{peak / 1e6:.1f} MB at the peak for a {len(body)}-byte body"
    (event,) = hub.events()
    assert event.document == {"email": "a@example.com", "notes": "é" * 150_000}


def test_a_bad_escape_after_many_is_named_as_before(hub: Hub) -> None:
    """The reason for an escape the charset does not decode still names it, after 300,000
    good ones (the search for it unescapes by pieces too)."""
    body = b"notes=" + b"%41" * 300_000 + b"%FF"
    answer = hub.client.post("/hooks/open", content=body, headers=FORM)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(
        f"form body is not valid UTF-8 (byte 0xff at offset {len(body) - 3}, escaped as %FF)"
    )
    assert hub.events() == []


def test_a_bad_escape_at_the_end_of_a_mebibyte_is_named_by_its_offset() -> None:
    """To name the bad escape at the end of a mebibyte of good ones, only the runs of
    escapes of bytes over 0x7f are decoded now (the whole text was unescaped again and
    walked a byte at a time: 0.11 s against 0.036 s to read it, measured when it changed;
    no timing is asserted here): the reason names the same byte at the same offset."""
    bad = b"notes=" + b"%41" * 349_000 + b"%E9"
    with pytest.raises(BodyError, match=r"byte 0xe9 at offset 1047006, escaped as %E9"):
        parse(FORM["content-type"], bad)
