"""What the store keeps: deliveries as received, and one event per lead in them.

Ingest builds an :class:`IncomingDelivery` (the HTTP request as received plus the
events split out of it) and hands it to the store. The dispatcher works on
:class:`Event` rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """Where an event is in its life.

    ``queued`` → ``sending`` → ``delivered`` | ``retrying`` → … | ``dead``;
    plus ``unmatched`` and ``skipped``, which are final until replayed (as ``dead`` and
    ``delivered`` are: see :data:`REPLAYABLE`).
    (``duplicate`` is an ingest outcome: a repeated delivery stores nothing.)
    """

    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"
    UNMATCHED = "unmatched"
    SKIPPED = "skipped"

    @property
    def pending(self) -> bool:
        """Whether the dispatcher still has work to do on an event in this state."""
        return self in (State.QUEUED, State.SENDING, State.RETRYING)


#: States ``leadhub replay`` takes events out of.
REPLAYABLE = (State.DEAD, State.UNMATCHED, State.SKIPPED, State.DELIVERED, State.RETRYING)
#: What a replay takes unless told otherwise: events that did not reach LeadSquared.
#: Delivered events go only when named (``--status delivered``): replaying one sends its
#: lead again, an update of the lead LeadSquared already has. Retrying ones too
#: (``--status retrying``): they are in the queue already, and a replay makes them due now,
#: their schedule started over (after an outage is over, say, rather than wait out backoffs
#: of up to the target's ``max_interval``).
REPLAYED_BY_DEFAULT = (State.DEAD, State.UNMATCHED, State.SKIPPED)
#: States ``leadhub purge`` may delete events in: every final one, never a pending one.
PURGEABLE = (State.DELIVERED, State.SKIPPED, State.DEAD, State.UNMATCHED)
#: What a purge deletes unless told otherwise: events whose work is done. Dead and
#: unmatched events wait for a fix and a replay, so they go only when named.
PURGED_BY_DEFAULT = (State.DELIVERED, State.SKIPPED)
#: How the last error of an event a paused target holds back begins (the pause's reason
#: follows): :meth:`hub.store.base.EventStore.resume_held` finds such events by it, to send
#: them at once when the target is usable again (a reload or a restart with its keys fixed)
#: rather than when the pause would have ended.
PAUSE_HELD = "target paused: "


@dataclass(frozen=True, slots=True)
class EventIn:
    """One lead inside a delivery, as ingest split it out."""

    #: The delivery id, unique per endpoint: the dedupe key.
    delivery_id: str
    #: The parsed document the mappings will see (before any enrichment).
    document: Any
    #: True when ``document`` is exactly ``orjson.loads(body)`` of its delivery (ingest
    #: knows this from parsing): the store then keeps the body only, without checking.
    document_is_body: bool = False


@dataclass(frozen=True, slots=True)
class SkimId:
    """One lead whose document is the JSON body itself, its delivery id read at ``key``.

    The store checks the body and reads the id (``hub.sources.skimmed_id``) where it writes:
    for the writer process, off the event loop. ``key`` None: the id is the body's hash.
    """

    key: str | None


@dataclass(frozen=True, slots=True)
class IncomingDelivery:
    """One HTTP request as received, verified and parsed, ready to be stored."""

    endpoint: str
    received_at: float  # unix seconds
    body: bytes  # the raw body, byte for byte
    content_type: str
    #: Headers worth keeping: never one whose name says it may hold a credential, and no
    #: credential of a URL in one (``hub.web.ingest.HookRoute.keeps``).
    headers: Mapping[str, str]
    events: tuple[EventIn, ...]
    #: Instead of ``events`` (then empty): one event read from the body by the store. If the
    #: body needs the full parser, ``enqueue`` raises ``BodyNotSkimmed`` and stores nothing.
    skim: SkimId | None = None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What became of one :class:`EventIn`: a new event id, or a duplicate of an old one."""

    id: int
    duplicate: bool
    #: The event's delivery id (for a ``skim`` delivery, the one the store read).
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event, as the dispatcher and ``leadhub events`` see it."""

    id: int
    endpoint: str
    delivery_id: str
    received_at: float
    body: bytes
    content_type: str
    headers: Mapping[str, str]
    document: Any
    state: State
    attempts: int
    next_attempt_at: float
    last_error: str | None = None
    #: What enrichment fetched (Facebook's Graph lead), kept so a replay does not fetch again.
    enrichment: Any = None
    #: The target and mapping that took the event, once matched.
    target: str | None = None
    mapping: str | None = None
    #: Identity keys of the mapped lead (normalised email, phone digits), for ordering.
    lead_keys: tuple[str, ...] = ()
    #: Set once delivered: the lead's id (``RelatedId``) and whether it was created.
    lead_id: str | None = None
    lead_created: bool | None = None
    updated_at: float = 0.0
    #: When ``leadhub replay`` last put the event back in the queue; None if never.
    requeued_at: float | None = None

    @property
    def queued_since(self) -> float:
        """When the event joined the queue: received, or replayed since. Its target's
        ``give_up_after`` counts from here, so a replayed event gets a whole new schedule."""
        return self.received_at if self.requeued_at is None else self.requeued_at

    def log_fields(self) -> dict[str, Any]:
        """The ids every log line about the event carries: its event id, delivery id and
        endpoint (bound for a step, or given to a line logged outside one)."""
        return {"event_id": self.id, "delivery_id": self.delivery_id, "endpoint": self.endpoint}

    @property
    def lease(self) -> float | None:
        """The lease this event is claimed under (the end of it, while ``sending``): what
        its outcome is written under, so a worker whose lease ran out writes nothing. As a
        claim hands it out, after a step of the store's clock was applied it is the end
        plus the store's clock shift (``hub.store.base.with_clock_shift``)."""
        return self.next_attempt_at if self.state is State.SENDING else None


