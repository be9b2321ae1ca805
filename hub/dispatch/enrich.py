"""Enrichment for the dispatcher: the lead behind a notification that carries only ids.

Facebook's ``leadgen`` change names a Graph lead, LinkedIn's lead notification a form
response, a HubSpot app's event a CRM object. Each is read once and stored with the event
(``set_enrichment``), so a retry, a replay or a restart never reads it again; a failed read
retries the event on its target's schedule, or kills it when the lead is gone.

The dispatcher reads in the background (:func:`read_first`, bounded per endpoint, see
``hub.dispatch.worker``) and maps the event once its lead is stored (:func:`enrich` then
reads nothing), so a slow API holds up no other event.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter

from hub.config.models import FacebookOptions, HubSpotOptions, LinkedInOptions, RetrySchedule
from hub.dispatch.fetch import (
    FetchDead,
    Fetched,
    FetchOutcome,
    FetchRetry,
    id_text,
    merge_missing,
    not_an_id,
)
from hub.dispatch.graph import merge_document
from hub.dispatch.retry import RetryPolicy
from hub.mapping.values import shown_text
from hub.sources.linkedin import CREATED, DELETED, lead_action
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


def needs_read(event: Event, options: FacebookOptions | LinkedInOptions | HubSpotOptions) -> bool:
    """Whether ``event``'s lead is still to be read from its source's API (none stored yet;
    a LinkedIn notice of a withdrawn lead has none to read)."""
    if event.enrichment is not None:
        return False
    if isinstance(options, LinkedInOptions):
        return lead_action(_notice(event)) == CREATED
    return True


async def enrich(
    d: Dispatcher, event: Event, options: FacebookOptions | LinkedInOptions | HubSpotOptions
) -> Any:
    """The document the event's mappings see, or None once the event has been retried or
    killed."""
    notice = _notice(event)
    if isinstance(options, LinkedInOptions) and (action := lead_action(notice)) != CREATED:
        if action != DELETED:  # not silently taken for a deletion: the line names it
            _log.warning(
                "linkedin_lead_action_unknown",
                lead_action=shown_text(action),
                response=str(notice.get("leadGenFormResponse") or ""),
            )
        return notice  # DELETED: there is no response to read; mappings skip it
    source = _source(d, notice, options)
    lead = await _stored_or_read(d, event, source)
    return None if lead is None else source.merge(lead, notice)


async def read_first(
    d: Dispatcher, event: Event, options: FacebookOptions | LinkedInOptions | HubSpotOptions
) -> Event | None:
    """Read the lead behind ``event`` from its source's API and store it: the event with its
    lead (then :func:`enrich` reads nothing), or None once it has been retried or killed."""
    lead = await _stored_or_read(d, event, _source(d, _notice(event), options))
    return None if lead is None else dataclasses.replace(event, enrichment=lead)


@dataclasses.dataclass(frozen=True, slots=True)
class _Source:
    """How one source kind's lead is read, named, counted and merged with its notice."""

    read: Callable[[], Awaitable[FetchOutcome]]
    what: str
    errors: Counter
    logged: dict[str, str]
    merge: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] = merge_missing


def _notice(event: Event) -> dict[str, Any]:
    return event.document if isinstance(event.document, dict) else {}


def _source(
    d: Dispatcher,
    notice: dict[str, Any],
    options: FacebookOptions | LinkedInOptions | HubSpotOptions,
) -> _Source:
    if isinstance(options, LinkedInOptions):
        urn = str(notice.get("leadGenFormResponse") or "")
        read = functools.partial(d.linkedin.fetch_response, options, urn)
        return _Source(read, "LinkedIn form response", d.metrics.linkedin_errors, {"response": urn})
    if isinstance(options, HubSpotOptions):
        read = functools.partial(d.hubspot.fetch_object, options, notice)
        logged = {"object_id": str(notice.get("objectId"))}
        return _Source(read, "HubSpot object", d.metrics.hubspot_errors, logged)
    raw = notice.get("leadgen_id")
    leadgen_id = id_text(raw)
    if leadgen_id is None:
        # An object, an array, a boolean...: Python's text of it ("{'a': 1}", "True") is no
        # lead id; read as one, it was retried for as long as give_up_after, or read a lead.
        read = functools.partial(_refused, not_an_id(raw, "a Facebook lead id"))
        leadgen_id = ""
    else:
        read = functools.partial(d.graph.fetch_lead, options, leadgen_id)
    logged = {"leadgen_id": leadgen_id}
    return _Source(read, "Facebook lead", d.metrics.graph_errors, logged, merge_document)


