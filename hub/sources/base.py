"""What every sender kind (``source``) provides to ingest, and the pieces they share.

A source is built once per endpoint from its options and is pure: it verifies a
request from its raw bytes and headers, answers a subscription handshake if the
sender has one, and splits a parsed body into the events (leads) it holds, each
with the sender's natural delivery id when there is one.

Order at ingest: :meth:`Source.verify` runs on the raw body before any parsing;
then the body is parsed (``hub.sources.bodies``); then :meth:`Source.split` runs,
which may still reject (Google's key travels inside the body).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

import orjson

from hub.exceptions import HubError

if TYPE_CHECKING:  # hub.config builds DedupePaths; importing it back would be circular
    from hub.config.models import JsonPath


class VerificationError(HubError):
    """The request failed the endpoint's signature or token check.

    ``reason`` is for the log only; the sender gets a bare 401. A reason never
    holds a secret, a signature or a token.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyError(HubError):
    """The body cannot be taken: ``status`` is 415 (content type) or 400 (unparseable)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Incoming:
    """One HTTP request as the source sees it."""

    method: str
    #: Header names lower-cased; a repeated header's distinct values joined with ``", "``.
    headers: Mapping[str, str]
    body: bytes
    query_string: bytes = b""
    _query: dict[str, str] | None = field(default=None, repr=False)

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters (the first value of each), parsed on first use."""
        if self._query is None:
            parsed: dict[str, str] = {}
            text = self.query_string.decode("latin-1")
            for key, value in parse_qsl(text, keep_blank_values=True):
                parsed.setdefault(key, value)
            self._query = parsed
        return self._query


@dataclass(frozen=True, slots=True)
class Split:
    """One event out of a delivery: its natural id (if the sender has one) and document."""

    natural_id: str | None
    document: Any
    #: A lead a ``split`` path found inside the delivery (not the delivery kept whole):
    #: without an id it is named by its own JSON, never by the body, which holds an
    #: envelope a resend may change and, another time, other leads.
    inner: bool = False


