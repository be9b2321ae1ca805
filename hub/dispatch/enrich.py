"""Facebook enrichment for the dispatcher: the Graph lead behind a notification, fetched once.

The lead is stored with the event (``set_enrichment``), so a retry, a replay or a restart
never reads Graph again; a failed read retries the event on its target's schedule, or kills
it when the lead is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from hub.config.models import FacebookOptions, RetrySchedule
from hub.dispatch.graph import Fetched, FetchRetry, merge_document
from hub.dispatch.retry import RetryPolicy
from hub.store.models import Event

if TYPE_CHECKING:
    from hub.dispatch.worker import Dispatcher

_log = structlog.get_logger()


def graph_policy(d: Dispatcher, endpoint: str) -> RetryPolicy:
    """Graph reads retry on the schedule of the target the endpoint's leads go to."""
    mappings = d.config.mappings_for(endpoint)
    name = mappings[0].target if mappings else "default"
    target = d.config.targets.get(name) or d.config.targets.get("default")
    schedule = target.retry if target is not None else RetrySchedule()
    return RetryPolicy(schedule, random=d.random)


async def enrich(d: Dispatcher, event: Event, options: FacebookOptions) -> Any:
    """The merged Facebook document, or None once the event has been retried or killed."""
    change = event.document if isinstance(event.document, dict) else {}
    lead = event.enrichment
    if lead is None:
        leadgen_id = str(change.get("leadgen_id") or "")
        outcome = await d.graph.fetch_lead(options, leadgen_id)
        if isinstance(outcome, Fetched):
            lead = outcome.lead
            await d.store.set_enrichment(event.id, lead)
            _log.info("event_enriched", leadgen_id=leadgen_id)
        else:
            d.metrics.graph_errors.labels(outcome.kind).inc()
            reason = f"Facebook lead fetch failed: {outcome.reason}"
            if isinstance(outcome, FetchRetry):
                await d.retry_or_die(event, graph_policy(d, event.endpoint), reason)
            else:
                await d.kill(event, reason)
            return None
    if not isinstance(lead, dict):
        await d.kill(event, f"stored Facebook lead is not an object: {lead!r:.100}")
        return None
    return merge_document(lead, change)
