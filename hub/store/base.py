"""The event store seen as a queue: what ingest, the dispatcher and the CLI code against.

Error tree::

    HubError
    └── StoreError            the store failed (a driver error, wrapped)
        ├── StoreUnavailable  the database cannot be reached or written right now
        │   ├── LockTimedOut  a statement waited a lock_timeout for a lock and was cancelled
        │   ├── NewerSchema   a later leadhub's store: no wait or retry makes it usable
        │   ├── SchemaUnreadable  its schema version is no number (edited): nor this
        │   └── NotAnEventStore  the sandbox's database: nor this
        └── LeaseLost         a claimed event is no longer the writer's (see below)

Every backend (SQLite, PostgreSQL) implements :class:`EventStore` and
passes the one contract suite in ``tests/store/test_contract.py``. Times are unix
seconds read from the injected :class:`hub.clock.Clock`.
"""

from __future__ import annotations

import array
import builtins
import contextlib
import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from hub.clock import Clock
from hub.exceptions import HubError
from hub.store.models import (
    PURGEABLE,
    PURGED_BY_DEFAULT,
    REPLAYABLE,
    REPLAYED_BY_DEFAULT,
    Ack,
    EnqueueResult,
    Event,
    IncomingDelivery,
    Listed,
    Purged,
    Route,
    SlotAnswer,
    State,
)

if TYPE_CHECKING:
    import asyncio

# (asyncio and the log set-up are imported where used: the SQLite writer process imports
# this module and needs neither, and starts in about a third less time without them)


#: The spans a store keeps of each target's pauses and each endpoint's held reads
#: (:meth:`EventStore.keep_spans`), as a process remembers them: the latest, those that can
#: still overlap a waiting event's life.
SPANS_KEPT = 64


class StoreError(HubError):
    """The event store failed."""


class StoreUnavailable(StoreError):
    """The event store cannot be reached or written; check the database path and disk."""


class LockTimedOut(StoreUnavailable):
    """A statement the server cancelled after waiting its ``lock_timeout`` for a lock (the
    URL's, the role's or the database's; SQLSTATE 55P03): the store's writes wait for a lock
    another session holds, told at once rather than after a wait (:class:`CommitWait` says
    which, when the store can tell)."""


#: What a store's commits can wait for (:attr:`CommitWait.cause`; the label values of
#: ``leadhub_store_commits_waiting``).
WAIT_CAUSES = ("standby", "lock")


@dataclass(frozen=True)
class CommitWait:
    """What a store's commits (or its writes' statements) wait for, as the store read it
    (:meth:`EventStore.commit_wait`)."""

    #: ``standby`` (a synchronous standby that does not confirm them) or ``lock`` (a lock
    #: another session holds): one of :data:`WAIT_CAUSES`.
    cause: str
    #: What to say, with what to do; its words up to the first `` (`` are its headline,
    #: what ``/readyz`` answers (the details, holders and settings, only in the log).
    text: str
    #: A lock's holders, as seen: ``pid 123 (leadhub, idle in transaction)``; else None.
    holders: str | None = None
    #: The relation waited for (a table, or the store's schema lock), when known.
    relation: str | None = None
    #: The holders are other leadhub instances opening the store (making or migrating its
    #: tables under its schema lock): an expected wait, over once their start commits.
    starting: bool = False

    @property
    def headline(self) -> str:
        """:attr:`text` up to its first `` (``."""
        return self.text.split(" (", 1)[0]


class UnavailableForGood(StoreUnavailable):
    """Unavailable however long one waits: ``serve --store-wait`` gives up on it at once."""


class NewerSchema(UnavailableForGood):
    """The store was made by a later leadhub (:func:`newer_schema`): unavailable to this
    one however long it waits."""


class NotAnEventStore(UnavailableForGood):
    """The file holds another database, the Lead.Capture sandbox's leads: unavailable however
    long one waits, and never given the hub's tables beside the sandbox's."""


class NotAFile(UnavailableForGood):
    """A SQLite store's path names a directory (``--db sqlite:////var/lib/leadhub``, the data
    directory rather than the file in it): no wait makes it a database file."""


def newer_schema(found: int, known: int) -> NewerSchema:
    """The refusal of a store whose schema version ``found`` is newer than this code's
    ``known``: a later leadhub made it, and this one would write rows as it knows them (a
    replay resetting only its own columns, say). Unavailable, not a job's error: nothing
    this process does with the store can succeed, and the writer threads pass it on as is.
    """
    msg = (
        f"the event store has schema version {found}, newer than this leadhub's ({known}): "
        "a later leadhub made it; upgrade leadhub to that release (or a newer one) to use it."
    )
    return NewerSchema(msg)


class SchemaUnreadable(UnavailableForGood):
    """The store's ``meta.schema_version`` is not a whole number, or not there (the table
    edited by hand): which tables it has is not known, so nothing is read or written, and
    no wait makes it usable (:func:`stored_version`)."""


def stored_version(found: Any, where: str, known: int) -> int:
    """``meta.schema_version``'s value ``found`` (None: no such row) as a number, for the
    store ``where`` names (``'/srv/hub.db'``); read as ``int(found)``, a value edited by
    hand was a ValueError's traceback from ``leadhub serve`` and every command.

    Raises:
        SchemaUnreadable: ``found`` is not a whole number.
    """
    try:
        return int(found)
    except (TypeError, ValueError):
        shown = (
            "no schema_version in its meta table"
            if found is None
            else f"schema_version {str(found)[:40]!r} in its meta table, not a whole number"
        )
        msg = (
            f"the event store {where} has {shown} (it was edited by hand): set it back to "
            f"the version the store was made at (this leadhub makes {known}), or restore "
            "the store from a backup."
        )
        raise SchemaUnreadable(msg) from None


