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
``dedupe`` path evaluated on each lead, else by the hash of the lead's canonical JSON, also
when the path finds one lead (named by the body, a lead posted alone was not the duplicate
of the same lead in a batch, nor of its own resend in an envelope with a new send time);
a delivery kept whole as its one lead (above) is named as an unsplit one. More than
:data:`MAX_LEADS` is a 400, and so is a body the path cannot be evaluated on (its regular
expression out of time).

A delivery where the path finds nothing is one of two things. An empty batch: the path's
containers are there and hold no lead (``{"data": {"leads": []}}`` for
``$.data.leads[*]``, ``{}`` for ``$.*``, no group for ``$.groups[*].leads[*]``, no item a
filter keeps); it stores no event and is answered ``{"status":"accepted","ids":[]}``. Or a
miss: the structure the path walks is not there (a typo in ``split``, a sender that changed
its envelope, ``"leads": null``, a lead posted alone to ``$.data.leads[*]``); answered 200,
every such delivery was dropped without a word the sender could see, so it is a 422 naming
the path (:func:`missed`), nothing stored: the sender shows the failure and retries, and
once the path is fixed (a reload) its retries are taken. Which one it is is told by where
the path's walk ran dry (``NativePath.walk``; see :func:`_walk` for when it is walked).

Two more cases are not silent. An empty batch because a filter kept none of the
items it was given (``$.entry[*].changes[?(@.field=='leadgen')]`` on a page's other
changes, or on every change when the filter has a typo, ``@.feild``; a filter on the
delivery's root that does not hold for it, TikTok's ``$.entry[?($.object == 1)]`` on
another object, keeps none of them) is still accepted with no event (a subscription
posting changes that are no leads is legitimate), but its ``delivery_received`` line says
so (``split_kept_none``, ``split_left_out``, the filter), and
``leadhub_split_kept_none_total`` counts it: a filter that drops every delivery shows.
A list that is there and empty is not flagged. And a delivery where some of the containers
the path opened have no leads list (``{"id": 2}`` or ``{"leads": null}`` among the groups
of ``$.groups[*].leads[*]``) while others have one stores the leads found, and its line is
a warning saying how many missed (``split_partial_miss``); when every container misses, it
is a miss (422) as above. Neither costs a walk more where leads are found: the containers
missed are counted in the one walk that finds the leads, and only for a path with a step
after its first wildcard, filter or slice (``$.groups[*].leads[*]``, not
``$.data.leads[*]``: see ``NativePath.walk`` for the cost). A path jsonpath-ng walks (a
``|`` union, a named operator, a filter comparing two paths) tells neither.

A null where a lead should be (``{"leads": [{...}, null]}`` for ``$.leads[*]``, ``"lead":
null`` in one group for ``$.groups[*].lead``) is no lead either: taken as one, it was an
event whose document is null, which died at mapping. It is left out and counted as a
container without its leads list (``split_partial_miss``, the other leads stored), for any
path: a look for nulls among the values found, not a walk. When every value found is null,
the delivery is a miss (422), as when every container misses: ``[]`` says there is no lead,
an empty batch, but ``[null]`` is the same broken envelope as ``"leads": null``, and the
sender must see it. Where the leads are kept whole (above), a null among the objects the
wildcard opened is left out so (``{"leads": null}`` beside ``{"leads": {...}}`` among the
groups of ``$.groups[*].leads[*]``, which the walk counts).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import structlog

from hub.config.models import JsonPath
from hub.exceptions import HubError
from hub.mapping.paths import NativePath, PathError, Walk, compile_path
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
        """The events of the delivery: a :class:`Noted` list when its line must say more
        (see the module docstring).

        Raises:
            BodyError: 422 for a miss, 400 as :func:`find_leads`.
        """
        splits: list[Split] = []
        misses = 0
        kept: list[tuple[str, int]] = []  # the filters that kept none of a whole's items
        for whole in self.inner.split(request, document):
            found = find_leads(self.path, whole.document)
            leads, opened = found.leads, found.opened
            if not leads and not found.empty:
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
                splits.extend(Split(None, lead, inner=True) for lead in leads)
            misses += found.missed
            if found.kept_none is not None:
                kept.append(found.kept_none)
        if misses or (kept and not splits):
            return _noted(splits, misses, kept)
        return splits


