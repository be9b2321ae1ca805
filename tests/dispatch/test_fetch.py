"""What the three enrichment clients share (``hub.dispatch.fetch``): an unreachable API, a lead
nested too deep."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.dispatch.fetch import FetchDead, Fetched, FetchRetry
from hub.sources.bodies import MAX_DEPTH
from tests.dispatch.support import Read, lead_readers
from tests.support.server import free_port, serve_in_thread

TOKEN = "tok-never-shown-42"
READS = lead_readers(TOKEN)


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
async def test_an_unreachable_api_is_a_retry_that_never_shows_the_token(read: Read) -> None:
    """A refused connection is a ``network`` retry (the lead waits), its reason without the
    token, whether the token travels in the query (Graph) or a header."""
    async with httpx.AsyncClient() as http:
        outcome = await read(http, f"http://127.0.0.1:{free_port()}/api")
    assert isinstance(outcome, FetchRetry)
    assert outcome.kind == "network"
    assert "connection refused" in outcome.reason
    assert TOKEN not in outcome.reason


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
async def test_a_lead_nested_deeper_than_any_is_dead_with_the_reason(read: Read) -> None:
    """An API answering a lead nested 900 levels deep (which could not be stored as the
    event's enrichment: every attempt failed with a traceback until give_up_after) makes the
    event dead at once, saying why; a lead nested as deep as a body may be is read."""
    depth = {"deep": 900}

    async def lead(request: Request) -> Response:
        nested = b"[" * depth["deep"] + b"1" + b"]" * depth["deep"]
        body = b'{"id": "1", "properties": {}, "field_data": [], "nested": ' + nested + b"}"
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", lead, methods=["GET"])])
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient() as http:
            outcome = await read(http, f"{url}/api")
            depth["deep"] = MAX_DEPTH - 1  # with the lead's object, MAX_DEPTH in all
            read_back = await read(http, f"{url}/api")
    assert isinstance(outcome, FetchDead) and outcome.kind == "bad_answer"
    assert f"nested more than {MAX_DEPTH} levels deep" in outcome.reason
    assert isinstance(read_back, Fetched)


@pytest.mark.parametrize("at", [170, 185, 190])
@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
async def test_a_token_echoed_where_the_reason_cuts_the_answer_shows_no_part_of_it(
    read: Read, at: int
) -> None:
    """An API (or a gateway before it) whose error page quotes the request with its token
    (Graph's travels in the query) has its answer cut to an excerpt in the reason: a token
    straddling the cut left its first characters in the reason (logged in event_dead, stored
    as the event's last error), since only the whole token was masked."""

    async def echo(request: Request) -> Response:
        return Response(b"x" * at + f"token={TOKEN} rejected".encode(), status_code=400)

    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET"])])
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient() as http:
            outcome = await read(http, f"{url}/api")
    assert not isinstance(outcome, Fetched), outcome
    assert "token=*" in outcome.reason, outcome.reason
    assert TOKEN[:4] not in outcome.reason, outcome.reason  # (at 190: "tok-" before the cut)
