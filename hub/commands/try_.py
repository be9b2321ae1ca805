"""``leadhub try``: map one document as an endpoint would, sending nothing.

``leadhub try ENDPOINT PAYLOAD.json [--config-dir DIR] [--json] [--content-type TYPE]``.

For an endpoint with ``split``, a whole delivery is tried lead by lead (each value the path
finds), and a payload where the path finds nothing is taken as one lead, with a note on
standard error that posted as it is it would be refused (422, nothing stored); so is one
where the path's wildcard opened a lead rather than a list of leads (``split: $[*]`` on a
lead posted unwrapped), as ingest keeps it, with a note on standard error. An empty batch
(the path's containers are there and hold no lead: ``{"leads": []}`` for ``$.leads[*]``)
has no lead to try: a note says the hub accepts it storing nothing, and nothing else is
printed (exit 0); when that is because a filter of the path kept none of the items it was
given, the note names the filter and how many it left out (a filter with a typo drops every
delivery so). A payload where some of the containers the path opened have no list of leads
(``{"id": 2}`` among the groups of ``$.groups[*].leads[*]``) while others have one is
tried on the leads found, with a note saying how many missed. Exit 0 only when every lead
would be sent, and ``--json`` prints one object per lead, one per line.

Runs the document (as the endpoint's mappings see it, after any enrichment such
as Facebook's Graph lookup) through matching and mapping: no network, no queue.
Prints the exact Lead.Capture request (URL without keys, query, JSON body) or why
it would be skipped, unmatched or fail. Exit 0 when it would be sent, 1 when not.
A thin notification (a Facebook leadgen one, a LinkedIn one of a lead created, a
HubSpot app's events) holds no lead to map: it is refused (exit 1) with how to read the
lead it names as the dispatcher does, the API's URL and the keys the hub adds to it.
``PAYLOAD`` may be ``-`` for standard input. It is read exactly as ingest reads a JSON
body (``hub.sources.bodies.parse_json``): integers beyond 64 bits become text, and what
ingest answers 400 (not JSON, NaN, 1e400, nested more than 200 levels deep) is refused
with the same reason. Secrets are not needed: an unset ``${VAR}`` stands in as
``unset-VAR``.

``--content-type TYPE`` reads ``PAYLOAD`` as the body a sender posts with that
Content-Type instead (a form-encoded Zapier or Elementor post, Unbounce's or Jotform's
multipart one), through the very parser ingest uses (``hub.sources.bodies.parse``): the
user sees the document the hub makes of it (form fields as a flat object, a JSON-holding
field such as ``data.json`` or ``rawRequest`` parsed) without guessing it; a JSON object or
array sent as a form (``curl -d``) is read as JSON, as ingest reads it, with a note on
standard error. The document is then split as a JSON one is; what ingest answers 400 or
415 is refused with its reason.

With ``--json`` it prints one JSON object:
``{"status":"send","mapping":..,"target":..,"query":{..},"body":[..],"warnings":[..]}`` or
``{"status":"skipped"|"unmatched"|"error","mapping":NAME|null,"reason":"..","warnings":[..]}``;
``warnings`` lists what the mapping left out of the body (a phone that is no number, a date
it cannot read), then any opt-out flag sent a value other than "0" or "1" (``DoNotEmail``
given a sender's ``true`` as it is), as the human form prints them, and is empty when there
is none. An ``error`` for a missing required value lists what was left out too (often its
cause: its reason ends with them, briefly); skipped and unmatched documents are not mapped,
so have none.
They also still go to standard error, as they did before the field existed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub.cli import json_text
from hub.config import ConfigError, load
from hub.config.issues import did_you_mean
from hub.config.models import (
    HUBSPOT_OBJECTS,
    Config,
    Endpoint,
    FacebookOptions,
    HubSpotOptions,
    LinkedInOptions,
)
from hub.mapping import CaptureRequest, MappingError, Result, map_document
from hub.mapping.values import present
from hub.sources import bodies
from hub.sources.base import BodyError
from hub.sources.split import find_leads

CAPTURE_PATH = "/v2/LeadManagement.svc/Lead.Capture"


class _Refused(Exception):
    """The document cannot be tried at all (bad config, unknown endpoint, bad JSON)."""


def _read_payload(path: str, content_type: str | None) -> Any:
    """The document in ``path`` as ingest would parse it from a body of ``content_type``
    (None: a JSON body, the document the mappings see written as JSON)."""
    if path == "-" and sys.stdin is None:  # (`leadhub try ENDPOINT - <&-`)
        raise _Refused("cannot read '-': standard input is closed")
    try:
        body = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        msg = f"cannot read {path!r}: {exc}"
        raise _Refused(msg) from exc
    try:
        if content_type is None:
            return bodies.parse_json(body)
        parsed = bodies.parse(content_type, body)
    except BodyError as exc:
        refused = f"{path!r} would be refused at ingest ({exc.status} {exc.reason})"
        if content_type is not None:
            raise _Refused(refused) from None
        msg = (
            f"{refused}; pass the document the mappings see, as JSON, or the body as the "
            "sender posts it with --content-type TYPE"
        )
        raise _Refused(msg) from None
    if parsed.form_as_json:
        print(
            "note: the body is JSON sent as a form (as curl -d sends it); ingest reads it as "
            "JSON, as here, and says so on its delivery_received line (form_body_read_as_json)",
            file=sys.stderr,
        )
    return parsed.document


def _results(args: argparse.Namespace) -> tuple[Config, list[tuple[Any, Result]]]:
    """The configuration, and each lead the payload holds with what its mapping makes of it."""
    try:
        config = load(args.config_dir, os.environ, stand_ins=True)
    except ConfigError as exc:
        msg = "the configuration has errors (run leadhub check):\n" + "\n".join(exc.issues)
        raise _Refused(msg) from exc
    if args.endpoint not in config.endpoints:
        known = ", ".join(sorted(config.endpoints)) or "none"
        maybe = did_you_mean(args.endpoint, config.endpoints)
        msg = f"unknown endpoint {args.endpoint!r}{maybe}; defined endpoints: {known}"
        raise _Refused(msg)
    document = _read_payload(args.payload, args.content_type)
    refused = _notification_refused(args.endpoint, config.endpoints[args.endpoint], document)
    if refused is not None:
        raise _Refused(refused)
    mappings = config.mappings_for(args.endpoint)
    return config, [(lead, map_document(mappings, lead)) for lead in _leads(config, args, document)]


def _word(text: str) -> str:
    """``text`` as one word of a POSIX shell, in single quotes (a ``'`` in it closed and
    escaped): the commands try prints hold ids from the given document, and a ``'`` in one
    ended the quotes, the rest of the id read by the shell it was pasted into."""
    return "'" + text.replace("'", "'\\''") + "'"


def _segment(ident: str) -> str:
    """A lead id as one path segment, escaped as the dispatcher's reads escape it."""
    return quote(ident, safe="")


