"""Helpers for dispatcher tests: configs, a real SQLite store, fake servers, polling."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.config import load
from hub.config.models import Config, FacebookOptions, HubSpotOptions, LinkedInOptions
from hub.dispatch.fetch import FetchOutcome
from hub.dispatch.graph import GraphClient
from hub.dispatch.hubspot import HubSpotClient
from hub.dispatch.linkedin import LinkedInClient
from hub.dispatch.worker import Dispatcher
from hub.sandbox import create_app as create_sandbox
from hub.secrets import Secret
from hub.store import open_store
from hub.store.base import EventStore
from hub.store.models import Event, EventIn, IncomingDelivery, State
from hub.units import RateLimit
from tests.support.server import serve_in_thread

KEYS = {"LSQ_ACCESS": "ak-test", "LSQ_SECRET": "sk-test"}
#: KEYS and the secrets of :func:`facebook_yaml`'s endpoint.
FB_ENV = {
    **KEYS,
    "FB_APP_SECRET": "fb-app-secret-test",
    "FB_VERIFY_TOKEN": "fb-verify-token-test",
    "FB_PAGE_TOKEN": "EAAB-page-token-test",
}
CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"


def target_yaml(
    name: str,
    url: str,
    *,
    rate_limit: str = "off",
    timeout: str = "5s",
    retry: str = "{initial: 50ms, max_interval: 200ms, give_up_after: 1h}",
) -> str:
    """A target document whose keys come from ``LSQ_ACCESS`` / ``LSQ_SECRET``."""
    return (
        f"kind: target\nname: {name}\nurl: {url}\n"
        "access_key: ${LSQ_ACCESS}\nsecret_key: ${LSQ_SECRET}\n"
        f"rate_limit: {rate_limit}\ntimeout: {timeout}\nretry: {retry}\n"
    )


def flat_endpoint_yaml(name: str, target: str, *, required: str = "email", extra: str = "") -> str:
    """An unauthenticated endpoint and a mapping of flat JSON (email, first_name, seq), then
    ``extra`` field lines."""
    return f"""kind: endpoint
name: {name}
source: none
---
kind: mapping
name: {name}-map
endpoint: {name}
target: {target}
fields:
  EmailAddress: {{ path: $.{required}, required: true }}
  FirstName: $.first_name
  mx_Seq: $.seq
{extra}"""


def write_config(directory: Path, *documents: str, environ: Mapping[str, str] = KEYS) -> Config:
    """Write ``documents`` as ``hub.yaml`` in ``directory`` and load it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hub.yaml").write_text("\n---\n".join(documents))
    return load(directory, dict(environ))


def forms_config(tmp_path: Path, url: str, **target: str) -> Config:
    """The common set-up: target ``default`` at ``url`` (``target``: its other keys) and the
    flat ``forms`` endpoint mapped to it, written under ``tmp_path / "cfg"``."""
    return write_config(
        tmp_path / "cfg",
        target_yaml("default", url, **target),
        flat_endpoint_yaml("forms", "default"),
    )


@contextlib.asynccontextmanager
async def opened_store(path: Path) -> AsyncIterator[EventStore]:
    """A real SQLite store on ``path``, opened, closed on exit."""
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def enqueue(
    store: EventStore, endpoint: str, documents: list[Any], *, prefix: str = "d"
) -> list[int]:
    """Store one delivery per document (delivery ids ``prefix-N``); returns the event ids."""
    ids = []
    for n, document in enumerate(documents):
        body = orjson.dumps(document)
        results = await store.enqueue(
            IncomingDelivery(
                endpoint=endpoint,
                received_at=time.time(),
                body=body,
                content_type="application/json",
                headers={},
                events=(EventIn(delivery_id=f"{prefix}-{n}", document=document),),
            )
        )
        ids.append(results[0].id)
    return ids


async def wait_for(
    check: Callable[[], Awaitable[bool] | bool], *, timeout: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``check`` (plain or async) until it is true; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await _truth(check()):
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.05)


def leads(prefix: str, count: int) -> list[dict[str, str]]:
    """``count`` flat documents with distinct emails ``<prefix><n>@example.com``."""
    return [{"email": f"{prefix}{n}@example.com"} for n in range(count)]


async def _truth(value: Awaitable[bool] | bool) -> bool:
    return await value if inspect.isawaitable(value) else bool(value)


async def states(store: EventStore, ids: list[int]) -> dict[int, Event]:
    """The current events by id."""
    found = {}
    for event_id in ids:
        event = await store.get(event_id)
        assert event is not None
        found[event_id] = event
    return found


def all_in(state: State, store: EventStore, ids: list[int]) -> Callable[[], Awaitable[bool]]:
    """A check: every event of ``ids`` is in ``state``."""

    async def check() -> bool:
        return all(e.state == state for e in (await states(store, ids)).values())

    return check


