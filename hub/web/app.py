"""The hub's Starlette app: webhook endpoints, health, metrics and the embedded sandbox.

``create_app(config=..., store=...)`` builds it from explicit lists (no decorators):

* ``/hooks/{endpoint}`` (roles ``all`` and ``web``): :class:`hub.web.ingest.Ingest`, a
  raw ASGI handler dispatched *before* Starlette's middleware stack and router
  (:class:`HubApp`), so the hot path pays for neither, nor for Request/Response objects. With role
  ``worker`` every ``/hooks/`` path answers 404.
* ``GET /healthz``: the process is alive (always 200).
* ``GET /readyz``: 200 when the store answers a ping (and the config is loaded,
  which it is once the app exists), else 503 (with ``cause`` when the store tells what a ping
  that ran out of time waits for: :func:`hub.web.timeouts.failed_ping`). A run of failed probes logs
  ``readiness_failed`` at its first, then at most once per :data:`READY_LOG_EVERY` with
  ``unlogged``, and ``readiness_recovered`` (``failed``, ``seconds``) at the first probe
  that passes again (:class:`hub.logs.Failures`).
* ``GET /metrics``: Prometheus text from ``app.state.metrics`` (a per-app
  ``CollectorRegistry``); see :mod:`hub.web.metrics`. Given a ``metrics_token`` (``serve``:
  ``LEADHUB_METRICS_TOKEN``), only to a scrape sending ``Authorization: Bearer <token>``;
  any other is answered 401 ``{"error":"unauthorized"}`` with ``WWW-Authenticate: Bearer``
  (:class:`hub.web.metrics.ScrapeGuard`). ``/healthz`` and ``/readyz`` stay open: probes
  send no credentials.
* ``/sandbox``: ``sandbox_app`` mounted as given (mounted apps get no lifespan).
* ``extra_routes``: appended as they are (admin pages, say).

State for other parts: ``app.state.config``, ``app.state.store``,
``app.state.clock``, ``app.state.role``, ``app.state.metrics`` (the registry) and
``app.state.web_metrics`` (:class:`hub.web.metrics.WebMetrics`).

Starting work with the app (the dispatcher): pass ``lifespan_hooks``, a sequence
of callables ``hook(app) -> AsyncContextManager``. They are entered in order at
startup and exited in reverse at shutdown, so a hook listed after the store's
opener runs while the store is open. For example::

    @contextlib.asynccontextmanager
    async def run_dispatcher(app: Starlette) -> AsyncIterator[None]:
        dispatcher = Dispatcher(config, store, registry=app.state.metrics)
        task = asyncio.create_task(dispatcher.run())
        try:
            yield
        finally:
            await dispatcher.stop()
            await task

    app = create_app(config=config, store=store, lifespan_hooks=[open_store, run_dispatcher])

``leadhub serve`` (``hub.commands.serve``) builds its hook list in one place,
``lifespan_hooks_for(...)``: roles ``all`` and ``worker`` are where a dispatcher hook goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.clock import SYSTEM_CLOCK, Clock
from hub.config.models import Config
from hub.logs import Failures
from hub.secrets import Secret
from hub.store.base import EventStore
from hub.web.ingest import PREFIX, Ingest
from hub.web.metrics import ScrapeGuard, WebMetrics
from hub.web.timeouts import failed_ping

LifespanHook = Callable[[Starlette], AbstractAsyncContextManager[Any]]
ROLES = ("all", "web", "worker")
READY_TIMEOUT = 3.0  # seconds a readiness ping may take before the store counts as down
#: Seconds between two ``readiness_failed`` lines of one run of failed probes, and within
#: which a new run after a ``readiness_recovered`` line logs nothing more (a flapping store):
#: logged at every probe, a Kubernetes probe every 2 s against a store down for an hour wrote
#: 1,800 like lines. (The store logs its own failures; this says the instance is out of
#: service, and since when.)
READY_LOG_EVERY = 60.0

_log = structlog.get_logger()


class HubApp(Starlette):
    """Starlette, with ``/hooks/...`` handed to ingest before the middleware stack.

    Starlette wraps every request in its error middleware (which wraps ``send`` too)
    before any user middleware runs; ingest answers its own errors, so the webhook path
    skips that layer and the router.

    A start-up failure that a lifespan hook has logged already (it sets
    ``app.state.startup_failure`` to the event it logged, as ``serve``'s store hook does)
    reaches the server without its traceback: Starlette sends any exception of the lifespan
    as the failure's message, which uvicorn prints, and beside a log line that says what to
    fix it only buries it. An unexpected exception keeps its traceback.
    """

    def __init__(self, *, ingest: ASGIApp | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["path"].startswith(PREFIX) or scope["path"] == PREFIX[:-1]
        ):
            if self.ingest is not None:
                await self.ingest(scope, receive, send)
                return
            response = JSONResponse(
                {"error": "this instance runs the worker role; send webhooks to a web instance"},
                status_code=404,
            )
            await response(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            send = self._quiet_startup_failure(send)
        await super().__call__(scope, receive, send)

    def _quiet_startup_failure(self, send: Send) -> Send:
        async def quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and getattr(
                self.state, "startup_failure", None
            ):
                message = {**message, "message": ""}
            await send(message)

        return quietly


async def _json_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (an unknown path, a wrong method on a health route) as
    the short JSON reason every other answer of the hub gives, instead of plain text."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


#: The answer to a scrape of ``/metrics`` without its token, never saying why (the log does).
_UNAUTHORIZED = {"error": "unauthorized"}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _health_routes(
    store: EventStore, metrics: WebMetrics, clock: Clock, guard: ScrapeGuard | None
) -> list[BaseRoute]:
    failures = Failures(
        "readiness_recovered",
        every=READY_LOG_EVERY,
        relapse=READY_LOG_EVERY,
        clock=clock.monotonic,
        logger=lambda: _log,
        level="warning",
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failed = await failed_ping(store, READY_TIMEOUT)
        if failed is not None:
            exc, cause = failed
            detail = str(exc)[:300] if cause is None else f"{exc}: {cause.text}"
            failures.failed("readiness_failed", type(exc).__name__, detail=detail)
            answer = {"status": "unavailable", "reason": "store unavailable"}
            if cause is not None:  # (its headline: holders and settings only in the log)
                answer["cause"] = cause.headline
            return JSONResponse(answer, status_code=503)
        failures.succeeded()
        return JSONResponse({"status": "ready"})

    async def metrics_page(request: Request) -> Response:
        if guard is not None and not guard.admits(request.headers.get("authorization")):
            return JSONResponse(_UNAUTHORIZED, status_code=401, headers=_CHALLENGE)
        return Response(await metrics.render(store), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]


def store_lifespan(store: EventStore) -> LifespanHook:
    """A lifespan hook that opens ``store`` at startup and closes it at shutdown."""

    @contextlib.asynccontextmanager
    async def hook(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            await store.close()

    return hook


def create_app(
    *,
    config: Config,
    store: EventStore,
    clock: Clock = SYSTEM_CLOCK,
    role: str = "all",
    sandbox_app: ASGIApp | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan_hooks: Sequence[LifespanHook] = (),
    metrics_token: Secret | None = None,
) -> Starlette:
    """The hub's ASGI app (see the module docstring for routes, state and lifespan hooks).

    Raises:
        ValueError: ``role`` is not one of ``all``, ``web``, ``worker``.
    """
    if role not in ROLES:
        msg = f"Unknown role {role!r}; use one of 'all', 'web', 'worker'."
        raise ValueError(msg)
    metrics = WebMetrics()
    ingest = None
    if role in ("all", "web"):
        ingest = Ingest(endpoints=config.endpoints, store=store, clock=clock, metrics=metrics)
    guard = ScrapeGuard(metrics_token, metrics.registry) if metrics_token else None
    routes = _health_routes(store, metrics, clock, guard)
    if sandbox_app is not None:
        routes.append(Mount("/sandbox", app=sandbox_app))
    routes.extend(extra_routes)
    hooks = tuple(lifespan_hooks)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for hook in hooks:
                await stack.enter_async_context(hook(app))
            yield

    app = HubApp(
        ingest=ingest,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _json_error},
    )
    app.state.config = config
    app.state.store = store
    app.state.clock = clock
    app.state.role = role
    app.state.metrics = metrics.registry
    app.state.web_metrics = metrics
    app.state.ingest = ingest
    return app
