"""How long a claim's lease must last: what ``serve`` and ``check`` hold ``--lease`` to,
and what a lane keeps free at a lease's end.

A call starts only while the longest it can last (:func:`call_bound`, twice the target's
``timeout``) and :data:`LEASE_MARGIN` still fit in what is left of the event's lease, and a
lead read likewise (:func:`read_bound`). Apart from the dispatcher, so that ``leadhub check``
judges a lease without loading it (httpx, aiohttp, the senders' API clients).
"""

from __future__ import annotations

from hub.config.models import FETCHING, Config, Origin, Target

DEFAULT_LEASE = 60.0  # seconds a claimed event stays ours before another worker may take it
LEASE_MARGIN = 5.0  # seconds kept free at the end of a lease, beyond the longest call
SEND_WINDOW = 1.0  # seconds a lease leaves at least to start a call in (queue, rate limit)


def lease_needed(target: Target) -> float:
    """The shortest lease ``leadhub serve`` takes for ``target``: its longest call,
    :data:`LEASE_MARGIN` to write the outcome before the lease ends, and
    :data:`SEND_WINDOW` after the claim to start the call in."""
    return call_bound(target) + LEASE_MARGIN + SEND_WINDOW


def call_bound(target: Target) -> float:
    """The longest one call to ``target`` lasts, answer read: twice its ``timeout``."""
    return 2 * target.timeout


def read_bound(timeout: float) -> float:
    """The longest one lead read with ``timeout`` lasts, answer read: twice the timeout."""
    return 2 * timeout


def lease_shortfalls(config: Config, lease: float) -> list[str]:
    """Why ``lease`` (seconds) is too short for ``config``, one sentence each (none: it is not).

    A lease must hold the longest call to every target (:func:`lease_needed`)
    and the longest lead read of every endpoint whose leads are read from an API (its
    ``read_timeout``), each with :data:`LEASE_MARGIN` to spare and
    :data:`SEND_WINDOW` to start in: otherwise such calls or reads
    seldom or never start, and the events go back to the queue again and again.
    """
    return [problem for _, problem in lease_shortfalls_where(config, lease)]


def lease_shortfalls_where(config: Config, lease: float) -> list[tuple[Origin | None, str]]:
    """:func:`lease_shortfalls`, each with where the target or endpoint whose ``timeout`` or
    ``read_timeout`` the lease cannot hold is written (``file:line``)."""
    problems: list[tuple[Origin | None, str]] = []
    for target in sorted(config.targets.values(), key=lambda t: t.name):
        need = lease_needed(target)
        if lease < need:
            problems.append(
                (
                    target.origin,
                    f"a call to target {target.name!r} may last {2 * target.timeout:g}s (twice its "
                    f"timeout), {LEASE_MARGIN:g}s are kept to write its outcome and "
                    f"{SEND_WINDOW:g}s to start it in: give --lease {need:g}s or more, or lower "
                    "the target's timeout",
                )
            )
    for endpoint in sorted(config.endpoints.values(), key=lambda e: e.name):
        options = endpoint.options
        if not isinstance(options, FETCHING):
            continue
        bound = read_bound(options.read_timeout)
        need = bound + LEASE_MARGIN + SEND_WINDOW
        if lease < need:
            problems.append(
                (
                    endpoint.origin,
                    f"a lead read for endpoint {endpoint.name!r} may last {bound:g}s (twice its "
                    f"read_timeout), with {LEASE_MARGIN:g}s to spare and {SEND_WINDOW:g}s to "
                    f"start it in: give --lease {need:g}s or more, or lower its read_timeout",
                )
            )
    return problems
