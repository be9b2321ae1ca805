"""Prometheus metrics of the dispatcher, registered on the registry the web app exposes.

* ``leadhub_sends_total{target, outcome}``: Lead.Capture calls by outcome
  (``delivered``, ``retry``, ``dead``, ``pause``).
* ``leadhub_send_seconds{target}``: how long one Lead.Capture call took.
* ``leadhub_target_paused{target}``: 1 while a target is paused (bad keys, wrong host).
* ``leadhub_lane_capacity{target}``: events the target's lane may hold now (what the claims
  are sized to): as the lease, the call latency and the rate limit reckon it, or less once
  the lane has learnt to hold less (``lane_capacity_cut``). Read at each scrape.
* ``leadhub_graph_fetch_errors_total{reason}``: failed Facebook Graph lead reads, by
  reason (``token``, ``transient``, ``network``, ``server_error``, ``not_found``, ...).
* ``leadhub_linkedin_fetch_errors_total{reason}``: failed LinkedIn form response reads, by
  reason (``token``, ``version``, ``network``, ``server_error``, ``not_found``, ...).
* ``leadhub_hubspot_fetch_errors_total{reason}``: failed HubSpot CRM object reads, by reason.
* ``leadhub_claim_loop_restarts_total``: times the claim loop started again after a bug
  (each also logged as ``claim_loop_failed`` with its traceback).
* ``leadhub_dispatch_events_total{outcome}``: events the dispatcher finished with
  (``delivered``, ``dead``, ``retrying``, ``skipped``, ``unmatched``, ``released``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DispatchMetrics:
    """The dispatcher's collectors on ``registry`` (a fresh one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sends = Counter(
            "leadhub_sends",
            "Lead.Capture calls made. target: the target's name; outcome: delivered, retry "
            "(to be tried again), dead (refused for good) or pause (keys or url refused).",
            ["target", "outcome"],
            registry=self.registry,
        )
        self.send_seconds = Histogram(
            "leadhub_send_seconds",
            "Duration of one Lead.Capture call, in seconds. target: the target's name.",
            ["target"],
            buckets=SEND_BUCKETS,
            registry=self.registry,
        )
        self.paused = Gauge(
            "leadhub_target_paused",
            "1 while the target is paused (its keys or url are refused), else 0. target: the "
            "target's name.",
            ["target"],
            registry=self.registry,
        )
        self.capacity = Gauge(
            "leadhub_lane_capacity",
            "Events the target's lane may hold now (claims are sized to it): what its senders "
            "can start within a lease at its call latency and rate limit, or less once the lane "
            "has learnt to hold less (log line lane_capacity_cut). target: the target's name.",
            ["target"],
            registry=self.registry,
        )
        self.graph_errors = Counter(
            "leadhub_graph_fetch_errors",
            "Failed Facebook Graph lead reads. reason: the kind of failure (token, transient, "
            "network, server_error, not_found, rejected, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.linkedin_errors = Counter(
            "leadhub_linkedin_fetch_errors",
            "Failed LinkedIn form response reads. reason: the kind of failure (token, version, "
            "network, server_error, not_found, rejected, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.hubspot_errors = Counter(
            "leadhub_hubspot_fetch_errors",
            "Failed HubSpot CRM object reads. reason: the kind of failure (token, network, "
            "server_error, not_found, bad_answer, rejected, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.claim_restarts = Counter(
            "leadhub_claim_loop_restarts",
            "Times the claim loop started again after an unexpected error.",
            registry=self.registry,
        )
        self.events = Counter(
            "leadhub_dispatch_events",
            "Events the dispatcher finished a step with. outcome: delivered, retrying, dead, "
            "skipped, unmatched or released (put back unsent).",
            ["outcome"],
            registry=self.registry,
        )
