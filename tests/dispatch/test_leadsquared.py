"""The Lead.Capture client: every answer classified from its status AND body, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hub.config.models import Target
from hub.dispatch.leadsquared import (
    URLS_KEPT,
    Dead,
    Delivered,
    LeadSquaredClient,
    Pause,
    Retry,
)
from hub.dispatch.worker import make_http_client
from hub.secrets import Secret
from tests.dispatch.support import KEYS, _read_request, raw_server, sandbox_server, socket_server
from tests.support.server import free_port, serve_in_thread

MX_DUP = {
    "Status": "Error",
    "ExceptionType": "MXDuplicateEntryException",
    "ExceptionMessage": "A Lead with same Email already exists.",
}
CASES: dict[str, Response] = {
    "ok": JSONResponse(
        {"Status": "Success", "Message": {"Id": "act-1", "RelatedId": "lead-1", "IsCreated": True}}
    ),
    "ok_id_only": JSONResponse({"Status": "Success", "Message": {"Id": "lead-2"}}),
    "mx400": JSONResponse(MX_DUP, status_code=400),
    "mx500": JSONResponse(MX_DUP, status_code=500),
    "mx200": JSONResponse(MX_DUP, status_code=200),
    "rate200": JSONResponse(
        {
            "Status": "Error",
            "ExceptionType": "MXAPIRateLimitExceededException",
            "ExceptionMessage": "API calls exceeded the limit of 25 in 5 second(s)",
        }
    ),
    "429": PlainTextResponse("slow down", status_code=429),
    "500": PlainTextResponse("Internal Server Error", status_code=500),
    "503": Response(b"", status_code=503),
    "401": JSONResponse(
        {
            "Status": "Error",
            "ExceptionType": "MXUnAuthorizedAccessException",
            "ExceptionMessage": "Invalid keys",
        },
        status_code=401,
    ),
    "404": PlainTextResponse("Not Found", status_code=404),
    "403": PlainTextResponse("Forbidden by WAF rule 42", status_code=403),
    "408": PlainTextResponse("Request Timeout", status_code=408, headers={"Connection": "close"}),
    "200junk": PlainTextResponse("<html>maintenance</html>"),
    "200error_nomx": JSONResponse({"Status": "Error", "Message": "weird"}),
}
SEEN: list[dict[str, Any]] = []


async def _capture(request: Request) -> Response:
    SEEN.append(
        {
            "headers": dict(request.headers),
            "query": dict(request.query_params),
            "url": str(request.url),
            "body": await request.body(),
        }
    )
    return CASES[request.path_params["case"]]


@pytest.fixture(scope="module")
def fake_lsq() -> Iterator[str]:
    """A fake LeadSquared whose answer is chosen by the first path segment."""
    app = Starlette(
        routes=[Route("/{case}/v2/LeadManagement.svc/Lead.Capture", _capture, methods=["POST"])]
    )
    with serve_in_thread(app) as url:
        yield url


def _target(url: str, *, timeout: float = 5.0) -> Target:
    return Target(
        name="t",
        url=url,
        access_key=Secret("u$r-access"),
        secret_key=Secret("s3cret-key"),
        timeout=timeout,
    )


Factory = Callable[[], httpx.AsyncClient]


@pytest.fixture(params=["hub", "httpx-default"])
def http_factory(request: pytest.FixtureRequest) -> Callable[[], httpx.AsyncClient]:
    """Every case runs on the dispatcher's client and on httpx's default transport."""
    return make_http_client if request.param == "hub" else httpx.AsyncClient


async def _send(url: str, factory: Callable[[], httpx.AsyncClient], **kw: Any) -> Any:
    async with factory() as http:
        attempt = await LeadSquaredClient(http).capture(
            _target(url, **kw),
            query={"LeadUpdateBehavior": "DoNotUpdate"},
            body=[{"Attribute": "EmailAddress", "Value": "a@example.com"}],
        )
    return attempt


async def test_success_reads_related_id_and_created(fake_lsq: str, http_factory: Factory) -> None:
    """A Success answer is Delivered with RelatedId as the lead id and IsCreated."""
    attempt = await _send(f"{fake_lsq}/ok", http_factory)
    assert attempt.outcome == Delivered(lead_id="lead-1", created=True)
    assert attempt.status == 200


async def test_success_falls_back_to_message_id(fake_lsq: str, http_factory: Factory) -> None:
    """Without RelatedId the lead id is Message.Id, and created is unknown."""
    attempt = await _send(f"{fake_lsq}/ok_id_only", http_factory)
    assert attempt.outcome == Delivered(lead_id="lead-2", created=None)


async def test_keys_go_in_headers_and_behaviour_in_the_query(
    fake_lsq: str, http_factory: Factory
) -> None:
    """The keys travel as x-LSQ headers, never in the URL; LeadUpdateBehavior is a query param."""
    SEEN.clear()
    await _send(f"{fake_lsq}/ok", http_factory)
    seen = SEEN[-1]
    assert seen["headers"]["x-lsq-accesskey"] == "u$r-access"
    assert seen["headers"]["x-lsq-secretkey"] == "s3cret-key"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["query"] == {"LeadUpdateBehavior": "DoNotUpdate"}
    assert "s3cret" not in seen["url"] and "access" not in seen["url"]
    assert seen["body"] == b'[{"Attribute":"EmailAddress","Value":"a@example.com"}]'


async def test_one_client_sends_each_call_to_its_own_target_and_query(fake_lsq: str) -> None:
    """A client keeps each call URL parsed: calls to two targets (one with a trailing slash)
    with two queries, each twice, and more URLs than it keeps, each arrive where they were
    sent with their own query, as httpx builds them from text and params."""
    calls = [
        (f"{fake_lsq}/ok", {"LeadUpdateBehavior": "DoNotUpdate"}),
        (f"{fake_lsq}/ok_id_only/", {"LeadUpdateBehavior": "DoNotUpdate"}),
        (f"{fake_lsq}/ok", {}),
        (f"{fake_lsq}/ok", {"LeadUpdateBehavior": "UpdateOnlyEmptyFields", "b": "x y&z"}),
    ]
    calls += [(f"{fake_lsq}/ok", {"n": str(n)}) for n in range(URLS_KEPT + 1)]
    SEEN.clear()
    async with make_http_client() as http:
        client = LeadSquaredClient(http)
        for url, query in [*calls, *calls]:
            attempt = await client.capture(_target(url), query=query, body=[])
            assert isinstance(attempt.outcome, Delivered)
        assert len(client._urls) <= URLS_KEPT  # (a bound, whatever the mappings' queries)
    expected = [
        (url.rstrip("/") + "/v2/LeadManagement.svc/Lead.Capture", query) for url, query in calls
    ]
    seen = [(s["url"].split("?")[0], s["query"]) for s in SEEN]
    assert seen == expected * 2
    assert SEEN[3]["url"].endswith("?LeadUpdateBehavior=UpdateOnlyEmptyFields&b=x+y%26z")


@pytest.mark.parametrize("case", ["mx400", "mx500", "mx200"])
async def test_mx_exception_is_dead_with_its_reason_on_any_status(
    fake_lsq: str, case: str, http_factory: Factory
) -> None:
    """An MX exception in a 400, a 500 or a 200 with Status Error is dead, naming the exception
    and, for a duplicate email or phone, what to do about it."""
    attempt = await _send(f"{fake_lsq}/{case}", http_factory)
    assert attempt.outcome == Dead(
        "MXDuplicateEntryException: A Lead with same Email already exists; another lead "
        "already holds this email or phone (LeadSquared keeps each unique): merge the two "
        "leads there, or match by the colliding field (the mapping's search_by), or leave it "
        "out of the mapping's fields"
    )


async def test_an_mx_message_quoting_a_huge_value_is_cut_in_the_reason() -> None:
    """The sandbox (as LeadSquared may) quotes the value it refused whole: a sender's 300,000
    character "email" made a reason (the event's last error, its event_dead line) as long.
    The message is cut at 1,000 characters, saying how many more there were."""
    with sandbox_server() as (url, _):
        async with make_http_client() as http:
            attempt = await LeadSquaredClient(http).capture(
                Target(
                    name="t",
                    url=url,
                    access_key=Secret(KEYS["LSQ_ACCESS"]),
                    secret_key=Secret(KEYS["LSQ_SECRET"]),
                ),
                query={},
                body=[{"Attribute": "EmailAddress", "Value": "x" * 300_000}],
            )
    assert attempt.status == 400
    assert isinstance(attempt.outcome, Dead), attempt.outcome
    shown = "MXInvalidInputException: EmailAddress '" + "x" * 986
    assert attempt.outcome.reason == f"{shown}... (299,045 more characters)"


@pytest.mark.parametrize("case", ["rate200", "429", "500", "503", "200junk"])
async def test_transient_answers_are_retried(
    fake_lsq: str, case: str, http_factory: Factory
) -> None:
    """The MX rate-limit exception, 429, 5xx without MX body and unreadable 200s are retried;
    only the first two as rate limited (never dead)."""
    attempt = await _send(f"{fake_lsq}/{case}", http_factory)
    assert isinstance(attempt.outcome, Retry), attempt.outcome
    assert attempt.outcome.rate_limited is (case in ("rate200", "429"))


@pytest.mark.parametrize("case", ["401", "404"])
async def test_bad_keys_or_host_pause_the_target(
    fake_lsq: str, case: str, http_factory: Factory
) -> None:
    """401 and 404 pause the target instead of killing the lead."""
    attempt = await _send(f"{fake_lsq}/{case}", http_factory)
    assert isinstance(attempt.outcome, Pause)
    assert f"HTTP {case}" in attempt.outcome.reason


async def test_other_4xx_is_dead_with_status_and_excerpt(
    fake_lsq: str, http_factory: Factory
) -> None:
    """A 403 without an MX body is dead, with the status and a body excerpt in the reason."""
    attempt = await _send(f"{fake_lsq}/403", http_factory)
    assert attempt.outcome == Dead("HTTP 403: Forbidden by WAF rule 42")


async def test_a_408_is_retried_not_dead(fake_lsq: str, http_factory: Factory) -> None:
    """A 408 (a load balancer or gateway tired of waiting for the request to arrive, on a
    slow network) made the lead dead as any other 4xx: nothing is wrong with the lead, and
    RFC 9110 lets the request be repeated. It is retried."""
    attempt = await _send(f"{fake_lsq}/408", http_factory)
    assert attempt.outcome == Retry(
        "HTTP 408: the server timed out reading the request (Request Timeout)"
    )


async def test_status_error_without_mx_on_200_is_dead(fake_lsq: str, http_factory: Factory) -> None:
    """A 200 whose body says Status Error without an MX type is still a failure (dead)."""
    attempt = await _send(f"{fake_lsq}/200error_nomx", http_factory)
    assert isinstance(attempt.outcome, Dead)
    assert "Status Error" in attempt.outcome.reason


async def test_connection_refused_is_retried_and_named(http_factory: Factory) -> None:
    """Nothing listening: retried, and the reason says connection refused (once: the
    aiohttp transport's own text already says it)."""
    attempt = await _send(f"http://127.0.0.1:{free_port()}", http_factory)
    assert isinstance(attempt.outcome, Retry)
    assert attempt.outcome.reason.startswith("connection refused")
    assert attempt.outcome.reason.count("connection refused") == 1, attempt.outcome.reason
    assert attempt.status is None


async def test_reset_is_retried_and_named(http_factory: Factory) -> None:
    """A TCP reset after the request: retried, and the reason says connection reset."""
    with raw_server("reset") as url:
        attempt = await _send(url, http_factory)
    assert isinstance(attempt.outcome, Retry)
    assert attempt.outcome.reason.startswith("connection reset"), attempt.outcome.reason
    assert attempt.outcome.reason.count("connection reset") == 1, attempt.outcome.reason


async def test_closed_without_answer_is_retried_and_named(http_factory: Factory) -> None:
    """A clean close with no answer: retried, and the reason says closed without an answer."""
    with raw_server("close") as url:
        attempt = await _send(url, http_factory)
    assert attempt.outcome.reason.count("closed without an answer") == 1, attempt.outcome.reason
    assert isinstance(attempt.outcome, Retry)
    assert attempt.outcome.reason.startswith("connection closed without an answer")


async def test_timeout_is_retried_and_named(http_factory: Factory) -> None:
    """A server that never answers: retried after the target's timeout, named as a timeout."""
    with raw_server("hang") as url:
        attempt = await _send(url, http_factory, timeout=0.3)
    assert isinstance(attempt.outcome, Retry)
    assert attempt.outcome.reason.startswith("timeout waiting for the answer")


#: A dribbled answer: one byte every DRIP s, its Content-Length promising ten minutes of them.
DRIP = 0.01
PROMISED = 60_000


@contextlib.contextmanager
def dribbling_server() -> Iterator[tuple[str, list[int]]]:
    """A server whose 200 sends its body a byte every :data:`DRIP` s: ten minutes for the
    whole answer. Yields its base URL and ``[bytes of the body sent so far]``."""
    sent = [0]

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        conn.sendall(head + b"Content-Length: %d\r\n\r\n" % PROMISED)
        while sent[0] < PROMISED and not stop.wait(DRIP):
            conn.sendall(b" ")  # (raises once the client has closed: the answer ends)
            sent[0] += 1

    with socket_server(handle) as url:
        yield url, sent


async def test_an_answer_that_never_finishes_is_cut_at_twice_the_timeout(
    http_factory: Factory,
) -> None:
    """A server sending its answer a byte every 0.01 s (each read well within the 1 s
    timeout) would hold the call for ten minutes: it is cut at 2 s and retried as a timeout,
    while the answer is still coming."""
    with dribbling_server() as (url, sent):
        # A hang guard, not a measure of speed: uncut, the answer would take ten minutes.
        async with asyncio.timeout(60):
            attempt = await _send(url, http_factory, timeout=1.0)
        assert 0 < sent[0] < PROMISED  # the call ended while its answer was being sent
    assert isinstance(attempt.outcome, Retry)
    assert attempt.outcome.reason == (
        "timeout: no whole answer within 2s (twice the target's timeout)"
    )


async def test_target_without_url_pauses(http_factory: Factory) -> None:
    """A target with no url cannot be sent to: it pauses, naming the fix."""
    attempt = await _send("", http_factory)
    assert isinstance(attempt.outcome, Pause)
    assert "url" in attempt.outcome.reason


async def _echo_keys(request: Request) -> Response:
    """An answer quoting the keys the call sent: an MX message, or a gateway's text page."""
    keys = f"{request.headers['x-lsq-accesskey']} / {request.headers['x-lsq-secretkey']}"
    if request.path_params["case"] == "mx":
        body = {"Status": "Error", "ExceptionType": "MXInvalidInputException"}
        return JSONResponse({**body, "ExceptionMessage": f"bad keys {keys}"}, status_code=400)
    return PlainTextResponse(f"denied for {keys} " + "x" * 300, status_code=403)


@pytest.mark.parametrize("case", ["mx", "text"])
async def test_keys_echoed_back_in_an_answer_are_masked_in_the_reason(case: str) -> None:
    """A target that quotes the keys it was sent in its error (as the access key appears in
    some of LeadSquared's messages, or a proxy's error page) does not put them in the reason,
    which is logged (event_dead) and stored as the event's last error."""
    app = Starlette(
        routes=[Route("/{case}/v2/LeadManagement.svc/Lead.Capture", _echo_keys, methods=["POST"])]
    )
    with serve_in_thread(app) as url:
        attempt = await _send(f"{url}/{case}", make_http_client)
    assert isinstance(attempt.outcome, Dead), attempt.outcome
    reason = attempt.outcome.reason
    assert "u$r-access" not in reason and "s3cret-key" not in reason, reason
    assert "********** / **********" in reason, reason
