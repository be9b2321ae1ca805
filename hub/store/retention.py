"""Retention: how long finished events are kept, and the worker's hourly purge.

``leadhub serve --purge-after 30d`` deletes delivered and skipped events 30 days after
their last change (:meth:`hub.store.base.EventStore.purge`), once at start and then every
:data:`PURGE_EVERY` seconds (sooner after a round the store failed: :class:`Schedule`),
from every process that runs the dispatcher. Without it the
store keeps every event; ``leadhub purge`` does the same on demand.

A purged event's delivery id is forgotten, so a sender retrying that delivery later would
be stored (and sent) again. Senders retry for up to three days (HubSpot's workflow
webhooks; Facebook 36 hours, Tally one day): a retention shorter than
:data:`SENDER_RETRIES` is refused for the automatic purge, and warned about by the command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from prometheus_client import Counter
from starlette.applications import Starlette

from hub.clock import Clock
from hub.store.base import EventStore, StoreError, StoreStats, log
from hub.store.models import Purged
from hub.units import UnitError, parse_duration
from hub.web.metrics import app_registry

#: The longest any documented sender keeps retrying a delivery (HubSpot: 3 days).
SENDER_RETRIES = 3 * 86400.0
#: Seconds between two automatic purges.
PURGE_EVERY = 3600.0
#: Seconds to the next try after a round the store failed (a full disk, a write lock held
#: too long, a database down), twice as many after each further such round that purged
#: nothing, up to :data:`PURGE_EVERY`: a full disk stops a purge after a step or two, and the
#: next step, an hour later, was what would have made room for the webhooks meanwhile
#: refused (a round after the store checkpointed its log purges a step or more again).
RETRY_FIRST = 60.0


class Schedule:
    """When the next automatic purge comes: :data:`PURGE_EVERY` after a round that ended,
    sooner after one the store failed (:data:`RETRY_FIRST`, doubled for each failed round
    in a row that purged nothing; a failed round that purged something is making headway,
    and the next comes as soon again). Bounded: never sooner than ``retry``, never later
    than ``every``."""

    def __init__(self, *, every: float = PURGE_EVERY, retry: float = RETRY_FIRST) -> None:
        self.every = every
        self.retry = min(retry, every)
        #: Failed rounds in a row since the last that purged something or ended.
        self.failed = 0
        #: Seconds from the end of the last round to the next.
        self.wait = every

    def ended(self) -> None:
        """The round ran to its end: the next in ``every``."""
        self.failed = 0
        self.wait = self.every

    def failed_after(self, went: int) -> float:
        """The store failed the round after ``went`` events: the next one soon, as above;
        returns how soon."""
        self.failed = 1 if went else self.failed + 1
        self.wait = min(self.every, self.retry * 2 ** min(self.failed - 1, 30))
        return self.wait


def parse_purge_after(text: str) -> float | None:
    """``--purge-after``'s ``text``: None for ``off``, else :func:`parse_retention`'s seconds."""
    return None if text.strip().lower() == "off" else parse_retention(text)


def parse_retention(text: str) -> float:
    """Seconds in ``--purge-after``'s ``text`` (``"30d"``), at least :data:`SENDER_RETRIES`.

    Raises:
        UnitError: not a duration, or shorter than senders retry.
    """
    seconds = parse_duration(text)
    if seconds < SENDER_RETRIES:
        msg = (
            f"{text!r} is shorter than senders retry a delivery (up to 3 days): a delivery "
            "purged sooner is taken as new when it comes again. Give at least '3d', e.g. '30d'."
        )
        raise UnitError(msg)
    return seconds


async def purge_now(
    store: EventStore, *, keep: float, clock: Clock, schedule: Schedule | None = None
) -> int:
    """One automatic purge: delivered and skipped events older than ``keep``; how many went.

    A store failure is logged and the next round tries again, soon (``schedule``: when,
    logged as ``next_try_in``); the steps committed before it stay done and are counted (a
    purge that failed after deleting thousands of events counted none, and
    ``leadhub_events_purged_total`` fell short of what went). So is an unexpected error (a
    bug), with its traceback: it must not end the hourly rounds (nor, a bug being no
    outage, make them come sooner).
    """
    schedule = schedule or Schedule()
    went = 0

    def step(purged: Purged) -> None:
        nonlocal went
        went += purged.events

    try:
        await store.purge(before=clock.time() - keep, on_step=step)
    except StoreError as exc:
        soon = schedule.failed_after(went)
        log().warning("purge_failed", error=str(exc), purged=went, next_try_in=soon)
        return went
    except Exception as exc:  # a bug: say so, and keep the rounds going
        log().exception("purge_failed", error=repr(exc))
    schedule.ended()
    return went


def retention_lifespan(
    *,
    store: EventStore,
    clock: Clock,
    keep: float,
    every: float = PURGE_EVERY,
    retry: float = RETRY_FIRST,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A ``hub.web.app`` lifespan hook purging old events while the app runs (list it after
    the store's hook): every ``every`` seconds, sooner after a round the store failed
    (:class:`Schedule`). ``leadhub_events_purged_total`` counts what it deleted, and
    ``leadhub_store_bytes_freed_total`` what the SQLite file gave back after it."""

    @contextlib.asynccontextmanager
    async def hook(app: Starlette) -> AsyncIterator[None]:
        purged = Counter(
            "leadhub_events_purged",
            "Finished events deleted by the automatic purge (--purge-after).",
            registry=app_registry(app),
        )

        freed = Counter(
            "leadhub_store_bytes_freed",
            "Bytes of the SQLite store's file given back to the filesystem after the automatic "
            "purge's rounds (a store made with incremental vacuum: see leadhub vacuum); none "
            "on PostgreSQL, whose autovacuum keeps the tables' space for new rows.",
            registry=app_registry(app),
        )
        stats = getattr(store, "stats", None)

        def bytes_freed() -> int:
            return stats.bytes_freed if isinstance(stats, StoreStats) else 0

        async def rounds() -> None:
            schedule = Schedule(every=every, retry=retry)
            seen = bytes_freed()
            while True:
                purged.inc(await purge_now(store, keep=keep, clock=clock, schedule=schedule))
                now = bytes_freed()
                freed.inc(now - seen)
                seen = now
                await asyncio.sleep(schedule.wait)

        task = asyncio.create_task(rounds(), name="leadhub-purge")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return hook