class Noted(list[Split]):
    """The events of a delivery whose ``delivery_received`` line must say more than that it
    was accepted (see the module docstring): how many of the split path's containers
    missed (a warning), or, for a delivery with no event, the filter that kept none of its
    items."""

    __slots__ = ("kept_none", "missed", "missed_as")

    def __init__(
        self,
        splits: Iterable[Split],
        missed: int,
        kept_none: tuple[str, int] | None,
        missed_as: str = "split_partial_miss",
    ) -> None:
        super().__init__(splits)
        #: Containers the path opened that held no leads list, and nulls found where
        #: leads should be, where others held leads.
        self.missed = missed
        #: No event because a filter kept none: the filter, and how many items it left out.
        self.kept_none = kept_none
        #: The line's field counting ``missed``: a source splitting its own batches names
        #: what it left out its own way (Facebook's ``leadgen_malformed``).
        self.missed_as = missed_as

    @property
    def warns(self) -> bool:
        """Whether the line is a warning: leads may be missing from what was stored."""
        return self.missed > 0

    def fields(self) -> dict[str, Any]:
        """The fields for the delivery's ``delivery_received`` line."""
        fields: dict[str, Any] = {}
        if self.missed:
            fields[self.missed_as] = self.missed
        if self.kept_none is not None:
            fields["split_kept_none"] = True
            fields["split_left_out"] = self.kept_none[1]
            fields["split_filter"] = self.kept_none[0]
        return fields


def _noted(splits: list[Split], missed: int, kept: list[tuple[str, int]]) -> Noted:
    """``splits`` as a :class:`Noted` list: ``missed`` containers, and, when there is no
    event at all, the filters that ``kept`` none of the items they were given (one path,
    so most often one filter: the first is named, every item it left out counted)."""
    kept_none = (kept[0][0], sum(left_out for _, left_out in kept)) if kept and not splits else None
    return Noted(splits, missed, kept_none)


class Found(NamedTuple):
    """What the split path found in one delivery's document (:func:`find_leads`); a tuple,
    made once per delivery on the event loop."""

    #: The leads: each value the path found, or the objects its last wildcard opened when
    #: those are leads themselves (see the module docstring).
    leads: list[Any]
    #: The path to the leads kept whole, when the path's last wildcard opened lead objects
    #: rather than a list of leads (``$`` for ``$[*]``: the delivery is one lead), else
    #: ``None``.
    opened: str | None = None
    #: No lead, and an empty batch rather than a miss (see the module docstring).
    empty: bool = False
    #: Containers the path opened that it could not go on into (``NativePath.walk``), and
    #: nulls found where leads should be (see the module docstring).
    missed: int = 0
    #: No lead because a filter given items kept none: the filter and how many it left out.
    kept_none: tuple[str, int] | None = None


def find_leads(path: JsonPath, document: Any) -> Found:
    """The leads ``path`` finds in a delivery's ``document`` (``leadhub try`` reads them
    so), and how: where they were kept whole, whether finding none is an empty batch or a
    miss, the containers missed, the filter that kept none (see the module docstring), from
    the path's walk (:func:`_walk`); a path jsonpath-ng walks (a ``|`` union, say) tells
    none of these, and a delivery where it finds nothing is a miss.

    Raises:
        BodyError: 400: more than :data:`MAX_LEADS`, or the path cannot be evaluated on it
            (its regular expression out of time).
    """
    walk = _walk(path, document)
    found = walk.values
    opened = _opened(path.text)
    if opened is not None and not all(isinstance(value, dict) for value in found):
        objects = _no_nulls(_values(opened, document))
        if objects and all(isinstance(value, dict) for value in objects):
            return Found(_at_most(objects, opened), opened.text, missed=walk.missed)
    leads = _no_nulls(found)
    missed = walk.missed + len(found) - len(leads)
    if leads:
        return Found(_at_most(leads, path), missed=missed)
    if found:  # every value null: no lead, and no empty batch
        return Found([], None, missed=missed)
    return Found([], None, walk.ran_dry_in_containers, walk.missed, walk.kept_none)


def _no_nulls(values: list[Any]) -> list[Any]:
    """``values`` without their nulls: a null where a lead should be is no lead (see the
    module docstring); ``values`` itself when it holds none, as it most often does."""
    if None not in values:
        return values
    return [value for value in values if value is not None]


def missed(path: JsonPath) -> str:
    """The reason of the 422 for a delivery where ``path`` finds no lead, nor an empty
    batch: what to fix, and that nothing was kept."""
    return (
        f"split path {path.text} finds no lead in this delivery, nor an empty list of them; "
        "nothing was stored: fix the endpoint's split or what is posted, then send it again"
    )


def _walk(path: JsonPath, document: Any) -> Walk:
    """What ``path`` finds in ``document`` and how: a path that can count missed containers
    is walked once, counting (``NativePath.walk``); any other finds its values as a mapping
    does, and is walked again only when it found nothing, to tell an empty batch from a
    miss. A 400 when it cannot be evaluated."""
    with _evaluable(path):
        if isinstance(path, NativePath) and path.counts:
            return path.walk(document)
        found = path.values(document)
        if not found and isinstance(path, NativePath):
            return path.walk(document)
        return Walk(found)


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
