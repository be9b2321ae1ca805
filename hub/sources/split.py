"""``split:``: one event per lead for senders that post several leads in one delivery.

A bulk export, a Make or Pipedream scenario posting an array, a lead-ads platform batching
its entries (TikTok's ``entry`` list): the endpoint's ``split`` JSONPath finds the leads in
the parsed body, and each value found is one event, with that value as its document (the
mappings' paths start at the lead). The sender's own checks are unchanged:
:class:`SplitSource` wraps the endpoint's source, verifies with it and lets it split first
(Google's key is checked inside the body), then splits what it gives.

A delivery that is one lead where the endpoint expects a list of them (``split: $[*]`` set
for Zapier's "Wrap Request In Array", and a post without the wrapping) made the path's
wildcard open the lead itself: each of its values (an email, a name) was an event, and
each died, its document no object. When the path's last step is a wildcard (``[*]`` or
``.*``) and what it opened are objects, not lists, of which it found values that are no
objects, those objects are the leads: each is kept whole as one event (for ``$[*]``, the
delivery itself), and a ``split_found_no_leads`` line says so. A list is opened as
before, whatever its items; so is an object of leads (``{"a": {...}, "b": {...}}``).

The events are named as for any batch (``hub.sources.delivery_ids``): by the endpoint's
``dedupe`` path evaluated on each lead, else by the hash of the lead's canonical JSON (of the
body when the path finds one lead). More than :data:`MAX_LEADS` is a 400, and so is a body
the path cannot be evaluated on (its regular expression out of time).

A delivery where the path finds nothing is one of two things. An empty batch: the path's
containers are there and hold no lead (``{"data": {"leads": []}}`` for
``$.data.leads[*]``, ``{}`` for ``$.*``, no group for ``$.groups[*].leads[*]``, no item a
filter keeps); it stores no event and is answered ``{"status":"accepted","ids":[]}``. Or a
miss: the structure the path walks is not there (a typo in ``split``, a sender that changed
its envelope, ``"leads": null``, a lead posted alone to ``$.data.leads[*]``); answered 200,
every such delivery was dropped without a word the sender could see, so it is a 422 naming
the path (:func:`missed`), nothing stored: the sender shows the failure and retries, and
once the path is fixed (a reload) its retries are taken. Which one it is is decided only
when the path found nothing (:func:`empty_batch`), walking the path again step by step.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import structlog

from hub.config.models import JsonPath
from hub.exceptions import HubError
from hub.mapping.paths import PathError, compile_path, ran_dry_in_containers
from hub.sources.base import BodyError, Incoming, NoHandshake, Source, Split

_log = structlog.get_logger()

#: The most leads one delivery may hold: each is a row written before the answer, on the
#: event loop, so a body of a million tiny leads must not hold every other sender up.
MAX_LEADS = 1000


class SplitSource(NoHandshake):
    """``inner``'s checks, with each value ``path`` finds in a delivery as one event.

    ``inner`` has no handshake: the senders that have one (Facebook, LinkedIn) split their
    deliveries themselves, and ``split`` is refused for them.
    """

    batches = True

    def __init__(self, inner: Source, path: JsonPath, endpoint: str) -> None:
        self.inner = inner
        self.path = path
        self.endpoint = endpoint
        self.kind = inner.kind
        self.credential_headers = inner.credential_headers
        self.credential_fields = inner.credential_fields

    def verify(self, request: Incoming, now: float) -> None:
        self.inner.verify(request, now)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        splits: list[Split] = []
        for whole in self.inner.split(request, document):
            leads, opened = leads_at(self.path, whole.document)
            if not leads and not empty_batch(self.path, whole.document):
                raise BodyError(422, missed(self.path))
            if leads and opened is not None:
                _log.warning(
                    "split_found_no_leads",
                    endpoint=self.endpoint,
                    split=self.path.text,
                    leads_at=opened,
                    events=len(leads),
                )
            if len(leads) == 1 and leads[0] is whole.document:
                splits.append(whole)  # the delivery itself: its natural id stays
            else:
                splits.extend(Split(None, lead) for lead in leads)
        return splits


def leads_at(path: JsonPath, document: Any) -> tuple[list[Any], str | None]:
    """The leads ``path`` finds in a delivery's ``document`` (``leadhub try`` reads them so),
    and ``None``; or, when the path's last wildcard opened lead objects rather than a list
    of leads (see the module docstring), those objects and the path to them (``$`` for
    ``$[*]``: the delivery is one lead).

    Raises:
        BodyError: 400: more than :data:`MAX_LEADS`, or the path cannot be evaluated on it
            (its regular expression out of time).
    """
    found = _values(path, document)
    opened = _opened(path.text)
    if opened is not None and not all(isinstance(value, dict) for value in found):
        objects = _values(opened, document)
        if objects and all(isinstance(value, dict) for value in objects):
            return _at_most(objects, opened), opened.text
    return _at_most(found, path), None


def empty_batch(path: JsonPath, document: Any) -> bool:
    """Whether a delivery's ``document``, in which the split ``path`` found nothing, is an
    empty batch (its containers are there and hold no lead) rather than a miss (see the
    module docstring); a path walked by jsonpath-ng (a ``|`` union, say) cannot tell, and
    takes it as a miss.

    Raises:
        BodyError: 400: the path cannot be evaluated on it (as :func:`leads_at`).
    """
    with _evaluable(path):
        return ran_dry_in_containers(path, document)


def missed(path: JsonPath) -> str:
    """The reason of the 422 for a delivery where ``path`` finds no lead, nor an empty
    batch: what to fix, and that nothing was kept."""
    return (
        f"split path {path.text} finds no lead in this delivery, nor an empty list of them; "
        "nothing was stored: fix the endpoint's split or what is posted, then send it again"
    )


def _values(path: JsonPath, document: Any) -> list[Any]:
    """What ``path`` finds in ``document``; a 400 when it cannot be evaluated."""
    with _evaluable(path):
        return path.values(document)


@contextlib.contextmanager
def _evaluable(path: JsonPath) -> Iterator[None]:
    """Around an evaluation of ``path`` on a delivery: one it cannot be evaluated on (its
    regular expression out of time) is a 400."""
    try:
        yield
    except HubError as exc:
        msg = f"the leads cannot be found at {path.text}: {exc}"
        raise BodyError(400, msg) from None


def _at_most(leads: list[Any], path: JsonPath) -> list[Any]:
    """``leads``, found at ``path``, when they are at most :data:`MAX_LEADS`; else a 400."""
    if len(leads) > MAX_LEADS:
        msg = (
            f"the delivery holds more than {MAX_LEADS} leads at {path.text}; "
            f"send at most {MAX_LEADS} per delivery"
        )
        raise BodyError(400, msg)
    return leads


#: The steps that open a list of leads; on an object they open its values instead.
_WILDCARDS = ("[*]", ".*")


@functools.lru_cache(maxsize=256)
def _opened(text: str) -> JsonPath | None:
    """The path to what the wildcard ending the split path ``text`` opens (``$[*]``:
    ``$``, ``$.data.leads[*]``: ``$.data.leads``), or ``None`` when it ends otherwise."""
    for wildcard in _WILDCARDS:
        if text.endswith(wildcard):
            try:
                return compile_path(text.removesuffix(wildcard))
            except PathError:  # ``$..*``: no path before the wildcard
                return None
    return None