class LeaseLost(StoreError):
    """A write under a lease that is no longer the event's: nothing was written.

    The lease ran out and another worker claimed the event, or it was already finished.
    A worker that was too slow must not overwrite what the new owner does.
    """


#: Run before the store's first line, then forgotten: the SQLite writer process sets up its
#: logging there, only once it has a line to write (:mod:`hub.store.sqlite_child`).
before_first_line: Callable[[], None] | None = None


def log() -> Any:
    """The store's logger, fetched per use so it follows the current structlog set-up."""
    global before_first_line
    if before_first_line is not None:
        set_up, before_first_line = before_first_line, None
        set_up()
    from hub import logs

    return logs.get_logger("hub.store")


@dataclass
class StoreStats:
    """Counters of a store's writes (read them from tests and metrics)."""

    #: Write transactions committed.
    commits: int = 0
    #: Jobs run inside those transactions.
    jobs: int = 0
    #: Times a connection was (re-)opened.
    opens: int = 0
    #: Bytes of free pages given back to the filesystem after purges (SQLite stores made
    #: with incremental vacuum; see ``SQLiteStore.give_back``).
    bytes_freed: int = 0


#: The largest event id a store holds: a signed 64-bit integer (SQLite's INTEGER,
#: PostgreSQL's bigint). ``list_page`` from the newest reads ids up to it.
MAX_ID = 2**63 - 1

#: Seconds a claimed event not routed yet holds back every later event (``blockers``):
#: routes are written milliseconds after a claim, so a claim this old was made by a process
#: that died (kill -9) or lost the store before routing it. Without this bound it held every
#: later event, of every lead and target, back until its lease ended (60 s by default), in
#: every process on the store, a restarted one included. Processes on several machines need
#: clocks that agree within it.
ROUTING_GRACE = 10.0

#: How the last error of an event begins when a dispatcher left it because its endpoint is
#: not in that dispatcher's configuration (another instance, deployed with it, may have it).
#: A claim given ``known_endpoints`` leaves such events of other endpoints alone: each is
#: claimed once by an instance without its endpoint, not at every poll. It leaves alone as
#: well those an instance with the endpoint took up (a route, a read started, or a last error
#: of its own, which replaces the mark: a failed lead read or preparation, a missing target,
#: an ordering wait, a failed send): the event was claimed again by an instance without the
#: endpoint after each such write, only to be put back. Such a claim takes an event of
#: another endpoint only while nobody took it up since it was queued or replayed.
ENDPOINT_ABSENT = "endpoint not configured: "


#: Seconds a delivery waits for its store's commit before it is answered 503 (the sender
#: retries): a store that hangs rather than refusing (SQLite's writer process stalled on a hung
#: mount, a stopped process; a PostgreSQL server stopped, a lock never released, a network
#: that drops packets) would otherwise hold every request, each sender's retries piling up,
#: for as long as it lasts. Longer than SQLite's own wait for another process's write lock
#: (the busy timeout, 10 s). A delivery so answered may still be written when the store comes
#: back; the sender's retry is then answered as a duplicate of it. ``?stall_after=`` in the
#: store URL.
STALL_AFTER = 30.0

#: A rate slot said to end more than this far ahead (or ``hold``, if longer) was taken before
#: the wall clock was set back: it no longer counts (seconds; see :meth:`EventStore.take_slots`).
#: Above the longest hold of any target (``hub.config.models.MAX_TIMEOUT``: 241 s), so that a
#: process asking with a shorter hold never takes another's call in flight for one of those.
SLOT_HORIZON = 300.0
#: How far the store's wall clock may seem to go back between two claims before the claim
#: takes it for a step back (NTP, an operator, a resumed VM) and moves the due times of the
#: waiting events back by as much: without that, an event received or retried in the hour
#: before a step back of an hour waited out that hour again (seconds; the high mark it is
#: measured against is written at most once per this many seconds, so a step is undone to
#: within about as much).
CLOCK_STEP_BACK = 1.0
#: How much further the store's clock may seem to go than the monotonic clock between two
#: claims of one store object before the claim takes it for a step forward (NTP, an
#: operator, a resumed VM) and moves every lease's end forward by as much: without that, a
#: step of more than a lease let another instance claim and send an event whose call was
#: still in flight (seconds; above the noise of a :class:`~hub.clock.ServerTime` clock's
#: measurements and NTP's slewing between two claims, and several :data:`CLOCK_STEP_BACK`,
#: so that the mark tells a step applied from one not yet, see :func:`clock_step`).
CLOCK_STEP_FORWARD = 5.0
#: Absorbs float rounding in the rate window: a wait of exactly (end + window - now) frees
#: the slot.
SLOT_EPSILON = 1e-6


def no_event(event_id: int) -> StoreError:
    """The error for a write naming an event the store does not have."""
    return StoreError(
        f"No event with id {event_id!r} in the store; list them with `leadhub events`."
    )