async def _refused(dead: FetchDead) -> FetchOutcome:
    """The read of a lead id no API could hold: dead, with no request."""
    return dead


async def _stored_or_read(d: Dispatcher, event: Event, source: _Source) -> dict[str, Any] | None:
    """The lead stored with ``event``, or read now and stored; None once the event has
    been retried or killed."""
    what, errors = source.what, source.errors
    lead = event.enrichment
    if lead is None:
        outcome = await source.read()
        if _answered(outcome):
            d.reads_answered(event.endpoint)  # (a lead, or one it cannot give: deleted)
        if not isinstance(outcome, Fetched):
            errors.labels(outcome.kind).inc()
            # (" fetch failed: " marks a failed read: store.resume_reads makes it due at a
            # start, or a reload that changes the endpoint. Not a throttled one: it waits for
            # the time the API gave, whatever changed here; a restart loop read it each time.)
            throttled = isinstance(outcome, FetchRetry) and outcome.throttled
            reason = f"{what} {'read throttled' if throttled else 'fetch failed'}: {outcome.reason}"
            if isinstance(outcome, FetchRetry):
                await _retry_read(d, event, outcome, reason)
            else:
                await d.kill(event, reason, fixable=outcome.fixable)
            return None
        lead = outcome.lead
        await d.store.set_enrichment(event.id, lead)
        _log.info("event_enriched", **source.logged)
    if not isinstance(lead, dict):
        await d.kill(event, f"stored {what} is not an object: {lead!r:.100}")
        return None
    return lead


#: Failed reads the API itself did not answer: a proxy's 407, a connection refused or
#: reset, no whole answer in time (``network``), a url the client cannot call (``config``).
_UNANSWERED = frozenset({"proxy", "network", "config"})


def _answered(outcome: FetchOutcome) -> bool:
    """Whether the API answered the read other than by holding the endpoint's reads (its
    throttling), so a hold is over: not a read refused with no request, nor one that got no
    answer from the API (:data:`_UNANSWERED`: a probe after a hold failing on the way was
    taken for the API's answer, and every waiting read went out at once; now the next probes)."""
    if isinstance(outcome, FetchRetry):
        return not (outcome.throttled or outcome.kind in _UNANSWERED)
    return not isinstance(outcome, FetchDead) or outcome.asked


async def _retry_read(d: Dispatcher, event: Event, outcome: FetchRetry, reason: str) -> None:
    """Retry ``event`` after its read failed for now (``reason``), or kill it once the read has
    been answered so the tries ``outcome`` allows in a row. A throttled read, or one a proxy
    refused (407), holds every read of the endpoint (this one too) for the time the API gave,
    not this one alone; time the reads were held does not use up give_up_after."""
    if outcome.tries is not None:
        answers = _answered_so(event.last_error, reason) + 1
        if answers >= outcome.tries:
            await d.kill(event, f"{reason} (answered so {answers} times)", fixable=True)
            return
        reason = f"{reason} (answered so {answers} of {outcome.tries} times)"
    proxy = outcome.kind == "proxy"
    until = None
    if outcome.throttled or proxy:
        until = d.hold_reads(event.endpoint, outcome.wait, reason, proxy=proxy)
    now = d.clock.time()
    held = d.read_hold_spans(event.endpoint, now)
    policy = endpoint_policy(d, event.endpoint)
    await d.retry_or_die(event, policy, reason, held=held, not_before=until)


def _answered_so(last_error: str | None, reason: str) -> int:
    """How many times in a row the tries before this one were answered ``reason`` (a read
    with a bound on its tries, :attr:`FetchRetry.tries`), as its last error counts them. The
    event's attempts count every try, whatever failed: a lead whose reads had failed for an
    expired token or a loaded Graph was dead at its first such answer, said to be the fifth."""
    stored = reason.replace("\x00", "\\x00")  # (as the store keeps it: worker.storable)
    if not last_error or not last_error.startswith(f"{stored} (answered so "):
        return 0
    match = _ANSWERED.fullmatch(last_error, len(stored))
    return int(match.group(1)) if match else 0


_ANSWERED = re.compile(r" \(answered so (\d{1,9}) of \d{1,9} times\)")
