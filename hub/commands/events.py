"""``leadhub events``: list stored events with their state and last error."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from hub.store.base import EventStore
from hub.store.commands import (
    MAX_INT64,
    fail,
    id_too_large,
    iso,
    plural,
    printable,
    run_with_store,
    shorten,
    utc,
)
from hub.store.models import Event, State
from hub.units import parse_duration

COLUMNS: tuple[str, ...] = ("ID", "RECEIVED (UTC)", "ENDPOINT", "DELIVERY ID", "STATE")
COLUMNS += ("ATTEMPTS", "TARGET", "LEAD ID", "LAST ERROR")


#: ``--status duplicate``: the state of a delivery, not of an event (nothing is stored for it).
DUPLICATES = (
    'a duplicate delivery stores no event: it is answered 200 {"status":"duplicate","id":N} '
    "with N the event it repeats, logged as delivery_received with outcome=duplicate and "
    'event_ids [N], and counted in /metrics as leadhub_deliveries_total{outcome="duplicate"}; '
    "list the original with --id N."
)


def run(args: argparse.Namespace) -> int:
    """List events, newest first, as a table or (``--json``) one JSON object per line.

    ``--id`` picks events by id (the other filters still apply); ``--json`` shows all of an
    event, its document and whole last error included. A listing the limit cuts short says
    so on stderr: a script would otherwise take the newest 50 for every match."""
    state: State | None = None
    if args.status:
        try:
            state = State(args.status.lower())
        except ValueError:
            if args.status.lower() == "duplicate":
                return fail("events", DUPLICATES)
            names = ", ".join(s.value for s in State)
            return fail("events", f"unknown --status {args.status!r}; use one of {names}.")
    if args.limit < 1:
        return fail("events", f"--limit must be at least 1, got {args.limit!r}.")
    if (refused := id_too_large("events", args.ids)) is not None:
        return refused
    limit = min(args.limit, MAX_INT64 - 1)  # larger means every event; one more is read
    # (--since is a checked AGE: hub.cli.age)
    since = None if args.since is None else time.time() - parse_duration(args.since)

    async def action(store: EventStore) -> int:
        # one more than shown: whether the limit cut the listing short
        if args.ids:
            found = [e for i in sorted(set(args.ids), reverse=True) if (e := await store.get(i))]
            events = [
                e
                for e in found
                if (state is None or e.state is state)
                and (args.endpoint is None or e.endpoint == args.endpoint)
                and (since is None or e.received_at >= since)
            ][: limit + 1]
        else:
            events = await store.list(
                state=state, endpoint=args.endpoint, limit=limit + 1, since=since
            )
        if len(events) > limit:
            events = events[:limit]
            print(
                f"leadhub events: note: the newest {limit} matching "
                f"{plural(limit, 'event is', 'events are')} shown and more match; "
                "pass --limit N to see more.",
                file=sys.stderr,
            )
        if args.json:
            for event in events:
                print(orjson.dumps(as_json(event)).decode())
        elif events:
            print(table(events))
        else:
            print("No events match.")
        return 0

    return run_with_store("events", args.db, action)


def as_json(event: Event) -> dict[str, Any]:
    """The fields of ``event`` a script wants (no raw body; the document is included)."""
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "endpoint": event.endpoint,
        "delivery_id": event.delivery_id,
        "state": event.state.value,
        "attempts": event.attempts,
        "next_attempt_at": iso(event.next_attempt_at),
        "target": event.target,
        "mapping": event.mapping,
        "lead_id": event.lead_id,
        "lead_created": event.lead_created,
        "last_error": event.last_error,
        "updated_at": iso(event.updated_at),
        "document": event.document,
    }


def table(events: list[Event]) -> str:
    """Events as an aligned text table with a header line."""
    rows: list[tuple[str, ...]] = [COLUMNS]
    for e in events:
        rows.append(
            (
                str(e.id),
                utc(e.received_at),
                e.endpoint,
                shorten(e.delivery_id, 28),
                e.state.value,
                str(e.attempts),
                e.target or "",
                printable(e.lead_id or ""),  # a LeadSquared answer's
                shorten(e.last_error, 60),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
