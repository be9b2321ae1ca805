"""``leadhub replay``: put dead, unmatched or skipped events back in the queue (with
``--dry-run``, say how many it would and change nothing)."""

from __future__ import annotations

import argparse
import sys

from hub.store.base import EventStore
from hub.store.commands import (
    endpoint_unknown,
    fail,
    id_too_large,
    listing,
    plural,
    run_with_store,
)
from hub.store.models import REPLAYABLE, Event, State

#: The states replay takes, as a sentence's end.
REPLAYABLE_NAMES = listing(s.value for s in REPLAYABLE)


def run(args: argparse.Namespace) -> int:
    """Requeue the selected events and say how many; refuse when nothing is selected.

    Each ``--id`` that is not requeued gets a note on stderr saying why: without it a
    mistyped id, a delivered event and one filtered out by ``--endpoint`` all read as the
    same "Requeued 0 events."."""
    if not (args.status or args.ids or args.endpoint):
        msg = (
            "say which events to replay: --status dead|unmatched|skipped, --id ID "
            "(repeatable) and/or --endpoint NAME."
        )
        return fail("replay", msg)
    if (refused := id_too_large("replay", args.ids)) is not None:
        return refused
    state = State(args.status) if args.status else None

    async def action(store: EventStore) -> int:
        before = {i: await store.get(i) for i in dict.fromkeys(args.ids or [])}
        count = await store.replay(
            state=state, ids=args.ids, endpoint=args.endpoint, dry_run=args.dry_run
        )
        done = "Would requeue" if args.dry_run else "Requeued"
        print(f"{done} {count} {plural(count, 'event')}.")
        if not count:
            await endpoint_unknown("replay", store, args.endpoint)
        for event_id, event in before.items():
            why = left_alone(event_id, event, state=state, endpoint=args.endpoint)
            if why:
                print(f"leadhub replay: note: {why}", file=sys.stderr)
        return 0

    return run_with_store("replay", args.db, action)


def left_alone(
    event_id: int, event: Event | None, *, state: State | None, endpoint: str | None
) -> str | None:
    """Why replay did not take event ``event_id`` (``event`` as it was just before), or None
    when it was one to requeue."""
    if event is None:
        return f"there is no event {event_id}."
    if event.state not in REPLAYABLE:
        return (
            f"event {event_id} is {event.state.value}; only {REPLAYABLE_NAMES} events are replayed."
        )
    if state is not None and event.state is not state:
        return f"event {event_id} is {event.state.value}, not {state.value}."
    if endpoint is not None and event.endpoint != endpoint:
        return f"event {event_id} is of endpoint {event.endpoint!r}, not {endpoint!r}."
    return None
