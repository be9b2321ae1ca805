"""The dispatcher: claims due events, enriches and maps them, and hands them to target lanes.

One claim loop, many lanes (``hub.dispatch.lane``)::

    claim due events (lease; paused and full targets left out, and events of endpoints this
    process lacks that an instance already took up: one without them left them, or one with
    them routed them, started their read, or wrote why they failed or wait)
      → an endpoint or target this process lacks: back untried, saying so (another instance
        may have it: a rolling deploy)
      → map_document: Skip → skipped; Unmatched → unmatched; MappingError → dead
      → set_routes (target, mapping, lead keys: the whole claim in one write; the events
        whose lead is still to be read marked as such in the same write)
      → ordering (the whole claim in one read): an earlier pending event for the same
        email/phone? release until after it
      → the target's lane: limiter → Lead.Capture → ack / retry (backoff) / dead / pause
    meanwhile, in the background, each marked event's lead is read (Facebook, LinkedIn,
    HubSpot apps: read once, stored); as reads end, the loop maps and routes those events
    (one write and one read for all that ended) and hands them to their lanes.

A slow or silent lead API therefore holds up no other event: the events that need no read
reach their lanes at once, and the claim loop goes on claiming. Reads are bounded per
endpoint (``reads_per_endpoint`` in flight; while an endpoint has that many, claims leave its
unread events in the queue), each must fit in what is left of its lease (else the event goes
back, untried), and :meth:`Dispatcher.stop` cancels them and puts their events back. An API
that says the app or account is throttled holds every read of the endpoint for the time it
gives (:meth:`Dispatcher.hold_reads`): the endpoint's events claimed meanwhile go back
untried, due then, saying why. So does a proxy refusing a read (407: the operator's to fix,
for every read). When the hold ends, one read probes the API first, the endpoint's others
waiting for its answer (:meth:`Dispatcher._probe`): answered otherwise, they all go; held
again, they go back untried. The time the reads are held, until one is answered otherwise,
does not use up the events' give_up_after.

Per-lead ordering across processes: a claimed event whose routes are not written yet holds
back every later event the store is asked about (its lead is not known yet; this lasts the
few milliseconds from a claim to its routes), except one marked as awaiting its lead's read:
that one holds nothing back until its read ends and it is routed like any other. A later
event for its lead that is routed before then may go first.

An unexpected error preparing one event (enriching, mapping, routing it) is a failed attempt
of that event alone: retried on its target's schedule with the exception as its last error,
dead when the schedule gives up (``prepare_failed`` logs it with its traceback).

Claims are no bigger than the room in the lanes that can send (a lane holds what it can start
in a third of a lease at its smoothed call latency, less when events that waited in it went
back: see :attr:`Lane.capacity`), so a backlog is not claimed only to be put back. Events
that need no I/O to map (all but those whose lead is to be read) are mapped inline.

Use::

    dispatcher = Dispatcher(config=config, store=store, registry=app.state.metrics)
    await dispatcher.start()
    ...
    await dispatcher.stop(timeout=10)   # graceful: see :meth:`Dispatcher.stop`

or :func:`dispatcher_lifespan` as a ``hub.web.app`` lifespan hook.

Log events (structlog, ``event_id`` and ``delivery_id`` bound): ``event_claimed``,
``event_enriched``, ``lead_reads_throttled`` / ``lead_reads_resumed`` (warnings: the API said
the app or account is throttled, and the endpoint's reads wait, see :meth:`Dispatcher.hold_reads`;
a read got through after), ``lead_reads_held`` (a warning: a proxy refused a read, 407, and
the endpoint's reads wait likewise; neither hold's time counts toward give_up_after),
``event_mapped`` (a warning, only when the mapping left a value out),
``event_skipped``, ``event_unmatched``, ``event_waiting``,
``lead_sent``, ``event_retrying``, ``event_dead``, ``target_paused``,
``target_resumed``, ``prepare_failed``, ``claim_failed`` / ``claim_recovered`` (claims the
store refused: see :meth:`Dispatcher._claim`), ``event_lease_expiring`` (put back: no time
left in its lease for a read or a call), ``lane_capacity_cut`` (a target's queue learnt to hold
fewer: see :attr:`Lane.capacity`), ``lease_too_short`` (error: no read or call fits in a
lease at all), ``event_left`` (a warning: events of an endpoint or target this process lacks,
put back), ``store_write_resumed`` / ``store_write_given_up`` / ``store_rewrite_failed`` (a
release or delivery a store outage held up, written once it was back, or not before the lease
ended, or refused by a bug: see :class:`~hub.dispatch.retry.Rewrites`), ``dispatcher_started``,
``dispatcher_stopped``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random as _random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from hub import logs
from hub.clock import SYSTEM_CLOCK, Clock
from hub.config.models import (
    FETCHING,
    Config,
    FacebookOptions,
    HubSpotOptions,
    LinkedInOptions,
    Target,
)
from hub.dispatch.enrich import endpoint_policy, enrich, needs_read, read_first
from hub.dispatch.graph import GraphClient
from hub.dispatch.hubspot import HubSpotClient
from hub.dispatch.lane import Item, Lane, still_ours
from hub.dispatch.leadsquared import LeadSquaredClient
from hub.dispatch.lease import DEFAULT_LEASE, LEASE_MARGIN, SEND_WINDOW, read_bound
from hub.dispatch.linkedin import LinkedInClient
from hub.dispatch.metrics import DispatchMetrics
from hub.dispatch.ratelimit import limiter_for
from hub.dispatch.retry import ClockSkips, RetryPolicy, Rewrites, time_in
from hub.dispatch.spans import PAUSES, READS, Keeper, remembered
from hub.dispatch.transport import make_http_client
from hub.mapping import CaptureRequest, MappingError, Skip, Unmatched, map_document
from hub.store.base import (
    CLOCK_STEP_BACK,
    ENDPOINT_ABSENT,
    SPANS_KEPT,
    EventStore,
    StoreUnavailable,
)
from hub.store.models import Event, Route, State
from hub.units import seconds_text
from hub.web.metrics import app_registry

_log = structlog.get_logger()

__all__ = [
    "Dispatcher",
    "dispatcher_lifespan",
    "make_http_client",
]

#: What mapping gave for an event that is not a lead for a configured target.
Mapped = CaptureRequest | Skip | Unmatched | MappingError
#: The options of an endpoint whose events' leads are read from an API first.
Reading = FacebookOptions | LinkedInOptions | HubSpotOptions

DEFAULT_BATCH = 64  # events per claim
DEFAULT_CONCURRENCY = 16  # sends in flight per target (the rate limit bounds them further)
DEFAULT_POLL = 0.2  # seconds between claims when nothing is due (new deliveries show up)
ORDER_WAIT = 0.1  # seconds an event waits for an earlier one for the same lead
RESTART_PAUSE = 1.0  # seconds before the claim loop starts again after a bug (doubling)
RESTART_PAUSE_MAX = 60.0
#: Seconds an event waits for an earlier one of its lead that is due but whose endpoint this
#: process lacks (taken out of the configuration): nobody here will send it, so looking
#: again every ORDER_WAIT only claimed, released and logged the later event forever.
ABSENT_WAIT = 10.0
ROUTE_WAIT = 0.01  # seconds between looks at an earlier claim whose routes are being written
ROUTE_LOOKS = 5  # looks before the events it holds back go back to the queue (ORDER_WAIT)
#: Lead reads (Graph, LinkedIn, HubSpot) one endpoint's events may have in flight; while an
#: endpoint has that many events reading or waiting to, claims leave its unread ones alone.
READS_PER_ENDPOINT = 16
#: Seconds an event mapped to a target this process has no lane for waits before it is
#: claimed again (an instance that has the target may take it meanwhile).
LEAVE_DELAY = 60.0
#: Seconds between two ``event_left`` warnings for one endpoint or target: its events are
#: told apart in the store (their last error), not one line each in the log.
LEAVE_LOG_EVERY = 300.0
#: Seconds between two ``claim_failed`` lines for the same error, while claims, tried again
#: once a second, keep failing (a store down for an hour: 60 lines, not 3,600). The store's
#: writers log theirs once a second (``FAILURE_EVERY``), but each of theirs stands for
#: deliveries refused; a claim refused again says nothing new until the outage ends.
CLAIM_FAILURE_EVERY = 60.0
#: Seconds between two lines of one name for the same store outage (:meth:`log_failure`): an
#: outcome the store cannot write fails again for each event at every claim, a second apart.
OUTAGE_LOG_EVERY = 60.0


#: A claim's answer: the events, the size asked for, and when it was asked for (monotonic).
Claimed = tuple[list[Event], int, float]


class Dispatcher:
    """The worker loop (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Config,
        store: EventStore,
        clock: Clock = SYSTEM_CLOCK,
        http: httpx.AsyncClient | None = None,
        registry: CollectorRegistry | None = None,
        lease: float = DEFAULT_LEASE,
        batch: int = DEFAULT_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll: float = DEFAULT_POLL,
        random: Callable[[], float] = _random.random,
        reads_per_endpoint: int = READS_PER_ENDPOINT,
    ) -> None:
        self.config = config
        #: The configuration whose mappings and endpoints events are mapped with: ``config``,
        #: or an earlier one when the reloads since changed neither (see :meth:`reload`). An
        #: item mapped with another goes back to be mapped anew (:meth:`Lane.remap`).
        self.mapped_by = config
        self.store = store
        self.clock = clock
        self.lease = lease
        self.batch = batch
        self.concurrency = concurrency
        self.poll = poll
        self.metrics = DispatchMetrics(registry)
        self.random = random
        self.reads_per_endpoint = reads_per_endpoint
        self._own_http = http is None
        self._http = http
        self.client: LeadSquaredClient
        self.graph: GraphClient
        self.linkedin: LinkedInClient
        self.hubspot: HubSpotClient
        self.lanes: dict[str, Lane] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._reads: dict[asyncio.Task[None], Event] = {}  # lead reads running, their events
        self._reading: Counter[str] = Counter()  # events reading (or waiting to), by endpoint
        self._read_slots: dict[str, asyncio.Semaphore] = {}
        #: Endpoints whose reads wait for the API's throttling, or a proxy refusing them, to
        #: end: (when, monotonic; the read's reason; whether a proxy's), and how many holds
        #: each had in a row, no read getting through since.
        self._read_holds: dict[str, tuple[float, str, bool]] = {}
        self._holds_in_a_row: Counter[str] = Counter()
        self._throttled_since: dict[str, float] = {}  # when the first of them began
        #: By endpoint, since when (unix time) its reads are held (the API throttling them, a
        #: proxy refusing them), no read answered otherwise since, and the last such spans
        #: (began, ended): that time does not count toward an event's give_up_after
        #: (:meth:`read_hold_spans`), as a target's pauses do not (``Lane.pause_spans``).
        self._held_since: dict[str, float] = {}
        #: By endpoint, when (unix time) the last hold of its reads ended or ends: the held
        #: time stops there when no read follows (an open span grew until the next read
        #: answered, and no event of the endpoint died at its give_up_after meanwhile).
        self._held_until: dict[str, float] = {}
        self._held_spans: dict[str, collections.deque[tuple[float, float]]] = {}
        #: By endpoint, set when the read probing its API after a hold (:meth:`_probe`) ends.
        self._probes: dict[str, asyncio.Event] = {}
        self._read_done: list[tuple[Event, float]] = []  # read: (event, its claim), to route
        self._read_dropped: list[Event] = []  # reads cancelled: events to put back
        self._looking: dict[asyncio.Task[None], list[Item]] = {}  # _look_again, what it holds
        #: Releases and deliveries a store outage kept from being written, tried again while
        #: their leases run (see :meth:`release_soon`).
        self.rewrites = Rewrites(clock)
        #: Writes the pauses and held reads to the store for later processes (:mod:`.spans`).
        self.spans = Keeper(store)
        #: ("endpoint" or "target", its name) -> (when its last ``event_left`` was logged,
        #: monotonic; events left since then, unlogged)
        self._left: dict[tuple[str, str], tuple[float, int]] = {}
        #: The claims the store refused since the last it took (``claim_failed`` lines, and
        #: ``claim_recovered`` at the first claim after: see :meth:`_claim`).
        self.claim_failures = logs.Failures(
            "claim_recovered", every=CLAIM_FAILURE_EVERY, clock=clock.monotonic, logger=lambda: _log
        )
        #: The outage lines of failed sends, acks and preparations (:meth:`log_failure`).
        self.outage_lines = logs.Throttle(OUTAGE_LOG_EVERY)
        #: The clock's wall reading less its monotonic one when the last claim the store took
        #: was asked for (None: none yet), to tell a step back of the store's clock by while
        #: the lanes are full (:meth:`_stepped_back`).
        self._claim_offset: float | None = None
        #: The wall time steps forward of the clock skipped (see :meth:`retry_or_die`).
        self.skips = ClockSkips(clock)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the claim loop and one lane per configured target."""
        if self._loop_task is not None:
            msg = "This dispatcher is already started; call stop() before starting it again."
            raise RuntimeError(msg)
        if self._http is None:
            self._http = make_http_client()
        self.client = LeadSquaredClient(self._http)
        self.graph = GraphClient(self._http)
        self.linkedin = LinkedInClient(self._http)
        self.hubspot = HubSpotClient(self._http)
        for target in self.config.targets.values():
            self.lanes[target.name] = self._lane(target)
        reading = sorted(
            name
            for name, endpoint in self.config.endpoints.items()
            if isinstance(endpoint.options, FETCHING)
        )
        await self._remember_spans(reading)
        self._stopping = False
        # No lane of this process is paused: what an earlier one's pause held back (its keys
        # fixed by this restart, say) goes now, not when that pause would have ended.
        await self._resume_held(sorted(self.lanes))
        # Nor does a read of this process fail yet: the leads whose read failed in an earlier
        # one are read now, not when their backoff (up to an hour) ends. A token given in a
        # variable is fixed by a restart (a reload does not read the environment again), and
        # one fixed so waited out the backoff of every lead read with the old one.
        await self._resume_reads(reading)
        self._loop_task = asyncio.create_task(self._supervised_claims(), name="dispatch-claims")
        _log.info("dispatcher_started", targets=sorted(self.lanes), lease=self.lease)

    async def _remember_spans(self, reading: list[str]) -> None:
        """Take in what the store kept of the earlier processes' pauses (each lane its
        target's, up to now: :func:`~hub.dispatch.spans.remembered`) and held reads (of the
        endpoints in ``reading``; a hold kept with its end to come counts that far, since the
        API's hold, unlike a pause, is not ended by this start: the events it held wait it
        out); a store that fails here leaves them forgotten (:mod:`hub.dispatch.spans`)."""
        now = self.clock.time()
        try:
            pauses = await self.store.kept_spans(PAUSES, sorted(self.lanes))
            holds = await self.store.kept_spans(READS, reading)
        except Exception as exc:
            _log.warning("spans_unread", error=str(exc)[:300])
            return
        for name, spans in pauses.items():
            self.lanes[name].remember(remembered(spans, now))
        for name, spans in holds.items():  # (as kept: an API's hold outlasts a restart)
            self._held_spans[name] = collections.deque(spans, maxlen=SPANS_KEPT)

    async def _resume_held(self, targets: list[str]) -> None:
        """Make due now the events a pause of ``targets`` held back (their lanes are new: not
        paused); a store that fails here leaves them to come due when that pause would end."""
        if not targets:
            return
        try:
            count = await self.store.resume_held(targets)
        except Exception as exc:
            _log.warning("resume_held_failed", targets=targets, error=str(exc)[:300])
            return
        if count:
            _log.info("held_events_resumed", targets=targets, events=count)

    async def _resume_reads(self, endpoints: list[str]) -> None:
        """Make due now the events of ``endpoints`` (their reads changed: a token fixed)
        retried after a failed lead read; a store that fails here leaves them to come due
        on their schedule."""
        if not endpoints:
            return
        try:
            count = await self.store.resume_reads(endpoints)
        except Exception as exc:
            _log.warning("resume_reads_failed", endpoints=endpoints, error=str(exc)[:300])
            return
        if count:
            _log.info("failed_reads_resumed", endpoints=endpoints, events=count)

    def _lane(self, target: Target) -> Lane:
        # The target's own `concurrency:` wins over the dispatcher's.
        concurrency = target.concurrency or self.concurrency
        return Lane(
            target,
            dispatcher=self,
            limiter=limiter_for(target.rate_limit, clock=self.clock, shared=(self.store, target)),
            policy=RetryPolicy(target.retry, random=self.random),
            concurrency=concurrency,
            random=self.random,
        )

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let sends in flight finish within ``timeout`` s, release the rest.

        Released events go back to the store due now, their attempt not counted, so
        the next process to run picks them up at once; so do those whose lead was being
        read (the reads are cancelled) or was read but not yet routed, and those a pause of
        this process's held back: the pause was this process's finding (its keys, its url),
        and the instances that go on serving would otherwise wait it out, up to the target's
        ``max_interval``, before sending them (a rolled-back instance with wrong keys).
        """
        if self._loop_task is None:
            return
        deadline = self.clock.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._loop_task), timeout)
        except TimeoutError:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._stop_reads()
        paused = sorted(name for name, lane in self.lanes.items() if lane.paused())
        await asyncio.gather(
            *(lane.close(deadline) for lane in self.lanes.values()), return_exceptions=True
        )
        self.lanes.clear()
        await self._resume_held(paused)
        await self.spans.close(deadline - self.clock.monotonic())
        await self.rewrites.close(deadline)
        self._loop_task = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        _log.info("dispatcher_stopped")

    async def reload(self, config: Config, timeout: float = 10.0) -> None:
        """Go on with ``config``: its endpoints and mappings for every event mapped from now
        on, a lane for each new target, and a new lane for each changed one.

        The lane of a target that changed (its URL, keys, limit, retries, concurrency) or
        went away is closed as :meth:`stop` closes lanes: its queued events go back to the
        store, due now, and its sends in flight finish (``timeout`` s at most). A lane kept
        puts back the events it holds too (:meth:`Lane.remap`) when the reload changed an
        endpoint or a mapping: they were mapped with the old configuration. The events come
        back in the next claims, mapped with ``config``; one whose endpoint is gone waits,
        saying so, until an instance that has it (or this one, given it back) sends it.
        """
        if self._loop_task is None:
            self.config = self.mapped_by = config
            return
        # A reload that changed no mapping nor endpoint (a watcher's signal for nothing, a
        # target's new limit) leaves what the lanes hold as it was mapped: each remap puts
        # the lanes' events back and their senders give up the rate-limit slots they waited
        # for, so one such reload a second sent nothing at all to a rate-limited target.
        if not _maps_alike(self.mapped_by, config):
            self.mapped_by = config
        rereading = _reads_changed(self.config, config)
        deadline = self.clock.monotonic() + timeout
        lanes: dict[str, Lane] = {}
        closing: list[Lane] = []
        for target in config.targets.values():
            lane = self.lanes.get(target.name)
            if lane is not None and _same(lane.target, target):
                lanes[target.name] = lane
            else:
                lanes[target.name] = self._lane(target)
                if lane is not None:
                    lanes[target.name].take_pauses(lane)
                    closing.append(lane)
        closing += [lane for name, lane in self.lanes.items() if name not in lanes]
        for lane in closing:
            if lane.target.name in lanes:  # its new lane is not paused (a reload that fixed it)
                lane.pause_told_ended(by="reload")
        self.config, self.lanes = config, lanes
        self.wake()
        await asyncio.gather(*(lane.close(deadline) for lane in closing), return_exceptions=True)
        # The lanes kept hold events mapped with the old configuration: mapped anew.
        kept = [lane for lane in lanes.values() if lane not in closing]
        remapped = sum(await asyncio.gather(*(lane.remap() for lane in kept)))
        for lane in closing:
            if lane.target.name not in lanes:  # gone: no gauge left (paused, capacity)
                for gauge in (self.metrics.paused, self.metrics.capacity):
                    with contextlib.suppress(KeyError):
                        gauge.remove(lane.target.name)
        # A changed target's new lane is not paused (a reload that fixed its keys, say): the
        # events the old lane's pause held back go now (after its last sends: one refused
        # then holds its event back too). So do those of a target that went away (renamed
        # along with its fix): mapped anew, they go to the target their mapping names now,
        # rather than when the gone target's pause would have ended (up to its max_interval).
        await self._resume_held(sorted({lane.target.name for lane in closing}))
        await self._resume_reads(rereading)
        self.wake()
        _log.info(
            "dispatcher_reloaded",
            targets=sorted(lanes),
            lanes_replaced=sorted(
                lane.target.name for lane in closing if lane.target.name in lanes
            ),
            lanes_closed=sorted(
                lane.target.name for lane in closing if lane.target.name not in lanes
            ),
            remapped=remapped,
        )

    def drain(self) -> None:
        """Stop claiming now (safe to call from a signal handler); :meth:`stop` does the rest.

        While draining, a send that fails transiently is released (due now, its attempt not
        counted) instead of retried with backoff, so the next process sends it at once.
        """
        self._stopping = True

    @property
    def draining(self) -> bool:
        return self._stopping

    def wake(self) -> None:
        """Claim again now rather than at the next poll (new events, or room in a lane)."""
        self._wake.set()

    # --- the claim loop ---------------------------------------------------------------------

    def _excluded(self, hogs: Collection[str] = ()) -> list[str]:
        return [
            name for name, lane in self.lanes.items() if lane.full or lane.paused() or name in hogs
        ]

    @staticmethod
    def _hogs(claimed: list[Event], batch: int) -> set[str]:
        """Targets that took most of a full claim: the next claim leaves them out.

        Claims are oldest-first across targets, so a target whose events keep coming back
        due (a fast-failing target with a short retry schedule) could fill every claim;
        leaving it out of every other full claim keeps the other targets moving.
        """
        if len(claimed) < batch:
            return set()
        counts = Counter(e.target for e in claimed if e.target is not None)
        return {target for target, n in counts.items() if n * 2 > batch}

    def _claim_size(self, pending: int = 0) -> int:
        """Events to claim now: a batch, or less when the lanes that can send have less room.

        ``pending`` events are claimed but not yet in a lane (the batch being dispatched):
        they will take room. 0 when every lane that is not paused is full: the loop then
        waits until a lane wakes it. (With every lane paused a full batch is claimed, so
        events that go to no target, skipped or unmatched, still get their outcome.)
        """
        open_lanes = [lane for lane in self.lanes.values() if not lane.paused()]
        if not open_lanes:
            return self.batch
        return max(0, min(self.batch, sum(lane.room for lane in open_lanes) - pending))

    async def _supervised_claims(self) -> None:
        """The claim loop, started again after a bug (logged with its traceback, counted in
        ``leadhub_claim_loop_restarts_total``) instead of ending while ingest goes on
        accepting. The pause before a restart doubles while failures follow each other."""
        pause = RESTART_PAUSE
        while not self._stopping:
            started = self.clock.monotonic()
            try:
                await self._claim_loop()
                return
            except Exception as exc:
                if self.clock.monotonic() - started > RESTART_PAUSE_MAX:
                    pause = RESTART_PAUSE  # it ran well for a while: not the same failure
                _log.exception("claim_loop_failed", error=str(exc)[:300], restart_in=pause)
                self.metrics.claim_restarts.inc()
                await self._idle(pause)
                pause = min(pause * 2, RESTART_PAUSE_MAX)

    async def _claim_loop(self) -> None:
        hogs: set[str] = set()
        ahead: asyncio.Task[Claimed | None] | None = None
        try:
            while not self._stopping:
                if self._read_done:  # leads read since: map, route and queue those events
                    await self._dispatch_read()
                if ahead is not None:
                    got, ahead = await ahead, None
                else:
                    size = self._claim_size()
                    if size == 0 and self._stepped_back():
                        size = 1  # (the claim undoes the step; see _stepped_back)
                    if size == 0:
                        await self._idle(self.poll)
                        continue
                    got = await self._claim(size, hogs)
                if got is None:  # the store failed (and the loop waited a moment)
                    hogs = set()
                    continue
                claimed, size, claimed_at = got
                left_out, hogs = hogs, (set() if hogs else self._hogs(claimed, size))
                if claimed:
                    # Claim the next batch while this one is mapped, routed and queued: the
                    # store's round trips then overlap instead of adding up. Its events are
                    # routed only after this batch's routes are written (ordering holds).
                    room = self._claim_size(pending=len(claimed))
                    if room > 0 and not self._stopping:
                        ahead = asyncio.create_task(self._claim(room, hogs))
                    await self._dispatch(claimed, claimed_at)
                    continue
                if left_out:  # nothing else was due: claim again at once, the hogs included
                    continue
                await self._idle(await self._wait_time())
        finally:
            if ahead is not None:  # stopping with a claim in flight: its events go back now
                (last,) = await asyncio.gather(ahead, return_exceptions=True)
                if isinstance(last, tuple):
                    for event in last[0]:
                        await self.release_soon(event, at_once=True)

    def _stepped_back(self) -> bool:
        """Whether the clock went back more than :data:`CLOCK_STEP_BACK` since the last claim
        the store took was asked for. Only a claim undoes a step back in the store (the
        waiting events' due times, the leases, the rate slots), and with every lane full none
        was asked for: the lanes' calls waited for a rate window whose calls counted the step
        longer, and the lanes stayed full until their events' leases ran out (about 45 s at
        the default lease) or the step had passed."""
        last = self._claim_offset
        if last is None:
            return False
        return self.clock.time() - self.clock.monotonic() < last - CLOCK_STEP_BACK

    async def _claim(self, size: int, hogs: set[str]) -> Claimed | None:
        """Claim up to ``size`` events (``hogs`` left out): (claimed, size, when it was asked
        for, monotonic); None on failure.

        Their leases count from when the claim was asked for, not from its answer: the
        store reads the time at the claim, and an answer that comes late (a database that
        waited on a lock, a process frozen meanwhile: SIGSTOP, a paused VM) has already used
        up that much of each lease. Counted from the answer, a lease that had ended while
        the answer came looked whole, and the event was sent while another worker, or this
        one's next claim, held it: sent twice.

        A refused claim is tried again a second later, for as long as the store refuses: it
        logs ``claim_failed`` (``error``) at once, then the same error at most once per
        :data:`CLAIM_FAILURE_EVERY` s (with ``unlogged``: the refusals left out since), another
        error at once; the first claim the store takes after logs ``claim_recovered``
        (``failed``: the claims refused, ``seconds`` since the first), a warning.
        """
        try:
            started = self.clock.monotonic()
            offset = self.clock.time() - started
            claimed = await self.store.claim(
                limit=size,
                lease=self.lease,
                exclude_targets=self._excluded(hogs),
                exclude_unrouted=self._reads_full(),
                known_endpoints=sorted(self.config.endpoints),
            )
        except Exception as exc:  # the store is down: wait and try again
            self.claim_failures.failed("claim_failed", str(exc)[:300])
            await self._back_off(max(self.poll, 1.0))
            return None
        self.claim_failures.succeeded()
        self._claim_offset = offset
        self.skips.note()
        self.rewrites.claimed(claimed, started, self.lease)
        _log.debug(
            "events_claimed",
            count=len(claimed),
            left_out=sorted(hogs),
            seconds=round(self.clock.monotonic() - started, 4),
        )
        return claimed, size, started

    async def _wait_time(self) -> float:
        try:
            due = await self.store.next_due()
        except Exception:
            return self.poll
        now = self.clock.time()
        if due is None or due <= now:  # nothing due, or only events of excluded targets
            return self.poll
        return min(self.poll, due - now)

    async def _back_off(self, seconds: float) -> None:
        """Wait ``seconds`` after the store refused a claim, cut short by a stop only. A wake
        (room in a lane, new events) would try the refused claim again at once: with the
        store's filesystem turned read-only, the 100 sends in flight failing together woke
        the loop into 51 refused claims (and log lines) in a second."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping and (left := deadline - loop.time()) > 0:
            await self._idle(left)

    async def _idle(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _dispatch(self, claimed: list[Event], claimed_at: float) -> None:
        """Map, route and queue ``claimed``, whose claim was asked for at ``claimed_at``
        (monotonic: its leases run from then)."""
        # Map what needs no I/O here; skip, kill... concurrently (each writes alone). Events
        # whose lead is to be read are marked with the routes, then read in the background.
        items: list[Item] = []
        slow: list[Awaitable[Item | None]] = []
        reads: list[tuple[Event, Reading]] = []
        config = self.mapped_by  # what the quick mappings below map with
        for event in claimed:
            _log_claimed(event)
            quick = self._map_quick(event, claimed_at)
            if isinstance(quick, Item):
                items.append(quick)
            elif quick is None and (options := self._to_read(event)) is not None:
                reads.append((event, options))
            else:
                slow.append(self._prepare_safely(event, claimed_at, quick, config))
        if slow:
            items.extend(item for item in await asyncio.gather(*slow) if item is not None)
        await self._queue(items, reads, claimed_at)

    async def _dispatch_read(self) -> None:
        """Map, route and queue the events whose leads were read since the last time."""
        done, self._read_done = self._read_done, []
        prepared = await asyncio.gather(*(self._prepare_safely(e, at) for e, at in done))
        await self._queue([item for item in prepared if item is not None], [], 0.0)

    async def _queue(
        self, items: list[Item], reads: list[tuple[Event, Reading]], claimed_at: float
    ) -> None:
        """Route ``items`` and mark ``reads`` (one write), order them (one read), start the
        reads, and hand the items that wait for no earlier event to their lanes."""
        items.sort(key=lambda i: i.event.id)
        reading = [event.id for event, _ in reads]
        try:
            items, blocked = await self._route(items, reading)
        except StoreUnavailable as exc:  # the store is down: the events go back, due soon
            self.log_failure("dispatch_failed", exc, events=len(items))
            back = [item.event for item in items] + [event for event, _ in reads]
            await asyncio.gather(*(self.release_soon(event) for event in back))
            return
        except Exception as exc:  # maybe one event the store refuses: find it, go on
            self.log_failure("dispatch_failed", exc, events=len(items))
            items, blocked = await self._route_each(items)
            if reading:
                try:
                    await self.store.set_routes([], reading=reading)
                except Exception:  # unmarked, they would hold later events back while read
                    await asyncio.gather(*(self.release_soon(event) for event, _ in reads))
                    reads = []
        for event, options in reads:
            self._start_read(event, options, claimed_at)
        if blocked:
            # Held back only by an earlier claim whose routes are being written (another
            # worker's, a few milliseconds): look again shortly, in the background, rather
            # than put back.
            unknown = {i for i, blocker in blocked.items() if _routing(blocker)}
            if unknown:
                self._start_look_again([i for i in items if i.event.id in unknown])
                items = [i for i in items if i.event.id not in unknown]
        await self._hand_over(items, blocked)

    async def _hand_over(self, items: list[Item], blocked: dict[int, Event]) -> None:
        """Put back each blocked item until after its blocker; queue the others in lanes."""
        if blocked:
            waiting = [
                self._wait_for(i, blocked[i.event.id]) for i in items if i.event.id in blocked
            ]
            await asyncio.gather(*waiting)
        for item in items:
            if item.event.id in blocked:
                continue
            try:
                await self.lanes[item.request.target].put(item)
            except Exception as exc:
                self.log_failure("dispatch_failed", exc, **item.event.log_fields())
                await self.release_soon(item.event)

    def _start_look_again(self, items: list[Item]) -> None:
        held = list(items)  # what the task still holds: put back if it is cancelled
        task = asyncio.create_task(self._look_again(held), name="dispatch-look-again")
        self._looking[task] = held
        task.add_done_callback(self._looking.pop)

    async def _look_again(self, held: list[Item]) -> None:
        """Check ``held`` again every :data:`ROUTE_WAIT` s (one read for all) until no earlier
        claim's routes hold them back, then hand them over; after :data:`ROUTE_LOOKS` looks,
        those still held back go back to the queue to wait like any other."""
        try:
            for look in range(ROUTE_LOOKS):
                await asyncio.sleep(ROUTE_WAIT)
                checks = [(i.event.id, i.request.lead_keys()) for i in held]
                blocked = await self.store.blockers(checks)
                still = [i for i in held if _routing(blocked.get(i.event.id))]
                if look == ROUTE_LOOKS - 1:
                    still = []  # enough: every blocked one waits its turn in the queue
                waiting = {id(i) for i in still}
                await self._hand_over([i for i in held if id(i) not in waiting], blocked)
                held[:] = still  # (after: cancelled meanwhile, stop() puts them all back)
                if not held:
                    return
        except Exception as exc:  # the store failed: the events go back, due soon
            self.log_failure("dispatch_failed", exc, events=len(held))
            events, held[:] = [i.event for i in held], []
            await asyncio.gather(*(self.release_soon(event) for event in events))

    async def _route(
        self, items: list[Item], reading: list[int] | None = None
    ) -> tuple[list[Item], dict[int, Event]]:
        """Record the items' routes, then find the ones an earlier event must go before.

        Every route is recorded (one write, which also marks the events of ``reading`` as
        awaiting their lead's read) before any ordering check (one read), so a later event
        of the batch sees an earlier one. Returns the items still ours (in id order) and, by
        event id, the earlier pending event each blocked one waits for.
        """
        keys = {item.event.id: item.request.lead_keys() for item in items}
        routes = [
            Route(i.event.id, i.request.target, i.request.mapping, keys[i.event.id]) for i in items
        ]
        missing = set(await self.store.set_routes(routes, reading=reading or ()))
        items = [item for item in items if item.event.id not in missing]
        return items, await self.store.blockers(list(keys.items()))

    async def _route_each(self, items: list[Item]) -> tuple[list[Item], dict[int, Event]]:
        """:meth:`_route` one item at a time, in id order, after the whole batch failed.

        An item that fails alone (a lead key the database refuses, say a NUL character on
        PostgreSQL) counts as a failed attempt (:meth:`_prepare_failed`) instead of taking the
        batch back to the queue with it, again and again. Routing in id order keeps ordering:
        each item's check sees the routes of the earlier ones.
        """
        routed: list[Item] = []
        blocked: dict[int, Event] = {}
        for item in items:
            event = item.event
            with structlog.contextvars.bound_contextvars(**event.log_fields()):
                try:
                    kept, waits = await self._route([item])
                except Exception as exc:
                    await self._prepare_failed(event, exc)
                    continue
            routed += kept
            blocked.update(waits)
        return routed, blocked

    async def release_soon(self, event: Event, *, at_once: bool = False) -> None:
        """Put ``event`` back untried after a failure (its outcome, or its routing, could not
        be written), due in a second (``at_once``: now), and log nothing more: the caller
        logged the failure.

        The store being unavailable here too (the failure was an outage), the release is
        tried again in the background (:attr:`rewrites`) until the store takes it or the lease
        ends: tried once, the event stayed ``sending`` for the rest of its lease however soon
        the store came back. Any other error leaves it to the lease's end.
        """
        delay = 0.0 if at_once else 1.0

        async def put_back() -> None:
            await self.release(event, at=self.clock.time() + delay, reason=None)

        try:
            await put_back()
        except StoreUnavailable:
            self.rewrites.add(event, put_back, "release")
        except Exception:  # the caller logged the failure; the lease's end puts it back
            return

    async def _wait_for(self, item: Item, blocker: Event) -> None:
        """Release ``item`` until after ``blocker``: an earlier pending event for its lead, or
        an earlier claimed one whose lead is not known yet (its routes are being written)."""
        now = self.clock.time()
        # due or waiting (not in flight) with an endpoint this process lacks: nobody here sends it
        absent = (
            blocker.state.pending
            and blocker.state != State.SENDING
            and blocker.endpoint not in self.config.endpoints
        )
        if blocker.state == State.SENDING:  # in flight: its next_attempt_at is a lease end
            at = now + ORDER_WAIT
        elif blocker.state.pending:
            at = max(now, blocker.next_attempt_at) + (ABSENT_WAIT if absent else ORDER_WAIT)
        else:  # it finished under us: wait a moment and look again
            at = now + ORDER_WAIT
        if blocker.target is None:
            reason = (
                f"waiting for event {blocker.id} (just claimed, lead not known yet) to be routed"
            )
        else:
            reason = f"waiting for event {blocker.id} (same lead) to be sent first"
        if absent:
            # (else the only word of it was on the blocker, and this lead's events waited
            # without saying why, for as long as the endpoint stayed out)
            reason += (
                f"; its endpoint {blocker.endpoint!r} is not in this hub's configuration: "
                "put it back (reload) and it is sent, this one after it"
            )
        with structlog.contextvars.bound_contextvars(**item.event.log_fields()):
            try:
                await self.release(item.event, at=at, reason=reason)
            except Exception as exc:
                self.log_failure("dispatch_failed", exc)
                return
            _log.info("event_waiting", blocker=blocker.id, until=at)

    # --- lead reads in the background ---------------------------------------------------------

    def _to_read(self, event: Event) -> Reading | None:
        """The options of ``event``'s endpoint when its lead must be read from an API first."""
        endpoint = self.config.endpoints.get(event.endpoint)
        if endpoint is None or not isinstance(endpoint.options, FETCHING):
            return None
        return endpoint.options if needs_read(event, endpoint.options) else None

    def _reads_full(self) -> list[str]:
        """Endpoints with as many events reading (or waiting to) as they may: claims leave
        their unread events in the queue until reads end. (An endpoint whose reads are held
        is not left out: each of its events is claimed once, to go back due when the hold
        ends, its last error saying why; left in the queue, it showed as due, and waited
        without a word.)"""
        return [name for name, n in self._reading.items() if n >= self.reads_per_endpoint]

    def hold_reads(
        self, endpoint: str, wait: float | None, reason: str, *, proxy: bool = False
    ) -> float:
        """The API said the app or account is throttled (``reason``: the refused read's), or
        (``proxy``) a proxy refused the read (407): hold every read of ``endpoint`` for
        ``wait`` seconds (the time the answer gave; when it gave none, the target's retry
        ceiling for as many holds in a row, doubling), and say so once
        (``lead_reads_throttled``, or ``lead_reads_held`` for a proxy: warnings) when no hold
        was on. Returns when the hold ends (unix seconds): the refused read is not retried
        before. When it ends, one read probes the API before the others go (:meth:`_probe`).

        Each failed read used to back off alone: a throttled app went on reading every other
        event's lead, each refused and retried a few seconds later, which keeps it throttled;
        and a proxy refusing the hub's credentials (every read's, the operator's to fix)
        killed each lead at its give_up_after. Time the reads are held, until a read is
        answered otherwise, does not count toward it (:meth:`read_hold_spans`): a Facebook hold
        of hours killed the leads of a shorter give_up_after at their next refused read.
        """
        now = self.clock.monotonic()
        self._held_since.setdefault(endpoint, self.clock.time())
        current = self._read_holds.get(endpoint)
        if current is None or current[0] <= now:
            self._holds_in_a_row[endpoint] += 1
            self._throttled_since.setdefault(endpoint, now)
            if not wait:
                policy = endpoint_policy(self, endpoint)
                wait = policy.ceiling(self._holds_in_a_row[endpoint])
            _log.warning(
                "lead_reads_held" if proxy else "lead_reads_throttled",
                endpoint=endpoint,
                seconds=round(wait, 3),
                until=round(self.clock.time() + wait, 3),
                reason=reason,
            )
            self._read_holds[endpoint] = (now + wait, reason, proxy)
        elif wait and now + wait > current[0]:  # a longer time given while the hold is on
            self._read_holds[endpoint] = (now + wait, reason, proxy)
        until = self._held_until[endpoint] = self.clock.time() + (
            self._read_holds[endpoint][0] - now
        )
        self.spans.keep(READS, endpoint, self._held_since[endpoint], until)  # (its end so far)
        return until

    def reads_answered(self, endpoint: str) -> None:
        """A read of ``endpoint`` was answered by the API other than by a hold (its lead, or a
        lead it cannot give: deleted, a token's error; not a proxy's 407 nor a failure on the
        way): the time its reads were held, if they were, ends now, and after holds
        ``lead_reads_resumed`` says so (a warning, as ``lead_reads_throttled`` is, so that an
        alert on it can resolve: ``holds`` in a row, ``seconds`` since the first began); the
        next hold starts from the shortest. Not while a hold is on: the read was sent before
        it began (none is sent during one), and says nothing of the API since; the hold
        stands, and the read probing the API when it ends (:meth:`_probe`) tells. (Taken for
        the end of the hold, the reads held meanwhile went out at once when it ended.)"""
        if self._read_held(endpoint) is not None:
            return
        began = self._held_since.pop(endpoint, None)
        until = self._held_until.pop(endpoint, None)
        if began is not None:
            spans = self._held_spans.setdefault(endpoint, collections.deque(maxlen=SPANS_KEPT))
            now = self.clock.time()
            span = (began, now if until is None else min(now, until))
            spans.append(span)
            self.spans.keep(READS, endpoint, *span)
        holds = self._holds_in_a_row.pop(endpoint, None)
        throttled = self._throttled_since.pop(endpoint, None)
        if holds:
            seconds = None if throttled is None else round(self.clock.monotonic() - throttled, 3)
            _log.warning("lead_reads_resumed", endpoint=endpoint, holds=holds, seconds=seconds)

    def read_hold_spans(self, endpoint: str, now: float) -> list[tuple[float, float]]:
        """When the reads of ``endpoint`` were held (unix times: began, ended; the current
        hold up to ``now``), the API throttling them or a proxy refusing them, until a read
        was answered otherwise, as far as this process saw and the store kept of the processes
        before it (:mod:`hub.dispatch.spans`). Not past
        the end of the last hold: time no read was held, none being due, is time to try in."""
        spans = list(self._held_spans.get(endpoint, ()))
        if (began := self._held_since.get(endpoint)) is not None:
            spans.append((began, min(now, self._held_until.get(endpoint, now))))
        return spans

    def _read_held(self, endpoint: str) -> float | None:
        """Seconds the reads of ``endpoint`` still wait for the API's throttling to end, or
        None (an ended hold is forgotten)."""
        hold = self._read_holds.get(endpoint)
        if hold is None:
            return None
        left = hold[0] - self.clock.monotonic()
        if left <= 0:
            del self._read_holds[endpoint]
            return None
        return left

    async def _wait_out_hold(self, event: Event, left: float) -> None:
        """Put ``event`` back untried, due when its endpoint's reads are held no more."""
        _, why, proxy = self._read_holds[event.endpoint]
        by = "held, a proxy refusing them," if proxy else "throttled by the API"
        reason = (
            f"the lead reads of endpoint {event.endpoint!r} are {by} for "
            f"{duration_text(round(left))} more: {why}"
        )
        await self.release(event, at=self.clock.time() + left, reason=reason)

    def _start_read(self, event: Event, options: Reading, claimed_at: float) -> None:
        self._reading[event.endpoint] += 1
        task = asyncio.create_task(self._read(event, options, claimed_at), name=f"read-{event.id}")
        self._reads[task] = event
        task.add_done_callback(self._read_ended)

    def _read_ended(self, task: asyncio.Task[None]) -> None:
        event = self._reads.pop(task)
        self._reading[event.endpoint] -= 1
        if self._reading[event.endpoint] <= 0:
            del self._reading[event.endpoint]
        if task.cancelled():  # stopping: stop() puts it back
            self._read_dropped.append(event)
        self.wake()  # a read ended: route it, and claim that endpoint's events again

    async def _read(self, event: Event, options: Reading, claimed_at: float) -> None:
        """Read ``event``'s lead, then leave the event for the claim loop to route."""
        with structlog.contextvars.bound_contextvars(**event.log_fields()):
            try:
                read = await self._read_in_lease(event, options, claimed_at)
            except Exception as exc:  # a bug (a failed attempt) or a store outage
                await self._prepare_failed(event, exc)
                return
            if read is not None:
                self._read_done.append((read, claimed_at))

    async def _read_in_lease(
        self, event: Event, options: Reading, claimed_at: float
    ) -> Event | None:
        """The event with its lead read and stored, or None: retried or dead (the read
        failed), or back in the queue untried (the read would not end within the lease)."""
        need = read_bound(options.read_timeout) + LEASE_MARGIN
        if need >= self.lease:
            reason = (
                f"a lead read (up to {read_bound(options.read_timeout):g} s, twice the "
                f"endpoint's read_timeout) and {LEASE_MARGIN:g} s to spare do not fit in the "
                f"lease ({self.lease:g} s): give serve a --lease of at least "
                f"{need + SEND_WINDOW:g}s, or lower the endpoint's read_timeout"
            )
            _log.error("lease_too_short", reason=reason)
            await self.release(event, at=self.clock.time() + self.lease, reason=reason)
            return None
        if (held := self._read_held(event.endpoint)) is not None:
            await self._wait_out_hold(event, held)
            return None
        slots = self._read_slots.get(event.endpoint)
        if slots is None:
            slots = self._read_slots[event.endpoint] = asyncio.Semaphore(self.reads_per_endpoint)
        if not await self._within_lease(slots.acquire(), need, claimed_at):
            await self._lease_expiring(event)  # no read slot in time
            return None
        try:
            # Another read may probe the API after a hold: its answer first. Then, held again
            # (or a hold came while this one waited for its slot: a read refused meanwhile),
            # back untried; the API answered, the read; no answer (a lead id no API could
            # hold, refused with no request), this one may be the next probe.
            while (probe := self._probes.get(event.endpoint)) is not None:
                if not await self._within_lease(probe.wait(), need, claimed_at):
                    await self._lease_expiring(event)
                    return None
            if (held := self._read_held(event.endpoint)) is not None:
                await self._wait_out_hold(event, held)
                return None
            if event.endpoint in self._held_since:  # a hold ended, no read answered since
                return await self._probe(event, options)
            return await read_first(self, event, options)
        finally:
            slots.release()

    async def _within_lease(self, wait: Awaitable[Any], need: float, claimed_at: float) -> bool:
        """Whether ``wait`` ended while a read (``need`` seconds, margin included) still fits
        in the lease of the event claimed at ``claimed_at`` (monotonic); it is cancelled
        when it did not."""
        left = self.lease - need - (self.clock.monotonic() - claimed_at)
        if left <= 0:
            if asyncio.iscoroutine(wait):
                wait.close()
            return False
        try:
            async with asyncio.timeout(left):
                await wait
        except TimeoutError:
            return False
        return True

    async def _lease_expiring(self, event: Event) -> None:
        """No time left in ``event``'s lease for its read: back untried, due now (another
        worker will soon own the event)."""
        await self.release(event, at=self.clock.time(), reason=None)
        _log.info("event_lease_expiring")

    async def _probe(self, event: Event, options: Reading) -> Event | None:
        """Read ``event``'s lead alone, the first read of its endpoint after a hold ended: the
        endpoint's other reads wait for its answer (:meth:`_read_in_lease`), then all go when
        the API answered otherwise, or go back untried when it held the reads again.

        When a hold ended, every waiting read went out at once (up to ``reads_per_endpoint``):
        against an API still throttling, each was refused again, and counted an attempt, as a
        paused target's calls would be without its one probe at a time (``Lane``)."""
        done = self._probes[event.endpoint] = asyncio.Event()
        try:
            return await read_first(self, event, options)
        finally:
            del self._probes[event.endpoint]
            done.set()

    async def _stop_reads(self) -> None:
        """Cancel the reads in flight and the looks again; their events, and those read but
        not yet routed, go back to the queue due now, their attempt not counted."""
        looking = dict(self._looking)
        tasks = [*self._reads, *looking]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        back = [event for event, _ in self._read_done] + self._read_dropped
        back += [item.event for held in looking.values() for item in held]
        self._read_done, self._read_dropped = [], []
        await asyncio.gather(*(self.release_soon(event, at_once=True) for event in back))

    # --- mapping ----------------------------------------------------------------------------

    def _map_quick(self, event: Event, claimed_at: float) -> Item | Mapped | None:
        """The event's item when mapping needs no I/O and no store write; else what is known.

        None: it needs enrichment (or its endpoint is gone); a mapping result: it is not a
        lead for a configured target (skip, unmatched, error).
        """
        endpoint = self.config.endpoints.get(event.endpoint)
        if endpoint is None or isinstance(endpoint.options, FETCHING):
            return None
        try:
            result = map_document(self.config.mappings_for(event.endpoint), event.document)
        except Exception:  # a bug: the slow path maps again and reports it
            return None
        if isinstance(result, CaptureRequest) and result.target in self.lanes:
            note_left_out(event, result)
            return Item(event=event, request=result, claimed_at=claimed_at, config=self.mapped_by)
        return result

    async def _prepare_safely(
        self,
        event: Event,
        claimed_at: float,
        mapped: Mapped | None = None,
        mapped_with: Config | None = None,
    ) -> Item | None:
        with structlog.contextvars.bound_contextvars(**event.log_fields()):
            try:
                return await self._prepare(event, claimed_at, mapped, mapped_with)
            except Exception as exc:  # a bug or a store hiccup must not stop the loop
                await self._prepare_failed(event, exc)
                return None

    def log_failure(self, name: str, exc: BaseException, **fields: Any) -> None:
        """Log ``exc`` as ``name`` at error level: with its traceback when it is a bug, every
        time; without when the store cannot be reached or written (an outage its message
        explains: what to check), at the first, then the same error at most once per
        :data:`OUTAGE_LOG_EVERY` s (with ``unlogged``: those left out since), as it fails
        again for each event at every claim for as long as the outage lasts."""
        error = str(exc)[:300]
        if not isinstance(exc, StoreUnavailable):
            _log.error(name, error=error, exc_info=exc, **fields)
            return
        more = self.outage_lines.extra((name, error), self.clock.monotonic())
        if more is not None:
            _log.error(name, error=error, **fields, **more)

    async def _prepare_failed(self, event: Event, exc: Exception) -> None:
        """Log an unexpected error while preparing ``event`` (``prepare_failed``) and count it
        as a failed attempt.

        The event is retried on the schedule of its endpoint's target, the exception named
        as its last error, and dead once the schedule gives up (replayable): a failure that
        repeats on this one event (a lead the store cannot keep, a bug its data triggers)
        then neither comes back untried every second nor holds up the others. Only when
        even that cannot be written (the store is down) does it go back untried.

        The store being unavailable (an outage: PostgreSQL restarting, a full disk) is no
        failure of the event: it is logged without a traceback and the event goes back
        untried, due in a second (if even that cannot be written, its lease runs out).
        """
        self.log_failure("prepare_failed", exc)
        if isinstance(exc, StoreUnavailable):
            await self.release_soon(event)
            return
        reason = f"preparing the event failed ({type(exc).__name__}: {str(exc)[:300]})"
        try:
            await self.retry_or_die(event, endpoint_policy(self, event.endpoint), reason)
        except Exception:
            await self.release_soon(event)

    async def _prepare(
        self,
        event: Event,
        claimed_at: float,
        mapped: Mapped | None = None,
        mapped_with: Config | None = None,
    ) -> Item | None:
        """Enrich and map ``event`` (unless ``mapped`` says how it mapped, with the
        configuration ``mapped_with``) and settle it.

        Returns the item to route, or None once the event is skipped, unmatched or dead.
        """
        result = mapped
        # what ``mapped`` was mapped with (a reload may have come since): an item mapped
        # with a configuration replaced goes back to be mapped anew (Lane.remap)
        config = mapped_with or self.mapped_by
        if result is None:
            endpoint = self.config.endpoints.get(event.endpoint)
            if endpoint is None:
                await self._leave(event, "endpoint", event.endpoint)
                return None
            document: Any = event.document
            if isinstance(endpoint.options, FETCHING):
                document = await enrich(self, event, endpoint.options)
                if document is None:
                    return None
            config = self.mapped_by  # (a reload may have come during the lead's read)
            result = map_document(config.mappings_for(event.endpoint), document)
        if isinstance(result, Skip):
            with still_ours(event):
                reason = storable(result.reason)
                await self.store.skipped(event.id, reason=reason, lease=event.lease)
                self.metrics.events.labels("skipped").inc()
                _log.info("event_skipped", mapping=result.mapping, reason=result.reason)
            return None
        if isinstance(result, Unmatched):
            await self._unmatched(event, result.reason)
            return None
        if isinstance(result, MappingError):
            await self.kill(event, f"mapping failed: {result.reason}", mapping=result.mapping)
            return None
        if result.target not in self.lanes:
            await self._leave(event, "target", result.target)
            return None
        note_left_out(event, result)
        return Item(event=event, request=result, claimed_at=claimed_at, config=config)

    async def _leave(self, event: Event, kind: str, name: str) -> None:
        """Put ``event`` back untried, its endpoint (``kind`` "endpoint") or the target its
        mapping names (``kind`` "target") being ``name``, which this process's configuration
        lacks.

        This process cannot judge such an event: with several instances on one store (a
        rolling deploy adding an endpoint), another may have it; alone, it was taken out of
        the configuration and may come back. Ending the event (unmatched, dead) sent a lead
        nobody had looked at to a final state. Its last error says why it waits; an event of
        an unknown endpoint is due at once (claims of instances without its endpoint leave it
        alone from now on, as they do once one that has it took it up, whatever that one
        writes: a route, a read, why it failed before routing: ``known_endpoints``; one that
        has it sends it at once), one of an
        unknown target after :data:`LEAVE_DELAY` (a mapping names only targets of its own
        configuration, so this lasts no longer than a reload). One ``event_left`` warning
        per endpoint or target per :data:`LEAVE_LOG_EVERY`, not one per event.
        """
        fix = "waiting for an instance that has it, or put it back (leadhub replay needs "
        fix += "nothing: it is sent once configured)"
        if kind == "endpoint":
            reason = f"{ENDPOINT_ABSENT}{name!r} is not in this hub's configuration; {fix}"
            at = self.clock.time()
        else:
            reason = f"target {name!r} is not in this hub's configuration; {fix}"
            at = self.clock.time() + LEAVE_DELAY
        await self.release(event, at=at, reason=reason)
        now = self.clock.monotonic()
        logged, unlogged = self._left.get((kind, name), (None, 0))
        if logged is not None and now - logged < LEAVE_LOG_EVERY:
            self._left[kind, name] = (logged, unlogged + 1)
            return
        self._left[kind, name] = (now, 0)
        _log.warning("event_left", **{kind: name}, reason=reason, events=unlogged + 1)

    async def _unmatched(self, event: Event, reason: str) -> None:
        with still_ours(event):
            await self.store.unmatched(event.id, reason=storable(reason), lease=event.lease)
            self.metrics.events.labels("unmatched").inc()
            _log.info("event_unmatched", reason=reason)

    # --- outcomes (used by the lanes too) -----------------------------------------------------
    # Each is written under the event's lease: a worker whose lease ran out (another has
    # claimed the event since) writes nothing and logs `event_lease_lost` (see still_ours).

    async def release(self, event: Event, *, at: float, reason: str | None) -> None:
        """Put ``event`` back without counting its attempt (pause, ordering, shutdown)."""
        with still_ours(event):
            shown = None if reason is None else storable(reason)
            await self.store.release(event.id, at=at, reason=shown, lease=event.lease)
            self.metrics.events.labels("released").inc()

    async def kill(
        self, event: Event, reason: str, *, mapping: str | None = None, fixable: bool = False
    ) -> None:
        """Mark ``event`` dead with ``reason``; ``fixable``: the reason names something to fix
        (the target, the account's leads, the mapping), so it ends with the replay that sends
        the event again once that is done."""
        if fixable:
            hint = f"once that is fixed, send it again: leadhub replay --id {event.id}"
            reason = f"{reason.rstrip('.')}; {hint}"
        reason = storable(reason)
        with still_ours(event):
            await self.store.dead(event.id, error=reason, lease=event.lease)
            self.metrics.events.labels("dead").inc()
            # (without a mapping here, the one a lane's send binds, if any, is the one shown)
            named = {} if mapping is None else {"mapping": mapping}
            _log.warning("event_dead", reason=reason, attempt=event.attempts, **named)

    async def retry_or_die(
        self,
        event: Event,
        policy: RetryPolicy,
        reason: str,
        *,
        held: Iterable[tuple[float, float]] = (),
        give_up: bool = True,
        not_before: float | None = None,
    ) -> None:
        """Schedule another try with backoff, or kill the event when the schedule gives up.

        ``held``: times (unix: began, ended) that do not count toward the event's
        ``give_up_after`` (its target was paused, its endpoint's reads held); nor does the
        wall time a step forward of the clock skipped (:class:`ClockSkips`), each moment
        counted once. ``give_up=False``: a failure that never makes the event dead (the
        account's rate limit), retried past the deadline. ``not_before``: the next try is no
        sooner (unix seconds: the API said to wait so long).
        """
        spans = [*held, *self.skips.spans()]
        now = self.clock.time()
        held_for = time_in(spans, event.queued_since, now)
        # The give-up clock runs from when the event joined the queue: a replay starts it
        # again (with zero attempts), so a replayed event gets its whole schedule.
        at = policy.next_attempt(
            event.attempts, event.queued_since + held_for, now, give_up=give_up
        )
        if at is not None and not_before is not None:
            at = max(at, not_before)
        if at is None:
            window = duration_text(policy.schedule.give_up_after)
            await self.kill(
                event,
                f"gave up after {event.attempts} attempt(s) over {window} (the target's retry "
                f"give_up_after): {reason}",
                fixable=True,
            )
            return
        with still_ours(event):
            await self.store.retry(event.id, at=at, error=storable(reason), lease=event.lease)
            self.metrics.events.labels("retrying").inc()
            _log.info(
                "event_retrying", attempt=event.attempts, reason=reason, delay=round(at - now, 3)
            )


def _reads_changed(old: Config, new: Config) -> list[str]:
    """The endpoints whose lead reads ``new`` makes differently (a token, an API url, the
    fields read): a read that failed for the old settings may succeed now."""
    changed = []
    for name, endpoint in new.endpoints.items():
        before = old.endpoints.get(name)
        if (
            isinstance(endpoint.options, FETCHING)
            and before is not None
            and before.options != endpoint.options
        ):
            changed.append(name)
    return sorted(changed)


def storable(reason: str) -> str:
    """``reason`` as every store keeps it: a NUL character written ``\\x00``. PostgreSQL's
    text refuses NUL, and a reason may quote one: LeadSquared's ExceptionMessage echoing a
    sender's value, an answer's body. Refused, the outcome was never written, so the event
    went back at once and its call was made again each second, without end."""
    return reason.replace("\x00", "\\x00")


def _log_claimed(event: Event) -> None:
    """Log ``event_claimed`` for ``event``: once per claim, as the claim loop takes it and
    before whatever comes next (mapping, or a lead read that may fail and retry it), so
    every attempt's lines start with it. An event ``leadhub replay`` put back says when
    (``requeued_at``): the command runs apart from the hub, so its replay shows in the
    hub's log only here."""
    replayed = {} if event.requeued_at is None else {"requeued_at": event.requeued_at}
    _log.info("event_claimed", **event.log_fields(), attempt=event.attempts, **replayed)


def note_left_out(event: Event, request: CaptureRequest) -> None:
    """Log what the mapping left out of ``event``'s lead, when anything (``event_mapped``
    at warning level: a phone that is no number, a date it cannot read, an object a path
    found): the lead is still sent, and without this line nothing would show why a field
    it should have carried is missing. An opt-out flag sent a value other than "0" or "1"
    is said there too (sent as it is: the sandbox takes it, LeadSquared may not)."""
    if request.warnings:
        _log.warning(
            "event_mapped",
            **event.log_fields(),
            mapping=request.mapping,
            warnings=list(request.warnings),
        )


def duration_text(seconds: float) -> str:
    """``seconds`` as a duration is written in a target file: ``72h``, ``90m``, ``2s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds_text(seconds)}s"


def _routing(blocker: Event | None) -> bool:
    """Whether ``blocker`` is a claim whose routes are being written (its lead not known)."""
    return blocker is not None and blocker.target is None and blocker.state is State.SENDING


def _maps_alike(old: Config, new: Config) -> bool:
    """Whether ``new`` maps every event as ``old`` does: the same endpoints and mappings."""
    return old.endpoints == new.endpoints and old.mappings == new.mappings


def _same(old: Target, new: Target) -> bool:
    """Whether a lane built for ``old`` serves ``new`` as it is (where it is written aside)."""
    return dataclasses.replace(old, origin=None) == dataclasses.replace(new, origin=None)


def dispatcher_lifespan(
    *,
    config: Config,
    store: EventStore,
    clock: Clock = SYSTEM_CLOCK,
    stop_timeout: float = 10.0,
    **options: Any,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A ``hub.web.app`` lifespan hook running a :class:`Dispatcher` while the app runs.

    The dispatcher's metrics go on the app's registry (``app.state.metrics``); the
    dispatcher is at ``app.state.dispatcher``. List it after the store's hook.
    """

    @contextlib.asynccontextmanager
    async def hook(app: Starlette) -> AsyncIterator[None]:
        dispatcher = Dispatcher(
            config=config, store=store, clock=clock, registry=app_registry(app), **options
        )
        app.state.dispatcher = dispatcher
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop(timeout=stop_timeout)

    return hook
