"""``leadhub replay``: put dead, unmatched or skipped events back in the queue, and delivered
ones when asked for by name (``--status delivered``: their leads are sent again, which
updates them in LeadSquared), and retrying ones (``--status retrying``: tried now, their
retry schedule started over, instead of at their next try); ``--since AGE`` keeps to events
received in the last AGE (with ``--dry-run``, say how many it would and change nothing)."""

from __future__ import annotations

import argparse
import sys

from hub.cli import variable_of
from hub.store.base import EventStore, StoreError
from hub.store.commands import (
    endpoint_unknown,
    fail,
    listing,
    plural,
    run_with_store,
    stopped_by_store,
    utc,
)
from hub.store.models import REPLAYABLE, REPLAYED_BY_DEFAULT, Event, State
from hub.units import parse_duration

#: The states replay takes unless told otherwise, as a sentence's end.
REPLAYED_NAMES = listing(s.value for s in REPLAYED_BY_DEFAULT)


def run(args: argparse.Namespace) -> int:
    """Requeue the selected events and say how many; refuse when nothing is selected.

    Each ``--id`` that is not requeued gets a note on stderr saying why: without it a
    mistyped id, a delivered event and one filtered out by ``--endpoint`` all read as the
    same "Requeued 0 events."."""
    if not (args.status or args.ids or args.endpoint or args.since):
        msg = (
            "say which events to replay: --status dead|unmatched|skipped|delivered|retrying, "
            "--id ID "
            "(repeatable), --endpoint NAME and/or --since AGE."
        )
        return fail("replay", msg)
    state = State(args.status) if args.status else None
    # (--since is a checked AGE: hub.cli.age)
    age = None if args.since is None else parse_duration(args.since)

    requeued = 0  # what the steps committed so far

    def step(count: int) -> None:
        nonlocal requeued
        requeued += count

    async def action(store: EventStore) -> int:
        now = store.clock.time()  # the store's (on PostgreSQL, the server's), as its times
        since = None if age is None else now - age
        before = {i: await store.get(i) for i in dict.fromkeys(args.ids or [])}
        try:
            count = await store.replay(
                state=state,
                ids=args.ids,
                endpoint=args.endpoint,
                since=since,
                dry_run=args.dry_run,
                on_step=step,
            )
        except StoreError as exc:
            if args.dry_run:
                raise
            return stopped_by_store(
                "replay",
                exc,
                did="requeued",
                done=f"{requeued} {plural(requeued, 'event')}" if requeued else None,
                stay="stay queued",
                again="requeues",
                rest="the rest (only those still in the state it takes)",
            )
        done = "Would requeue" if args.dry_run else "Requeued"
        print(f"{done} {count} {plural(count, 'event')}.")
        if not count:
            await endpoint_unknown("replay", store, args.endpoint)
        for event_id, event in before.items():
            why = left_alone(
                event_id, event, state=state, endpoint=args.endpoint, since=since, now=now
            )
            if why:
                print(f"leadhub replay: note: {why}", file=sys.stderr)
        return 0

    def interrupted() -> str:
        """What a replay stopped by Ctrl-C says: how many its steps requeued (they stay)."""
        if args.dry_run:
            return "stopped."
        return (
            f"stopped before the end: requeued {requeued} {plural(requeued, 'event')} (whole "
            "steps), which stay queued; the same command again requeues the rest, only those "
            "still in the state it takes."
        )

    return run_with_store(
        "replay",
        args.db,
        action,
        reads_only=bool(args.dry_run),
        variable=variable_of(args, "db"),
        interrupted=interrupted,
    )


def left_alone(
    event_id: int,
    event: Event | None,
    *,
    state: State | None,
    endpoint: str | None,
    since: float | None = None,
    now: float,
) -> str | None:
    """Why replay did not take event ``event_id`` (``event`` as it was just before, at the
    store's time ``now``), or None when it was one to requeue."""
    if event is None:
        return f"there is no event {event_id}."
    if event.state.pending and not (event.state is State.RETRYING and state is State.RETRYING):
        return still_queued(event, now)
    if event.state not in REPLAYABLE:
        return (
            f"event {event_id} is {event.state.value}; only {REPLAYED_NAMES} events are replayed."
        )
    if state is None and event.state not in REPLAYED_BY_DEFAULT:
        return (
            f"event {event_id} is {event.state.value}; only {REPLAYED_NAMES} events are "
            f"replayed unless --status {event.state.value} is given (it sends the lead again)."
        )
    if state is not None and event.state is not state:
        return f"event {event_id} is {event.state.value}, not {state.value}."
    if endpoint is not None and event.endpoint != endpoint:
        return f"event {event_id} is of endpoint {event.endpoint!r}, not {endpoint!r}."
    if since is not None and event.received_at < since:
        return (
            f"event {event_id} was received {utc(event.received_at)} UTC, before "
            f"{utc(since)} UTC (--since)."
        )
    return None


def still_queued(event: Event, now: float) -> str:
    """Why replay leaves a pending event alone, and what to do: it is in the queue already
    (being sent, or waiting for its next try), so it needs no replay. As of ``now`` (the
    store's time), a lease or a next try that has passed is told as such, as ``leadhub
    events`` shows it ("lease expired", "due"): an event whose worker crashed read as "being
    sent now", with an end of its claim long past."""
    when = utc(event.next_attempt_at)
    passed = event.next_attempt_at <= now
    retry_now = ""
    if event.state is State.SENDING and passed:
        where = (
            f"was claimed by a worker whose lease ended at {when} UTC (the worker stopped or "
            "crashed: the next hub to claim it sends it)"
        )
    elif event.state is State.SENDING:
        where = f"is being sent now (claimed by a worker until {when} UTC at the latest)"
    else:
        next_try = f"due since {when} UTC" if passed else f"at {when} UTC"
        where = f"is {event.state.value}: still in the queue, its next try {next_try}"
        if event.state is State.RETRYING and not passed:
            retry_now = f"; to try it now: leadhub replay --status retrying --id {event.id}"
    return (
        f"event {event.id} {where}, so there is nothing to replay (replay takes "
        f"{REPLAYED_NAMES} events, and delivered or retrying ones named by --status); follow it "
        f"with leadhub events --id {event.id}{retry_now}."
    )
