"""Prometheus metrics of the web side, on a registry per app (so tests can build many apps).

``create_app`` puts the registry at ``app.state.metrics``; other parts (the
dispatcher) register their own collectors on it and ``GET /metrics`` exports all.

* ``leadhub_deliveries_total{endpoint, outcome, reason}``: deliveries by outcome
  (``accepted``, ``duplicate``, ``rejected``, ``failed``); ``reason`` is empty unless
  rejected or failed (``unauthorized``, ``unknown_endpoint``, ``too_large``,
  ``unsupported_media_type``, ``bad_body``, ``split_found_nothing`` (422: the endpoint's
  ``split`` path finds no lead in the delivery), ``method_not_allowed``, ``disconnected``,
  ``store_unavailable``, ``bodies_over_limit`` (503: the bodies being received hold
  ``hub.web.ingest.BODIES_IN_FLIGHT``), ``internal_error``). Unknown endpoints count under
  ``endpoint=""`` so that random paths cannot grow the label set. ``leadhub serve``'s HTTP
  protocol also counts the requests it refuses itself (:meth:`WebMetrics.refused`), whatever
  their path, as ``rejected``: ``unreadable`` (400, bytes its parser cannot read),
  ``headers_too_large`` (431), ``read_timeout`` (408, a request cut off in its head),
  ``pipelined_too_far`` (429, past ``hub.commands.protocol.MAX_PIPELINED``); under
  ``endpoint=""`` unless the request's head was read whole and names an endpoint (one
  refused in its body, never started). A webhook cut off in its body is ``disconnected``.
* ``leadhub_split_kept_none_total{endpoint}``: deliveries to an endpoint with ``split``
  accepted with no event because a filter of the path kept none of the items it was given
  (``$.entry[*].changes[?(@.field=='leadgen')]`` on changes that are no leads, or a filter
  with a typo that drops every delivery: alert on it growing as fast as the endpoint's
  accepted deliveries). A delivery whose lists are empty is not counted. The series of an
  endpoint appears at its first such delivery.
* ``leadhub_ingest_seconds{endpoint}``: time from request to answer (the requests the
  protocol refuses are not observed).
* ``leadhub_events{state}``: stored events by state, read from the store at scrape time:
  every state but ``delivered`` at each scrape, through the state's index (at 1,000,000
  events, 11 ms on PostgreSQL where counting them all took 150-200 ms); ``delivered``, the
  state that grows with every lead, at every scrape too unless its last count took
  :data:`DEAR` or more: then again only once :data:`RECOUNT` times as long as that count took
  has passed (so at most a fraction of the store's time: at 1,000,000 events on PostgreSQL
  about once a minute), its gauge keeping the last count meanwhile. A count of them that did
  not answer (not within what was left of :data:`COUNTS_TIMEOUT`) says nothing of what one
  costs: it is tried again after :data:`RETRY` (or :data:`RECOUNT` times as long as it
  waited, when sooner), then after twice as long at each count in a row that does not answer
  either, up to that bound. (Timed as an answered count, one that ran out of a 3 s budget
  was tried again only 20 minutes later: after a store's pause of some seconds, the
  delivered gauge stayed 20 minutes old.) A scrape at which the
  store does not answer (down, or not within :data:`COUNTS_TIMEOUT`) exports no
  ``leadhub_events`` series at all rather than the last counts, which would read as today's
  (an alert on ``dead`` frozen, another instance's true count outvoted by ``max``); the
  delivered events are counted again at the first scrape it answers.
* ``leadhub_store_up``: 1 when the scrape read the event counts from the store and the store
  took a write (its ping, as ``/readyz`` asks it: run beside the counts, within the same
  :data:`COUNTS_TIMEOUT`), else 0: what to alert on. A store that reads but cannot write (a
  full disk, a stalled SQLite writer process, a PostgreSQL that takes no writes or whose
  ``events`` a lock holds against inserts: the ping takes the insert's lock) refuses every
  webhook (503); read alone, it showed 1 throughout. The counts are exported whenever
  they were read (then current), and missing, not zero, when they were not. A run of scrapes
  the store fails logs ``metrics_counts_failed`` / ``metrics_ping_failed`` (``error``,
  ``detail``) at its first, then at most once per :data:`LOG_EVERY` with ``unlogged``, and
  ``metrics_store_recovered`` (``failed``: the scrapes that failed, however many of each
  one's calls did; ``seconds``) at the first scrape it answers whole
  (:class:`hub.logs.Failures`, as ``/readyz``'s lines).
* ``leadhub_store_commits_waiting{cause}`` (``standby``, ``lock``; both series from 0): 1
  when the scrape's ping ran out of time (or a ``lock_timeout`` cancelled it) and the store's
  reading of what its commits wait for (PostgreSQL's ``commit_wait``: a synchronous standby
  that does not confirm them, a lock another session holds against inserts) found that
  cause, else 0: a ping that passes sets both to 0, as does one that fails otherwise (a
  stopped server: ``leadhub_store_up`` says it). Always 0 on SQLite. Beside
  ``leadhub_store_up`` 0, which stall it is.

* ``leadhub_metrics_refused_total{reason}`` (only when ``LEADHUB_METRICS_TOKEN`` is set, both
  series from 0): scrapes of ``/metrics`` refused (401) for want of its bearer token,
  ``no_token`` (no ``Authorization: Bearer``: a scanner, or a scraper not given the token) or
  ``wrong_token`` (a scraper with an old token, or someone guessing); see :class:`ScrapeGuard`.

No counter or histogram exports a ``*_created`` series (prometheus_client's creation
timestamps: one more line per counter and histogram child, that nothing graphs); they are
turned off for the process here, where the hub's metrics are set up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from hub.logs import Failures, Throttle
from hub.secrets import METRICS_TOKEN_VARIABLE, Secret
from hub.store.base import WAIT_CAUSES, CommitWait, EventStore
from hub.store.models import State
from hub.web.timeouts import failed_ping, within

_log = structlog.get_logger()

# A switch of the whole process (read at each export): it covers the collectors other parts
# (the dispatcher, the purge, reloads) put on the registry /metrics exports.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds the event counts may take at a scrape; then the scrape goes without them, so
#: that a hanging store cannot hold it past its timeout (Prometheus: 10 s).
COUNTS_TIMEOUT = 3.0
#: The delivered events are counted again once this many times as long as their last count
#: took has passed (a count of 0.15 s: a minute later), when that count took :data:`DEAR`
#: or more; a cheaper one (a store of up to some hundreds of thousands of events) is made at
#: every scrape.
RECOUNT = 400
DEAR = 0.05
#: Seconds after a count of the delivered events that did not answer before it is tried
#: again (twice as long after each further one in a row, up to :data:`RECOUNT` times as long
#: as it waited): a scrape every 15 s reads them again about a minute after a store's pause.
RETRY = 60.0
#: Seconds between two lines of one kind of failure in a run of failed scrapes (and within
#: which a new run after a ``metrics_store_recovered`` line logs nothing more: a flapping store).
LOG_EVERY = 60.0
#: Seconds between two ``metrics_refused`` lines of one reason (:class:`ScrapeGuard`).
REFUSAL_LOG_EVERY = 1.0
#: The reasons a scrape is refused for (``leadhub_metrics_refused_total``'s ``reason``).
REFUSALS = ("no_token", "wrong_token")
#: What is counted at every scrape.
EVERY_SCRAPE = tuple(state for state in State if state is not State.DELIVERED)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def app_registry(app: Any) -> CollectorRegistry:
    """The registry ``GET /metrics`` exports (``app.state.metrics``), for a part started
    with the app to register its collectors on; a registry of its own when the app has none
    (an app built without ``create_app``, in tests)."""
    registry = getattr(app.state, "metrics", None)
    return registry if isinstance(registry, CollectorRegistry) else CollectorRegistry()


class WebMetrics:
    """The web side's collectors, with label children cached for the hot path."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._monotonic = monotonic
        #: When the delivered events are counted again (monotonic).
        self._delivered_due = 0.0
        #: The wait after the next count of them that does not answer (:data:`RETRY`).
        self._retry = RETRY
        self.deliveries = Counter(
            "leadhub_deliveries",
            'Webhook deliveries received. endpoint: the endpoint\'s name ("" for an unknown one); '
            "outcome: accepted, duplicate, rejected, failed, or handshake (a subscription "
            "check answered); reason: why one was rejected or "
            "failed (unauthorized, too_large, bad_body, store_unavailable, ...), else empty.",
            ["endpoint", "outcome", "reason"],
            registry=self.registry,
        )
        self.split_kept_none = Counter(
            "leadhub_split_kept_none",
            "Deliveries accepted with no event because a filter of the endpoint's split path "
            "kept none of the items it was given (a filter with a typo drops every delivery "
            "so). endpoint: the endpoint's name.",
            ["endpoint"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "leadhub_ingest_seconds",
            "Time from a webhook request to its answer, in seconds. endpoint: the endpoint's "
            'name ("" for an unknown one).',
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Gauge(
            "leadhub_events",
            "Stored events, read from the store at scrape time (delivered: at its last count). "
            "state: queued, sending, retrying, delivered, dead, unmatched or skipped.",
            ["state"],
            registry=self.registry,
        )
        self.store_up = Gauge(
            "leadhub_store_up",
            "1 when this scrape read the event counts from the store and the store took a write "
            f"(as /readyz asks it), both within {COUNTS_TIMEOUT:g} s; 0 when it did not (down, "
            "or a full disk: webhooks get 503). leadhub_events is left out when the counts "
            "could not be read.",
            registry=self.registry,
        )
        self.commits_waiting = Gauge(
            "leadhub_store_commits_waiting",
            "1 when this scrape's ping of the store (a write, as /readyz asks it) ran out of "
            "time, or a lock_timeout cancelled it, and the store found its commits waiting for "
            "cause; else 0. cause: standby (a synchronous standby that does not confirm them) "
            "or lock (a lock another session holds). Always 0 on SQLite.",
            ["cause"],
            registry=self.registry,
        )
        self._waiting = {cause: self.commits_waiting.labels(cause) for cause in WAIT_CAUSES}
        for gauge in self._waiting.values():
            gauge.set(0)
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[str, Any] = {}
        #: The lines of a run of scrapes the store failed (a full disk for hours, scraped by
        #: two Prometheus servers every 15 s, logged two lines at each): its first failure of
        #: each kind, then one a minute, and ``metrics_store_recovered`` at its end.
        self._failures = Failures(
            "metrics_store_recovered",
            every=LOG_EVERY,
            relapse=LOG_EVERY,
            logger=lambda: _log,
            level="warning",
        )

    def commits_waited(self, failed: tuple[Exception, CommitWait | None] | None) -> None:
        """Set ``leadhub_store_commits_waiting`` from a scrape's ping's outcome
        (:func:`hub.web.timeouts.failed_ping`): 1 for the cause its reading found, 0 for
        the others; all 0 when the ping passed (nothing waits) or failed without a cause."""
        cause = failed[1] if failed is not None else None
        for name, gauge in self._waiting.items():
            gauge.set(1 if cause is not None and cause.cause == name else 0)

    def delivery(self, endpoint: str, outcome: str, reason: str, seconds: float) -> None:
        """Count one delivery and observe how long it took."""
        self._count_delivery(endpoint, outcome, reason)
        histogram = self._histograms.get(endpoint)
        if histogram is None:
            histogram = self._histograms[endpoint] = self.latency.labels(endpoint)
        histogram.observe(seconds)

    def kept_none(self, endpoint: str) -> None:
        """Count one delivery to ``endpoint`` that a filter of its split path kept no lead
        of (rare: no cached child)."""
        self.split_kept_none.labels(endpoint).inc()

    def refused(self, endpoint: str, reason: str) -> None:
        """Count one request the HTTP protocol refused before any handler saw it, as a
        ``rejected`` delivery for ``reason``: it has no time to observe."""
        self._count_delivery(endpoint, "rejected", reason)

    def _count_delivery(self, endpoint: str, outcome: str, reason: str) -> None:
        key = (endpoint, outcome, reason)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.deliveries.labels(*key)
        counter.inc()

    async def render(self, store: EventStore) -> bytes:
        """The Prometheus text exposition, with the event gauge refreshed from ``store``."""
        start = self._monotonic()
        scrape = _Scrape()
        # Beside the counts, in the same budget: a store that reads but takes no write is
        # down for every webhook all the same.
        writes = asyncio.ensure_future(self._writes(store, scrape))
        read = await self._count(store, EVERY_SCRAPE, COUNTS_TIMEOUT, scrape)
        counted = True  # (the delivered events: not counted at this scrape is no failure)
        if read:
            now = self._monotonic()
            left = COUNTS_TIMEOUT - (now - start)  # both counts share the one budget
            # Less than DEAR left: a count running out of it could not be told from an error
            # (tried again at once), and each would leave a read of every lead running.
            if now >= self._delivered_due and left >= DEAR:
                # One count at a time: a scrape while it runs (two Prometheus servers) shows
                # the last count, as between two counts, instead of starting another.
                self._delivered_due = math.inf
                counted = False
                try:
                    counted = await self._count(store, (State.DELIVERED,), left, scrape)
                finally:  # (also when the scrape is cancelled: not left never due)
                    took = self._monotonic() - now
                    self._delivered_due = now + self._delivered_wait(counted, took)
        else:
            # Not the last counts: shown while the store did not answer, they read as current.
            self.events.clear()
            if self._delivered_due != math.inf:  # (not while another scrape counts them)
                self._delivered_due = 0.0
                self._retry = RETRY
        wrote = await writes
        up = read and wrote
        self.store_up.set(1 if up else 0)
        if up and counted:
            self._failures.succeeded()
        return generate_latest(self.registry)

    async def _writes(self, store: EventStore, scrape: _Scrape) -> bool:
        """Whether ``store`` takes a write (its ping: ``/readyz``'s check) within
        :data:`COUNTS_TIMEOUT`."""
        failed = await failed_ping(store, COUNTS_TIMEOUT)  # (what /readyz says of it)
        self.commits_waited(failed)
        if failed is not None:  # a down store must not break the scrape
            exc, cause = failed
            self._failed(scrape, "metrics_ping_failed", exc, cause)
            return False
        return True

    def _failed(
        self, scrape: _Scrape, name: str, exc: Exception, cause: CommitWait | None = None
    ) -> None:
        """A store call of ``scrape`` failed: its line if due (with ``cause``, what the store
        told its ping waits for), the scrape counted once in ``metrics_store_recovered``'s
        ``failed`` however many of its calls fail (its counts, its ping, its count of the
        delivered events): a store down for 4 scrapes said ``failed: 8``, read as 8 scrapes."""
        count, scrape.counted = (0 if scrape.counted else 1), True
        detail = _shown(exc) if cause is None else f"{_shown(exc)}: {cause.text}"
        self._failures.failed(name, type(exc).__name__, count, detail=detail)

    def _delivered_wait(self, counted: bool, took: float) -> float:
        """Seconds until the delivered events are counted again, after a count of them that
        took ``took`` and answered (``counted``) or not."""
        if counted:
            self._retry = RETRY
            return RECOUNT * took if took >= DEAR else 0.0
        if took < DEAR:  # it failed at once (an error, not a wait): again at the next scrape
            return 0.0
        # What one costs is not known: soon, then less often while none answers.
        wait = min(RECOUNT * took, self._retry)
        self._retry = min(2 * self._retry, RECOUNT * COUNTS_TIMEOUT)
        return wait

    async def _count(
        self, store: EventStore, states: tuple[State, ...], timeout: float, scrape: _Scrape
    ) -> bool:
        """Set the gauge of ``states`` from the store; on failure (False), leave it as it
        was."""
        try:
            counts = await within(store.counts(states), timeout)
        except Exception as exc:  # a down store must not break the scrape
            self._failed(scrape, "metrics_counts_failed", exc)
            return False
        for state in states:
            self.events.labels(state.value).set(counts.get(state, 0))
        return True


class ScrapeGuard:
    """``GET /metrics``'s check of its bearer token (``LEADHUB_METRICS_TOKEN``, read at start).

    ``/metrics`` tells anyone who can reach the webhooks' port the endpoints' and targets'
    names, their traffic and the store's state. With a token set, a scrape must send
    ``Authorization: Bearer <token>`` (Prometheus: ``authorization: credentials:``, or
    ``bearer_token``), compared in constant time. A refused scrape is counted in
    ``leadhub_metrics_refused_total{reason}`` and logged as ``metrics_refused`` (``reason``,
    ``status``, ``detail``; never the token sent), at most one line a second per reason with
    ``unlogged`` (lines left out since), as the HTTP protocol logs its refusals: a scanner's
    flood costs a line a second.
    """

    def __init__(
        self,
        token: Secret,
        registry: CollectorRegistry,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self._monotonic = monotonic
        self.refused = Counter(
            "leadhub_metrics_refused",
            "Scrapes of /metrics refused (401) for want of its bearer token "
            f"({METRICS_TOKEN_VARIABLE}). reason: no_token (no Authorization: Bearer) or "
            "wrong_token (one that does not match).",
            ["reason"],
            registry=registry,
        )
        self._refused = {reason: self.refused.labels(reason) for reason in REFUSALS}
        self._lines = Throttle(REFUSAL_LOG_EVERY)

    def admits(self, authorization: str | None) -> bool:
        """Whether a scrape sending ``authorization`` (its ``Authorization`` header, or None)
        may read the metrics; when not, it is counted and logged."""
        if authorization is None:
            return self._refuse("no_token", "no Authorization header")
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return self._refuse("no_token", "the Authorization header holds no Bearer token")
        if not self.token.matches(value.strip()):
            return self._refuse("wrong_token", "the bearer token does not match")
        return True

    def _refuse(self, reason: str, detail: str) -> bool:
        self._refused[reason].inc()
        more = self._lines.extra(reason, self._monotonic())
        if more is not None:
            _log.info("metrics_refused", reason=reason, status=401, detail=detail, **more)
        return False


class _Scrape:
    """One scrape's store calls: whether one of its failures was counted yet."""

    __slots__ = ("counted",)

    def __init__(self) -> None:
        self.counted = False


def _shown(exc: Exception) -> str:
    """What a failed store call's line says of it: its message, cut short."""
    return str(exc)[:300]