@dataclass(frozen=True, slots=True)
class Listed:
    """An event as ``leadhub events`` shows it (:meth:`EventStore.list_page`): the fields it
    prints, without the raw body, headers and lead keys that it never shows.

    ``document`` and ``enrichment`` are the event's document and what enrichment fetched
    (Facebook's Graph lead, say) when the page was asked for with ``documents``
    (``--json``), else None.
    """

    id: int
    endpoint: str
    delivery_id: str
    received_at: float
    state: State
    attempts: int
    next_attempt_at: float
    target: str | None
    mapping: str | None
    lead_id: str | None
    lead_created: bool | None
    last_error: str | None
    updated_at: float
    #: When ``leadhub replay`` last put the event back in the queue; None if never.
    requeued_at: float | None = None
    document: Any = None
    enrichment: Any = None

    @classmethod
    def of(cls, event: Event, *, documents: bool = True) -> Listed:
        """What ``leadhub events`` shows of ``event`` (its document and enrichment when
        ``documents``)."""
        large = ("document", "enrichment")
        shown = {f.name: getattr(event, f.name) for f in fields(cls) if f.name not in large}
        return cls(
            **shown,
            document=event.document if documents else None,
            enrichment=event.enrichment if documents else None,
        )


@dataclass(frozen=True, slots=True)
class Route:
    """What :meth:`EventStore.set_routes` records for one event (as ``set_route`` does)."""

    event_id: int
    target: str
    mapping: str
    lead_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """One delivered event for :meth:`EventStore.ack_many` (as ``ack`` takes it)."""

    event_id: int
    lead_id: str | None
    created: bool | None
    #: The lease it was claimed under: written only while still under it (None: always).
    lease: float | None = None
    #: When it was delivered, the call's end (unix time; None: when written). A delivery
    #: written behind later sends keeps its call's time, not its write's.
    at: float | None = None


@dataclass(frozen=True, slots=True)
class SlotAnswer:
    """What :meth:`EventStore.take_slots` answers: slots, or how long to wait for one."""

    #: The slots taken (give each to ``end_slots`` when its call ends, or unused to
    #: ``give_back_slots``); empty: no room now.
    slots: tuple[int, ...]
    #: With no room: seconds until the call that frees the next room stops counting.
    wait: float = 0.0
    #: With no room: whether that call is still in flight. Its end is then only a bound
    #: (the call may end sooner): ask again before ``wait`` is over.
    in_flight: bool = False


@dataclass(frozen=True, slots=True)
class Purged:
    """What :meth:`EventStore.purge` deleted (or, in a dry run, would delete)."""

    #: Events deleted, with their lead keys.
    events: int
    #: Delivery rows (raw bodies) deleted because no event referred to them any more;
    #: always 0 in a dry run.
    deliveries: int
