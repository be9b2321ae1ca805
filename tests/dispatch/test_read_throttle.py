"""An API that says the app or account is throttled holds every lead read of the endpoint for
the time it gives (Retry-After, Graph's estimated_time_to_regain_access), not only the read
it answered: the other events' reads wait, untried, and one line says so."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.config import Config
from hub.dispatch.fetch import parse_wait
from hub.store.models import EventIn, IncomingDelivery, State
from tests.dispatch.support import (
    FB_ENV,
    RecordedReads,
    all_in,
    enqueue,
    facebook_yaml,
    flat_endpoint_yaml,
    leads,
    opened_store,
    running,
    sandbox_post,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread

#: Graph's answer to a read while the page's LeadGen calls are throttled (code 80005).
LEADGEN_LIMIT = {
    "error": {
        "message": "(#80005) There have been too many leadgen api calls to this Page account. "
        "Wait a bit and try again.",
        "type": "OAuthException",
        "code": 80005,
    }
}


class ThrottledApi(RecordedReads):
    """A lead API that answers every read with ``status``, ``body`` and ``headers`` while
    ``throttled``, the lead (email ``<id>@fb.example``) after."""

    def __init__(
        self, status: int, body: Any, headers: Mapping[str, str], times: int | None = None
    ) -> None:
        super().__init__()
        self.answer = (status, body, dict(headers))
        self.times = times  # throttled answers before the leads (None: every one)

    @property
    def throttled(self) -> bool:
        return self.times is None or len(self.reads) <= self.times

    async def read(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        self.record(ident)
        if self.throttled:
            status, body, headers = self.answer
            return JSONResponse(body, status_code=status, headers=headers)
        field_data = [{"name": "email", "values": [f"{ident}@fb.example"]}]
        return JSONResponse({"id": ident, "field_data": field_data})


@pytest.fixture
def throttled_graph(request: pytest.FixtureRequest) -> Iterator[tuple[str, ThrottledApi]]:
    fake = ThrottledApi(*request.param)
    app = Starlette(routes=[Route("/v21.0/{ident}", fake.read)])
    with serve_in_thread(app) as url:
        yield f"{url}/v21.0", fake


def notices(count: int) -> list[dict[str, str]]:
    return [{"leadgen_id": f"9000{n}", "page_id": "1"} for n in range(count)]


def waiting(store: Any, ids: list[int]) -> Callable[[], Awaitable[bool]]:
    """Whether every event of ``ids`` (read at each call: the list may grow) waits, not
    being sent, saying why."""

    async def all_wait() -> bool:
        found = await states(store, ids)
        return all(e.last_error and e.state != State.SENDING for e in found.values())

    return all_wait


BUC_USAGE = orjson.dumps(
    {
        "104729318842215": [
            {
                "type": "pages",
                "call_count": 100,
                "total_cputime": 12,
                "total_time": 20,
                "estimated_time_to_regain_access": 45,
            }
        ]
    }
).decode()


@pytest.mark.parametrize(
    ("throttled_graph", "wait"),
    [
        ((400, LEADGEN_LIMIT, {"X-Business-Use-Case-Usage": BUC_USAGE}), 45 * 60),
        ((429, {"error": "slow down"}, {"Retry-After": "1800"}), 1800),
    ],
    indirect=["throttled_graph"],
    ids=["graph-buc-usage", "retry-after"],
)
async def test_a_throttled_read_holds_every_read_of_the_endpoint_for_the_time_given(
    tmp_path: Path, throttled_graph: tuple[str, ThrottledApi], wait: float
) -> None:
    """Graph's code 80005 with its usage header's estimated_time_to_regain_access (45 minutes),
    or a 429 with Retry-After (1800 s): the lead read so is retried no sooner than that, and
    the endpoint's other events (claimed before, or received during the hold) go back
    untried, due then, their last error saying why, without a read each (every one of them
    was read, and retried on its own backoff a few seconds later: a throttled app hammering
    Graph). One ``lead_reads_throttled`` line."""
    graph_url, fake = throttled_graph
    with sandbox_server() as (url, _):
        cfg = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            facebook_yaml(graph_url),
            flat_endpoint_yaml("forms", "default"),
            environ=FB_ENV,
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", notices(6), prefix="fb")
            with structlog.testing.capture_logs() as logs:
                started = time.time()
                async with running(cfg, store, reads_per_endpoint=1):
                    all_wait = waiting(store, ids)
                    await wait_for(all_wait, what="every event waiting")
                    # one received during the hold waits too, saying why (not "due", silent)
                    ids += await enqueue(store, "fb", [{"leadgen_id": "90099"}], prefix="later")
                    await wait_for(all_wait, what="the later event waiting")
                    await asyncio.sleep(0.3)  # claims go on meanwhile
                    events = await states(store, ids)
                # A restart (which reads again the leads whose read failed: a token fixed)
                # leaves them waiting: the API's wait holds whatever changed here.
                async with running(cfg, store, reads_per_endpoint=1):
                    flat = await enqueue(store, "forms", leads("f", 1), prefix="flat")
                    await wait_for(all_in(State.DELIVERED, store, flat), what="claims go on")
                    after = await states(store, ids)
        assert {e.id: e.next_attempt_at for e in after.values()} == {
            e.id: e.next_attempt_at for e in events.values()
        }
        assert len(fake.reads) == 1
        (read,) = [e for e in events.values() if e.attempts == 1]
        assert read.state == State.RETRYING
        assert read.next_attempt_at >= started + wait
        others = [e for e in events.values() if e is not read]
        for event in others:
            assert event.attempts == 0
            assert event.next_attempt_at >= started + wait
            assert "throttled" in (event.last_error or "")
        lines = [line for line in logs if line["event"] == "lead_reads_throttled"]
        assert len(lines) == 1
        assert lines[0]["endpoint"] == "fb"
        assert lines[0]["seconds"] >= wait - 60


def test_waits_are_parsed_from_the_answer_headers() -> None:
    """Retry-After in seconds or as an HTTP date; Graph's usage headers' minutes (of the lead
    reads' own use cases); the longest of them; nothing for what is no time (a negative,
    text, a malformed JSON), capped at a day."""
    now = 1_700_000_000.0
    assert parse_wait({"retry-after": "120"}, now) == 120
    assert parse_wait({"retry-after": "Tue, 14 Nov 2023 22:46:40 GMT"}, now) == 2000
    assert parse_wait({"x-business-use-case-usage": BUC_USAGE}, now) == 45 * 60
    # another use case of the business throttled for longer holds no lead read
    cases = [
        {"type": "ads_management", "estimated_time_to_regain_access": 600},
        {"type": "leadgen", "estimated_time_to_regain_access": 2},
    ]
    usage = orjson.dumps({"104729318842215": cases}).decode()
    assert parse_wait({"x-business-use-case-usage": usage}, now) == 2 * 60
    usage = '{"call_count": 100, "estimated_time_to_regain_access": 3}'
    assert parse_wait({"x-page-usage": usage, "retry-after": "30"}, now) == 180
    for value in ("-5", "soon", "nan", "inf", ""):
        assert parse_wait({"retry-after": value}, now) is None
    assert parse_wait({"x-business-use-case-usage": "{not json"}, now) is None
    assert parse_wait({"x-app-usage": '{"call_count": 100}'}, now) is None
    assert parse_wait({"retry-after": "99999999"}, now) == 24 * 3600
    assert parse_wait({}, now) is None


HUBSPOT_EVENT = {
    "eventId": 1,
    "portalId": 4815162,
    "subscriptionType": "contact.creation",
    "objectId": 96027715412,
}


async def test_a_429_without_a_time_holds_the_endpoint_for_its_retry_ceiling(
    tmp_path: Path,
) -> None:
    """HubSpot's 429 (its secondly limit) gives no Retry-After: the endpoint's reads are held
    for the target's retry ceiling (an hour here), the other events untried, one line."""
    fake = ThrottledApi(429, {"status": "error", "message": "You have reached your limit."}, {})
    app = Starlette(routes=[Route("/crm/v3/objects/contacts/{ident}", fake.read)])
    endpoint = """kind: endpoint
name: hs
source: hubspot
client_secret: ${HS_SECRET}
webhook_url: https://hub.example.com/hooks/hs
access_token: ${HS_TOKEN}
api_url: %s
---
kind: mapping
name: hs-map
endpoint: hs
fields:
  EmailAddress: { path: $.properties.email, required: true }
"""
    hourly = "{initial: 1h, max_interval: 1h, give_up_after: 72h}"
    with sandbox_server() as (url, _), serve_in_thread(app) as api_url:
        cfg = write_config(
            tmp_path / "cfg",
            target_yaml("default", url, retry=hourly),
            endpoint % api_url,
            environ={**FB_ENV, "HS_SECRET": "cs", "HS_TOKEN": "pat-na1-token"},
        )
        async with opened_store(tmp_path / "hub.db") as store:
            events = [{**HUBSPOT_EVENT, "objectId": 960 + n} for n in range(4)]
            ids = await enqueue(store, "hs", events, prefix="hs")
            with structlog.testing.capture_logs() as logs:
                started = time.time()
                async with running(cfg, store, reads_per_endpoint=1):
                    all_wait = waiting(store, ids)
                    await wait_for(all_wait, what="every event waiting")
                    found = await states(store, ids)
        assert len(fake.reads) == 1
        assert all(e.next_attempt_at >= started + 3600 for e in found.values())
        assert sorted(e.attempts for e in found.values()) == [0, 0, 0, 1]
        (line,) = [line for line in logs if line["event"] == "lead_reads_throttled"]
        assert line["seconds"] == 3600
        assert "HTTP 429" in line["reason"]


