"""A real hub app on uvicorn, backed by a real SQLite store in tmp_path, with a frozen clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.clock import ManualClock
from hub.commands.protocol import HubHttpProtocol
from hub.config.models import Config, Endpoint
from hub.store import open_store
from hub.store.models import Event
from hub.web.app import create_app, store_lifespan
from tests.sources import fixtures as fx
from tests.support.server import serve_in_thread


async def stored_events(db_url: str) -> list[Event]:
    """Every stored event, oldest first, read through a second store on the same file."""
    store = open_store(db_url)
    await store.open()
    try:
        return list(reversed(await store.list(limit=100_000)))
    finally:
        await store.close()


def read_events(db_url: str) -> list[Event]:
    """:func:`stored_events` from synchronous code."""
    return asyncio.run(stored_events(db_url))


@dataclass
class Hub:
    url: str
    client: httpx.Client
    db_url: str
    db_dir: Path
    clock: ManualClock
    app: object

    def events(self) -> list[Event]:
        return read_events(self.db_url)

    def send(self, d: fx.Delivery, **kwargs: object) -> httpx.Response:
        return self.client.post(d.path, content=d.body, headers=d.headers, **kwargs)  # type: ignore[arg-type]


def make_config(tmp_path: Path, endpoints: Mapping[str, Endpoint] | None = None) -> Config:
    endpoints = fx.endpoints() if endpoints is None else endpoints
    return Config(directory=tmp_path, targets={}, endpoints=endpoints, mappings={})


@pytest.fixture(params=["thread", "process"])
def hub(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hub]:
    """A running hub with every fixture endpoint; its clock is frozen at the Standard fixture.

    Once with each store writer: ``process`` is what ``leadhub serve`` runs (the store's
    child process checks skimmed bodies and writes) and goes with serve's HTTP protocol
    (``HubHttpProtocol``: a plain webhook POST skips the ASGI cycle); ``thread`` is the
    in-process writer, behind uvicorn's own protocol (every request through ASGI).
    """
    with running_hub(tmp_path, writer=request.param) as running:
        yield running


@contextlib.contextmanager
def running_hub(
    tmp_path: Path,
    endpoints: Mapping[str, Endpoint] | None = None,
    writer: str = "thread",
    **server: Any,
) -> Iterator[Hub]:
    """A hub app on uvicorn with a SQLite store in ``tmp_path`` and a frozen clock;
    ``server``: uvicorn settings beyond the usual (``timeout_keep_alive=0``, say)."""
    clock = ManualClock(fx.STANDARD_TIME)
    db_dir = tmp_path / "data"
    db_dir.mkdir()
    db_url = f"sqlite:///{db_dir / 'hub.db'}"
    store = open_store(db_url, clock=clock, writer=writer)
    app = create_app(
        config=make_config(tmp_path, endpoints),
        store=store,
        clock=clock,
        lifespan_hooks=[store_lifespan(store)],
    )
    # On serve's protocol with either writer, as serve runs it (its protocol finds the hub's
    # app only unwrapped: no proxy headers). The thread writer's hub ran on uvicorn's own,
    # which closes a connection at the sender's half-close: an answer slower than that was
    # never written (a transfer-encoding test got b'' in CI with its lead stored).
    serving: dict[str, Any] = {"http": HubHttpProtocol, "proxy_headers": False, **server}
    with (
        serve_in_thread(app, **serving) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield Hub(url, client, db_url, db_dir, clock, app)


@pytest.fixture
def fast_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Hub, list[int]]]:
    """A hub on serve's protocol and store writer; and the statuses the protocol answered
    itself (without ASGI), in order."""
    answered: list[int] = []
    respond = HubHttpProtocol._respond

    def counting(self: HubHttpProtocol, cycle: Any, status: int, *rest: Any) -> None:
        answered.append(status)
        respond(self, cycle, status, *rest)

    monkeypatch.setattr(HubHttpProtocol, "_respond", counting)
    with running_hub(tmp_path, writer="process") as hub:
        yield hub, answered