class RecordedReads:
    """What a fake lead API (Graph, LinkedIn, HubSpot) was asked: one entry per read, with
    the ``id`` read and what the test wants to check (query, headers)."""

    def __init__(self) -> None:
        self.reads: list[dict[str, Any]] = []

    def record(self, ident: str, **seen: Any) -> None:
        self.reads.append({"id": ident, **seen})

    def count(self, ident: str) -> int:
        """How many times ``ident`` was read."""
        return sum(1 for read in self.reads if read["id"] == ident)


def retried(store: EventStore, event_id: int, attempts: int = 2) -> Callable[[], Awaitable[bool]]:
    """A check: the event is ``retrying`` after at least ``attempts`` attempts."""

    async def check() -> bool:
        event = (await states(store, [event_id]))[event_id]
        return event.state == State.RETRYING and event.attempts >= attempts

    return check


@contextlib.asynccontextmanager
async def running(config: Config, store: EventStore, **options: Any) -> AsyncIterator[Dispatcher]:
    """A started dispatcher, stopped on exit."""
    options.setdefault("poll", 0.05)
    dispatcher = Dispatcher(config=config, store=store, **options)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(timeout=5.0)


@contextlib.contextmanager
def sandbox_server(
    *,
    access_key: str = KEYS["LSQ_ACCESS"],
    secret_key: str = KEYS["LSQ_SECRET"],
    rate_limit: RateLimit | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, Any]]:
    """The real sandbox on uvicorn in a thread: yields (base url, app)."""
    app = create_sandbox(
        access_key=access_key, secret_key=secret_key, db_path=None, rate_limit=rate_limit
    )
    try:
        with serve_in_thread(app, port=port) as url:
            yield url, app
    finally:
        app.state.sandbox.close()


def sandbox_get(url: str, path: str, **params: str) -> Any:
    """GET a sandbox control/read path with the test keys."""
    return _sandbox("GET", url + path, params=params)


def sandbox_post(url: str, path: str, body: Any) -> Any:
    """POST JSON to a sandbox control path with the test keys."""
    return _sandbox("POST", url + path, json=body)


def _sandbox(method: str, url: str, **options: Any) -> Any:
    headers = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}
    response = httpx.request(method, url, headers=headers, timeout=10, **options)
    response.raise_for_status()
    return response.json()


class SlowGraph:
    """A Graph API that answers each lead ``delay`` s late (None: not until the test ends)
    with the email ``<id>@fb.example``; it counts the reads it holds at once."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.ended = threading.Event()  # set at teardown: every held read answers
        self.reads: list[str] = []
        self.answered: list[float] = []  # time.monotonic() of each answer
        self.held = 0
        self.most_held = 0

    async def lead(self, request: Request) -> Response:
        lead_id = request.path_params["lead_id"]
        self.reads.append(lead_id)
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        try:
            deadline = None if self.delay is None else time.monotonic() + self.delay
            while not self.ended.is_set() and (deadline is None or time.monotonic() < deadline):
                await asyncio.sleep(0.02)
        finally:
            self.held -= 1
            self.answered.append(time.monotonic())
        field_data = [{"name": "email", "values": [f"{lead_id}@fb.example"]}]
        return JSONResponse({"id": lead_id, "field_data": field_data})


@contextlib.contextmanager
def slow_graph(delay: float | None) -> Iterator[tuple[str, SlowGraph]]:
    """A :class:`SlowGraph` on loopback: (its base URL, the fake)."""
    fake = SlowGraph(delay)
    app = Starlette(routes=[Route("/v21.0/{lead_id}", fake.lead)])
    try:
        with serve_in_thread(app) as url:
            yield f"{url}/v21.0", fake
            fake.ended.set()
    finally:
        fake.ended.set()


def facebook_endpoint_yaml(graph_url: str, extra: str = "") -> str:
    """A Facebook endpoint ``fb`` reading leads from ``graph_url`` (its secrets from the
    environment: see :data:`FB_ENV`; ``extra``: more of its lines), and the start of its
    mapping ``fb-map``."""
    return f"""kind: endpoint
name: fb
source: facebook
app_secret: ${{FB_APP_SECRET}}
verify_token: ${{FB_VERIFY_TOKEN}}
page_access_token: ${{FB_PAGE_TOKEN}}
graph_url: {graph_url}
{extra}---
kind: mapping
name: fb-map
endpoint: fb
"""


def facebook_yaml(graph_url: str, extra: str = "") -> str:
    """A Facebook endpoint ``fb`` reading leads from ``graph_url``, mapped to ``default``."""
    return (
        facebook_endpoint_yaml(graph_url, extra)
        + """target: default
fields:
  EmailAddress: { path: "$.field_data[?(@.name=='email')].values[0]", required: true }
  FirstName: { path: $.first_name, default: F }
