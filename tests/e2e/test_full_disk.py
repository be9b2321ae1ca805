"""The SQLite store's disk fills up under a running hub (a real tmpfs of a few megabytes).

Deliveries get 503 while it is full (never a 200 without its commit, never a 500), the store
logs its failure about once a second rather than once per delivery, and once there is space
again the same process takes deliveries and sends every event it accepted: nothing answered
200 is lost, and no lead goes dead for want of disk."""

from __future__ import annotations

import datetime
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.logs import Failures
from hub.store.models import State
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN
from tests.support.disks import resize, small_disk
from tests.support.server import leadhub_process, serve_args

#: Seconds the last run of refusals lasts at least: a run begun within a second of a line
#: of an earlier one is logged a second after that line (a writer that flapped).
STREAK = Failures.RELAPSE + 0.5

#: A lead of about 2 KB (its notes), so that a few megabytes hold a hundred or so.
NOTES = "n" * 1800


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "3m") as mounted:
        yield mounted


def _post(client: httpx.Client, n: int) -> httpx.Response:
    return client.post("/hooks/forms", json={"email": f"lead{n}@example.com", "name": NOTES})


def _lines(proc: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.read().splitlines() if line.startswith("{")]


def test_a_full_disk_is_503s_a_line_a_second_and_heals_once_there_is_space(
    tmp_path: Path, disk: Path
) -> None:
    db = f"sqlite:///{disk / 'hub.db'}"
    args, base, _ = serve_args(tmp_path, {"forms.yaml": CONFIG}, db=db)
    accepted: list[int] = []
    answers: Counter[int] = Counter()
    with (
        leadhub_process(args, ready_url=f"{base}/readyz", env=ENV) as proc,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        n = 0
        refused = 0
        began = time.monotonic()  # (the hub's clock too: CLOCK_MONOTONIC is the machine's)
        refusing_since = began
        # until 300 in a row are refused, for long enough that the writer's run of failures
        # is logged however soon after a line of an earlier run it began (Failures.RELAPSE)
        while (refused < 300 or time.monotonic() - refusing_since < STREAK) and n < 5000:
            answer = _post(client, n)
            answers[answer.status_code] += 1
            if answer.status_code == 200:
                accepted.append(n)
                refused = 0
            else:
                assert (answer.status_code, answer.json()) == (503, {"error": "store unavailable"})
                if not refused:
                    refusing_since = time.monotonic()
                refused += 1
            n += 1
        assert refused >= 300, answers  # the disk did fill
        assert len(accepted) >= 20, answers
        resize(disk, "64m")  # space again
        # The web writer failed from before the first of the last 300 refusals was answered
        # until after the disk grew: its run of failures lasted at least this long.
        refused_for = time.monotonic() - refusing_since
        for m in range(n, n + 50):
            answer = _post(client, m)
            assert answer.status_code == 200, answer.text
            accepted.append(m)

        def all_delivered() -> bool:
            counts = on_store(db, lambda store: store.counts())
            return counts.get(State.DELIVERED, 0) == len(accepted)

        wait_until(all_delivered, timeout=60, what="every accepted lead delivered")
        counts = on_store(db, lambda store: store.counts())
        lines = _lines(proc)
        # every failure, and every recovery logged, came between the two readings
        watched_for = time.monotonic() - began
    assert set(answers) == {200, 503}
    assert sum(counts.values()) == len(accepted)  # nothing else stored, nothing dead
    failing = ("store_write_failed", "store_unavailable")
    failed = [line for line in lines if line["event"] in failing]
    # Two writers (the web role's process, the dispatcher's thread), each at most one line a
    # second for the same error, where every refused delivery used to log one, even as a
    # writer at the edge of the full disk fails, commits a smaller batch and fails again: by
    # the lines' own times, never three of one kind within a second (less a margin for the
    # moment each line is stamped after its writer's clock was read), however long it lasted.
    assert failed, [line["event"] for line in lines]
    by_kind: dict[tuple[str, str], list[float]] = {}
    for line in failed:
        stamp = datetime.datetime.fromisoformat(line["timestamp"]).timestamp()
        by_kind.setdefault((line["event"], line["error"]), []).append(stamp)
    for kind, stamps in by_kind.items():
        stamps.sort()
        crowded = [b - a for a, b in zip(stamps, stamps[2:], strict=False)]
        assert all(gap >= 1.0 - 0.05 for gap in crowded), (kind, stamps)
    assert "database or disk is full" in failed[0]["error"]
    # Once it writes again, the store says how many jobs failed meanwhile (the refused
    # deliveries among them) and for how long.
    resumed = [line for line in lines if line["event"] == "store_write_recovered"]
    assert resumed, [line["event"] for line in lines]
    assert sum(line["failed"] for line in resumed) >= answers[503]
    # ``seconds``: how long each run of failures lasted, as the hub's clock tells; bounded by
    # readings of the same clock here, whatever the machine's speed (0.001: rounded to ms)
    took = [line["seconds"] for line in resumed]
    assert all(0 < s <= watched_for + 0.001 for s in took), (took, watched_for)
    # the web writer's (its run failed every refused delivery; the dispatcher's, a few jobs)
    web = [line["seconds"] for line in resumed if line["failed"] >= refused]
    assert web and max(web) >= refused_for - 0.001, (resumed, refused_for)
