"""One target's lane: its queue, its sender tasks, its rate limiter and its pause state.

Every target gets its own lane, so one target's backlog, pause or slowness never
delays another: the claim loop only hands events over, and each lane sends with
its own tasks (``concurrency`` of them) after waiting on its own limiter.

Events wait in a heap ordered by event id, so a target's events go out in
arrival order when due. A lane holds at most ``capacity`` events; a full or
paused lane is left out of claims, and an event routed to it is released (put
back in the store, its attempt not counted) rather than queued.

Pause: a 401 or 404 pauses the lane. Its events are released until the pause
ends; then one probe call at a time goes out until one gets through (the pause
doubles each time the probe is refused, up to the target's ``max_interval``).

Leases: a call starts only while the longest it can last (:func:`call_bound`, twice the
target's timeout) and :data:`LEASE_MARGIN` still fit in what is left of the event's lease;
otherwise the event goes back to the queue, untried, before another worker may claim it. A
lease too short for any call (:func:`lease_needed`; ``leadhub serve`` refuses one) sends
nothing: every event goes back with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from hub.config.models import Config, Target
from hub.dispatch.leadsquared import Attempt, Dead, Delivered, Pause, Retry
from hub.dispatch.lease import LEASE_MARGIN, SEND_WINDOW, call_bound, lease_needed
from hub.dispatch.ratelimit import RateLimiter
from hub.dispatch.retry import RetryPolicy
from hub.dispatch.spans import PAUSES
from hub.mapping import CaptureRequest
from hub.store.base import SPANS_KEPT, LeaseLost, StoreUnavailable
from hub.store.models import PAUSE_HELD, Ack, Event

if TYPE_CHECKING:
    from hub.dispatch.worker import Dispatcher

_log = structlog.get_logger()

_LABELS = {Delivered: "delivered", Retry: "retry", Dead: "dead", Pause: "pause"}


@contextlib.contextmanager
def still_ours(event: Event) -> Iterator[None]:
    """Around an outcome written under ``event``'s lease: if the lease is lost (it ran out
    and another worker claimed the event), nothing was written and the log says so."""
    try:
        yield
    except LeaseLost:
        _log.warning("event_lease_lost", **event.log_fields())


CAPACITY_CEILING = 512  # events a lane may hold, however fast its target answers
LATENCY_WEIGHT = 0.1  # weight of the newest call in the smoothed latency


@dataclass(slots=True)
class Item:
    """A claimed, mapped event waiting in a lane."""

    event: Event
    request: CaptureRequest
    claimed_at: float  # monotonic time of the claim
    queued_at: float = 0.0  # monotonic time it reached the lane (set by Lane.put)
    #: The configuration it was mapped with: once a reload has replaced it, the event goes
    #: back to the queue untried, to be mapped again (:meth:`Lane.remap`).
    config: Config | None = None


class Lane:
    """The per-target queue and its senders (see the module docstring)."""

    def __init__(
        self,
        target: Target,
        *,
        dispatcher: Dispatcher,
        limiter: RateLimiter,
        policy: RetryPolicy,
        concurrency: int,
        random: Callable[[], float],
    ) -> None:
        self.target = target
        self.limiter = limiter
        self.policy = policy
        self.concurrency = concurrency
        #: Seconds a call takes, smoothed; starts at the timeout (the worst case).
        self.latency = target.timeout
        self._d = dispatcher
        self._random = random
        self._heap: list[tuple[int, int, Item]] = []
        self._seq = itertools.count()
        self._ready = asyncio.Condition()
        self._held: set[int] = set()  # event ids queued or being sent by this lane
        self._queued: dict[int, Item] = {}  # the queued ones (not yet being sent)
        self._current: dict[asyncio.Task[None], Item] = {}
        #: Senders waiting for their rate-limit slot: no call started yet (see :meth:`close`).
        self._awaiting_slot: set[asyncio.Task[None]] = set()
        #: Deliveries to write, each with its call's end (unix time).
        self._acks: list[tuple[Item, Delivered, Attempt, float]] = []
        self._acks_ready = asyncio.Event()
        self._senders_done = False
        self._tasks = [
            asyncio.create_task(self._sender(), name=f"lane-{target.name}-{n}")
            for n in range(concurrency)
        ]
        self._acker = asyncio.create_task(self._ack_loop(), name=f"lane-{target.name}-acks")
        self._closing = False
        #: When the current pause ends, by the monotonic clock (None: not paused). A step of
        #: the wall clock neither lengthens nor shortens a pause: held as a wall time, one set
        #: back an hour kept the target paused an hour more. Events it holds back are given
        #: the store's time of its end (:meth:`_pause_end`) when released.
        self._resume_at: float | None = None
        self.pause_level = 0
        self.probing = False
        #: When the current pause began (unix time; None while not paused), and the last
        #: pauses as (began, resumed): time the target was paused does not count toward an
        #: event's give_up_after (:meth:`pause_spans`). The store keeps them too, for the
        #: processes after this one (:meth:`_keep`); :meth:`remember` reads theirs in.
        self._paused_since: float | None = None
        #: The same, by the monotonic clock: how long the run of pauses lasted
        #: (``target_resumed``'s ``seconds``; the wall clock's difference was off by any step
        #: of it meanwhile, negative after a step back).
        self._paused_at = 0.0
        self._pauses: collections.deque[tuple[float, float]] = collections.deque(maxlen=SPANS_KEPT)
        #: What the events this pause holds back say (its reason and the fix), from the
        #: refused call that started it; None before any pause.
        self._pause_note: str | None = None
        self._probe = asyncio.Lock()
        self._lease_told = False  # lease_too_short logged (once per lane)
        #: What this lane has learnt it may hold, below what :attr:`capacity` reckons (None:
        #: nothing learnt). Halved when an event claimed since the last cut goes back, its
        #: start window gone before a sender got to it; grown by one event for each full
        #: lane's worth of calls started early in their window (see :meth:`_learn`).
        self._learnt: float | None = None
        self._cut_at = float("-inf")  # monotonic time of the last cut
        # A new lane is not paused: it says so, also in place of a lane it replaces (a
        # reload that fixed the keys), whose pause would otherwise be shown for good.
        dispatcher.metrics.paused.labels(target.name).set(0)
        # ``leadhub_lane_capacity`` reads this lane's capacity at each scrape, also in place of
        # a lane it replaces. Set when it changes instead, it would be set at every call: the
        # smoothed latency that :attr:`capacity` reckons with moves with each one.
        dispatcher.metrics.capacity.labels(target.name).set_function(lambda: self.capacity)

    # --- state ------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Events queued in or being sent by this lane."""
        return len(self._held)

    @property
    def capacity(self) -> int:
        """Events this lane may hold: the calls its senders can start in a third of a lease,
        or in the time a lease leaves to start a call in (the lease less the longest call and
        :data:`LEASE_MARGIN`), when that is shorter.

        Each sender starts a call at once, then one more each smoothed call latency (so a
        slow target holds few, a fast one many, never over :data:`CAPACITY_CEILING`), and the
        rate limit bounds it before all. Events that still wait when their lease nears its
        end (the rate limit may be shared with other processes) are released by the sender
        anyway (see :meth:`_send`). At the shortest lease serve takes, a call must start
        within 1 s of its claim: a third of the lease at the rate limit claimed several times
        what could start in time, and put the rest back untried (45 of 60 leads at 20/1s).
        So did a floor of two events a sender, for calls slower than that second: the second
        waited for its sender past its lease's start window and went back, at every claim.

        What the lane has learnt bounds it too: events that waited in it past their window
        all the same (other processes share the rate limit; a process starved of CPU starts
        calls far slower than its call latency says) halve it, and calls started early in
        their window grow it back (:meth:`_learn`). A starved worker otherwise claimed
        thousands of events a minute only to put them back, each claim and release a store
        write that starved it further.
        """
        room = self._reckoned()
        if self._learnt is not None:
            room = min(room, int(self._learnt))
        return room

    def _budget(self) -> float:
        """Seconds after its claim an event's call may start: the lease less the longest call
        and :data:`LEASE_MARGIN` (past then another worker may have claimed the event)."""
        return self._d.lease - call_bound(self.target) - LEASE_MARGIN

    def _reckoned(self) -> int:
        """:attr:`capacity` as the lease, the latency and the rate limit reckon it."""
        budget = self._budget()
        third = min(self._d.lease / 3, max(budget, SEND_WINDOW))
        rounds = min(CAPACITY_CEILING, int(third / max(self.latency, 0.001)))
        room = min(CAPACITY_CEILING, self.concurrency * (1 + rounds))
        limit = self.target.rate_limit
        if limit is not None:
            # the limit wins over the senders: what it cannot let out in time would only wait
            # for the end of its lease and go back
            room = min(room, max(1, int(limit.calls / limit.window * third)))
        return room

    @property
    def room(self) -> int:
        """How many more events this lane takes now."""
        return max(0, self.capacity - len(self._held))

    @property
    def full(self) -> bool:
        return len(self._held) >= self.capacity

    def paused(self) -> bool:
        return self._resume_at is not None and self._d.clock.monotonic() < self._resume_at

    def _pause_end(self) -> float:
        """When the current pause ends, in the store's time (read now: the due time of an
        event it holds back)."""
        assert self._resume_at is not None
        clock = self._d.clock
        return clock.time() + max(0.0, self._resume_at - clock.monotonic())

    def pause_spans(self, now: float) -> list[tuple[float, float]]:
        """When this lane's target was paused (unix times: began, ended; the current pause
        up to ``now``), as this process saw and as the store kept of the processes before it
        (:meth:`remember`)."""
        spans = list(self._pauses)
        if self._paused_since is not None:
            spans.append((self._paused_since, now))
        return spans

    def take_pauses(self, replaced: Lane) -> None:
        """Keep the pauses of the lane this one replaces (a reload changed its target): the
        time they held its events back is no time to try in for this lane either. Forgotten,
        a reload that fixed keys refused for longer than give_up_after had each held event
        dead at its first transient failure after ("gave up after 1 attempt(s)")."""
        self._pauses.extend(replaced.pause_spans(self._d.clock.time()))

    def remember(self, spans: Iterable[tuple[float, float]]) -> None:
        """Take in the pauses of this lane's target that the store kept from the processes
        before this one (:func:`~hub.dispatch.spans.remembered`)."""
        self._pauses = collections.deque([*spans, *self._pauses], maxlen=SPANS_KEPT)

    def _keep(self, began: float, ended: float) -> None:
        """Have the store keep the pause that began at ``began`` as ending at ``ended``."""
        self._d.spans.keep(PAUSES, self.target.name, began, ended)

    def holds(self, event_id: int) -> bool:
        return event_id in self._held

    # --- input ------------------------------------------------------------------------------

    async def put(self, item: Item) -> None:
        """Queue ``item``, or release it to the store when the lane is paused or full."""
        if self.paused():
            await self._d.release(item.event, at=self._pause_end(), reason=self._pause_reason())
            return
        queued = self._queued.get(item.event.id)
        if queued is not None:
            # Claimed again (its lease ran out while it waited here): keep one copy, renewed.
            queued.event, queued.claimed_at = item.event, item.claimed_at
            return
        if item.event.id in self._held:
            # Being sent, or its delivery being written (its lease ran out meanwhile, and we
            # claimed it again): that send settles it, under the new lease.
            waiting = [i for i, *_ in self._acks]  # sent, its delivery not yet written
            for sending in (*self._current.values(), *waiting):
                if sending.event.id == item.event.id:
                    sending.event = item.event
            return
        if self.full or self._closing:
            at = self._d.clock.time() + self._drain_estimate()
            await self._d.release(item.event, at=at, reason=None)
            return
        item.queued_at = self._d.clock.monotonic()
        self._held.add(item.event.id)
        self._queued[item.event.id] = item
        async with self._ready:
            heapq.heappush(self._heap, (item.event.id, next(self._seq), item))
            self._ready.notify()

    def _drain_estimate(self) -> float:
        limit = self.target.rate_limit
        if limit is None:
            return 1.0
        return min(max(1.0, self.held * limit.window / limit.calls), 60.0)

    def _pause_reason(self) -> str:
        """The last error of an event this pause holds back: why, and what to do, as the
        refused call said (every held event says it, not only the one whose call it was)."""
        return self._pause_note or f"{PAUSE_HELD}target {self.target.name!r} is paused"

    def _show_paused(self, paused: bool) -> None:
        """``leadhub_target_paused`` for this lane's target, while this lane is the target's:
        a lane a reload replaced (its last sends finishing) no longer speaks for it."""
        if self._d.lanes.get(self.target.name) is self:
            self._d.metrics.paused.labels(self.target.name).set(1 if paused else 0)

    # --- sending ----------------------------------------------------------------------------

    async def _next(self) -> Item:
        async with self._ready:
            while not self._heap:
                await self._ready.wait()
            item = heapq.heappop(self._heap)[2]
            self._queued.pop(item.event.id, None)
            return item

    async def _sender(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while True:
            item = await self._next()
            self._current[task] = item
            settled = True  # False once the outcome went to a recording task
            try:
                with structlog.contextvars.bound_contextvars(
                    **item.event.log_fields(),
                    target=self.target.name,
                    mapping=item.request.mapping,
                ):
                    settled = await self._send(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a store failure must not kill the lane
                self._d.log_failure(
                    "send_failed", exc, target=self.target.name, **item.event.log_fields()
                )
                self._settled(item)  # (before its retry is written: see _ack_alone)
                await self._send_failed(item.event, exc)
            finally:
                self._current.pop(task, None)
                self._awaiting_slot.discard(task)
                if settled:
                    self._settled(item)
            if self._closing:
                return

    async def _send_failed(self, event: Event, exc: Exception) -> None:
        """Count an unexpected error sending ``event``, or recording what its call did, as a
        failed attempt (the caller logged it).

        The event is retried on the target's schedule, the exception named as its last
        error, and dead once the schedule gives up (replayable), as a failure preparing an
        event is: put back untried, a failure that repeats on this one event (an outcome the
        store refuses to record, a bug its data triggers) made its call again every second,
        without end and uncounted. The store being unavailable (an outage) is no failure of
        the event: it goes back untried, as does one whose retry cannot be written either.
        """
        if isinstance(exc, StoreUnavailable):
            await self._d.release_soon(event)
            return
        reason = f"sending the event failed ({type(exc).__name__}: {str(exc)[:300]})"
        try:
            await self._d.retry_or_die(event, self.policy, reason)
        except Exception:
            await self._d.release_soon(event)

    def _settled(self, item: Item) -> None:
        self._held.discard(item.event.id)
        self._d.wake()

    def _ack_later(self, item: Item, outcome: Delivered, attempt: Attempt, ended: float) -> None:
        """Queue a delivery for the lane's ack writer; the sender takes its next event at once.

        The writer writes every delivery queued meanwhile in one store call (one commit),
        each as delivered when its call ended (``ended``), not when written. The event stays
        held (and ``sending`` in the store, leased) until then, so it is neither claimed
        again nor overtaken by a later event for the same lead.
        """
        self._acks.append((item, outcome, attempt, ended))
        self._acks_ready.set()

    async def _ack_loop(self) -> None:
        while not (self._senders_done and not self._acks):
            await self._acks_ready.wait()
            self._acks_ready.clear()
            await self._write_acks()

    async def _write_acks(self) -> None:
        batch, self._acks = self._acks, []
        if not batch:
            return
        d = self._d
        try:
            acks = [
                Ack(i.event.id, o.lead_id, o.created, i.event.lease, at=at) for i, o, _, at in batch
            ]
            missing = set(await d.store.ack_many(acks))
        except StoreUnavailable as exc:  # sent, not recorded yet: written once the store is back
            self._d.log_failure("ack_failed", exc, events=len(batch))
            for item, outcome, attempt, at in batch:
                self._ack_when_back(item, outcome, attempt, at)
        except Exception as exc:  # the store refused the batch: each is written on its own
            self._d.log_failure("ack_failed", exc, events=len(batch))
            for entry in batch:
                await self._ack_alone(*entry)
        else:
            for item, outcome, attempt, _ in batch:
                self._acked(item, outcome, attempt, lost=item.event.id in missing)
        finally:
            for item, *_ in batch:
                self._settled(item)

    async def _ack_alone(self, item: Item, outcome: Delivered, attempt: Attempt, at: float) -> None:
        """Record one delivery of a batch the store refused (one statement for all: one
        event's row, refused by the database, failed every event written with it). The
        others are recorded; one refused on its own again counts as a failed attempt
        (:meth:`_send_failed`): sent, but not recorded, it is sent again later."""
        event = item.event
        try:
            await self._ack_as_of(item, outcome, attempt, at)
        except StoreUnavailable:
            self._ack_when_back(item, outcome, attempt, at)
        except Exception as exc:
            self._d.log_failure("ack_failed", exc, target=self.target.name, **event.log_fields())
            # No longer this lane's once its retry is written: claimed again meanwhile (a
            # retry due at once), a lane still holding it took the claim for its own send in
            # flight and dropped it, and the event waited for its lease to end.
            self._settled(item)
            await self._send_failed(event, exc)

    def _acked(self, item: Item, outcome: Delivered, attempt: Attempt, *, lost: bool) -> None:
        """Count and log a delivery written (:meth:`_ack_as_of`, :meth:`_write_acks`), unless
        its lease was ``lost``: another worker's since our lease ran out."""
        if lost:
            _log.warning("event_lease_lost", target=self.target.name, **item.event.log_fields())
        else:
            self._sent(item, outcome, attempt)

    def _sent(self, item: Item, outcome: Delivered, attempt: Attempt) -> None:
        """Count and log (``lead_sent``) a delivery the store has recorded."""
        self._d.metrics.events.labels("delivered").inc()
        _log.info(
            "lead_sent",
            **item.event.log_fields(),
            target=self.target.name,
            mapping=item.request.mapping,
            attempt=item.event.attempts,
            lead_id=outcome.lead_id,
            created=outcome.created,
            status=attempt.status,
            seconds=round(attempt.seconds, 4),
        )

    def _ack_when_back(self, item: Item, outcome: Delivered, attempt: Attempt, at: float) -> None:
        """Record a delivery the store was unavailable for once it is back, while the lease
        runs (:class:`~hub.dispatch.retry.Rewrites`), as of ``at``, its call's end (not the
        time the store came back). The lead was sent: given back to the queue instead, it
        would be sent again, and tried once, the release waited for the lease's end as well."""
        write = functools.partial(self._ack_as_of, item, outcome, attempt, at)
        self._d.rewrites.add(item.event, write, "ack")

    async def _ack_as_of(self, item: Item, outcome: Delivered, attempt: Attempt, at: float) -> None:
        """Record one delivery under its event's lease as of ``at``, then count and log it
        (unless the lease was lost meanwhile: then the log says so)."""
        event = item.event
        ack = Ack(event.id, outcome.lead_id, outcome.created, event.lease, at=at)
        missing = await self._d.store.ack_many([ack])
        self._acked(item, outcome, attempt, lost=event.id in missing)

    async def _send(self, item: Item) -> bool:
        """Send ``item`` unless it must go back; False when its outcome is still being written."""
        d = self._d
        if self._stale(item):
            return await self._remap_one(item)
        if self.paused():
            await d.release(item.event, at=self._pause_end(), reason=self._pause_reason())
            return True
        # A call starts only while it can end, answer read, with LEASE_MARGIN to spare before
        # the lease does: past then another worker may have claimed the event.
        # the latest start, in seconds after the claim
        budget = self._budget()
        if budget <= 0:
            return await self._lease_too_short(item)
        if d.clock.monotonic() - item.claimed_at > budget:
            return await self._lease_ending(item)
        probing = self.probing
        async with self._probe if probing else contextlib.nullcontext():
            if self.paused():
                await d.release(item.event, at=self._pause_end(), reason=self._pause_reason())
                return True
            # The wait for the rate limit counts against the lease too (other processes share
            # the limit, so it may be long): no room within the budget, no call.
            left = budget - (d.clock.monotonic() - item.claimed_at)
            task = asyncio.current_task()
            assert task is not None
            self._awaiting_slot.add(task)
            async with self.limiter.slot(within=left) as allowed:
                self._awaiting_slot.discard(task)
                # Looked at again once the slot is ours: the wait for it may have outlasted
                # the budget all the same (a process frozen meanwhile, a store that answered
                # late), and a call started past it may go out while another worker holds
                # the event, which it claimed once our lease had ended.
                waited = d.clock.monotonic() - item.claimed_at
                if not allowed or waited > budget:
                    return await self._lease_ending(item)
                if self._stale(item):  # a reload came while it waited for its slot
                    return await self._remap_one(item)
                self._learn(early=waited <= budget / 2)
                attempt = await d.client.capture(
                    self.target, query=item.request.query, body=item.request.body
                )
                # when the call ended, inside its slot: the slot ends later (as the block
                # ends), so each delivery's time stays inside the window its call counts in
                ended = d.clock.time()
                self.latency += LATENCY_WEIGHT * (attempt.seconds - self.latency)
                outcome = attempt.outcome
                if isinstance(outcome, Retry) and outcome.rate_limited:
                    await self.limiter.refused()  # nothing more to the account for a window
                if probing or not isinstance(outcome, Delivered):
                    # Probes, failures and pauses are written before the next send (they
                    # change what the lane does next). Deliveries are written behind the next
                    # sends, each as of its call's end (:meth:`_ack_later`): so the store's
                    # record of when leads went out stays next to the calls, also when the
                    # write comes later. (Written inside the slot before, a rate-limited
                    # target's sender waited for each write: a third fewer sends a second
                    # while a backlog drained at the limit.)
                    await self._record(item, attempt, ended)
                    return True
        self._count(attempt)
        self._ack_later(item, outcome, attempt, ended)
        return False

    async def _lease_too_short(self, item: Item) -> bool:
        """No call to this target fits in a lease: put ``item`` back, untried, with the lease
        to give as its last error, due again a lease from now (not claimed again at once)."""
        d = self._d
        reason = (
            f"the lease ({d.lease:g} s) is shorter than a call to target {self.target.name!r} "
            f"may last (twice its timeout: {call_bound(self.target):g} s) with "
            f"{LEASE_MARGIN:g} s to spare: give serve a --lease of at least "
            f"{lease_needed(self.target):g}s, or lower the target's timeout"
        )
        if not self._lease_told:
            self._lease_told = True
            _log.error("lease_too_short", reason=reason)
        await d.release(item.event, at=d.clock.time() + d.lease, reason=reason)
        return True

    async def _lease_ending(self, item: Item) -> bool:
        """Our lease on ``item`` is about to end; another worker may claim it. Put it back,
        due when the rate limit may have room for it again (:meth:`_room_again`).

        Due at once, it was claimed again at once, met the same full window, was refused at
        once and put back again: with a backlog over the limit (the one a store outage
        leaves, say) and a lease leaving a second to start a call in, thousands of claims,
        releases and log lines a second, each a store write.
        """
        self._learn(late=item)
        due_in = self._room_again()
        await self._d.release(item.event, at=self._d.clock.time() + due_in, reason=None)
        _log.info("event_lease_expiring", due_in=due_in)
        return True

    def _learn(self, *, early: bool = False, late: Item | None = None) -> None:
        """What a call's start says of the lane's capacity (additive increase, multiplicative
        decrease, as TCP learns a window).

        ``late``: an event that reached its sender too late, having waited in the lane (it
        reached the lane in the first half of its window) for a sender or the rate limit,
        which other processes may share. When it was claimed after the last cut, the capacity
        that claim was sized to was too much: halve it (never under 1). Events claimed before
        the cut were sized to the old capacity: their coming back too says nothing new. An
        event that reached the lane late already (claims, maps and routes slowed: a starved
        process, a slow store) says nothing of what the lane holds either. ``early``: a call
        started in the first half of its window; what the lane has learnt grows by one event
        for each such start of a full lane's worth of them, and is forgotten once it reaches
        what :attr:`capacity` reckons.
        """
        if late is not None:
            half = self._budget() / 2
            if late.claimed_at <= self._cut_at or late.queued_at - late.claimed_at > half:
                return
            self._cut_at = self._d.clock.monotonic()
            before = self.capacity
            self._learnt = max(1.0, before / 2)
            if int(self._learnt) < before:  # (a lane holding one already cuts nothing: no line)
                _log.info("lane_capacity_cut", capacity=int(self._learnt), was=before)
        elif early and self._learnt is not None:
            self._learnt += 1 / self._learnt
            if self._learnt >= self._reckoned():
                self._learnt = None

    def _room_again(self) -> float:
        """Seconds until the rate limit has room for a call it refused now: a window at most
        (a call still in flight is waited for, not refused), a second at least. Without a
        limit the event waited for a sender: a second."""
        limit = self.target.rate_limit
        return 1.0 if limit is None else max(1.0, limit.window)

    def _count(self, attempt: Attempt) -> None:
        """The send's metrics; a probe that got an answer other than a pause resumes the lane."""
        d = self._d
        outcome = attempt.outcome
        d.metrics.sends.labels(self.target.name, _LABELS[type(outcome)]).inc()
        if attempt.status is not None or isinstance(outcome, Retry):
            d.metrics.send_seconds.labels(self.target.name).observe(attempt.seconds)
        if not isinstance(outcome, Pause) and self.probing:
            self._resume()

    async def _record(self, item: Item, attempt: Attempt, ended: float) -> None:
        """Write ``attempt``'s outcome before the next send (``ended``: when its call ended)."""
        d = self._d
        event = item.event
        outcome = attempt.outcome
        self._count(attempt)
        if isinstance(outcome, Delivered):  # (a probe's)
            try:
                await self._ack_as_of(item, outcome, attempt, ended)
            except StoreUnavailable as exc:
                self._d.log_failure(
                    "ack_failed", exc, target=self.target.name, **event.log_fields()
                )
                self._ack_when_back(item, outcome, attempt, ended)
        elif isinstance(outcome, Retry) and d.draining:
            # Shutting down (the embedded sandbox may already be closed): not a real failure.
            await d.release(event, at=d.clock.time(), reason=outcome.reason)
        elif isinstance(outcome, Retry):
            # Time the target was paused, or the endpoint's lead reads were held (the API
            # throttling them, a proxy refusing them), was no time to try in: it does not use
            # up the event's give_up_after (a lead waiting out days of wrong keys, or hours
            # of Graph's throttling, is not given up at its first failure after).
            now = d.clock.time()
            spans = [*self.pause_spans(now), *d.read_hold_spans(event.endpoint, now)]
            await d.retry_or_die(
                event, self.policy, outcome.reason, held=spans, give_up=not outcome.rate_limited
            )
        elif isinstance(outcome, Dead):
            await d.kill(event, outcome.reason, fixable=True)
        else:
            await self._pause(item, outcome.reason)

    # --- pause ------------------------------------------------------------------------------

    async def _pause(self, item: Item, reason: str) -> None:
        d = self._d
        now = d.clock.time()
        if self._paused_since is None:
            self._paused_since = now
            self._paused_at = d.clock.monotonic()
        if not self.paused():
            ceiling = self.policy.ceiling(self.pause_level + 1)
            paused_for = ceiling * (0.5 + 0.5 * self._random())
            self._resume_at = d.clock.monotonic() + paused_for
            self.pause_level += 1
            self.probing = True
            self._pause_note = f"{PAUSE_HELD}{reason}"
            self._keep(self._paused_since, self._pause_end())  # (its end so far)
            self._show_paused(True)
            _log.error(
                "target_paused",
                reason=reason,
                paused_for=round(paused_for, 3),
                pauses=self.pause_level,
            )
        await d.release(item.event, at=self._pause_end(), reason=self._pause_reason())
        await self._release_queued(self._pause_end(), self._pause_reason())

    def _resume(self) -> None:
        """A probe got an answer other than a pause: the target takes calls again."""
        self.pause_told_ended(by="probe")
        self._end_pause()
        self.probing = False
        self.pause_level = 0
        self._resume_at = None
        self._show_paused(False)

    def _end_pause(self) -> None:
        """The run of pauses under way (if any) ended now: kept here and in the store."""
        if self._paused_since is not None:
            span = (self._paused_since, self._d.clock.time())
            self._pauses.append(span)
            self._keep(*span)
            self._paused_since = None

    def pause_told_ended(self, *, by: str) -> None:
        """Log ``target_resumed`` if this lane's target is paused (a run of pauses under
        way): ``by`` a probe that got an answer, or a ``reload`` that replaced the lane (the
        fix the pause's reason asks for). A warning (``seconds`` since the run's first pause,
        ``pauses`` in it), as the end of every run of failures is (``claim_recovered``,
        ``readiness_recovered``): an info line, a log filtered to warnings showed each
        ``target_paused`` error and never that it ended; after a reload, nothing said so. Only
        while this lane is the target's: a replaced lane's last sends no longer speak for it."""
        if self._paused_since is None or self._d.lanes.get(self.target.name) is not self:
            return
        _log.warning(
            "target_resumed",
            target=self.target.name,
            by=by,
            seconds=round(self._d.clock.monotonic() - self._paused_at, 3),
            pauses=self.pause_level,
        )

    async def _release_queued(self, at: float, reason: str | None) -> None:
        async with self._ready:
            items = [entry[2] for entry in self._heap]
            self._heap.clear()
            self._queued.clear()
        for queued in items:
            try:
                await self._d.release(queued.event, at=at, reason=reason)
            finally:
                self._held.discard(queued.event.id)

    # --- reload -----------------------------------------------------------------------------

    def _stale(self, item: Item) -> bool:
        """Whether ``item`` was mapped with a configuration a reload has replaced since."""
        return item.config is not None and item.config is not self._d.mapped_by

    async def _remap_one(self, item: Item) -> bool:
        """Put ``item`` back, due now and untried, to be claimed and mapped anew."""
        await self._d.release_soon(item.event, at_once=True)
        return True

    async def remap(self) -> int:
        """After a reload: put back the queued events mapped with the configuration it
        replaced (due now, untried), so that they are mapped with the new one; how many.

        The lane of a target the reload left as it was is kept (its pause, its learnt
        capacity), but what it held was mapped at its claim: sent as it was, a fixed mapping
        or a new ``skip_if`` missed the next lane's worth of leads (up to a lease of sends),
        against the reload's promise that every event sent after it is mapped anew. Sends in
        flight finish; one that waited for its rate-limit slot goes back once it has it.

        One at a time, each taken from the queue as it goes back: a stop that cancels the
        reload meanwhile leaves the rest queued, for :meth:`close` to put back.
        """
        count = 0
        while True:
            async with self._ready:
                entry = next((e for e in self._heap if self._stale(e[2])), None)
                if entry is None:
                    return count
                self._heap.remove(entry)
                heapq.heapify(self._heap)
                item = entry[2]
                self._queued.pop(item.event.id, None)
            try:
                await self._remap_one(item)
            finally:
                self._settled(item)
            count += 1

    # --- shutdown ---------------------------------------------------------------------------

    async def close(self, deadline: float) -> None:
        """Stop: release queued events and those whose senders wait for a rate-limit slot,
        let sends in flight finish until ``deadline``.

        ``deadline`` is a monotonic time; sends still running then are cancelled and
        their events released (at-least-once: they may have been sent).
        """
        self._closing = True
        now = self._d.clock.time()
        await self._release_queued(now, None)
        # A sender still waiting for its rate-limit slot has started no call: it gives the
        # wait up now, and its event goes back untried. Waited for, it made its call once
        # the slot came: a stop (SIGTERM) went on sending leads up to its timeout (10 s), one
        # more for each waiting sender, and took that long.
        unstarted = [self._current[t] for t in self._tasks if t in self._awaiting_slot]
        busy = [t for t in self._tasks if t in self._current and t not in self._awaiting_slot]
        for task in self._tasks:
            if task not in busy:
                task.cancel()
        remaining = max(0.0, deadline - self._d.clock.monotonic())
        if busy:
            await asyncio.wait(busy, timeout=remaining)
        interrupted = unstarted + [self._current[t] for t in busy if t in self._current]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Deliveries of finished sends are written whatever the deadline (they were sent).
        self._senders_done = True
        self._acks_ready.set()
        await asyncio.gather(self._acker, return_exceptions=True)
        for item in interrupted:
            with contextlib.suppress(Exception):
                await self._d.release(item.event, at=self._d.clock.time(), reason=None)
        self._held.clear()
        await self.limiter.close()  # the ends of its calls written, its spare slots given back
        # A pause under way ends with this process's part in it: kept as ending now, not when
        # it was due to (the next process, its keys fixed say, is not paused).
        self._end_pause()
