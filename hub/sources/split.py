"""``split:``: one event per lead for senders that post several leads in one delivery.

A bulk export, a Make or Pipedream scenario posting an array, a lead-ads platform batching
its entries (TikTok's ``entry`` list): the endpoint's ``split`` JSONPath finds the leads in
the parsed body, and each value found is one event, with that value as its document (the
mappings' paths start at the lead). The sender's own checks are unchanged:
:class:`SplitSource` wraps the endpoint's source, verifies with it and lets it split first
(Google's key is checked inside the body), then splits what it gives.

The events are named as for any batch (``hub.sources.delivery_ids``): by the endpoint's
``dedupe`` path evaluated on each lead, else by the hash of the lead's canonical JSON (of the
body when the path finds one lead). A delivery where the path finds nothing stores no event
and is answered ``{"status":"accepted","ids":[]}``; more than :data:`MAX_LEADS` is a 400, and
so is a body the path cannot be evaluated on (its regular expression out of time).
"""

from __future__ import annotations

from typing import Any

from hub.config.models import JsonPath
from hub.exceptions import HubError
from hub.sources.base import BodyError, Incoming, NoHandshake, Source, Split

#: The most leads one delivery may hold: each is a row written before the answer, on the
#: event loop, so a body of a million tiny leads must not hold every other sender up.
MAX_LEADS = 1000


class SplitSource(NoHandshake):
    """``inner``'s checks, with each value ``path`` finds in a delivery as one event.

    ``inner`` has no handshake: the senders that have one (Facebook, LinkedIn) split their
    deliveries themselves, and ``split`` is refused for them.
    """

    batches = True

    def __init__(self, inner: Source, path: JsonPath) -> None:
        self.inner = inner
        self.path = path
        self.kind = inner.kind
        self.credential_headers = inner.credential_headers
        self.credential_fields = inner.credential_fields

    def verify(self, request: Incoming, now: float) -> None:
        self.inner.verify(request, now)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        return [
            Split(None, lead)
            for whole in self.inner.split(request, document)
            for lead in leads_at(self.path, whole.document)
        ]


def leads_at(path: JsonPath, document: Any) -> list[Any]:
    """The leads ``path`` finds in a delivery's ``document`` (``leadhub try`` reads them so).

    Raises:
        BodyError: 400: more than :data:`MAX_LEADS`, or the path cannot be evaluated on it
            (its regular expression out of time).
    """
    try:
        found = path.values(document)
    except HubError as exc:
        msg = f"the leads cannot be found at {path.text}: {exc}"
        raise BodyError(400, msg) from None
    if len(found) > MAX_LEADS:
        msg = (
            f"the delivery holds more than {MAX_LEADS} leads at {path.text}; "
            f"send at most {MAX_LEADS} per delivery"
        )
        raise BodyError(400, msg)
    return found