@dataclasses.dataclass(frozen=True)
class _Notice:
    """A thin notification given to try (:func:`_notification_refused`)."""

    what: str  # "a LinkedIn lead notification"
    named: str  # what it names: "lead 12", "3 leads (...)", "" for none
    command: str  # how to read the (first) lead as the dispatcher does
    keys: list[str]  # the notification's keys the hub adds to the lead where it lacks them
    token: str  # the credential the command needs


def _notification_refused(endpoint: str, settings: Endpoint, document: Any) -> str | None:
    """Why ``document`` cannot be tried on ``endpoint`` when it is the thin notification of
    a lead read from an API (Facebook's, LinkedIn's, a HubSpot app's), and how to get what
    can be: the lead as the API returns it, read as the dispatcher reads it, with the
    notification's keys the hub adds to it. None for any other document. Tried as a lead, a
    notification found nothing, and try said only "required value missing", as if the
    mapping were wrong (for HubSpot's array of events, to give the endpoint a split it may
    not have)."""
    options = settings.options
    notice: _Notice | None = None
    if isinstance(options, FacebookOptions):
        notice = _facebook_notice(options, document)
    elif isinstance(options, LinkedInOptions):
        notice = _linkedin_notice(options, document)
    elif isinstance(options, HubSpotOptions):
        notice = _hubspot_notice(options, document)
    if notice is None:
        return None
    if not notice.named:
        return (
            f"this is {notice.what} (the webhook's body) naming no lead, so it holds no lead "
            "to try; try a lead as the API returns it"
        )
    return (
        f"this is {notice.what} (the webhook's body): it names {notice.named} but holds none "
        "of its values, which the hub reads from the API when it sends the lead; try reads "
        f"nothing. Try the lead as the API returns it: {notice.command} > lead.json "
        f"({notice.token}), with the notification's {', '.join(notice.keys)} added where it "
        f"lacks them (as the hub adds them; a match may need them), then leadhub try "
        f"{endpoint} lead.json"
    )