def clock_step(now: float, mark: str | None, ahead: float = 0.0) -> float | None:
    """What a claim reading ``now`` does with the store's clock ``mark`` (as stored; None:
    none yet), its store object's clock having gone ``ahead`` seconds further than the
    monotonic clock since its last claim (:class:`ClockWatch`): None, leave the mark (it is
    within :data:`CLOCK_STEP_BACK` of now); else write now as the mark, after moving every
    lease's end back by the seconds returned (0.0: none; a step back is undone, the waiting
    events' due times too; negative: a step forward, applied to the leases only).

    A step forward cannot be told from the mark alone: a gap since it is as well real time
    in which nobody claimed (every instance stopped for an hour), after which the dead
    workers' leases must not be lengthened. So it is told by the monotonic clock of a store
    object that claimed before the step, and applied only while the mark is still from
    before it: no later than ``now - ahead`` (a mark any instance wrote since the step is
    at most the time since the step old, and the next claim after a step follows it within
    moments). So it is applied once, by the first claim after it of an instance that had
    claimed before it; if that first claim is a just started instance's, not at all."""
    if mark is None:
        return 0.0
    marked = float(mark)
    if ahead > CLOCK_STEP_FORWARD and marked < now - ahead + CLOCK_STEP_BACK:
        return -ahead
    back = marked - now
    if abs(back) <= CLOCK_STEP_BACK:
        return None
    return max(back, 0.0)


@dataclass(frozen=True, slots=True)
class ClockReading:
    """A claim's reading of its store object's clock (:meth:`ClockWatch.read`)."""

    #: The store's time.
    now: float
    #: The monotonic clock's reading.
    monotonic: float
    #: How many seconds further the store's time went than the monotonic clock since the
    #: store object's last claim (0.0 at its first).
    ahead: float
    #: The store's clock shift as its last claim left it (None at its first).
    shift: float | None = None

    def unapplied(self, shift: float) -> float:
        """:attr:`ahead` less the steps another store object applied since the last claim,
        the store's clock shift being ``shift`` now: each step applied moved the shift by as
        much the other way (forward: down). Without that, a step forward another instance
        applied was applied again by one whose next claim came once the mark was older than
        the step (nobody had claimed for as long: lanes full of slow calls, a stop), and
        every lease ended a step later than meant."""
        return self.ahead if self.shift is None else self.ahead + (shift - self.shift)

    def against(self, mark: str | None, shift: str | None) -> tuple[float, float | None]:
        """The store's clock shift (``shift`` as stored; None: 0) and what this claim does
        with the store's clock ``mark`` (:func:`clock_step`, for the steps not applied yet):
        the part of a claim's clock mark both stores share."""
        current = 0.0 if shift is None else float(shift)
        return current, clock_step(self.now, mark, self.unapplied(current))


class ClockWatch:
    """A store object's last claim's readings of its clock (store time, monotonic), by which
    its next claim tells a step forward of the store's clock (:func:`clock_step`).

    A store object that has not claimed yet (an instance just started) sees no step: it
    cannot tell one from the time every instance was stopped. The monotonic clock does not
    run while the machine sleeps, so a resumed VM's instance sees its sleep as a step
    forward and keeps the leases it holds (its calls in flight were frozen too)."""

    def __init__(self) -> None:
        self._kept: tuple[float, float, float] | None = None

    def read(self, clock: Clock) -> ClockReading:
        """``clock`` now, in a claim's turn, and how far ahead it went since the last kept."""
        now, mono = clock.time(), clock.monotonic()
        kept = self._kept
        if kept is None:
            return ClockReading(now, mono, 0.0)
        return ClockReading(now, mono, (now - kept[0]) - (mono - kept[1]), kept[2])

    def keep(self, reading: ClockReading, shift: float) -> None:
        """Keep ``reading``, and the clock ``shift`` its claim left, once the claim committed
        (a claim rolled back applied nothing: the next one sees the same step), unless a
        later one was kept already."""
        if self._kept is None or reading.monotonic >= self._kept[1]:
            self._kept = (reading.now, reading.monotonic, shift)


def log_clock_step(step: float, events: int, leases: int, slots: int = 0) -> None:
    """Log a step of the store's clock a claim applied (:func:`clock_step`'s ``step``):
    ``clock_stepped_back`` (``events``: the waiting events' due times moved too; ``slots``:
    the shared rate windows' slots) or ``clock_stepped_forward``."""
    if step > 0:
        log().warning(
            "clock_stepped_back",
            seconds=round(step, 3),
            events=events,
            leases=leases,
            slots=slots,
        )
    else:
        log().warning("clock_stepped_forward", seconds=round(-step, 3), leases=leases)


def with_clock_shift(claimed: list[Event], shift: float) -> list[Event]:
    """``claimed`` as a claim hands them out: each lease's end plus the store's clock shift
    (the seconds of steps back of the wall clock undone so far less those of the steps
    forward applied, 0 before any), which is the lease's token. An undone step back moves
    every lease end back and adds itself to the shift, a step forward moves them forward
    and takes itself from it, so a holder's token stays its lease's while the end moves (a
    lease a dead worker held ends when it was meant to, not the step later; a live one's
    call is not taken for dead and sent again)."""
    if not shift:
        return claimed
    return [dataclasses.replace(e, next_attempt_at=e.next_attempt_at + shift) for e in claimed]


def lease_lost(event_id: int) -> LeaseLost:
    """The error for a write under a lease the event is no longer under."""
    return LeaseLost(
        f"Event {event_id} is no longer under the lease this write was for: it was claimed "
        "again after that lease ended, or it is finished."
    )


def replayed_states(state: State | None) -> list[str]:
    """The states :meth:`EventStore.replay` takes for its ``state`` selector, as stored:
    ``state`` alone, or when None the states replayed by default (never ``delivered``: a
    delivered event goes back only when asked for by name, as it sends its lead again).

    Raises:
        StoreError: ``state`` is not one of the replayable states.
    """
    if state is None:
        return [s.value for s in REPLAYED_BY_DEFAULT]
    if State(state) not in REPLAYABLE:
        names = ", ".join(s.value for s in REPLAYABLE)
        msg = f"Only {names} events can be replayed, not {State(state).value!r}."
        raise StoreError(msg)
    return [State(state).value]


