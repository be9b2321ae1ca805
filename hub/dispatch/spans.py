"""Time no event was tried in, kept in the store for the processes after this one.

Two things hold a dispatcher's events back without trying them: a target's pause (wrong keys,
a wrong url: :class:`hub.dispatch.lane.Lane`) and an endpoint's held lead reads (the API
throttling them, a proxy refusing them: ``Dispatcher.hold_reads``). That time does not count
toward an event's ``give_up_after`` (:func:`hub.dispatch.retry.time_in`). A restart forgot it,
so an event a long pause or hold had kept back past its ``give_up_after`` was dead at its first
failure after the restart ("gave up after 1 attempt(s) over 1d"), though the day was the wrong
keys' or the API's. So each span is also written to the store (:meth:`Keeper.keep`), with its
end to come while it lasts, and a start reads the earlier processes' back (a pause up to that
start: :func:`remembered`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from hub.store.base import EventStore

_log = structlog.get_logger()

#: The kinds of span (``held_spans.kind``): a target's pauses, by target name; an endpoint's
#: held lead reads, by endpoint name.
PAUSES = "target"
READS = "reads"


def remembered(spans: Iterable[tuple[float, float]], now: float) -> list[tuple[float, float]]:
    """A target's pauses an earlier process kept, as this one, started at ``now``, counts
    them: one it left under way (killed meanwhile: its end is when it was due to end) counts up
    to ``now``, when the target's new lane is not paused and the events the pause held go at
    once; what fails after that start was held by no pause of that process. (Held reads are
    not cut so: the API's hold goes on after a restart, and the events wait it out.)"""
    return [(began, min(ended, now)) for began, ended in spans if began < now]


class Keeper:
    """Writes spans to the store behind the dispatcher's work: for each span (kind, name and
    start), the latest end kept, in the order they were kept. A store failure is logged and
    the spans go on counting in this process; the next ones are written as they come."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._unkept: dict[tuple[str, str], dict[float, float]] = {}
        self._writing: asyncio.Task[None] | None = None

    def keep(self, kind: str, name: str, began: float, ended: float) -> None:
        """Have the store keep the span of ``kind`` for ``name`` that began at ``began`` as
        ending at ``ended`` (its end so far while it lasts)."""
        self._unkept.setdefault((kind, name), {})[began] = ended
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write(), name="keep-spans")

    async def _write(self) -> None:
        while self._unkept:
            (kind, name), spans = next(iter(self._unkept.items()))
            del self._unkept[kind, name]
            try:
                await self.store.keep_spans(kind, name, sorted(spans.items()))
            except Exception as exc:  # (a store failure: the later spans are still written)
                _log.warning("span_not_kept", kind=kind, name=name, error=str(exc)[:300])

    async def close(self, timeout: float) -> None:
        """Let what is left be written, ``timeout`` seconds at most: a hung store keeps no
        stop waiting (what it missed ends when it was due to, as after a kill)."""
        if self._writing is None:
            return
        await asyncio.wait([self._writing], timeout=max(0.0, timeout))
        self._writing.cancel()
        await asyncio.gather(self._writing, return_exceptions=True)
