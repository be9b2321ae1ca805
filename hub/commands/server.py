"""uvicorn as ``leadhub serve`` and ``leadhub sandbox`` run it.

Three additions to :class:`uvicorn.Server`: one structured "ready" line once the socket
listens (with the address it really bound, so ``--port 0`` tells the truth), exit code 0
after SIGTERM/SIGINT, and a failed start-up left to the command. uvicorn shuts down
gracefully on those signals and then re-raises them (exit 143); for these commands a signal
is the normal way to stop. When start-up fails (the store cannot be opened, the port is
taken) uvicorn exits 3 from inside its loop; :meth:`Server.run` turns that into
:attr:`Server.started` staying false, for the command to say so and choose its exit code.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn


class Server(uvicorn.Server):
    """uvicorn that calls ``on_ready(url)`` once listening and exits 0 after a signal.

    ``on_signal`` runs as soon as a stop signal arrives, before the graceful shutdown, inside
    the signal handler (so it only sets flags). ``on_stopping(name)`` is told the first stop
    signal's name (``SIGTERM``, ``SIGINT``) on the event loop, before anything the signal sets
    off runs there: it may log, which a signal handler must not (the handler interrupts the
    main thread anywhere, perhaps inside the log writer, holding its lock).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_ready: Callable[[str], None],
        on_signal: Callable[[], None] | None = None,
        on_stopping: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._on_signal = on_signal
        self._on_stopping = on_stopping

    def run(self, sockets: Any = None) -> None:
        try:
            super().run(sockets=sockets)
        except SystemExit:
            if self.started:
                raise

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_stopping is not None:  # first: queued ahead of what the stop wakes
            _tell_soon(self._on_stopping, signal.Signals(sig).name)
            self._on_stopping = None  # once: a second Ctrl+C only hurries the stop
        super().handle_exit(sig, frame)
        if self._on_signal is not None:
            self._on_signal()
        self._captured_signals.clear()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_ready(self.bound_url())

    def bound_url(self) -> str:
        """``http://HOST:PORT`` of the first listening socket (the configured one before); an
        IPv6 host in brackets (``http://[::1]:9000``), as a URL writes it: the sandbox's ready
        line said ``http://::1:9000``, which no client reads."""
        host, port = self.config.host, self.config.port
        sockets = [sock for server in self.servers for sock in server.sockets or ()]
        if sockets:
            host, port = sockets[0].getsockname()[:2]
        if ":" in str(host) and not str(host).startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{port}"


def _tell_soon(callback: Callable[[str], None], name: str) -> None:
    """``callback(name)`` on the running event loop, from a signal handler: the loop's
    signal-safe way in (``call_soon_threadsafe`` also wakes a loop waiting in select).
    uvicorn installs its handlers only while its loop runs; called with none, at once."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        callback(name)
        return
    loop.call_soon_threadsafe(callback, name)
