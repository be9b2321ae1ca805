"""Several secrets at once: an endpoint whose secret or token is being rotated.

An endpoint's secret-bearing key (``secret``, ``token``, ``app_secret``, ``client_secret``,
``key``: :data:`hub.config.models.ROTATABLE`) may be a list, ``["${NEW}", "${OLD}"]``, while the
sender moves from one to the other: a delivery verified under any of them is taken.
:func:`rotating_source` builds the endpoint's source once per value and
:class:`AnySecret` asks every one of them, whichever matched, so the time a check takes
says how many secrets there are, not which one a delivery was made with (each comparison
is constant-time in its source). An endpoint with one secret never comes here: its source
is built as before, and its checks cost what they did.

What does not depend on the secret (splitting, which headers carry credentials, the id a
body is deduped on) is the first source's. A handshake is answered by each source in turn
(:meth:`AnySecret.handshake`): LinkedIn's challenge is signed with the secret, and which one
the sender uses while it is rotated is not known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from hub.config.models import ROTATABLE, SourceOptions
from hub.sources.base import (
    Handshake,
    Incoming,
    NoHandshake,
    Source,
    Split,
    VerificationError,
    WholeBody,
)


def each_secret(options: SourceOptions) -> list[SourceOptions]:
    """``options`` once per value of its secret-bearing key, each with that value alone."""
    key = ROTATABLE.get(type(options))
    rotating: tuple[Any, ...] = getattr(options, "rotating", ())
    if key is None or not rotating:
        return [options]
    values = (getattr(options, key), *rotating)
    return [dataclasses.replace(options, **{key: value, "rotating": ()}) for value in values]


class AnySecret:
    """The checks of ``sources`` (one per secret): a delivery passes when any one passes.

    Every source is asked, whichever passes: no early stop tells which secret matched.
    The reason given when none passes is the first source's (all say the same: a reason
    never holds a secret or a signature).
    """

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = tuple(sources)
        first = self.sources[0]
        self.first = first
        self.kind = first.kind
        self.credential_headers = first.credential_headers
        self.credential_fields = first.credential_fields
        self.batches = first.batches
        #: A credential inside the body (Google's key) is checked when splitting.
        self._checks_body = bool(first.credential_fields)
        self._handshakes = 0  # answered so far: the next one is the next source's

    def verify(self, request: Incoming, now: float) -> None:
        _any_passes([source.verify for source in self.sources], request, now)

    def split(self, request: Incoming, document: Any) -> list[Split]:
        if not self._checks_body:
            return self.first.split(request, document)
        splits: list[Split] = _any_passes(
            [source.split for source in self.sources], request, document
        )
        return splits

    def handshake(self, request: Incoming) -> Handshake | None:
        """The answer of each source in turn. LinkedIn signs its validation challenge's
        answer with the client secret, validates a webhook every 2 hours, and blocks it after
        3 failures in a row. Answered under the first secret listed (the new one, as
        ``mappings/README.md`` says to list it), every validation failed from the moment the
        new secret was listed until LinkedIn was moved to it: 6 hours, and the webhook was
        blocked. In turn, with two secrets listed, no two validations in a row fail. (A
        Facebook subscription's answer is the same under each: its token is no secret listed
        here.)"""
        source = self.sources[self._handshakes % len(self.sources)]
        self._handshakes += 1
        return source.handshake(request)


def _any_passes(
    checks: Sequence[Callable[[Incoming, Any], Any]], request: Incoming, arg: Any
) -> Any:
    """The answer of a check of ``checks`` that passes, after running every one.

    Raises:
        VerificationError: none passes (the first one's reason).
    """
    answers: list[Any] = []
    reasons: list[str] = []
    for check in checks:
        try:
            answers.append(check(request, arg))
        except VerificationError as exc:
            reasons.append(exc.reason)
    if not answers:
        raise VerificationError(reasons[0])
    return answers[0]


class AnySecretNoHandshake(AnySecret, NoHandshake):
    """:class:`AnySecret` for a sender without a handshake (HubSpot)."""


class AnySecretWholeBody(AnySecret, WholeBody):
    """:class:`AnySecret` for a one-event sender: the store may still read its id itself."""

    def __init__(self, sources: Sequence[Source]) -> None:
        super().__init__(sources)
        self.id_key = getattr(self.first, "id_key", None)

    @property
    def reads_id_only(self) -> bool:
        return isinstance(self.first, WholeBody) and self.first.reads_id_only


def rotating_source(options: SourceOptions, build: Callable[[SourceOptions], Source]) -> Source:
    """The source for ``options``: ``build(options)`` when it has one secret, else an
    :class:`AnySecret` of ``build`` run once per secret."""
    each = each_secret(options)
    if len(each) == 1:
        return build(options)
    sources = [build(one) for one in each]
    first = sources[0]
    if isinstance(first, WholeBody):
        return AnySecretWholeBody(sources)
    if isinstance(first, NoHandshake):
        return AnySecretNoHandshake(sources)
    return AnySecret(sources)