def _listed(ids: list[str], one: str, many: str) -> str:
    """``lead 12``, or ``3 leads (12, 13, 14)`` (at most three ids shown); "" for none."""
    ids = list(dict.fromkeys(ids))  # (one object named by several events: once)
    if not ids:
        return ""
    if len(ids) == 1:
        return f"{one} {ids[0]}"
    return f"{len(ids)} {many} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"


def _facebook_notice(options: FacebookOptions, document: Any) -> _Notice | None:
    """A Facebook ``leadgen`` notification: the webhook's body (its ``entry`` list), or one
    change's ``value`` (a ``leadgen_id`` without the Graph lead's ``id``)."""
    from hub.dispatch.graph import CHANGE_KEYS
    from hub.sources.base import BodyError, Incoming
    from hub.sources.facebook import FacebookSource

    if isinstance(document, dict) and isinstance(document.get("entry"), list):
        try:  # the leadgen changes' values, as ingest splits the body into events
            split = FacebookSource(options).split(Incoming("POST", {}, b"", b""), document)
        except BodyError:  # (none of its leadgen changes has a value)
            split = []
        values = [s.document for s in split if "leadgen_id" in s.document]
    elif isinstance(document, dict) and "leadgen_id" in document and "id" not in document:
        values = [document]
    else:
        return None
    ids = [str(value["leadgen_id"]) for value in values]
    lead = _segment(ids[0]) if ids else "LEADGEN_ID"
    fields = ",".join(options.fields)
    url = f"{options.graph_url}/{lead}?fields={fields}&access_token=PAGE_TOKEN"
    return _Notice(
        what="a Facebook leadgen notification",
        named=_listed(ids, "lead", "leads"),
        command=f"curl -s {_word(url)}",
        keys=[key for key in CHANGE_KEYS if values and key in values[0]],
        token="PAGE_TOKEN: a page access token with leads_retrieval",
    )


def _linkedin_notice(options: LinkedInOptions, document: Any) -> _Notice | None:
    """A LinkedIn lead notification of a lead created: a ``leadGenFormResponse`` URN, no
    ``formResponse``. (One of a lead deleted is what its mappings see: there is no response
    to read, and a ``skip_if`` on its ``leadAction`` is tried on it.)"""
    from hub.dispatch.linkedin import response_id
    from hub.sources.linkedin import CREATED, lead_action

    if not isinstance(document, dict) or "formResponse" in document:
        return None
    urn = document.get("leadGenFormResponse")
    if not isinstance(urn, str) or lead_action(document) != CREATED:
        return None
    url = f"{options.api_url}/leadFormResponses/{_segment(response_id(urn))}"
    return _Notice(
        what="a LinkedIn lead notification",
        named=f"form response {urn}",
        command=(
            f"curl -s {_word(url)} -H "
            f"'Authorization: Bearer ACCESS_TOKEN' -H 'LinkedIn-Version: "
            f"{options.api_version}' -H 'X-Restli-Protocol-Version: 2.0.0'"
        ),
        keys=list(document),
        token="ACCESS_TOKEN: the endpoint's access_token",
    )


def _hubspot_notice(options: HubSpotOptions, document: Any) -> _Notice | None:
    """A HubSpot app's delivery: an array of events (or one event), each naming a CRM
    object by ``subscriptionType`` and ``objectId``, none holding its ``properties``."""
    events = document if isinstance(document, list) else [document]
    named = [
        event
        for event in events
        if isinstance(event, dict) and "subscriptionType" in event and "objectId" in event
    ]
    if not named or any(isinstance(event, dict) and "properties" in event for event in events):
        return None
    kind = str(named[0]["subscriptionType"]).partition(".")[0]
    ids = [str(event["objectId"]) for event in named]
    path = HUBSPOT_OBJECTS.get(kind, "contacts")
    properties = ",".join(options.properties)
    url = f"{options.api_url}/crm/v3/objects/{path}/{_segment(ids[0])}?properties={properties}"
    return _Notice(
        what="a HubSpot webhook delivery",
        named=_listed(ids, f"{kind} object", "objects"),
        command=(f"curl -s {_word(url)} -H 'Authorization: Bearer ACCESS_TOKEN'"),
        keys=list(named[0]),
        token="ACCESS_TOKEN: the endpoint's access_token",
    )