@pytest.mark.parametrize(
    "throttled_graph",
    [
        (
            400,
            {"error": {"message": "(#4) Application request limit reached", "code": 4}},
            {"Retry-After": "2"},
            1,
        )
    ],
    indirect=True,
)
async def test_reads_go_on_once_the_hold_ends(
    tmp_path: Path, throttled_graph: tuple[str, ThrottledApi]
) -> None:
    """Graph's code 4 (the app's limit) for the first read, with 2 s to wait: once they are
    up, every lead is read once and delivered, and ``lead_reads_resumed`` says the hold ended
    (a warning, as ``lead_reads_throttled`` is: an alert on it resolves)."""
    graph_url, fake = throttled_graph
    with sandbox_server() as (url, _):
        cfg = write_config(
            tmp_path / "cfg", target_yaml("default", url), facebook_yaml(graph_url), environ=FB_ENV
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", notices(4), prefix="fb")
            with structlog.testing.capture_logs() as logs:
                async with running(cfg, store, reads_per_endpoint=1):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        assert len(fake.reads) == 5
        (resumed,) = [line for line in logs if line["event"] == "lead_reads_resumed"]
        assert resumed["endpoint"] == "fb"
        assert resumed["holds"] == 1
        assert resumed["log_level"] == "warning"
        assert resumed["seconds"] >= 2
        assert sorted({read["id"] for read in fake.reads}) == [f"9000{n}" for n in range(4)]


@contextlib.contextmanager
def graph_beside_sandbox(
    tmp_path: Path,
    read: Callable[[Request], Awaitable[Response]],
    *,
    retry: str | None = None,
    extra: str = "",
) -> Iterator[tuple[Config, str]]:
    """A Graph stand-in answering each lead read with ``read``, a sandbox, and the Facebook
    endpoint reading from the one for a target on the other (its ``retry``, the endpoint's
    ``extra`` lines): (that configuration, the sandbox's url)."""
    app = Starlette(routes=[Route("/v21.0/{ident}", read)])
    with sandbox_server() as (url, _), serve_in_thread(app) as api_url:
        target = (
            target_yaml("default", url)
            if retry is None
            else target_yaml("default", url, retry=retry)
        )
        facebook = facebook_yaml(f"{api_url}/v21.0", extra)
        yield write_config(tmp_path / "cfg", target, facebook, environ=FB_ENV), url


def short_window_config(tmp_path: Path, url: str, graph_url: str) -> Config:
    """The Facebook endpoint reading from ``graph_url``, its target the sandbox at ``url``
    with a give_up_after of a second (retried every 50-200 ms)."""
    retry = "{initial: 50ms, max_interval: 200ms, give_up_after: 1s}"
    return write_config(
        tmp_path / "cfg",
        target_yaml("default", url, retry=retry),
        facebook_yaml(graph_url),
        environ=FB_ENV,
    )


def settled(store: Any, ids: list[int]) -> Callable[[], Awaitable[bool]]:
    """Whether every event of ``ids`` is delivered, or one is dead (no waiting for the rest)."""

    async def check() -> bool:
        found = (await states(store, ids)).values()
        done = {State.DELIVERED, State.DEAD}
        return all(e.state in done for e in found) or any(e.state == State.DEAD for e in found)

    return check


@pytest.mark.parametrize(
    "throttled_graph",
    [(400, LEADGEN_LIMIT, {"Retry-After": "2"}, 2)],
    indirect=True,
)
async def test_time_the_api_held_the_reads_does_not_use_up_give_up_after(
    tmp_path: Path, throttled_graph: tuple[str, ThrottledApi]
) -> None:
    """Graph throttles the page's lead reads (code 80005, 2 s to wait) twice in a row, the
    target's give_up_after a second: the lead read after the first hold, throttled again, is
    held once more, not dead (it was, 'gave up after 2 attempt(s)': the API's hold used up its
    window, as the time a proxy refused the reads does not), and once the API answers every
    lead is delivered."""
    graph_url, fake = throttled_graph
    with sandbox_server() as (url, _):
        cfg = short_window_config(tmp_path, url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", notices(3), prefix="fb")
            async with running(cfg, store, reads_per_endpoint=1):
                await wait_for(settled(store, ids), what="every lead delivered, or one dead")
                found = await states(store, ids)
    assert [e.last_error for e in found.values() if e.state == State.DEAD] == []
    assert len(fake.reads) == 5  # two throttled, then each lead once
    assert sorted({read["id"] for read in fake.reads}) == [f"9000{n}" for n in range(3)]


async def test_one_read_probes_the_api_when_a_hold_ends(tmp_path: Path) -> None:
    """A lead read throttled (a 429, 3 s to wait), three more leads received during the hold:
    when it ends and the API still throttles, one read goes out, and the hold starts again
    with the others never read (all four were read at once, each refused again and counting
    an attempt). Once the API answers, every lead is read once and delivered; one
    ``lead_reads_throttled`` line per hold, one ``lead_reads_resumed``."""
    fake = ThrottledApi(429, {"error": "slow down"}, {"Retry-After": "3"})
    with graph_beside_sandbox(tmp_path, fake.read) as (cfg, _url):
        async with opened_store(tmp_path / "hub.db") as store:
            with structlog.testing.capture_logs() as logs:

                def holds() -> list[Any]:
                    return [line for line in logs if line["event"] == "lead_reads_throttled"]

                async with running(cfg, store):
                    ids = await enqueue(store, "fb", notices(1), prefix="fb")
                    await wait_for(lambda: len(holds()) == 1, what="the first hold")
                    first_until = holds()[0]["until"]
                    ids += await enqueue(store, "fb", notices(4)[1:], prefix="later")

                    async def held_again() -> bool:
                        found = (await states(store, ids)).values()
                        return all(
                            e.state != State.SENDING and e.next_attempt_at > first_until + 1
                            for e in found
                        )

                    await wait_for(held_again, what="every lead held again after the first hold")
                    probed = list(fake.reads)
                    attempts = sorted(e.attempts for e in (await states(store, ids)).values())
                    fake.times = len(fake.reads)  # the API answers from now on
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    assert len(probed) == 2  # the first read, and one probe when the hold ended
    assert attempts == [0, 0, 0, 2] or attempts == [0, 0, 1, 1]
    assert len(holds()) == 2
    assert len([line for line in logs if line["event"] == "lead_reads_resumed"]) == 1
    assert len(fake.reads) == 2 + 4
    assert sorted({read["id"] for read in fake.reads}) == [f"9000{n}" for n in range(4)]


def send_failed(store: Any, ids: list[int]) -> Callable[[], Awaitable[bool]]:
    """Whether the one event of ``ids`` is dead, or its call failed with a 500."""

    async def check() -> bool:
        (event,) = (await states(store, ids)).values()
        return event.state == State.DEAD or "500" in (event.last_error or "")

    return check


@pytest.mark.parametrize(
    "throttled_graph",
    [(400, LEADGEN_LIMIT, {"Retry-After": "2"}, 1)],
    indirect=True,
)
async def test_time_the_api_held_the_read_does_not_use_up_the_sends_give_up_after(
    tmp_path: Path, throttled_graph: tuple[str, ThrottledApi]
) -> None:
    """A lead whose read Graph held for 2 s, the target's give_up_after a second, then read:
    LeadSquared failing its call (a 500) retries it, not dead at its first call ('gave up
    after 2 attempt(s)': the read's hold used up its window for the send), and it is
    delivered once the target answers."""
    graph_url, fake = throttled_graph
    with sandbox_server() as (url, _):
        sandbox_post(url, "/_sandbox/faults", {"rate": 1.0, "kinds": ["500"], "seed": 1})
        cfg = short_window_config(tmp_path, url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", notices(1), prefix="fb")
            async with running(cfg, store):
                await wait_for(send_failed(store, ids), what="the lead's call failed")
                (failed,) = (await states(store, ids)).values()
                sandbox_post(url, "/_sandbox/faults", {"rate": 0})
                await wait_for(settled(store, ids), what="the lead delivered, or dead")
                (event,) = (await states(store, ids)).values()
    # not dead at its first failed call: retrying, or (retried every 50-200 ms) being sent again
    assert failed.state in (State.RETRYING, State.SENDING), failed.last_error
    assert event.state == State.DELIVERED, event.last_error
    assert len(fake.reads) == 2


async def test_time_the_api_held_the_reads_before_a_restart_does_not_use_up_give_up_after(
    tmp_path: Path,
) -> None:
    """As above, across a restart: Graph holds the page's reads (3 s to wait), the target's
    give_up_after a second, and the dispatcher stops well into the hold; the next one, Graph
    answering once the hold is over, meets a 500 on the lead's call. The lead is retried, not
    dead (the store kept the hold with the end the API gave it, which a restart does not
    change: forgotten at the restart, the lead was dead at that 500), then delivered."""
    fake = ThrottledApi(400, LEADGEN_LIMIT, {"Retry-After": "3"}, times=1)
    app = Starlette(routes=[Route("/v21.0/{ident}", fake.read)])
    with serve_in_thread(app) as graph, sandbox_server() as (url, _):
        cfg = short_window_config(tmp_path, url, f"{graph}/v21.0")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", notices(1), prefix="fb")
            async with running(cfg, store):
                await wait_for(lambda: len(fake.reads) == 1, what="the throttled read")
                await asyncio.sleep(1.5)  # held for longer than give_up_after
            stopped = time.time()
            (began, ended), *others = (await store.kept_spans("reads", ["fb"]))["fb"]
            sandbox_post(url, "/_sandbox/faults", {"rate": 1.0, "kinds": ["500"], "seed": 1})
            async with running(cfg, store):
                await wait_for(send_failed(store, ids), what="the lead's call failed")
                (failed,) = (await states(store, ids)).values()
                sandbox_post(url, "/_sandbox/faults", {"rate": 0})
                await wait_for(settled(store, ids), what="the lead delivered, or dead")
                (event,) = (await states(store, ids)).values()
    assert others == []
    assert ended - began >= 2.9  # the hold as the API gave it (3 s), not cut at the stop
    assert ended > stopped
    assert failed.state in (State.RETRYING, State.SENDING), failed.last_error
    assert event.state == State.DELIVERED, event.last_error
    assert len(fake.reads) == 2


async def test_a_read_refused_with_no_request_is_no_probe(tmp_path: Path) -> None:
    """When a hold ends, the first read due is a delivery naming no lead ({"a": 1}), dead
    with no request: it does not end the hold (the API said nothing), the next read probes
    the API alone, and the hold starts again with the last lead never read (both were read
    at once, each refused again)."""
    fake = ThrottledApi(429, {"error": "slow down"}, {"Retry-After": "2"})
    # the first lead read, throttled, is due again 6 s later (random() = 1): after the
    # hold, the other three are first
    retry = "{initial: 6s, max_interval: 6s, give_up_after: 1h}"
    with graph_beside_sandbox(tmp_path, fake.read, retry=retry) as (cfg, _url):
        async with opened_store(tmp_path / "hub.db") as store:
            with structlog.testing.capture_logs() as logs:

                def holds() -> list[Any]:
                    return [line for line in logs if line["event"] == "lead_reads_throttled"]

                async with running(cfg, store, random=lambda: 1.0):
                    ids = await enqueue(store, "fb", notices(1), prefix="fb")
                    await wait_for(lambda: len(holds()) == 1, what="the first hold")
                    first_until = holds()[0]["until"]
                    later = [{"leadgen_id": {"a": 1}, "page_id": "1"}, *notices(3)[1:]]
                    ids += await enqueue(store, "fb", later, prefix="later")

                    async def held_again() -> bool:
                        found = await states(store, ids[2:])
                        return all(
                            e.state != State.SENDING and e.next_attempt_at > first_until + 1
                            for e in found.values()
                        )

                    await wait_for(held_again, what="the last two leads held again")
                    probed = list(fake.reads)
                    fake.times = len(fake.reads)  # the API answers from now on
                    await wait_for(all_in(State.DELIVERED, store, [ids[0], *ids[2:]]))
                    refused = (await states(store, [ids[1]]))[ids[1]]
    assert len(probed) == 2, probed  # the first read, and one probe when the hold ended
    assert len(holds()) == 2
    assert refused.state == State.DEAD
    assert "is not a Facebook lead id" in (refused.last_error or "")
    assert len(fake.reads) == 2 + 3


class LateAnswer(ThrottledApi):
    """A :class:`ThrottledApi` that answers one lead (``late``) only once ``answer_late()``
    is true, with the lead, throttled or not: a read sent before the API began throttling,
    answered after."""

    def __init__(self, late: str, answer_late: Callable[[], bool], **options: Any) -> None:
        super().__init__(429, {"error": "slow down"}, {"Retry-After": "2"}, **options)
        self.late, self.answer_late = late, answer_late

    async def read(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        if ident != self.late:
            return await super().read(request)
        self.record(ident)
        while not self.answer_late():
            await asyncio.sleep(0.01)
        field_data = [{"name": "email", "values": [f"{ident}@fb.example"]}]
        return JSONResponse({"id": ident, "field_data": field_data})


async def test_a_read_answered_during_a_hold_does_not_end_it(tmp_path: Path) -> None:
    """Two reads out together, the first answered throttled (a hold of 2 s), the second its
    lead once the hold is on (sent before the API began throttling): the hold stands, and when
    it ends one read probes the API (the lead answered late made the hold over: the reads
    held meanwhile went out at once, each refused again; ``lead_reads_resumed`` said the
    reads resumed while they were held)."""
    with structlog.testing.capture_logs() as logs:

        def lines(name: str) -> list[Any]:
            return [line for line in logs if line["event"] == name]

        fake = LateAnswer("90001", lambda: bool(lines("lead_reads_throttled")))
        with graph_beside_sandbox(tmp_path, fake.read) as (cfg, _url):
            async with opened_store(tmp_path / "hub.db") as store:
                ids = await enqueue(store, "fb", notices(2), prefix="fb")  # claimed together
                async with running(cfg, store):
                    await wait_for(all_in(State.DELIVERED, store, ids[1:]), what="the late lead")
                    first_until = lines("lead_reads_throttled")[0]["until"]
                    resumed_early = len(lines("lead_reads_resumed"))
                    ids += await enqueue(store, "fb", notices(4)[2:], prefix="later")

                    async def held_again() -> bool:
                        found = await states(store, [ids[0], *ids[2:]])
                        return all(
                            e.state != State.SENDING and e.next_attempt_at > first_until + 1
                            for e in found.values()
                        )

                    await wait_for(held_again, what="the other leads held again")
                    probed = list(fake.reads)
                    fake.times = len(fake.reads)  # the API answers from now on
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    assert len(probed) == 3, probed  # the two first reads, and one probe when the hold ended
    assert len(lines("lead_reads_throttled")) == 2
    assert resumed_early == 0
    assert len(lines("lead_reads_resumed")) == 1


async def test_the_time_held_ends_with_the_hold_when_no_read_follows(tmp_path: Path) -> None:
    """A lead read, its call failing (LeadSquared's 500), the target's give_up_after 4 s; an
    older delivery's read then throttled (a 429, 1 s to wait), that event dead at it (its
    window was over): no read follows the hold. The first lead is dead at its give_up_after
    and the hold's second: the time held ended with the hold (it ran on until the endpoint's
    next read answered, none came, and the lead was retried for good)."""
    fake = ThrottledApi(429, {"error": "slow down"}, {"Retry-After": "1"}, times=0)
    old = {"leadgen_id": "90009", "page_id": "1"}

    async def read(request: Request) -> Response:
        if request.path_params["ident"] == old["leadgen_id"]:
            fake.times = None  # throttled from now on
        return await fake.read(request)

    retry = "{initial: 50ms, max_interval: 200ms, give_up_after: 4s}"
    with graph_beside_sandbox(tmp_path, read, retry=retry) as (cfg, url):
        sandbox_post(url, "/_sandbox/faults", {"rate": 1.0, "kinds": ["500"], "seed": 1})
        async with opened_store(tmp_path / "hub.db") as store:
            async with running(cfg, store):
                (lead,) = await enqueue(store, "fb", notices(1), prefix="fb")

                async def send_failed() -> bool:
                    event = (await states(store, [lead]))[lead]
                    return "500" in (event.last_error or "")

                await wait_for(send_failed, what="the lead's call failed")
                (late,) = await store.enqueue(
                    IncomingDelivery(
                        endpoint="fb",
                        received_at=time.time() - 60,  # its give_up_after long over
                        body=orjson.dumps(old),
                        content_type="application/json",
                        headers={},
                        events=(EventIn(delivery_id="old-0", document=old),),
                    )
                )
                await wait_for(settled(store, [lead]), timeout=30, what="the lead dead")
                found = await states(store, [lead, late.id])
    assert found[late.id].state == State.DEAD
    assert "read throttled" in (found[late.id].last_error or "")
    assert found[lead].state == State.DEAD
    assert "HTTP 500" in (found[lead].last_error or "")
    assert [read["id"] for read in fake.reads] == ["90000", "90009"]


class UnreachableAfterHold(ThrottledApi):
    """A 429 (1 s to wait) for the first read; then ``silent`` reads left unanswered until the
    hub gives up on them (its read timeout: a network failure, the API having said nothing);
    then the leads, the first answered 1.5 s late, counting the reads that came meanwhile."""

    def __init__(self, silent: int) -> None:
        super().__init__(429, {"error": "slow down"}, {"Retry-After": "1"}, times=1)
        self.silent = silent
        self.first_answer: bool | None = None  # None: not begun; True: under way; False: sent
        self.during_first_answer = 0

    async def read(self, request: Request) -> Response:
        number = len(self.reads) + 1
        if self.first_answer:
            self.during_first_answer += 1
        if 1 < number <= 1 + self.silent:
            self.record(request.path_params["ident"])
            for _ in range(200):  # until the hub, its read timeout past, closes the connection
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return JSONResponse({})
        if number == 2 + self.silent:
            self.first_answer = True
            await asyncio.sleep(1.5)  # (within the read timeout)
            self.first_answer = False
        return await super().read(request)


async def test_a_probe_that_gets_no_answer_leaves_the_next_read_to_probe(tmp_path: Path) -> None:
    """After a hold, the probing read fails on the way (no answer within the read timeout: the
    API said nothing): the endpoint's other reads do not all go out at once; one of them probes
    next, and so on, until the API answers one; then the others go, and every lead is
    delivered. (A network failure was taken for the API's answer: the hold's held time ended
    and every waiting read went out at once.)"""
    fake = UnreachableAfterHold(silent=2)
    with graph_beside_sandbox(tmp_path, fake.read, extra="read_timeout: 2s\n") as (cfg, _url):
        async with opened_store(tmp_path / "hub.db") as store:
            with structlog.testing.capture_logs() as logs:
                async with running(cfg, store):
                    ids = await enqueue(store, "fb", notices(1), prefix="fb")
                    throttled = {"event": "lead_reads_throttled"}.items()
                    await wait_for(lambda: any(throttled <= line.items() for line in logs))
                    ids += await enqueue(store, "fb", notices(4)[1:], prefix="later")
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    assert fake.first_answer is False  # (the API answered after its silent reads)
    assert fake.during_first_answer == 0, fake.reads


async def test_a_probe_answered_with_a_deleted_lead_ends_the_hold_with_its_line(
    tmp_path: Path,
) -> None:
    """The read probing the API after a hold finds its lead deleted (Graph's code 100,
    subcode 33): the API answered, so the hold is over, and ``lead_reads_resumed`` says so
    (it came only with a lead read, and an alert on the hold stayed firing meanwhile)."""
    fake = ThrottledApi(429, {"error": "slow down"}, {"Retry-After": "1"}, times=1)
    deleted = {
        "error": {
            "message": "Unsupported get request. Object with ID '90000' does not exist.",
            "code": 100,
            "error_subcode": 33,
            "type": "OAuthException",
        }
    }

    async def read(request: Request) -> Response:
        if len(fake.reads) == 1:  # the probe, after the throttled first read
            fake.record(request.path_params["ident"])
            return JSONResponse(deleted, status_code=400)
        return await fake.read(request)

    with graph_beside_sandbox(tmp_path, read) as (cfg, _url):
        async with opened_store(tmp_path / "hub.db") as store:
            with structlog.testing.capture_logs() as logs:
                async with running(cfg, store):
                    await enqueue(store, "fb", notices(1), prefix="fb")
                    await wait_for(lambda: any(line["event"] == "event_dead" for line in logs))
    events = [line["event"] for line in logs]
    assert events.count("lead_reads_throttled") == 1
    assert events.count("lead_reads_resumed") == 1, events
    assert len(fake.reads) == 2  # the throttled read, and the probe
