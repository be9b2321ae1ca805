"""``leadhub serve --purge-after``: a worker deletes old finished events by itself."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx
import orjson

from hub.clock import ManualClock
from hub.store import EventStore, open_store
from hub.store.models import State
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_crash import CONFIG, ENV, TOKEN, _delivered
from tests.store.helpers import delivery
from tests.support.server import leadhub_process, leadhub_run, serve_args


def _seed_old_events(url: str) -> dict[str, int]:
    """Events finished in November 2023 (ManualClock's start): three delivered, one
    skipped, one dead."""

    async def go() -> dict[str, int]:
        store = open_store(url, clock=ManualClock())
        await store.open()
        try:
            ids = {}
            for name in ("d1", "d2", "d3", "skipped", "dead"):
                (res,) = await store.enqueue(delivery(f"old-{name}", endpoint="forms"))
                ids[name] = res.id
            for name in ("d1", "d2", "d3"):
                await store.ack(ids[name], lead_id=f"L-{name}", created=True)
            await store.skipped(ids["skipped"], reason="test lead")
            await store.dead(ids["dead"], error="MXInvalidEmail")
            return ids
        finally:
            await store.close()

    return asyncio.run(go())


def _purged(base: str) -> int:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(r"^leadhub_events_purged_total (\S+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else -1


def _hub_on_old_events(tmp_path: Path) -> tuple[str, dict[str, int], str, list[str]]:
    """A config directory and a store seeded with old events: the store's URL, the events'
    ids, and the base URL and arguments of a ``leadhub serve`` on them."""
    args, base, db = serve_args(tmp_path, {"forms.yaml": CONFIG})
    url = f"sqlite:///{db}"
    ids = _seed_old_events(url)
    return url, ids, base, args


def test_a_worker_purges_old_finished_events_and_keeps_the_rest(tmp_path: Path) -> None:
    """Started with --purge-after 30d, the hub deletes the delivered and skipped events of
    2023 at once; the dead one stays for a replay, and so does what it delivers now."""
    url, ids, base, args = _hub_on_old_events(tmp_path)
    with leadhub_process(
        [*args, "--purge-after", "30d"], ready_url=f"{base}/healthz", env=ENV
    ) as proc:
        wait_until(lambda: _purged(base) == 4, what="the purge of the old events")
        answer = httpx.post(
            f"{base}/hooks/forms",
            json={"email": "new@example.com"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.status_code == 200
        wait_until(lambda: _delivered(base) == 1, what="the new lead's delivery")
        assert proc.stdout is not None
        lines = [orjson.loads(line) for line in proc.stdout if line.startswith("{")]
    (ready,) = (line for line in lines if line["event"] == "hub_ready")
    assert ready["purge_after"] == "30d"
    (purged,) = (line for line in lines if line["event"] == "events_purged")
    assert (purged["events"], purged["deliveries"]) == (4, 4)

    async def left(store: EventStore) -> dict[int, State]:
        return {e.id: e.state for e in await store.list(limit=10)}

    remaining = on_store(url, left)
    assert remaining.pop(ids["dead"]) is State.DEAD
    assert list(remaining.values()) == [State.DELIVERED]  # the new lead
    assert not set(remaining) & {ids[n] for n in ("d1", "d2", "d3", "skipped")}


def test_a_web_role_does_not_purge_and_says_so(tmp_path: Path) -> None:
    """The purge belongs to the processes that run the dispatcher: a web role given
    --purge-after warns once at start and deletes nothing."""
    url, ids, base, args = _hub_on_old_events(tmp_path)
    with leadhub_process(
        [*args, "--role", "web", "--purge-after", "30d"], ready_url=f"{base}/readyz", env=ENV
    ) as proc:
        assert "leadhub_events_purged_total" not in httpx.get(f"{base}/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None
        lines = [orjson.loads(line) for line in proc.stdout if line.startswith("{")]
    (warning,) = (line for line in lines if line["event"] == "purge_not_run")
    assert "role all or worker" in warning["reason"]
    (ready,) = (line for line in lines if line["event"] == "hub_ready")
    assert ready["purge_after"] is None
    assert not any(line["event"] == "events_purged" for line in lines)
    assert len(on_store(url, lambda store: store.list(limit=10))) == len(ids)


def test_a_retention_shorter_than_senders_retry_is_refused(tmp_path: Path) -> None:
    """``--purge-after 1d`` exits 2: a sender retrying on day two would be taken as new."""
    (tmp_path / "forms.yaml").write_text(CONFIG)
    args = ["serve", "--config-dir", str(tmp_path), "--db", f"sqlite:///{tmp_path}/hub.db"]
    result = leadhub_run([*args, "--purge-after", "1d"], env=ENV)
    assert result.returncode == 2
    assert "--purge-after: '1d' is shorter than senders retry" in result.stderr
    assert not (tmp_path / "hub.db").exists()