def _leads(config: Config, args: argparse.Namespace, document: Any) -> list[Any]:
    """The documents the mappings see: each lead the endpoint's ``split`` path finds in a
    whole delivery (none in an empty batch), else (no ``split``, or a payload that is one
    lead already) the payload."""
    split = config.endpoints[args.endpoint].split
    if split is None:
        return [document]
    try:
        leads = find_leads(split, document)
    except BodyError as exc:
        raise _Refused(f"ingest would refuse it ({exc.status} {exc.reason})") from None
    found, opened = leads.leads, leads.opened
    if leads.kept_none is not None:
        print(_kept_none_note(split.text, *leads.kept_none), file=sys.stderr)
        return []
    if leads.empty:
        print(_empty_batch_note(split.text), file=sys.stderr)
        return []
    if not found:
        print(_no_leads_note(split.text), file=sys.stderr)
        return [document]
    if leads.missed:
        print(_partial_miss_note(split.text, leads.missed, len(found)), file=sys.stderr)
    if opened is not None:
        what = "the payload" if opened == "$" else f"each object at {opened}"
        print(
            f"note: split {split.text} found no list of leads: its wildcard opened the values "
            f"of a lead; {what} is tried as one lead, as ingest keeps it (one event)",
            file=sys.stderr,
        )
    return found


def _no_leads_note(split: str) -> str:
    """Said when the ``split`` path finds nothing in the payload, nor an empty batch, which
    is then tried as one lead: posted to the hub, such a document is refused (422) and
    stores nothing, so a delivery the path misses (a typo in ``split``, a sender that
    changed its envelope) must not look like a lead that merely fails (or passes) its
    mapping."""
    return (
        f"note: split {split} finds no lead in this document, nor an empty list of them, so "
        "it is tried as one lead; posted to the hub as it is, it would be refused (422) and "
        "nothing stored: if it is a whole delivery, fix the endpoint's split path"
    )


def _empty_batch_note(split: str) -> str:
    """Said when the payload is an empty batch (the ``split`` path's containers are there
    and hold no lead): the hub accepts it storing nothing, and there is nothing to try."""
    return (
        f"note: split {split} finds an empty batch in this document (where its leads would "
        'be, there are none): posted to the hub, it would be accepted with no event ({"status"'
        ':"accepted","ids":[]}); there is no lead to try'
    )


def _kept_none_note(split: str, where: str, left_out: int) -> str:
    """Said when the payload is an empty batch because a filter of the ``split`` path kept
    none of the items it was given: accepted with no event, as a page posting changes that
    are no leads is, but a filter with a typo drops every delivery so; the note names it."""
    items = "item" if left_out == 1 else "items"
    return (
        f"note: split {split}: its filter {where} left out {left_out} {items} and kept none: "
        'posted to the hub, it would be accepted with no event ({"status":"accepted",'
        '"ids":[]}), its delivery_received line saying split_kept_none, and counted in '
        "leadhub_split_kept_none_total; there is no lead to try: if this document holds "
        "leads, fix the filter"
    )


def _partial_miss_note(split: str, missed: int, found: int) -> str:
    """Said when some of the containers the ``split`` path opened have no leads list where
    it expects one (a name not there, or null), or a null stands where a lead should be,
    while others gave leads: the hub stores the leads found and warns."""
    places = "place" if missed == 1 else "places"
    leads = "lead" if found == 1 else "leads"
    return (
        f"note: split {split} found no lead in {missed} {places} where it expected a list of "
        f"leads or a lead (a name not there, or null); the {found} {leads} found in the others "
        "are tried: posted to the hub, they would be stored, and its delivery_received line "
        f"would be a warning (split_partial_miss={missed})"
    )


