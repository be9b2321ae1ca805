"""Injected failures for ``/v2`` calls, and how to drop a connection without answering.

``POST /_sandbox/faults`` takes ``{"rate": 0.3, "kinds": [...], "seed": 7}`` (that
share of calls fails, drawn from ``random.Random(seed)``, and the kind is drawn
from the same generator) or ``{"every": 3, "kinds": [...]}`` (every 3rd call
fails, the kinds taken in turn); ``{"rate": 0}`` turns faults off. Optional
``timeout_s`` (default 30) is how long a ``timeout`` holds the request.

Dropping a connection: uvicorn answers 500 when an app returns or raises without
starting a response, so the sandbox closes the socket itself. It finds the
connection's asyncio transport behind the ASGI ``send`` callable (uvicorn's
``RequestResponseCycle.send`` is a bound method with a ``transport``; Starlette's
middleware wraps it in closures, which are followed), or failing that in the
frame of the task that runs the request, or failing that (middleware that runs
the app in another task) as the server object that holds the request's scope. It
then closes (or, for ``reset``,
aborts with ``SO_LINGER`` 0, which sends a TCP RST) and waits for uvicorn to
notice the disconnect, so uvicorn sends nothing more. When no transport can be
found (another server), it falls back to raising :class:`ConnectionDropped`,
which the server turns into its own error answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hub.sandbox.errors import invalid_input

KINDS = ("500", "429", "timeout", "reset", "lost_response")
DEFAULT_TIMEOUT_S = 30.0
#: The largest ``every`` taken. The configuration is echoed as JSON, whose writer (orjson)
#: takes integers of 64 bits: a larger one (``1e300``, read as a float, is whole) was stored,
#: then its echo failed with a 500, the faults in force all the same.
MAX_EVERY = 1_000_000_000


class ConnectionDropped(Exception):
    """The transport of a request could not be found to drop it."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What to break: a random share (``rate``) or every Nth call (``every``)."""

    rate: float = 0.0
    every: int | None = None
    kinds: tuple[str, ...] = ()
    seed: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    def to_api(self) -> dict[str, Any]:
        """The configuration as the control API echoes it."""
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{key!r} is {value!r}; send a number."
        raise invalid_input(msg)
    return float(value)


def parse_fault_config(body: Any) -> FaultConfig:
    """A :class:`FaultConfig` from the control API's JSON body.

    Raises:
        MXError: 400 for an unknown key or kind, or a value out of range.
    """
    if not isinstance(body, dict):
        msg = "Send a JSON object such as {'rate': 0.3, 'kinds': ['500'], 'seed': 7}."
        raise invalid_input(msg)
    unknown = sorted(set(body) - {"rate", "every", "kinds", "seed", "timeout_s"})
    if unknown:
        msg = f"Unknown fault settings {unknown!r}; use rate, every, kinds, seed, timeout_s."
        raise invalid_input(msg)
    rate = _number(body, "rate")
    every = _number(body, "every")
    timeout_s = _number(body, "timeout_s")
    if rate is not None and every is not None:
        msg = "Send either 'rate' or 'every', not both."
        raise invalid_input(msg)
    if rate is not None and not 0.0 <= rate <= 1.0:
        msg = f"'rate' is {rate!r}; send a share between 0 and 1."
        raise invalid_input(msg)
    if every is not None and (every != int(every) or not 0 <= every <= MAX_EVERY):
        msg = (
            f"'every' is {every!r}; send a whole number of calls up to {MAX_EVERY} "
            "(0 turns faults off)."
        )
        raise invalid_input(msg)
    if timeout_s is not None and timeout_s < 0:
        msg = f"'timeout_s' is {timeout_s!r}; send zero or more seconds."
        raise invalid_input(msg)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        msg = f"'seed' is {seed!r}; send a whole number."
        raise invalid_input(msg)
    active = bool(rate) or bool(every)
    kinds = _kinds(body.get("kinds"), required=active)
    return FaultConfig(
        rate=rate or 0.0,
        every=int(every) if every else None,
        kinds=kinds if active else (),
        seed=seed,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
    )


def _kinds(value: Any, *, required: bool) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or (required and not value):
        msg = f"'kinds' is {value!r}; send a list drawn from {list(KINDS)!r}."
        raise invalid_input(msg)
    kinds = tuple(str(kind) if isinstance(kind, int | str) else repr(kind) for kind in value)
    bad = [kind for kind in kinds if kind not in KINDS]
    if bad:
        msg = f"Unknown fault kinds {bad!r}; use {list(KINDS)!r}."
        raise invalid_input(msg)
    return kinds


