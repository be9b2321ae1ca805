"""The spans a dispatcher keeps in the store (``hub.dispatch.spans``): written behind the work,
the latest end of each, a store failure logged and the next spans still written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from structlog.testing import capture_logs

from hub.dispatch.spans import PAUSES, READS, Keeper, remembered
from hub.store import EventStore, StoreUnavailable
from tests.dispatch.support import opened_store


class _FailsOnce:
    """A real store whose first ``keep_spans`` fails as an unreachable store's does."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.failed = False

    async def keep_spans(self, kind: str, name: str, spans: Sequence[tuple[float, float]]) -> None:
        if not self.failed:
            self.failed = True
            msg = "The event store cannot be reached"
            raise StoreUnavailable(msg)
        await self.store.keep_spans(kind, name, spans)


async def test_each_span_is_kept_with_its_latest_end(tmp_path: Path) -> None:
    """Kept several times before a write (a pause extended, then ended), a span is written
    once, with its last end; spans of other kinds and names are written beside it."""
    async with opened_store(tmp_path / "hub.db") as store:
        keeper = Keeper(store)
        keeper.keep(PAUSES, "default", 100.0, 130.0)
        keeper.keep(PAUSES, "default", 100.0, 190.0)
        keeper.keep(PAUSES, "default", 100.0, 150.0)  # (ended before it was due to)
        keeper.keep(READS, "fb", 120.0, 200.0)
        await keeper.close(timeout=5)
        assert await store.kept_spans(PAUSES, ["default"]) == {"default": [(100.0, 150.0)]}
        assert await store.kept_spans(READS, ["fb"]) == {"fb": [(120.0, 200.0)]}


async def test_a_store_failure_is_logged_and_the_next_spans_are_still_kept(
    tmp_path: Path,
) -> None:
    """The store failing a write loses that span's write (it still counts in this process)
    with a ``span_not_kept`` warning, and nothing raised; the spans kept after are written."""
    async with opened_store(tmp_path / "hub.db") as store:
        keeper = Keeper(_FailsOnce(store))  # type: ignore[arg-type]
        with capture_logs() as logs:
            keeper.keep(PAUSES, "default", 100.0, 130.0)
            await asyncio.sleep(0.05)
            keeper.keep(PAUSES, "default", 200.0, 230.0)
            await keeper.close(timeout=5)
        assert await store.kept_spans(PAUSES, ["default"]) == {"default": [(200.0, 230.0)]}
    (warning,) = [line for line in logs if line["event"] == "span_not_kept"]
    assert (warning["kind"], warning["name"]) == (PAUSES, "default")
    assert "cannot be reached" in warning["error"]


async def test_a_hung_store_keeps_no_stop_waiting() -> None:
    """``close`` waits for the writes its timeout allows, then gives them up."""

    class _Hangs:
        async def keep_spans(self, *args: object) -> None:
            await asyncio.sleep(3600)

    keeper = Keeper(_Hangs())  # type: ignore[arg-type]
    keeper.keep(PAUSES, "default", 100.0, 130.0)
    await asyncio.wait_for(keeper.close(timeout=0.1), timeout=5)


def test_a_pause_left_under_way_counts_up_to_the_start_and_none_after_it() -> None:
    """What a start takes in of a pause: up to its start, and nothing of one that began
    after it (another instance's, on a clock ahead)."""
    spans = [(10.0, 20.0), (30.0, 90.0), (60.0, 70.0), (80.0, 95.0)]
    assert remembered(spans, 50.0) == [(10.0, 20.0), (30.0, 50.0)]