def _warnings(result: Result) -> tuple[str, ...]:
    """What the mapping left out of ``result``'s lead: a request to send, or a failure that
    got as far as the fields (a required value missing), has them; other outcomes none."""
    return result.warnings if isinstance(result, CaptureRequest | MappingError) else ()


def as_json(result: Result) -> dict[str, Any]:
    """The ``--json`` object for ``result``: every object has ``warnings`` (a list, empty
    when none), so that a script reading the JSON sees what the human form would warn about
    (a failure's reason names them too, briefly)."""
    if isinstance(result, CaptureRequest):
        return {
            "status": "send",
            "mapping": result.mapping,
            "target": result.target,
            "query": dict(result.query),
            "body": list(result.body),
            "warnings": list(result.warnings),
        }
    return {
        "status": result.status,
        "mapping": result.mapping,
        "reason": result.reason,
        "warnings": list(_warnings(result)),
    }


def _refused_json(exc: _Refused) -> dict[str, Any]:
    """The ``--json`` object for a document that cannot be tried at all."""
    return {"status": "error", "mapping": None, "reason": str(exc), "warnings": []}


def _print_human(config: Config, lead: Any, result: Result) -> None:
    if not isinstance(result, CaptureRequest):
        mapping = f" (mapping {result.mapping})" if result.mapping else ""
        print(f"{result.status}{mapping}: {result.reason}")
        return
    target = config.targets[result.target]
    base = "(embedded sandbox)" if target.sandbox else target.url
    print(f"mapping: {result.mapping} -> target: {result.target}")
    print(f"POST {base}{CAPTURE_PATH}")
    query = "&".join(f"{k}={v}" for k, v in result.query.items())
    # The keys go in headers, never the query (hub.dispatch.leadsquared): "(none besides
    # the keys)" said they were in the query, as LeadSquared's examples put them.
    print(f"query: {query or '(none)'}")
    print("headers: x-LSQ-AccessKey and x-LSQ-SecretKey (the target's keys, not shown)")
    print("body:")
    print(json_text(json.dumps(result.body, indent=2, ensure_ascii=False)))
    for warning in result.warnings:
        print(f"warning: {warning}")
    unfound = _found_nothing(config, lead, result)
    if unfound:
        print(
            "note: not in the body, as their paths found nothing (or only null or blank "
            f"values) in this document: {'; '.join(unfound)}; if the document holds a value "
            "for one, its path is wrong"
        )


def _found_nothing(config: Config, lead: Any, result: CaptureRequest) -> list[str]:
    """The fields of ``result``'s mapping left out of its body because none of their paths
    found a value in ``lead`` (only null or blanks count as none), each with its paths
    (``Mobile ($.answers.phone)``): a typo in a path left its attribute out with no word,
    where it is the mistake a user most needs ``try`` to show. A field whose transforms
    left its value out (a single word's ``rest_words``, a map to nothing, a phone that is
    no number, which warns) found one, and is not named."""
    mapping = config.mappings.get(result.mapping)
    if mapping is None:
        return []
    sent = {item["Attribute"] for item in result.body}
    warned = {warning.split(": ", 1)[0] for warning in result.warnings}
    return [
        f"{spec.attribute} ({' or '.join(path.text for path in spec.paths)})"
        for spec in mapping.fields
        if spec.path is not None
        and spec.attribute not in sent | warned
        and not any(present(path.values(lead)) for path in spec.paths)
    ]


def run(args: argparse.Namespace) -> int:
    """Try a payload on ``args.endpoint``; 0 when every lead in it would be sent, 1 when not."""
    try:
        config, results = _results(args)
    except _Refused as exc:
        if args.json:
            print(json.dumps(_refused_json(exc)))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    for number, (lead, result) in enumerate(results, start=1):
        if args.json:  # one object per lead, one per line
            print(json_text(json.dumps(as_json(result), ensure_ascii=False)))
            for warning in _warnings(result):
                print(f"warning: {warning}", file=sys.stderr)
            continue
        if len(results) > 1:
            if number > 1:
                print()
            print(f"lead {number} of {len(results)}:")
        _print_human(config, lead, result)
    return 0 if all(isinstance(r, CaptureRequest) for _, r in results) else 1