@dataclass(frozen=True, slots=True)
class Handshake:
    """The answer to a sender's GET handshake."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class Source(Protocol):
    """A sender kind: verification, handshake and splitting for one endpoint."""

    #: The ``source`` name in the config (``facebook``, ``typeform``, ...).
    kind: str
    #: Lower-case header names that carry credentials for this endpoint: never stored or logged.
    credential_headers: frozenset[str]
    #: Top-level keys of a JSON body that carry a credential (Google's ``google_key``): their
    #: values are stored as :data:`REDACTED` (see :func:`redacted`).
    credential_fields: frozenset[str]
    #: Whether one delivery may hold several leads (the answer then lists every event id).
    batches: bool

    def verify(self, request: Incoming, now: float) -> None:
        """Check the raw request; raise :class:`VerificationError` with the reason if it fails."""
        ...

    def split(self, request: Incoming, document: Any) -> list[Split]:
        """The events in a verified, parsed delivery (may raise VerificationError/BodyError)."""
        ...

    def handshake(self, request: Incoming) -> Handshake | None:
        """The answer to a GET on the endpoint, or None when the sender has no handshake."""
        ...


# --- helpers shared by the sources ------------------------------------------------------------

_DIGESTS = frozenset({"sha1", "sha256", "sha512"})


def digest(algorithm: str, key: bytes, message: bytes) -> bytes:
    """HMAC of ``message`` under ``key`` with ``algorithm`` (sha1, sha256 or sha512).

    ``hmac.digest`` with the algorithm's name is one call into OpenSSL, with no
    ``hmac.HMAC`` object per request (for a 3 KB body the SHA-256 itself, about 2.8 µs,
    is nearly all of the cost either way).
    """
    if algorithm not in _DIGESTS:
        msg = f"Unknown HMAC algorithm {algorithm!r}; use one of 'sha1', 'sha256', 'sha512'."
        raise ValueError(msg)
    return hmac.digest(key, message, algorithm)


def same(expected: str | bytes, given: str | bytes) -> bool:
    """Constant-time equality of two strings or byte strings (non-ASCII never matches)."""
    if isinstance(expected, str):
        expected = expected.encode("utf-8", "surrogateescape")
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


#: More digits than any Unix time in seconds or milliseconds for millennia (and a float holds it).
MAX_TIMESTAMP_DIGITS = 20


#: Each unit of a timestamp header: its name in a reason, and the other unit.
_UNITS = {"s": ("seconds", "ms"), "ms": ("milliseconds", "s")}


def check_timestamp(
    raw: str | None, *, now: float, tolerance: float, unit: str = "s", setting: str = ""
) -> float:
    """The timestamp in ``raw`` (seconds or milliseconds) if it lies within ``tolerance`` of now.

    ``setting``: the endpoint's key that names the unit (``timestamp_unit``), when it has one.
    A timestamp that is now in the other unit (a sender's milliseconds where the endpoint
    reads seconds) is refused all the same, but the reason says so, and names the setting:
    read in the wrong unit it was "outside the tolerance" of a now it equalled.

    Raises:
        VerificationError: missing, not a number, or too old / too new.
    """
    if raw is None or not raw.strip():
        msg = "missing timestamp header"
        raise VerificationError(msg)
    text = raw.strip()
    if len(text) > MAX_TIMESTAMP_DIGITS:  # a float of it would overflow; no clock is that far
        msg = f"timestamp header has {len(text)} characters, not a timestamp"
        raise VerificationError(msg)
    try:
        value = int(text)
    except ValueError:
        msg = "timestamp header is not an integer"
        raise VerificationError(msg) from None
    seconds = value / 1000.0 if unit == "ms" else float(value)
    if abs(now - seconds) > tolerance:
        shown = now * 1000.0 if unit == "ms" else now
        msg = f"timestamp {value} is outside the {tolerance:g} s tolerance (now {shown:.0f})"
        name, other = _UNITS[unit]
        otherwise = float(value) if unit == "ms" else value / 1000.0  # read in ``other``
        if abs(now - otherwise) <= tolerance:
            msg += f": it is the time in {_UNITS[other][0]}, not {name}"
            if setting:
                msg += f"; set {setting}: {other} on the endpoint"
        raise VerificationError(msg)
    return seconds


class NoHandshake:
    """Mixin for sources without a GET handshake."""

    batches = False
    credential_fields: frozenset[str] = frozenset()

    def handshake(self, request: Incoming) -> Handshake | None:
        return None


class WholeBody(NoHandshake):
    """Mixin for sources whose delivery is one event: the body, with a natural id at ``id_key``."""

    id_key: str | None = None

    @property
    def reads_id_only(self) -> bool:
        """Whether splitting reads nothing but ``id_key`` (the sender keeps this ``split``)."""
        return type(self).split is WholeBody.split

    def split(self, request: Incoming, document: Any) -> list[Split]:
        value = None
        if self.id_key is not None and isinstance(document, dict):
            value = document.get(self.id_key)
        return [Split(natural_id(value), document)]


#: What a credential inside a stored body reads instead of its value.
REDACTED = "[redacted]"


def redacted(body: bytes, document: Any, fields: frozenset[str]) -> bytes:
    """``body`` as it is stored: the string value of each of ``fields`` (top-level keys of
    its JSON object ``document``) replaced by ``"[redacted]"``, every other byte as received.

    A key that authenticates the sender inside the body (Google's ``google_key``) is checked
    at ingest and never needed again; stored, it would be in every backup and in
    ``leadhub events --json``, where a credential header never is (those are not kept). The
    value is found as JSON writes it, as is or with non-ASCII escaped.
    """
    if not isinstance(document, dict):
        return body
    for name in fields:
        value = document.get(name)
        if isinstance(value, str) and value:
            for written in {orjson.dumps(value), json.dumps(value).encode()}:
                body = body.replace(written, b'"' + REDACTED.encode() + b'"')
    return body


def redact_fields(document: Any, fields: frozenset[str]) -> Any:
    """``document`` with the text value of each of ``fields`` (top-level keys of an object)
    written :data:`REDACTED`: a copy, or ``document`` itself when it holds none of them."""
    if not isinstance(document, dict):
        return document
    found = {name: REDACTED for name in fields if isinstance(document.get(name), str)}
    found = {name: value for name, value in found.items() if document[name]}
    return {**document, **found} if found else document


def natural_id(value: Any) -> str | None:
    """A sender's id value as a delivery id: scalars only, never empty, never a boolean."""
    if value is None or isinstance(value, dict | list | bool) or value == "":
        return None
    return str(value)


def path_id(values: Iterable[Any]) -> str | None:
    """The id a ``dedupe`` path gives from the values it found: the first that is not null,
    empty text or a boolean, as text (an object or array as its JSON, keys sorted); None
    when there is none: the rule of a single ``dedupe`` path (``hub.sources``) and of each
    path of a list."""
    for value in values:
        if value is None or value == "" or isinstance(value, bool):
            continue
        if isinstance(value, dict | list):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return str(value)
    return None


@dataclass(frozen=True, slots=True)
class DedupePaths:
    """``dedupe: [$.vid, $.form_id]``: JSONPaths that name a delivery together.

    To ingest it is one more ``dedupe`` path (a :class:`~hub.config.models.JsonPath`),
    whose one value is the delivery id: each path's id (:func:`path_id`, the single-path
    rule) in order, as a JSON array of strings, ``["85203","1f3c8d2e-..."]``. JSON's quoting
    keeps the parts apart whatever they hold (``["a,b","c"]`` is not ``["a","b,c"]``), and
    a number and its text are one id, as with a single path (``85203`` and ``"85203"``).

    When any path finds no id (nothing, null, empty text or a boolean) it finds nothing, as
    a single path that finds nothing does: the delivery is then named as if there were no
    ``dedupe`` (the sender's own id, else the hash of the body). An id made of the parts
    that were found could name two different leads alike, and store the second as a
    duplicate of the first.
    """

    paths: tuple[JsonPath, ...]

    @property
    def text(self) -> str:
        """The paths as a YAML list, ``[$.vid, $.form_id]``."""
        return "[" + ", ".join(path.text for path in self.paths) + "]"

    def values(self, document: Any) -> list[Any]:
        """``[the delivery id]``, or ``[]`` when a path finds no id in ``document``.

        Raises:
            DocumentError: a path could not be evaluated (as a single path raises it).
        """
        parts: list[str] = []
        for path in self.paths:
            part = path_id(path.values(document))
            if part is None:
                return []
            parts.append(part)
        return [orjson.dumps(parts).decode()]
