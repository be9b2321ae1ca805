"""Hostile bodies over HTTP: each is answered quickly with its 400, and holds no one else up."""

from __future__ import annotations

import threading
import time

import httpx

from hub.sources.bodies import too_deep
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
    started = time.perf_counter()
    assert too_deep(body) is False  # the brackets are inside the unclosed string
    assert time.perf_counter() - started < 0.5
    # strings that close still hide their brackets, and brackets outside still count
    assert too_deep(b"[" * 150 + b'"]]]\\"[[[' + b"[" * 100 + b'"' + b"]" * 150) is False
    assert too_deep(b"[" * 201 + b'"\\\n"' + b"]" * 201) is True


def test_an_unclosed_string_body_is_a_quick_400_and_holds_up_no_other_delivery(hub: Hub) -> None:
    """The store checks a single-lead body where it writes (the skim): a 60 KB body of
    escaped quotes never closed took 11.7 s of its CPU there, and every delivery to any
    endpoint waited behind it. Now the 400 comes at once and the good delivery with it."""
    body = _unclosed_escaped_quotes(20_000)  # 60 KB
    answers: dict[str, httpx.Response] = {}

    def hostile() -> None:
        with httpx.Client(base_url=hub.url, timeout=10) as client:
            answers["hostile"] = client.post("/hooks/open", content=body, headers=JSON)

    sender = threading.Thread(target=hostile)
    started = time.perf_counter()
    sender.start()
    time.sleep(0.1)
    good = hub.client.post("/hooks/open", json={"email": "a@example.com"}, timeout=5)
    sender.join(timeout=15)
    took = time.perf_counter() - started
    assert good.status_code == 200, good.text
    assert answers["hostile"].status_code == 400
    assert answers["hostile"].json()["error"].startswith("body is not valid JSON")
    assert took < 3, f"the hostile body held the hub {took:.1f} s"
    assert [e.document for e in hub.events()] == [{"email": "a@example.com"}]
