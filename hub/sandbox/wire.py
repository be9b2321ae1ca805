"""Requests and replies as the sandbox sees them, below Starlette's routing.

The sandbox routes by itself (paths match case-insensitively, and the check
order of sandbox.md must hold), so it reads the raw ASGI scope: the path under
any mount point, query parameters keyed by lower-cased name (the last value of
a repeated name wins), headers keyed by lower-cased name. The body is read only
when a handler asks for it, after the auth, route, rate-limit and fault checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response

from hub.sandbox.attributes import MAX_BODY
from hub.sandbox.errors import MXError, envelope, invalid_input

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client hung up before its request body arrived."""


def route_path(scope: Scope) -> str:
    """The request path below the mount point (``/sandbox/v2/...`` -> ``/v2/...``)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


@dataclass(slots=True)
class SandboxRequest:
    """One HTTP request: method, path, query and headers; the body on demand."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    receive: Receive
    scope: Scope
    _body: bytes | None = field(default=None)

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive) -> SandboxRequest:
        """Read what the checks need from an ASGI ``http`` scope."""
        raw_query = bytes(scope.get("query_string", b"")).decode("latin-1")
        query = {
            name.lower(): value
            for name, value in parse_qsl(raw_query, keep_blank_values=True, errors="replace")
        }
        headers = {
            bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        return cls(
            method=str(scope.get("method", "GET")).upper(),
            path=route_path(scope),
            query=query,
            headers=headers,
            receive=receive,
            scope=scope,
        )

    async def body(self) -> bytes:
        """The whole body (read once).

        Raises:
            MXError: 400 when it is larger than the sandbox accepts.
            ClientGone: when the client disconnected first.
        """
        if self._body is not None:
            return self._body
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > MAX_BODY:
                msg = f"The body is larger than {MAX_BODY} bytes; send less."
                raise invalid_input(msg)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        """The body parsed as JSON (any Content-Type; the control API is lenient).

        Raises:
            MXError: 400 when it is not JSON.
        """
        try:
            return orjson.loads(await self.body())
        except orjson.JSONDecodeError as exc:
            msg = f"The body is not valid JSON ({exc})."
            raise invalid_input(msg) from None


def json_reply(data: Any, status: int = 200) -> Response:
    """A JSON response."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_reply(error: MXError) -> Response:
    """The MX error envelope for ``error``, with its status."""
    return json_reply(envelope(error.exception_type, error.message), error.status)
