"""The sandbox as an ASGI app: keys, routing, rate limit, faults, then the endpoint.

Checks run in the order of sandbox.md: keys (401), path and method (404, paths
matched case-insensitively), rate limit (429, ``/v2`` only), faults (``/v2``
only), then the endpoint itself (400 for a bad body). Every error carries the
MX envelope; an unexpected exception becomes a 500 envelope and the process
keeps serving. A database that cannot be written (a full disk) is a 503 without the envelope:
an outage, which a client retries.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hub.clock import SYSTEM_CLOCK, Clock
from hub.logs import Throttle, get_logger
from hub.sandbox import api, faults
from hub.sandbox.db import SandboxDB, SandboxFileGone
from hub.sandbox.errors import (
    NOT_FOUND,
    RATE_LIMITED,
    UNAUTHORIZED,
    UNEXPECTED,
    MXError,
)
from hub.sandbox.ratelimit import SlidingWindowLimiter
from hub.sandbox.wire import ClientGone, Receive, SandboxRequest, Scope, Send, error_reply
from hub.secrets import Secret
from hub.units import RateLimit

DEFAULT_RATE_LIMIT = RateLimit(25, 5.0)

#: SQLite's primary result codes for a database that cannot be written for now: full, I/O,
#: locked past the busy timeout, read-only, not openable. Answered 503 (see ``_storage_failed``),
#: as is a file gone from its path (``SandboxFileGone``).
STORAGE_FAILURES = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
    }
)


class Sandbox:
    """The sandbox's state and its raw ASGI entry point (mounted by :func:`create_app`)."""

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        db_path: str | None,
        rate_limit: RateLimit | None,
        clock: Clock,
    ) -> None:
        self.access_key = Secret(access_key)
        self.secret_key = Secret(secret_key)
        self.rate_limit = rate_limit
        self.clock = clock
        self.db = SandboxDB(db_path)
        self.limiter = SlidingWindowLimiter(rate_limit, clock) if rate_limit else None
        self.faults = faults.FaultInjector()
        self.log = get_logger("hub.sandbox")
        self._storage_errors = Throttle(1.0)

    def close(self) -> None:
        """Close the database and its worker thread (idempotent)."""
        self.db.close()

    def discard(self) -> None:
        """Close, for a start that did not happen: the database file is deleted when this
        start made it and nothing is in it (:meth:`SandboxDB.discard`)."""
        self.db.discard()

    def stopping(self) -> None:
        """A stop signal came: let go of the calls a ``timeout`` fault holds, so that the
        server's graceful shutdown does not wait for them (safe in a signal handler)."""
        self.faults.release_holds()

    def _authorised(self, req: SandboxRequest) -> str | None:
        access = req.query.get("accesskey", req.headers.get("x-lsq-accesskey"))
        secret = req.query.get("secretkey", req.headers.get("x-lsq-secretkey"))
        if access is None or secret is None:
            return None
        ok_access = self.access_key.matches(access)
        ok_secret = self.secret_key.matches(secret)
        return access if ok_access and ok_secret else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets: nothing to do
            return
        req = SandboxRequest.from_scope(scope, receive)
        try:
            response = await self._respond(req, send)
        except ClientGone:
            return
        if response is not None:
            await response(scope, receive, send)

    async def _respond(self, req: SandboxRequest, send: Send) -> Response | None:
        access = self._authorised(req)
        if access is None:
            self.log.info("sandbox_unauthorised", path=req.path)
            msg = "Invalid access key or secret key; check your AccessKey and SecretKey."
            return error_reply(MXError(401, UNAUTHORIZED, msg))
        route = api.resolve(req.method, req.path)
        if route is None:
            msg = f"The API {req.method} {req.path!r} could not be found; check the API signature."
            return error_reply(MXError(404, NOT_FOUND, msg))
        handler, arg = route
        fault = None
        if req.path.lower().startswith("/v2/"):
            if self.limiter is not None and not self.limiter.try_acquire(access):
                return error_reply(MXError(429, RATE_LIMITED, self.limiter.message()))
            fault = self.faults.next_fault()
            if fault is not None:
                self.log.info("sandbox_fault_injected", kind=fault, path=req.path)
                early = await self._early_fault(fault, access, req, send)
                if fault != "lost_response":
                    return early
        try:
            response = await handler(self, req, arg)
        except MXError as error:
            response = error_reply(error)
        except ClientGone:
            raise
        except Exception as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in STORAGE_FAILURES or isinstance(exc, SandboxFileGone):
                response = self._storage_failed(exc)
            else:
                self.log.exception("sandbox_request_failed", path=req.path, error=repr(exc))
                msg = f"The sandbox failed unexpectedly ({type(exc).__name__}); see its log."
                response = error_reply(MXError(500, UNEXPECTED, msg))
        if fault == "lost_response":
            await faults.drop_connection(req.scope, send, req.receive)
            return None
        return response

    def _storage_failed(self, exc: Exception) -> Response:
        """A 503 without the MX envelope for a database that cannot be written (a full disk, a
        read-only or locked file): an outage, as a real service's would be, which the hub
        retries, where a 500 with an MX exception would make its event dead. Logged at most
        once a second for the same error (``sandbox_storage_failed``, with ``unlogged``)."""
        more = self._storage_errors.extra(str(exc), self.clock.monotonic())
        if more is not None:
            self.log.error("sandbox_storage_failed", error=str(exc), **more)
        return PlainTextResponse(
            f"Service Unavailable: the sandbox's database cannot be written ({exc})",
            status_code=503,
        )

    async def _early_fault(
        self, fault: str, access: str, req: SandboxRequest, send: Send
    ) -> Response | None:
        if fault == "500":
            return PlainTextResponse("Internal Server Error", status_code=500)
        if fault == "429":
            # A call refused with 429 does not count against the rate limit.
            limiter = self.limiter or SlidingWindowLimiter(DEFAULT_RATE_LIMIT, self.clock)
            if self.limiter is not None:
                self.limiter.release(access)
            return error_reply(MXError(429, RATE_LIMITED, limiter.message()))
        if fault == "timeout":
            await self.faults.hold(req.receive)
            await faults.drop_connection(req.scope, send, req.receive)
        elif fault == "reset":
            await faults.drop_connection(req.scope, send, req.receive, reset=True)
        return None


def create_app(
    *,
    access_key: str,
    secret_key: str,
    db_path: str | None = None,
    rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
    clock: Clock = SYSTEM_CLOCK,
) -> Starlette:
    """The sandbox as a Starlette app (see :mod:`hub.sandbox` for mounting and closing)."""
    sandbox = Sandbox(
        access_key=access_key,
        secret_key=secret_key,
        db_path=db_path,
        rate_limit=rate_limit,
        clock=clock,
    )
    app = Starlette(routes=[Route("/{path:path}", endpoint=sandbox)])
    app.state.sandbox = sandbox
    return app


def sandbox_of(app: Any) -> Sandbox:
    """The :class:`Sandbox` behind an app made by :func:`create_app`."""
    sandbox: Sandbox = app.state.sandbox
    return sandbox