def purged_states(states: Collection[State] | None) -> list[str]:
    """``states`` as stored, for :meth:`EventStore.purge`; None gives the default states.

    Raises:
        StoreError: a state is not final (an event still pending is never purged).
    """
    chosen = PURGED_BY_DEFAULT if states is None else tuple(State(s) for s in states)
    if not chosen:
        msg = "Name at least one state to purge."
        raise StoreError(msg)
    for state in chosen:
        if state not in PURGEABLE:
            names = ", ".join(s.value for s in PURGEABLE)
            msg = f"Only {names} events can be purged, not {state.value!r}: it is still pending."
            raise StoreError(msg)
    return sorted({state.value for state in chosen})


#: Events a purge walks per step (one short write transaction each, so ingest's writes
#: wait for one step at most while a large purge runs: tens of milliseconds on SQLite, whose
#: waiting writers take the lock between steps, see ``SQLiteStore.step_pause``).
PURGE_WINDOW = 1000

#: Events a replay requeues per step (one short write transaction each). Replay was one
#: statement: on SQLite it held the write lock for as long as it took, 0.6 s for 100,000 dead
#: events on a warm page cache (and growing with the count), and every webhook waited that
#: long for its commit (0.7 to 0.9 s measured); at that rate a replay of some 1.5 million
#: events passes the busy timeout (10 s), and webhooks are answered 503.
REPLAY_STEP = 1000


@dataclass(frozen=True)
class Replayed:
    """What a replay selects (:meth:`EventStore.replay`'s selectors, as stored)."""

    #: The states taken (:func:`replayed_states`).
    states: builtins.list[str]
    ids: builtins.list[int] | None
    endpoint: str | None
    since: float | None


def spans_by_name(rows: Iterable[Any]) -> dict[str, builtins.list[tuple[float, float]]]:
    """Rows of ``kept_spans`` (name, began, ended; in order) by name, as
    :meth:`EventStore.kept_spans` answers."""
    found: dict[str, builtins.list[tuple[float, float]]] = {}
    for name, began, ended in rows:
        found.setdefault(name, []).append((float(began), float(ended)))
    return found


def state_counts(
    found: Iterable[tuple[Any, Any]], states: Collection[State] | None = None
) -> dict[State, int]:
    """``(state, count)`` rows as :meth:`EventStore.counts` answers: every state (or each of
    ``states``), zero included."""
    out = dict.fromkeys(State if states is None else states, 0)
    for state, count in found:
        out[State(state)] = int(count)
    return out


def ordering_checks(checks: Sequence[tuple[int, Sequence[str]]]) -> list[list[Any]]:
    """:meth:`EventStore.blockers`' checks as ``[event id, [key, ...]]``, the empty keys
    dropped, and the events left without a key (nothing can block them) left out."""
    return [
        [int(event_id), keys]
        for event_id, lead_keys in checks
        if (keys := [str(k) for k in lead_keys if k])
    ]


T = TypeVar("T")


async def whole_step(step: Coroutine[Any, Any, T], done: Callable[[T], None]) -> None:
    """Run ``step`` (one transaction of a purge or replay) and hand its result to ``done``,
    also when the caller is cancelled meanwhile (Ctrl-C): the step, already handed to the
    store, is then waited for and counted before the cancellation goes on, so the count said
    on stopping is the count written."""
    import asyncio

    task = asyncio.ensure_future(step)
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        if task.done() and not task.cancelled() and task.exception() is None:
            done(task.result())
        raise
    done(result)