class FaultInjector:
    """Decides, call by call, whether and how a ``/v2`` call fails."""

    def __init__(self) -> None:
        self.config = FaultConfig()
        self._random = random.Random()
        self._count = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._released: asyncio.Event | None = None

    def configure(self, config: FaultConfig) -> None:
        """Switch to ``config``; the random sequence and the call count start afresh."""
        self.config = config
        self._random = random.Random(config.seed)
        self._count = 0

    def next_fault(self) -> str | None:
        """The fault for the next call, or ``None`` for a normal answer."""
        config = self.config
        if config.every:
            self._count += 1
            if self._count % config.every:
                return None
            return config.kinds[(self._count // config.every - 1) % len(config.kinds)]
        if config.rate and self._random.random() < config.rate:
            return self._random.choice(config.kinds)
        return None

    async def hold(self, receive: Callable[..., Any]) -> None:
        """Keep a ``timeout`` call waiting ``timeout_s``, until the client hangs up or the
        server stops (:meth:`release_holds`)."""
        if self._released is None:  # the loop first: release_holds reads it first
            self._loop = asyncio.get_running_loop()
            self._released = asyncio.Event()
        if self._stopping:
            return
        await hold(receive, self.config.timeout_s, self._released)

    def release_holds(self) -> None:
        """End every ``timeout`` hold now and hold no more calls: the server is stopping.

        uvicorn's graceful shutdown waits for the calls in progress, so a held call (30 s by
        default, as long as ``timeout_s`` says) kept the sandbox from stopping on SIGTERM.
        Called from the signal handler: it sets a flag and wakes the event loop through
        ``call_soon_threadsafe``, both safe there.
        """
        self._stopping = True
        loop, released = self._loop, self._released
        if loop is not None and released is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing is held
                loop.call_soon_threadsafe(released.set)


def _usable(transport: Any) -> bool:
    return transport is not None and hasattr(transport, "abort")


def _transport_by_scope(scope: Any) -> Any:
    """The transport of the server object holding this very scope (uvicorn's request cycle)."""
    for ref in gc.get_referrers(scope):
        attrs = ref if isinstance(ref, dict) else getattr(ref, "__dict__", None)
        if isinstance(attrs, dict) and attrs.get("scope") is scope:
            transport = attrs.get("transport")
            if _usable(transport):
                return transport
    return None


def _transport_behind(send: Callable[..., Any], scope: Any) -> Any:
    seen: set[int] = set()
    stack: list[Any] = [send]
    while stack and len(seen) < 64:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        transport = getattr(getattr(item, "__self__", None), "transport", None)
        if _usable(transport):
            return transport
        if callable(getattr(item, "func", None)):  # functools.partial
            stack.append(item.func)
        for cell in getattr(item, "__closure__", None) or ():
            with contextlib.suppress(ValueError):
                if callable(cell.cell_contents):
                    stack.append(cell.cell_contents)
    task = asyncio.current_task()
    frame = getattr(task.get_coro(), "cr_frame", None) if task else None
    owner = frame.f_locals.get("self") if frame is not None else None
    transport = getattr(owner, "transport", None)
    if _usable(transport):
        return transport
    # Middleware that runs the app in another task (BaseHTTPMiddleware) hides both paths.
    return _transport_by_scope(scope)


async def _wait_disconnect(receive: Callable[..., Any]) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


async def drop_connection(
    scope: Any, send: Callable[..., Any], receive: Callable[..., Any], *, reset: bool = False
) -> None:
    """Close the request's connection without sending a response.

    Raises:
        ConnectionDropped: when the transport cannot be found.
    """
    transport = _transport_behind(send, scope)
    if transport is None:
        raise ConnectionDropped
    if reset:
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError, TypeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    # Wait for uvicorn to see the connection gone, so it does not try to answer 500.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_wait_disconnect(receive), timeout=5.0)


async def hold(
    receive: Callable[..., Any], seconds: float, released: asyncio.Event | None = None
) -> None:
    """Keep a request waiting ``seconds``, or until the client hangs up or ``released`` is set."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(_wait_disconnect(receive))]
    if released is not None:
        waits.append(asyncio.ensure_future(released.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
