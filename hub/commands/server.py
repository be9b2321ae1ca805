"""uvicorn as ``leadhub serve`` and ``leadhub sandbox`` run it.

Three additions to :class:`uvicorn.Server`: one structured "ready" line once the socket
listens (with the address it really bound, so ``--port 0`` tells the truth), exit code 0
after SIGTERM/SIGINT, and a start-up that fails without a traceback when the cause is known
and already logged. uvicorn shuts down gracefully on those signals and then re-raises them
(exit 143); for these commands a signal is the normal way to stop. When start-up fails
(the store cannot be opened, the port is taken) uvicorn exits 3 from inside its loop;
:meth:`Server.run` turns that into :attr:`Server.started` staying false, for the command to
say so and choose its exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send


class Server(uvicorn.Server):
    """uvicorn that calls ``on_ready(url)`` once listening and exits 0 after a signal.

    ``on_signal`` runs as soon as a stop signal arrives, before the graceful shutdown.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_ready: Callable[[str], None],
        on_signal: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._on_signal = on_signal

    def run(self, sockets: Any = None) -> None:
        try:
            super().run(sockets=sockets)
        except SystemExit:
            if self.started:
                raise

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._on_signal is not None:
            self._on_signal()
        self._captured_signals.clear()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_ready(self.bound_url())

    def bound_url(self) -> str:
        """``http://HOST:PORT`` of the first listening socket (the configured one before)."""
        host, port = self.config.host, self.config.port
        for server in self.servers:
            for sock in server.sockets or ():
                host, port = sock.getsockname()[:2]
                return f"http://{host}:{port}"
        return f"http://{host}:{port}"


class KnownStartupFailure:
    """ASGI middleware: a start-up failure that the app has logged already (it set
    ``app.state.startup_failure`` to what it logged) reaches uvicorn without its traceback.

    Starlette reports any exception from the lifespan as ``lifespan.startup.failed`` with
    the traceback as its message, which uvicorn prints. For a cause the hub knows (a store
    it cannot open) the structured log line says what to fix, and a traceback beside it only
    buries that; an unexpected exception keeps its traceback.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and getattr(
                self.app.state, "startup_failure", None
            ):
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, send_quietly)
