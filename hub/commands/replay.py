"""``leadhub replay``: put dead, unmatched or skipped events back in the queue."""

from __future__ import annotations

import argparse

from hub.store.base import EventStore
from hub.store.commands import fail, plural, run_with_store
from hub.store.models import State


def run(args: argparse.Namespace) -> int:
    """Requeue the selected events and say how many; refuse when nothing is selected."""
    if not (args.status or args.ids or args.endpoint):
        msg = (
            "say which events to replay: --status dead|unmatched|skipped, --id ID "
            "(repeatable) and/or --endpoint NAME."
        )
        return fail("replay", msg)
    state = State(args.status) if args.status else None

    async def action(store: EventStore) -> int:
        count = await store.replay(state=state, ids=args.ids, endpoint=args.endpoint)
        print(f"Requeued {count} {plural(count, 'event')}.")
        return 0

    return run_with_store("replay", args.db, action)