class BatchedStore(ABC):
    """What every backend does the same way on top of its own queries: the one-event forms
    of the batch methods, and the walks of a purge and a replay."""

    #: The store's clock (each backend sets it).
    clock: Clock
    #: Events a replay requeues per write transaction (:data:`REPLAY_STEP`; a test may
    #: lower it on one store).
    replay_step: int = REPLAY_STEP
    #: Seconds a purge or replay waits at least between two of its steps, leaving the
    #: store's write lock free for other writers (SQLite: see ``SQLiteStore.step_pause``);
    #: none by default. When a step took longer (a loaded machine, a slow disk), the wait
    #: is as long as the step: the other writers get at least half the time.
    step_pause: float = 0.0

    async def _between_steps(self, took: float) -> None:
        """The wait after a step that took ``took`` seconds (see :attr:`step_pause`)."""
        if self.step_pause > 0:
            import asyncio

            await asyncio.sleep(max(self.step_pause, took))

    @abstractmethod
    async def set_routes(
        self, routes: Sequence[Route], *, reading: Sequence[int] = ()
    ) -> builtins.list[int]: ...

    @abstractmethod
    async def blockers(self, checks: Sequence[tuple[int, Sequence[str]]]) -> dict[int, Event]: ...

    async def set_route(
        self, event_id: int, *, target: str, mapping: str, lead_keys: Sequence[str]
    ) -> None:
        route = Route(event_id=event_id, target=target, mapping=mapping, lead_keys=tuple(lead_keys))
        if await self.set_routes([route]):
            raise no_event(event_id)

    async def blocker(self, event_id: int, lead_keys: Sequence[str]) -> Event | None:
        return (await self.blockers([(event_id, lead_keys)])).get(event_id)

    # -- purge: a walk over the events in id order, one window at a time -----------------

    @abstractmethod
    async def _purge_window(self, after: int) -> tuple[int, float] | None:
        """The next :data:`PURGE_WINDOW` events after id ``after``: the last id among them
        and the earliest time one of them was received; None past the last event."""

    @abstractmethod
    async def _newest_received(self) -> float | None:
        """When the event of the largest id was received; None with no event."""

    @abstractmethod
    async def _purge_range(
        self,
        after: int,
        upto: int,
        *,
        before: float,
        states: builtins.list[str],
        endpoint: str | None,
        dry_run: bool,
    ) -> tuple[int, int]:
        """Delete (or count) the events with ids in (``after``, ``upto``] that qualify, with
        their lead keys and the deliveries left without events: ``(events, deliveries)``."""

    async def purge(
        self,
        *,
        before: float,
        states: Collection[State] | None = None,
        endpoint: str | None = None,
        dry_run: bool = False,
        on_step: Callable[[Purged], None] | None = None,
    ) -> Purged:
        wanted = purged_states(states)
        after = events = deliveries = 0
        newest: float | None = None  # (read once a step would end the walk)

        def purged(step: tuple[int, int]) -> None:
            nonlocal events, deliveries
            events += step[0]
            deliveries += step[1]
            if on_step is not None and step[0]:
                on_step(Purged(events=step[0], deliveries=step[1]))

        try:
            while (window := await self._purge_window(after)) is not None:
                upto, first_received = window
                if first_received >= before:
                    # Ids grow with arrival: this window and every later one came in after
                    # the cut-off, so no event there was last changed before it. Unless the
                    # clock went back after this window's events came (it was ahead while
                    # they did): the newest event, received before them, says so, and the
                    # walk goes on. (It stopped here: what came once the clock was set right
                    # stayed until the clock passed the times stamped while it was ahead.)
                    if newest is None:
                        newest = await self._newest_received()
                    if newest is None or newest >= first_received:
                        break
                so_far, started = events, time.monotonic()
                await whole_step(
                    self._purge_range(
                        after,
                        upto,
                        before=before,
                        states=wanted,
                        endpoint=endpoint,
                        dry_run=dry_run,
                    ),
                    purged,
                )
                after = upto
                if events > so_far and not dry_run:
                    await self._between_steps(time.monotonic() - started)
        except BaseException:
            # Stopped (Ctrl-C) or failed half way: the steps done stay done; say how far.
            if not dry_run:
                log().warning("purge_stopped", events=events, deliveries=deliveries, states=wanted)
            raise
        log().info(
            "events_purged",
            events=events,
            deliveries=deliveries,
            states=wanted,
            endpoint=endpoint,
            before=before,
            dry_run=dry_run,
        )
        done = Purged(events=events, deliveries=deliveries)
        if not dry_run:
            await self._after_purge(done)
        return done

    async def _after_purge(self, purged: Purged) -> None:
        """After a purge that was no dry run (``purged``: what it deleted): nothing here;
        SQLite gives the space back (:meth:`hub.store.sqlite.SQLiteStore._after_purge`)."""
        return None

    # -- replay: the selection read once, then requeued in short steps -------------------

    @abstractmethod
    async def _replayable(self, selection: Replayed) -> int:
        """How many events ``selection`` takes now (one read): a dry run's answer."""

    @abstractmethod
    async def _replay_ids(self, selection: Replayed) -> array.array[int]:
        """The ids of the events ``selection`` takes now, in id order, from one consistent
        read (no lock that writers wait for)."""

    @abstractmethod
    async def _requeue(self, ids: Sequence[int], states: builtins.list[str], now: float) -> int:
        """In one write transaction, requeue those of ``ids`` still in one of ``states``
        (dropping their lead keys); how many."""

    async def replay(
        self,
        *,
        state: State | None = None,
        ids: Sequence[int] | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        dry_run: bool = False,
        on_step: Callable[[int], None] | None = None,
    ) -> int:
        selection = Replayed(
            states=replayed_states(state),
            ids=None if ids is None else [int(i) for i in ids],
            endpoint=endpoint,
            since=since,
        )
        if dry_run:
            return await self._replayable(selection)
        # The events selected now, requeued REPLAY_STEP at a time: each step is its own
        # short write transaction, so ingest and the dispatcher write between steps. A step
        # takes only those still in a selected state: one that changed since (claimed after
        # another replay, delivered, purged) is left as it is, and an event that came to a
        # selected state after this read is not this replay's. A replay stopped half way
        # has requeued whole steps.
        now = self.clock.time()
        chosen = await self._replay_ids(selection)
        count = 0
        step = max(1, self.replay_step)
        wanted = None if state is None else State(state).value

        def add(requeued: int) -> None:
            nonlocal count
            count += requeued
            if on_step is not None and requeued:
                on_step(requeued)

        try:
            took = 0.0
            for at in range(0, len(chosen), step):
                if at:
                    await self._between_steps(took)
                started = time.monotonic()
                await whole_step(self._requeue(chosen[at : at + step], selection.states, now), add)
                took = time.monotonic() - started
        except BaseException:
            # Stopped (Ctrl-C) or failed half way: the steps done stay done; say how far.
            log().warning(
                "replay_stopped",
                requeued=count,
                selected=len(chosen),
                state=wanted,
                endpoint=endpoint,
                since=since,
            )
            raise
        log().info("events_replayed", count=count, state=wanted, endpoint=endpoint, since=since)
        return count


class BodyNotSkimmed(Exception):
    """A ``skim`` delivery's body must go through the full parser; nothing was stored."""


#: What an enqueue comes to: one result per event, or the exception that failed it.
Outcome = builtins.list[EnqueueResult] | BaseException
#: Told an :data:`Outcome`, once.
Settle = Callable[[Outcome], None]


