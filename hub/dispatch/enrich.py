"""Enrichment for the dispatcher: the lead behind a notification that carries only ids.

Facebook's ``leadgen`` change names a Graph lead, LinkedIn's lead notification a form
response, a HubSpot app's event a CRM object. Each is read once and stored with the event
(``set_enrichment``), so a retry, a replay or a restart never reads it again; a failed read
retries the event on its target's schedule, or kills it when the lead is gone.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter

from hub.config.models import FacebookOptions, HubSpotOptions, LinkedInOptions, RetrySchedule
from hub.dispatch.fetch import Fetched, FetchOutcome, FetchRetry, merge_missing
from hub.dispatch.graph import merge_document
from hub.dispatch.retry import RetryPolicy
from hub.store.models import Event

if TYPE_CHECKING:
    from hub.dispatch.worker import Dispatcher

_log = structlog.get_logger()


def endpoint_policy(d: Dispatcher, endpoint: str) -> RetryPolicy:
    """The retry schedule of the target the endpoint's leads go to: lead reads retry on it,
    and so do events whose preparation failed unexpectedly."""
    mappings = d.config.mappings_for(endpoint)
    name = mappings[0].target if mappings else "default"
    target = d.config.targets.get(name) or d.config.targets.get("default")
    schedule = target.retry if target is not None else RetrySchedule()
    return RetryPolicy(schedule, random=d.random)


async def enrich(
    d: Dispatcher, event: Event, options: FacebookOptions | LinkedInOptions | HubSpotOptions
) -> Any:
    """The document the event's mappings see, or None once the event has been retried or
    killed."""
    notice = event.document if isinstance(event.document, dict) else {}
    merge: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] = merge_missing
    read: Callable[[], Awaitable[FetchOutcome]]
    if isinstance(options, LinkedInOptions):
        if notice.get("leadAction", "CREATED") != "CREATED":
            return notice  # DELETED: there is no response to read; mappings skip it
        urn = str(notice.get("leadGenFormResponse") or "")
        read = functools.partial(d.linkedin.fetch_response, options, urn)
        what, errors = "LinkedIn form response", d.metrics.linkedin_errors
        logged = {"response": urn}
    elif isinstance(options, HubSpotOptions):
        read = functools.partial(d.hubspot.fetch_object, options, notice)
        what, errors = "HubSpot object", d.metrics.hubspot_errors
        logged = {"object_id": str(notice.get("objectId"))}
    else:
        leadgen_id = str(notice.get("leadgen_id") or "")
        read = functools.partial(d.graph.fetch_lead, options, leadgen_id)
        what, errors, logged = "Facebook lead", d.metrics.graph_errors, {"leadgen_id": leadgen_id}
        merge = merge_document
    lead = await _stored_or_read(d, event, read, what=what, errors=errors, logged=logged)
    return None if lead is None else merge(lead, notice)


async def _stored_or_read(
    d: Dispatcher,
    event: Event,
    read: Callable[[], Awaitable[FetchOutcome]],
    *,
    what: str,
    errors: Counter,
    logged: dict[str, str],
) -> dict[str, Any] | None:
    """The lead stored with ``event``, or read now and stored; None once the event has
    been retried or killed."""
    lead = event.enrichment
    if lead is None:
        outcome = await read()
        if not isinstance(outcome, Fetched):
            errors.labels(outcome.kind).inc()
            reason = f"{what} fetch failed: {outcome.reason}"
            if isinstance(outcome, FetchRetry):
                await d.retry_or_die(event, endpoint_policy(d, event.endpoint), reason)
            else:
                await d.kill(event, reason)
            return None
        lead = outcome.lead
        await d.store.set_enrichment(event.id, lead)
        _log.info("event_enriched", **logged)
    if not isinstance(lead, dict):
        await d.kill(event, f"stored {what} is not an object: {lead!r:.100}")
        return None
    return lead
