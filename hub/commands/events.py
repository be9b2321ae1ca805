"""``leadhub events``: list stored events with their state and last error."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from hub.cli import given_as, json_text, variable_of
from hub.sources.base import redact_fields
from hub.sources.google import GoogleSource
from hub.store.base import MAX_ID, EventStore
from hub.store.commands import (
    endpoint_unknown,
    fail,
    iso,
    plural,
    printable,
    run_with_store,
    shorten,
    utc,
)
from hub.store.models import Event, Listed, State
from hub.units import parse_duration

#: NEXT (UTC) follows STATE, the state it qualifies: "retrying" then when, "sending" then
#: when its lease ends (STATE itself stays the one word --status takes).
COLUMNS: tuple[str, ...] = ("ID", "RECEIVED (UTC)", "ENDPOINT", "DELIVERY ID", "STATE")
COLUMNS += ("NEXT (UTC)", "ATTEMPTS", "TARGET", "LEAD ID", "LAST ERROR")

#: The states of an event waiting for its next try: ``next_attempt_at`` is when that is.
WAITING = (State.QUEUED, State.RETRYING)


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
    so on stderr: a script would otherwise take the newest 50 for every match.

    The time is read once, before the listing: every event is shown due (or its lease
    expired) as of that one moment, however long the pages take to read and print.

    The listing streams: it is read :data:`PAGE` events at a time (``store.list_page``,
    only the fields shown) and each page is printed before the next is read, so a
    ``--limit`` of millions holds one page in memory."""
    state: State | None = None
    if args.status:
        try:
            state = State(args.status.lower())
        except ValueError:
            if args.status.lower() == "duplicate":
                return fail("events", DUPLICATES)
            names = ", ".join(s.value for s in State)
            flag = given_as(args, "status", "--status")
            return fail("events", f"unknown {flag} {args.status!r}; use one of {names}.")
    if args.limit < 1:
        flag = given_as(args, "limit", "--limit")
        return fail("events", f"{flag} must be at least 1, got {args.limit!r}.")
    limit = min(args.limit, MAX_ID - 1)  # larger means every event; one more is read
    # (--since is a checked AGE: hub.cli.age)
    age = None if args.since is None else parse_duration(args.since)

    async def action(store: EventStore) -> int:
        now = store.clock.time()  # the store's (on PostgreSQL, the server's), as its times
        since = None if age is None else now - age
        # one more than shown: whether the limit cut the listing short
        most = limit + 1
        selection = Selection(state, args.endpoint, since, documents=bool(args.json))
        if args.ids:
            pages = by_ids(store, args.ids, selection, most=most)
        else:
            pages = newest_first(store, selection, most=most)
        out: Json | Table = Json(now) if args.json else Table(now)
        shown = 0
        async with contextlib.aclosing(pages):
            async for page in pages:
                out.page(page[: limit - shown])
                shown += len(page)
                if shown > limit:
                    print(
                        f"leadhub events: note: the newest {limit} matching "
                        f"{plural(limit, 'event is', 'events are')} shown and more match; "
                        "pass --limit N to see more.",
                        file=sys.stderr,
                    )
                    break
        if not shown:
            out.nothing()
            # a mistyped --endpoint reads as "none there" otherwise, as for replay and purge
            await endpoint_unknown("events", store, args.endpoint)
        return 0

    return run_with_store(
        "events", args.db, action, reads_only=True, variable=variable_of(args, "db")
    )


#: Events per page: each page is one read of the store, printed before the next is read,
#: so a listing of a million events holds one page in memory, not all of them.
PAGE = 500


@dataclass(frozen=True, slots=True)
class Selection:
    """What ``leadhub events`` lists: the filters, and whether documents are printed."""

    state: State | None
    endpoint: str | None
    since: float | None
    documents: bool

    def matches(self, event: Event) -> bool:
        """Whether ``event`` (read by its id) is one the filters take."""
        return (
            (self.state is None or event.state is self.state)
            and (self.endpoint is None or event.endpoint == self.endpoint)
            and (self.since is None or event.received_at >= self.since)
        )


async def newest_first(
    store: EventStore, selection: Selection, *, most: int
) -> AsyncGenerator[list[Listed], None]:
    """The matching events, newest first, in pages of at most :data:`PAGE`, ``most`` in all
    (keyset pagination: each page starts below the last id of the one before)."""
    before: int | None = None
    while most > 0:
        wanted = min(PAGE, most)
        page = await store.list_page(
            state=selection.state,
            endpoint=selection.endpoint,
            since=selection.since,
            before=before,
            limit=wanted,
            documents=selection.documents,
        )
        if page:
            yield page
        if len(page) < wanted:
            return
        most -= len(page)
        before = page[-1].id


async def by_ids(
    store: EventStore, ids: list[int], selection: Selection, *, most: int
) -> AsyncGenerator[list[Listed], None]:
    """The events of ``ids`` that match, newest first, in pages (``most`` at the most)."""
    wanted = sorted(set(ids), reverse=True)
    for start in range(0, len(wanted), PAGE):
        if most <= 0:
            return
        found = [e for i in wanted[start : start + PAGE] if (e := await store.get(i))]
        page = [Listed.of(e, documents=selection.documents) for e in found if selection.matches(e)][
            :most
        ]
        if page:
            yield page
        most -= len(page)


