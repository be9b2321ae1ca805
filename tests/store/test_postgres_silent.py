"""A PostgreSQL URL naming a server that takes the connection and never answers (a stuck
server, a port forwarded to nothing that answers): the store says the server did not answer in
time. Its reason read ``cannot be reached (TimeoutError: )``, the timeout's own text being
empty. Needs no PostgreSQL: a plain socket that accepts and stays silent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hub.store import StoreUnavailable, open_store, postgres


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port on loopback whose connections are accepted, read and never answered."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


async def test_a_server_that_never_answers_is_said_not_to_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 0.5)
    with silent_server() as port:
        store = open_store(f"postgresql://hub:secret@127.0.0.1:{port}/leads")
        with pytest.raises(StoreUnavailable) as info:
            await store.open()
    message = str(info.value)
    assert "cannot be reached (TimeoutError: the server did not answer in time)" in message
    assert "secret" not in message
