"""``leadhub purge``: delete finished events older than an age, and the bodies only they used."""

from __future__ import annotations

import argparse
import sys

from hub.cli import given_as, variable_of
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
from hub.store.models import PURGED_BY_DEFAULT, Purged, State
from hub.store.retention import SENDER_RETRIES
from hub.store.sqlite import SQLiteStore
from hub.units import UnitError, age_units_hint, parse_duration, unitless_age


def run(args: argparse.Namespace) -> int:
    """Purge (or with ``--dry-run`` count) the selected events and say how many."""
    name = given_as(args, "older_than", "--older-than")
    if (number := unitless_age(args.older_than)) is not None:
        # (`--older-than 30`, meant as days, deleted every finished event older than 30 s)
        return fail(
            "purge",
            f"{name}: {number!r} has no unit, and a purge deletes: {age_units_hint(number)}.",
        )
    try:
        age = parse_duration(args.older_than)
    except UnitError as exc:
        return fail("purge", f"{name}: {exc}")
    if age < SENDER_RETRIES:
        print(
            f"leadhub purge: note: senders retry a delivery for up to 3 days; one purged "
            f"after {args.older_than} is taken as new if its sender sends it again.",
            file=sys.stderr,
        )
    states = [State(s) for s in args.statuses] if args.statuses else list(PURGED_BY_DEFAULT)
    states = list(dict.fromkeys(states))
    names = listing(s.value for s in states)

    done = Purged(events=0, deliveries=0)  # what the steps committed so far

    def step(purged: Purged) -> None:
        nonlocal done
        done = Purged(done.events + purged.events, done.deliveries + purged.deliveries)

    async def action(store: EventStore) -> int:
        # an age reaching before 1970 takes nothing (and has no date to print)
        before = max(0.0, store.clock.time() - age)
        what = f"{names} events last changed before {utc(before)} UTC"
        if args.endpoint:
            what += f" on endpoint {args.endpoint!r}"
        try:
            purged = await store.purge(
                before=before,
                states=states,
                endpoint=args.endpoint,
                dry_run=args.dry_run,
                on_step=step,
            )
        except StoreError as exc:
            if args.dry_run:
                raise
            return stopped_by_store(
                "purge",
                exc,
                did="purged",
                done=went(done) if done.events else None,
                stay="stay purged",
                again="purges",
                where=f" ({what})",
            )
        if not purged.events:
            await endpoint_unknown("purge", store, args.endpoint)
        if args.dry_run:
            print(f"Would purge {purged.events} {plural(purged.events, 'event')}: {what}.")
        else:
            print(
                f"Purged {purged.events} {plural(purged.events, 'event')} and "
                f"{purged.deliveries} {plural(purged.deliveries, 'delivery', 'deliveries')}: "
                f"{what}."
            )
            if isinstance(store, SQLiteStore) and (purged.events or store.stats.bytes_freed):
                await _space(store)
        return 0

    def interrupted() -> str:
        """What a purge stopped by Ctrl-C says: how many its steps purged (they stay)."""
        if args.dry_run:
            return "stopped."
        return (
            f"stopped before the end: purged {went(done)} (whole steps), which stay purged; "
            "the same command again purges the rest."
        )

    return run_with_store(
        "purge",
        args.db,
        action,
        reads_only=bool(args.dry_run),
        variable=variable_of(args, "db"),
        interrupted=interrupted,
    )


async def _space(store: SQLiteStore) -> None:
    """What the purge gave back to the filesystem (the store's file shrinks after a purge),
    or, for a store an earlier leadhub made, a note that its file keeps its size."""
    if store.stats.bytes_freed:
        try:
            now = f": {str(store.path)!r} is {store.path.stat().st_size:,} bytes now"
        except OSError:
            now = ""
        print(f"Gave {store.stats.bytes_freed:,} bytes back to the filesystem{now}.")
    elif not await store.shrinks():
        print(
            f"leadhub purge: note: the file of {str(store.path)!r} keeps its size (a store made "
            "by an earlier leadhub: the space is reused for new events); to give it back, stop "
            "the hub and run `leadhub vacuum` on it once.",
            file=sys.stderr,
        )


def went(done: Purged) -> str:
    """``N events and M deliveries``."""
    return (
        f"{done.events} {plural(done.events, 'event')} and "
        f"{done.deliveries} {plural(done.deliveries, 'delivery', 'deliveries')}"
    )