def due(event: Listed, now: float) -> bool | None:
    """Whether ``event``, waiting (queued or retrying), may be tried at ``now``; None for an
    event in any other state. (As the store's claim sees it: due at next_attempt_at.)"""
    if event.state not in WAITING:
        return None
    return event.next_attempt_at <= now


def lease_expired(event: Listed, now: float) -> bool | None:
    """Whether ``event``, ``sending``, is past the end of its lease at ``now`` (its worker
    crashed or stalled: any worker may claim it again); None for an event in another state.
    (While ``sending``, next_attempt_at holds the lease end: see hub/store/sql/sqlite.sql.)"""
    if event.state is not State.SENDING:
        return None
    return event.next_attempt_at <= now


#: Credentials a sender may write into its body (Google's ``google_key``): stored as
#: ``[redacted]`` since they are checked, but a store written before that keeps them. The
#: listing never shows them, whichever endpoint or version stored the event.
CREDENTIALS = GoogleSource.credential_fields


def next_at(event: Listed) -> float | None:
    """When ``event`` is tried next (queued, retrying) or its lease ends (sending); None for
    a finished event, which is tried no more: its next_attempt_at is what was left over
    (the lease of its last try), which read as a try to come."""
    if event.state in WAITING or event.state is State.SENDING:
        return event.next_attempt_at
    return None


def as_json(event: Listed, now: float) -> dict[str, Any]:
    """The fields of ``event`` a script wants (no raw body; the document is included).

    ``next_attempt_at`` is null for a finished event (as the table's NEXT is empty).
    ``due`` and ``lease_expired`` are as of ``now`` (the listing's time): whether a waiting
    event may be tried, whether a sending one's lease has run out; null in other states.
    ``requeued_at``: the last ``leadhub replay`` of it (its give-up clock counts from
    there), null if never; ``enrichment``: what the hub read from the sender's API for it
    (Facebook's Graph lead, LinkedIn's form response, HubSpot's object), which its
    mapping saw, null if none (yet)."""
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "endpoint": event.endpoint,
        "delivery_id": event.delivery_id,
        "state": event.state.value,
        "attempts": event.attempts,
        "next_attempt_at": iso(next_at(event)),
        "due": due(event, now),
        "lease_expired": lease_expired(event, now),
        "target": event.target,
        "mapping": event.mapping,
        "lead_id": event.lead_id,
        "lead_created": event.lead_created,
        "last_error": event.last_error,
        "updated_at": iso(event.updated_at),
        "requeued_at": iso(event.requeued_at),
        "document": redact_fields(event.document, CREDENTIALS),
        "enrichment": redact_fields(event.enrichment, CREDENTIALS),
    }


class Json:
    """``--json``: one object per line, each page written as it comes (``now``: the time
    of the listing, that ``due`` and ``lease_expired`` are as of)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def page(self, events: list[Listed]) -> None:
        lines = (orjson.dumps(as_json(e, self.now)).decode() + "\n" for e in events)
        sys.stdout.write(json_text("".join(lines)))

    def nothing(self) -> None:
        """Nothing matched: no line at all."""


class Table:
    """An aligned text table with a header line, written a page at a time.

    Its columns are as wide as the first page needs (the whole listing, when it fits in
    one page); a later page widens a column that holds something longer, from that page
    on (the rows already written stay as they were). NEXT (UTC) is as of ``now``, the
    time of the listing."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.widths: list[int] | None = None

    def page(self, events: list[Listed]) -> None:
        rows = [cells(e, self.now) for e in events]
        if self.widths is None:
            rows.insert(0, COLUMNS)
            self.widths = [0] * len(COLUMNS)
        self.widths = [max([w, *(len(row[i]) for row in rows)]) for i, w in enumerate(self.widths)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, self.widths, strict=True)).rstrip()
            for row in rows
        ]
        sys.stdout.write("".join(line + "\n" for line in lines))

    def nothing(self) -> None:
        print("No events match.")


def cells(e: Listed, now: float) -> tuple[str, ...]:
    """One row of the table: what each column shows of ``e`` (NEXT as of ``now``)."""
    return (
        str(e.id),
        utc(e.received_at),
        e.endpoint,
        shorten(e.delivery_id, 28),
        e.state.value,
        next_cell(e, now),
        str(e.attempts),
        e.target or "",
        printable(e.lead_id or ""),  # a LeadSquared answer's
        shorten(e.last_error, 60),
    )


def next_cell(e: Listed, now: float) -> str:
    """The NEXT (UTC) cell: when a waiting event is tried next ("due": its time has come; a
    paused target or an earlier event of its lead may still hold it), when a sending one's
    lease ends ("lease expired": claimable again, its worker gone); empty for a finished
    event, which is tried no more (its next_attempt_at is left over)."""
    if (waiting := due(e, now)) is not None:
        return "due" if waiting else utc(e.next_attempt_at)
    if (expired := lease_expired(e, now)) is not None:
        return "lease expired" if expired else f"lease ends {utc(e.next_attempt_at)}"
    return ""