"""
    )


class RecordingTarget:
    """A LeadSquared that records each call's (EmailAddress, FirstName) in arrival order and
    creates the lead; a call whose FirstName is in ``slow`` is answered that many s late."""

    def __init__(self, slow: Mapping[str, float] | None = None) -> None:
        self.slow = dict(slow or {})
        self.calls: list[tuple[str, str]] = []
        self.arrived: list[float] = []  # time.monotonic() of each call's arrival

    async def capture(self, request: Request) -> Response:
        attributes = {a["Attribute"]: a["Value"] for a in await request.json()}
        call = (attributes.get("EmailAddress", ""), attributes.get("FirstName", ""))
        self.calls.append(call)
        self.arrived.append(time.monotonic())
        await asyncio.sleep(self.slow.get(call[1], 0.0))
        message = {"Id": "a", "RelatedId": f"lead-{call[0]}", "IsCreated": True}
        return JSONResponse({"Status": "Success", "Message": message})

    def names(self, email: str) -> list[str]:
        """The FirstName of each call for ``email``, in arrival order."""
        return [name for mail, name in self.calls if mail == email]


@contextlib.contextmanager
def recording_target(
    slow: Mapping[str, float] | None = None,
) -> Iterator[tuple[str, RecordingTarget]]:
    """A :class:`RecordingTarget` on loopback: (its base URL, the fake)."""
    fake = RecordingTarget(slow)
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield url, fake


# --- raw TCP servers that misbehave ----------------------------------------------------------


def _read_request(conn: socket.socket) -> None:
    """Read one whole HTTP request (headers and Content-Length body), so a close is clean."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


@contextlib.contextmanager
def socket_server(
    handle: Callable[[socket.socket, threading.Event], None], *, port: int = 0
) -> Iterator[str]:
    """A TCP server on loopback that calls ``handle(connection, stop)`` for each connection
    it accepts, one at a time, until the block ends (``stop`` is set then); a connection
    ``handle`` leaves open is closed at the end. Yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            held.append(conn)
            with contextlib.suppress(OSError):
                handle(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


@contextlib.contextmanager
def raw_server(behaviour: str) -> Iterator[str]:
    """A TCP server on loopback that reads a request, then ``reset``s, ``close``s, ``hang``s,
    or ``dribble``s: a 200 whose body of 200 bytes comes one byte every 0.1 s.

    Yields its base URL.
    """

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        if behaviour == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        elif behaviour == "close":
            conn.close()
        elif behaviour == "dribble":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            conn.sendall(head + b"Content-Length: 200\r\n\r\n")
            for _ in range(200):
                if stop.wait(0.1):
                    break
                conn.sendall(b" ")
            conn.close()
        # else: hang (held open until the end)

    with socket_server(handle) as url:
        yield url


#: One lead read through a client: ``read(http, api_url)``.
Read = Callable[[httpx.AsyncClient, str], Awaitable[FetchOutcome]]


def graph_options(url: str, token: str, read_timeout: float = 10.0) -> FacebookOptions:
    """A Facebook endpoint's options reading from the Graph API at ``url`` with ``token``."""
    return FacebookOptions(
        app_secret=Secret("a"),
        verify_token=Secret("v"),
        page_access_token=Secret(token),
        graph_url=url,
        read_timeout=read_timeout,
    )


def lead_readers(token: str, read_timeout: float = 10.0) -> dict[str, Read]:
    """One lead read per API client (Graph, LinkedIn, HubSpot), each with ``token``."""

    async def graph(http: httpx.AsyncClient, url: str) -> FetchOutcome:
        return await GraphClient(http).fetch_lead(graph_options(url, token, read_timeout), "1")

    async def linkedin(http: httpx.AsyncClient, url: str) -> FetchOutcome:
        options = LinkedInOptions(
            client_secret=Secret("c"),
            access_token=Secret(token),
            api_url=url,
            read_timeout=read_timeout,
        )
        urn = "urn:li:leadGenFormResponse:r1"
        return await LinkedInClient(http).fetch_response(options, urn)

    async def hubspot(http: httpx.AsyncClient, url: str) -> FetchOutcome:
        options = HubSpotOptions(
            client_secret=Secret("c"),
            webhook_url="https://hub.example.com/hooks/hs",
            access_token=Secret(token),
            api_url=url,
            read_timeout=read_timeout,
        )
        event = {"subscriptionType": "contact.creation", "objectId": 1}
        return await HubSpotClient(http).fetch_object(options, event)

    return {"graph": graph, "linkedin": linkedin, "hubspot": hubspot}


def refusing_update(name: str, when: str, raise_sql: str) -> str:
    """SQL (PostgreSQL) for a real failure of one kind of write: a trigger named ``name``
    runs ``raise_sql`` for each update of ``events`` that meets ``when`` (on OLD and NEW),
    while the table ``name`` has a row (``DELETE FROM name`` ends the failure)."""
    return f"""
CREATE TABLE {name} (down INTEGER);
INSERT INTO {name} VALUES (1);
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {name}) THEN
    {raise_sql};
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER {name} BEFORE UPDATE ON events FOR EACH ROW
WHEN ({when}) EXECUTE FUNCTION {name}();
"""
