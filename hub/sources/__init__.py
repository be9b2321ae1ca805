"""Sender kinds: one module per ``source`` (verification, handshake, splitting), plus bodies.

``hub.sources.build.build_source(endpoint)`` gives the :class:`~hub.sources.base.Source`
for an endpoint; ``delivery_ids(endpoint, splits, body)`` names each event: the
endpoint's ``dedupe`` JSONPath (or list of them) when it finds a value, else the sender's natural
id, else ``sha256:`` + the hex SHA-256 of the raw body (for a batch without
natural ids, and for any lead a ``split`` path found inside the delivery, of each event's
canonical JSON instead).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from hub.sources.base import (
    BodyError,
    Handshake,
    Incoming,
    Source,
    Split,
    VerificationError,
    natural_id,
    path_id,
)
from hub.sources.bodies import Skimmer

if TYPE_CHECKING:
    from hub.config.models import Endpoint


__all__ = [
    "BodyError",
    "Handshake",
    "Incoming",
    "Source",
    "Split",
    "VerificationError",
    "delivery_ids",
    "skimmed_id",
    "skimmer_for",
]


#: Longer delivery ids (a runaway dedupe path, say) are replaced by their hash.
MAX_ID_LENGTH = 200


def body_id(body: bytes) -> str:
    """The delivery id of a one-lead body that carries none: the hash of its bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def capped(found: str) -> str:
    """``found``, or its hash when longer than :data:`MAX_ID_LENGTH` or holding a NUL
    (which PostgreSQL's text cannot store: the delivery would be a 503 forever)."""
    if len(found) > MAX_ID_LENGTH or "\x00" in found:  # short, storable, still distinct
        return "sha256:" + hashlib.sha256(found.encode("utf-8", "replace")).hexdigest()
    return found


@functools.lru_cache(maxsize=256)
def skimmer_for(key: str | None) -> Skimmer:
    """The :class:`Skimmer` reading top-level ``key`` (one per key, made once)."""
    return Skimmer(key)


def skimmed_id(skimmer: Skimmer, content_type: str, body: bytes) -> str | None:
    """The delivery id of a one-lead JSON body read by ``skimmer``, or None if it cannot tell.

    The same id :func:`delivery_ids` gives after a full parse (for an endpoint without a
    ``dedupe`` path); None sends the body to the full parser. Runs wherever the store
    writes (see ``IncomingDelivery.skim``), so it must stay a pure function of its input.
    """
    skimmed = skimmer.skim(content_type, body)
    if skimmed is None:
        return None
    found = natural_id(skimmed[0])
    return body_id(body) if found is None else capped(found)


def _id_from_path(endpoint: Endpoint, document: Any) -> str | None:
    if endpoint.dedupe is None:
        return None
    try:
        values = endpoint.dedupe.values(document)
    except Exception:  # a path evaluating over an odd document must not fail a delivery
        return None
    return path_id(values)


def delivery_ids(endpoint: Endpoint, splits: Sequence[Split], body: bytes) -> list[str]:
    """The delivery id of each split, in order (see the module docstring)."""
    ids: list[str] = []
    for split in splits:
        found = _id_from_path(endpoint, split.document) or split.natural_id
        if found is None:
            if len(splits) == 1 and not split.inner:
                found = body_id(body)
            else:
                canonical = orjson.dumps(split.document, option=orjson.OPT_SORT_KEYS)
                found = "sha256:" + hashlib.sha256(canonical).hexdigest()
        ids.append(capped(found))
    return ids
