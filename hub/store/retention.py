"""Retention: how long finished events are kept, and the worker's hourly purge.

``leadhub serve --purge-after 30d`` deletes delivered and skipped events 30 days after
their last change (:meth:`hub.store.base.EventStore.purge`), once at start and then every
:data:`PURGE_EVERY` seconds, from every process that runs the dispatcher. Without it the
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
from hub.store.base import EventStore, StoreError, log
from hub.store.models import Purged
from hub.units import UnitError, parse_duration
from hub.web.metrics import app_registry

#: The longest any documented sender keeps retrying a delivery (HubSpot: 3 days).
SENDER_RETRIES = 3 * 86400.0
#: Seconds between two automatic purges.
PURGE_EVERY = 3600.0


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


async def purge_now(store: EventStore, *, keep: float, clock: Clock) -> int:
    """One automatic purge: delivered and skipped events older than ``keep``; how many went.

    A store failure is logged and the next round tries again; the steps committed before
    it stay done and are counted (a purge that failed after deleting thousands of events
    counted none, and ``leadhub_events_purged_total`` fell short of what went). So is an
    unexpected error (a bug), with its traceback: it must not end the hourly rounds.
    """
    went = 0

    def step(purged: Purged) -> None:
        nonlocal went
        went += purged.events

    try:
        await store.purge(before=clock.time() - keep, on_step=step)
    except StoreError as exc:
        log().warning("purge_failed", error=str(exc))
    except Exception as exc:  # a bug: say so, and keep the rounds going
        log().exception("purge_failed", error=repr(exc))
    return went


def retention_lifespan(
    *, store: EventStore, clock: Clock, keep: float, every: float = PURGE_EVERY
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A ``hub.web.app`` lifespan hook purging old events while the app runs (list it after
    the store's hook). ``leadhub_events_purged_total`` counts what it deleted."""

    @contextlib.asynccontextmanager
    async def hook(app: Starlette) -> AsyncIterator[None]:
        purged = Counter(
            "leadhub_events_purged",
            "Finished events deleted by the automatic purge (--purge-after).",
            registry=app_registry(app),
        )

        async def rounds() -> None:
            while True:
                purged.inc(await purge_now(store, keep=keep, clock=clock))
                await asyncio.sleep(every)

        task = asyncio.create_task(rounds(), name="leadhub-purge")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return hook