def settle_future(future: asyncio.Future[builtins.list[EnqueueResult]], outcome: Outcome) -> None:
    """Set ``future`` from ``outcome`` (nothing if it is done already: cancelled, say)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


#: Tasks of :func:`settle_later` (the loop keeps only weak references to tasks).
_settling: set[asyncio.Task[builtins.list[EnqueueResult]]] = set()


def settle_later(enqueue: Coroutine[Any, Any, builtins.list[EnqueueResult]], tell: Settle) -> None:
    """Run ``enqueue`` in a task and ``tell`` its outcome: :meth:`Submits.submit` for a
    store that has only ``enqueue``."""
    import asyncio

    task = asyncio.get_running_loop().create_task(enqueue)
    _settling.add(task)
    task.add_done_callback(_settling.discard)
    tell_when_done(task, tell)


def tell_when_done(future: asyncio.Future[builtins.list[EnqueueResult]], tell: Settle) -> None:
    """``tell`` what ``future`` comes to, once it is done (cancelled, the store closing: as
    StoreUnavailable, which the sender retries)."""

    def done(future: asyncio.Future[builtins.list[EnqueueResult]]) -> None:
        if future.cancelled():
            tell(StoreUnavailable("The write was interrupted (the hub is stopping); try again."))
            return
        error = future.exception()
        tell(error if error is not None else future.result())

    future.add_done_callback(done)


@runtime_checkable
class Submits(Protocol):
    """A store that can take a delivery without a coroutine (SQLite's writer process)."""

    def submit(self, delivery: IncomingDelivery, tell: Settle) -> None:
        """:meth:`EventStore.enqueue`, answered by calling ``tell`` with its
        :data:`Outcome` on the event loop's thread (perhaps before this returns)."""
        ...


class EventStore(Protocol):
    """A durable queue of events, one per lead received.

    States move ``queued`` → ``sending`` → ``delivered`` | ``retrying`` → … | ``dead``,
    or end in ``unmatched`` / ``skipped``; :meth:`replay` brings the last three back, and
    ``delivered`` events too when asked for by state.
    """

    #: The clock its times are read from: the one given, or, for a real clock on
    #: PostgreSQL, the database server's (:class:`hub.clock.ServerTime`). Whatever compares
    #: times with the store's (a dispatcher, ``--since``) reads this one.
    clock: Clock

    async def open(self) -> None:
        """Connect and create the schema if it is missing (idempotent)."""
        ...

    async def close(self) -> None:
        """Finish pending writes and close every connection."""
        ...

    async def ping(self) -> None:
        """Check the database can be read and written.

        Raises:
            StoreUnavailable: it cannot; a later ping re-opens and recovers by itself.
        """
        ...

    async def commit_wait(self) -> CommitWait | None:
        """What the store's commits wait for when they wait without failing (PostgreSQL: a
        synchronous standby that does not confirm them, a lock another session holds), as
        read now or moments ago; None when nothing is seen waiting, or the store has no such
        wait (SQLite: its writer's stalls are told by the writer)."""
        ...

    async def enqueue(self, delivery: IncomingDelivery) -> list[EnqueueResult]:
        """Store a delivery and its events atomically; return once committed.

        Returns one result per event of ``delivery`` in order: the new event id, or the
        id already stored under (endpoint, delivery_id) with ``duplicate=True``, each with
        its ``delivery_id``. A ``skim`` delivery (no events) is one event whose id the store
        reads from the body with ``hub.sources.skimmed_id``; when that cannot vouch for the
        body, it raises :class:`BodyNotSkimmed` and stores nothing.
        """
        ...

    async def claim(
        self,
        *,
        limit: int,
        lease: float,
        exclude_targets: Collection[str] = (),
        exclude_unrouted: Collection[str] = (),
        known_endpoints: Collection[str] | None = None,
    ) -> list[Event]:
        """Take up to ``limit`` due events (oldest id first) and mark them ``sending``.

        Due: ``queued``/``retrying`` with next_attempt_at <= now, or ``sending`` with an
        expired lease. Events routed to a target in ``exclude_targets`` are left alone, and
        so are the events not routed yet of the endpoints in ``exclude_unrouted``. Given
        ``known_endpoints`` (the claimer's endpoints), events of any other endpoint that an
        instance took up since they were queued or replayed are left alone too, for an
        instance that has their endpoint: a last error written since (:data:`ENDPOINT_ABSENT`
        by an instance without it, or any by one with it), a route recorded, a read started.
        Each claimed event gets lease_until = now + ``lease`` and one more attempt.
        Claims by every process on the store take turns, so when a claim returns, every
        event an earlier claim took is ``sending`` for every reader (see :meth:`blockers`).

        A claim also tells a step back of the store's clock (NTP, an operator, a resumed
        VM; the database server's on PostgreSQL) from a clock mark it keeps in the store: a
        time more than :data:`CLOCK_STEP_BACK` before the mark moves the waiting events'
        due times and the claimed events' lease ends back by the step, once for every
        process on the store (``clock_stepped_back``). A step forward, which the mark alone
        cannot tell from time nobody claimed in, is told by the monotonic clock of a store
        object that claimed before it, and moves the lease ends forward by the step, once
        (``clock_stepped_forward``; see :func:`clock_step`).
        """
        ...

    # The outcomes below take the ``lease`` under which the event was claimed (its
    # ``next_attempt_at`` as :meth:`claim` returned it: its end then, plus the store's clock
    # shift once a step of the clock was applied, see :func:`with_clock_shift`). With
    # one, the write applies only while the event is still ``sending`` under that very
    # lease, else it raises :class:`LeaseLost` and writes nothing. Without (``None``), it
    # applies as it is.

    async def ack(
        self,
        event_id: int,
        *,
        lead_id: str | None,
        created: bool | None,
        lease: float | None = None,
    ) -> None:
        """Mark an event ``delivered`` with the lead id and whether the lead was created."""
        ...

    async def retry(
        self, event_id: int, *, at: float, error: str, lease: float | None = None
    ) -> None:
        """Mark an event ``retrying``, due again at ``at``, with the error."""
        ...

    async def release(
        self, event_id: int, *, at: float, reason: str | None = None, lease: float | None = None
    ) -> None:
        """Put a claimed event back without counting the attempt (paused target, ordering).

        It goes back to ``queued`` (``retrying`` if attempts were made before), due at ``at``.
        """
        ...

    async def dead(self, event_id: int, *, error: str, lease: float | None = None) -> None:
        """Mark an event ``dead`` (final until replayed) with the reason."""
        ...

    async def unmatched(self, event_id: int, *, reason: str, lease: float | None = None) -> None:
        """Mark an event ``unmatched``: no mapping took it."""
        ...

    async def skipped(self, event_id: int, *, reason: str, lease: float | None = None) -> None:
        """Mark an event ``skipped``: a mapping's ``skip_if`` held."""
        ...

    async def set_route(
        self, event_id: int, *, target: str, mapping: str, lead_keys: Sequence[str]
    ) -> None:
        """Record the mapping and target that took an event and its lead identity keys."""
        ...

    async def blocker(self, event_id: int, lead_keys: Sequence[str]) -> Event | None:
        """What holds back event ``event_id`` of the lead ``lead_keys`` (none if no key).

        The earliest event with a lower id that is either pending and shares one of
        ``lead_keys``, or claimed (``sending``) with no route recorded yet: its lead is not
        known, so it may be this one. (That lasts from a claim to its routes; an event marked
        as awaiting an API read, see :meth:`set_routes`, does not count meanwhile.)
        """
        ...

    async def set_routes(
        self, routes: Sequence[Route], *, reading: Sequence[int] = ()
    ) -> builtins.list[int]:
        """:meth:`set_route` for many events in one write; returns the ids not found.

        In the same write, the events of ``reading`` (claimed, not routed) are marked as
        awaiting an API read before their lead is known: until their own route is recorded,
        they hold no later event back (:meth:`blocker`).
        """
        ...

    async def ack_many(self, acks: Sequence[Ack]) -> builtins.list[int]:
        """:meth:`ack` for many events in one write; returns the ids not written (not found,
        or no longer under their ``Ack.lease``). Each is delivered as of its ``Ack.at``
        (never later than now), or now."""
        ...

    async def blockers(self, checks: Sequence[tuple[int, Sequence[str]]]) -> dict[int, Event]:
        """:meth:`blocker` for many ``(event_id, lead_keys)`` in one read.

        Only the blocked events are in the result, each with its blocker; a blocker is
        pending as of one consistent read of the store.
        """
        ...

    async def set_enrichment(self, event_id: int, enrichment: Any) -> None:
        """Keep what enrichment fetched (JSON-able); it survives replay."""
        ...

    async def get(self, event_id: int) -> Event | None:
        """One event by id, or None."""
        ...

    async def list(
        self,
        *,
        state: State | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        since: float | None = None,
    ) -> builtins.list[Event]:
        """Events, newest first, optionally only in ``state``, of ``endpoint`` and/or
        received at ``since`` (unix time) or later."""
        ...

    async def list_page(
        self,
        *,
        state: State | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        before: int | None = None,
        limit: int = 500,
        documents: bool = False,
    ) -> builtins.list[Listed]:
        """One page of :meth:`list`'s events as ``leadhub events`` shows them, newest first:
        those with ids below ``before`` (None: from the newest), at most ``limit``.

        The next page is the one ``before`` the last id of this one (keyset pagination:
        each page is one short read, however deep in the store; events received meanwhile
        have larger ids and never shift a page). Reads only the fields shown: the raw body
        only for the document of an event whose document is its body, and that only with
        ``documents``; without it every ``document`` is None.
        """
        ...

    async def counts(self, states: Collection[State] | None = None) -> dict[State, int]:
        """How many events are in each state (every state present, zero included); with
        ``states``, in those only, each counted through the state's index (so counting the
        few waiting events of a store of millions delivered ones costs little)."""
        ...

    async def replay(
        self,
        *,
        state: State | None = None,
        ids: Sequence[int] | None = None,
        endpoint: str | None = None,
        since: float | None = None,
        dry_run: bool = False,
        on_step: Callable[[int], None] | None = None,
    ) -> int:
        """Requeue the events matching every given selector (with ``dry_run``, count them
        and change nothing): ``dead``/``unmatched``/``skipped`` ones, or with ``state`` only
        those in it, which may be ``delivered`` (never taken unless named: the dispatcher
        maps and sends a requeued delivered event again, updating its lead). ``since``: only
        events received at that unix time or later.

        They go back to ``queued``, due now, with zero attempts, no route and no lead id
        (matching runs again with the current config), and ``requeued_at`` now: their retry
        schedule starts over (``give_up_after`` counts from the replay, see
        :attr:`Event.queued_since`). Enrichment is kept, and so is ``last_error`` as history
        until the next outcome replaces it. With no selector at all, every dead, unmatched
        and skipped event is requeued. Returns how many.

        The selection is read once, then requeued in steps of :data:`REPLAY_STEP` events,
        each its own short transaction (ingest and the dispatcher write between them). A
        step takes only the events still in a selected state: one that changed since the
        read (requeued and claimed meanwhile, say) is left as it is, and one that came to a
        selected state after it is not taken. A replay stopped half way has requeued whole
        steps. ``on_step``, when given, is told how many each step requeued once it is
        committed: a replay that fails part way raises, and its caller still knows how many
        the steps before the failure requeued.

        Raises:
            StoreError: ``state`` is not one of the replayable states.
        """
        ...

    async def purge(
        self,
        *,
        before: float,
        states: Collection[State] | None = None,
        endpoint: str | None = None,
        dry_run: bool = False,
        on_step: Callable[[Purged], None] | None = None,
    ) -> Purged:
        """Delete finished events last changed before ``before``, and what only they used.

        ``states`` defaults to ``delivered`` and ``skipped``; it may name any final state
        (``dead`` and ``unmatched`` too), never a pending one. With ``endpoint``, only that
        endpoint's events. Each event goes with its lead keys; a delivery's row (its raw
        body) goes once none of its events is left. The walk is done in short steps, each
        its own transaction, so ingest and the dispatcher keep going meanwhile; a purge
        stopped half way has deleted whole events only. A purged event's delivery id is
        forgotten: the same delivery arriving again is stored as new. ``dry_run`` counts
        the events instead of deleting them. ``on_step``, when given, is told what each
        step deleted (a dry run: counted) once it is committed: a purge that fails part way
        raises, and its caller still knows what the steps before the failure took.

        Raises:
            StoreError: a state in ``states`` is not final.
        """
        ...

    async def next_due(self) -> float | None:
        """The earliest time an event becomes claimable (a lease end counts), or None."""
        ...

    async def resume_held(self, targets: Sequence[str]) -> int:
        """Make due now the waiting events that a pause of one of ``targets`` put back (their
        last error begins with :data:`~hub.store.models.PAUSE_HELD`); returns how many.

        A paused target's events are put back due when the pause ends (up to the target's
        ``max_interval``, an hour by default); once the target is usable again (a reload or
        a restart that gave it new keys), they are not left waiting that out. Their state and
        attempts are kept; if the target is still refused, the next call pauses it again.
        """
        ...

    async def resume_reads(self, endpoints: Sequence[str]) -> int:
        """Make due now the events of ``endpoints`` retried after their lead read failed
        (``retrying`` with no enrichment stored, their error the read's: ``... fetch failed:
        ...``; or ``queued``, put back untried with that error while a proxy refused the
        endpoint's reads); returns how many. An event with no lead to read whose send failed
        (a LinkedIn notice of a deleted lead) keeps its backoff: no read of it changed.

        A read refused for a token (expired, without a permission) or a setting is retried
        on its target's schedule, up to ``max_interval`` (an hour by default) apart; once a
        reload has fixed the endpoint, its leads are not left waiting that out. Their
        attempts are kept; a read that fails again is retried on the same schedule.
        """
        ...

    # -- time no event was tried in, kept across restarts ----------------------------------

    async def keep_spans(self, kind: str, name: str, spans: Sequence[tuple[float, float]]) -> None:
        """Keep these spans of ``kind`` (``target``: a target's pauses; ``reads``: an
        endpoint's held lead reads) for ``name`` (began, ended: unix times; a span kept again,
        by its start, gets its new end), and its :data:`SPANS_KEPT` latest in all. A span under
        way is kept with the end it is due to have (:mod:`hub.dispatch.spans`)."""
        ...

    async def kept_spans(
        self, kind: str, names: Sequence[str]
    ) -> dict[str, builtins.list[tuple[float, float]]]:
        """The spans of ``kind`` kept for each of ``names`` (those with any), oldest first: time
        they held events back does not count toward the events' give_up_after, also after the
        restart that reads them."""
        ...

    # -- rate limits shared by every process on the store --------------------------------

    async def take_slots(
        self,
        account: str,
        *,
        calls: int,
        window: float,
        hold: float,
        want: int = 1,
        waiter: str | None = None,
    ) -> SlotAnswer:
        """Count up to ``want`` calls to ``account`` now, as many as fewer than ``calls`` allow.

        One atomic step (at least one slot, or none). A call counts from when its slot is
        taken until ``window`` seconds after it ended (:meth:`end_slots`); until then it is
        taken to end ``hold`` seconds after its slot was taken, so a process that dies
        mid-call frees its slot by itself. Every process on the store shares the count: that
        is how several instances stay within one account's limit. Without room, the answer
        says how long until the next call stops counting.

        With ``waiter`` (a name unique to the asking limiter) the processes sharing the
        account take turns (:mod:`hub.store.turns`): free room is dealt out between every
        waiter, the others' share set aside for their next ask.
        """
        ...

    async def stop_waiting(self, account: str, waiter: str) -> None:
        """``waiter`` no longer waits for slots of ``account``: its place in the queue goes,
        and the slots set aside for it stop counting."""
        ...

    async def end_slots(self, account: str, ends: Sequence[tuple[int, float]]) -> None:
        """The calls of these ``(slot, ended at)`` of ``account`` ended, each at its time
        (unix; taken as now if later): each counts until ``window`` after it. One write for
        many: a limiter writes its calls' ends behind the calls that follow them."""
        ...

    async def give_back_slots(self, account: str, slots: Sequence[int]) -> None:
        """Slots of ``account`` taken and never used for a call (taken ahead for calls that
        did not come): they stop counting at once, as no call was made with them."""
        ...

    async def fill_window(self, account: str, *, calls: int) -> None:
        """``account`` refused a call for its rate limit: count its window full from now, so
        that no process on the store takes a slot of it for a whole window. (Slots said to
        end now or later count that long already; as many ended now are added as make
        ``calls`` of them.)"""
        ...
