"""A lead id from a delivery that no API could hold is dead at once, never a read.

Found by the chaos soak: signed deliveries whose lead id was 70,000 characters long, or held
a line break, made a URL httpx refuses; the read was a ``config`` retry saying the
endpoint's ``graph_url`` / ``api_url`` was invalid (it was not), tried again every backoff
for as long as ``give_up_after``. A Facebook id holding ``#`` read another lead: the
fragment was cut off the URL and the lead before it was read (and sent) instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.config.models import HubSpotOptions, LinkedInOptions
from hub.dispatch.fetch import MAX_ID, FetchDead, Fetched, FetchOutcome
from hub.dispatch.graph import GraphClient
from hub.dispatch.hubspot import HubSpotClient
from hub.dispatch.linkedin import URN_PREFIX, LinkedInClient
from hub.secrets import Secret
from hub.store.models import State
from tests.dispatch.support import (
    FB_ENV,
    all_in,
    enqueue,
    facebook_endpoint_yaml,
    graph_options,
    opened_store,
    running,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread

TOKEN = "tok-lead-ids-7"
#: ``read(http, api_url, lead_id)``
IdRead = Callable[[httpx.AsyncClient, str, str], Awaitable[FetchOutcome]]


async def _graph(http: httpx.AsyncClient, url: str, ident: str) -> FetchOutcome:
    return await GraphClient(http).fetch_lead(graph_options(url, TOKEN), ident)


async def _linkedin(http: httpx.AsyncClient, url: str, ident: str) -> FetchOutcome:
    options = LinkedInOptions(client_secret=Secret("c"), access_token=Secret(TOKEN), api_url=url)
    return await LinkedInClient(http).fetch_response(options, URN_PREFIX + ident)


async def _hubspot(http: httpx.AsyncClient, url: str, ident: str) -> FetchOutcome:
    options = HubSpotOptions(
        client_secret=Secret("c"),
        webhook_url="https://hub.example.com/hooks/hs",
        access_token=Secret(TOKEN),
        api_url=url,
    )
    event = {"subscriptionType": "contact.creation", "objectId": ident}
    return await HubSpotClient(http).fetch_object(options, event)


READS: dict[str, IdRead] = {"graph": _graph, "linkedin": _linkedin, "hubspot": _hubspot}


class Api:
    """A lead API that answers every read with a lead, recording the raw paths read."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def any_read(self, request: Request) -> Response:
        self.paths.append(request.scope["raw_path"].decode())
        return JSONResponse({"id": request.path_params["rest"], "field_data": []})


@pytest.fixture
def api() -> Iterator[tuple[str, Api]]:
    fake = Api()
    app = Starlette(routes=[Route("/{rest:path}", fake.any_read)])
    with serve_in_thread(app) as url:
        yield url, fake


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
@pytest.mark.parametrize(
    "ident",
    ["7" * 70_000, "7" * (MAX_ID + 1), "12\r\n34", "12\x0034", "\t", "12/34"],
    ids=["70000-chars", "over-max", "line-break", "nul", "tab", "slash"],
)
async def test_an_id_no_api_could_hold_is_dead_without_a_read(
    api: tuple[str, Api], read: IdRead, ident: str
) -> None:
    """Too long or not printable: dead (``rejected``) saying the id is not one, not a
    retry blaming the endpoint's URL; nothing is read. Nor is one holding a ``/``, which no
    id of the three APIs holds: LinkedIn's and HubSpot's were sent escaped (``%2F``), and a
    gateway that decodes it before routing would read another path with the token."""
    url, fake = api
    async with httpx.AsyncClient() as http:
        outcome = await read(http, url, ident)
    assert isinstance(outcome, FetchDead), outcome
    assert outcome.kind == "rejected"
    assert "is not a" in outcome.reason
    assert "url" not in outcome.reason.lower()
    assert len(outcome.reason) < 300  # the id is shown cut, not whole
    assert fake.paths == []


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
async def test_an_id_of_the_longest_size_is_read(api: tuple[str, Api], read: IdRead) -> None:
    """The bound leaves real ids alone: one of MAX_ID characters is still read."""
    url, fake = api
    async with httpx.AsyncClient() as http:
        outcome = await read(http, url, "8" * MAX_ID)
    assert isinstance(outcome, Fetched)
    assert len(fake.paths) == 1
    assert fake.paths[0].endswith("/" + "8" * MAX_ID)


async def test_a_facebook_id_with_a_fragment_reads_no_other_lead(api: tuple[str, Api]) -> None:
    """``12#x`` is no lead id: dead, where the fragment was dropped and lead 12 was read."""
    url, fake = api
    async with httpx.AsyncClient() as http:
        outcome = await _graph(http, url, "12#x")
    assert isinstance(outcome, FetchDead)
    assert outcome.reason == "'12#x' is not a Facebook lead id"
    assert fake.paths == []


async def test_a_facebook_id_is_read_as_one_path_segment(api: tuple[str, Api]) -> None:
    """A space or a ``%`` in the id is escaped: the node the notification names is the one
    asked for (Graph then answers that it does not exist)."""
    url, fake = api
    async with httpx.AsyncClient() as http:
        await _graph(http, url, "12 34")
        await _graph(http, url, "%2F..%2Fme")
    assert fake.paths == ["/12%2034", "/%252F..%252Fme"]


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
@pytest.mark.parametrize("ident", [".", ".."], ids=["dot", "dot-dot"])
async def test_a_dot_segment_id_reads_no_other_resource(
    api: tuple[str, Api], read: IdRead, ident: str
) -> None:
    """``.`` and ``..`` are no ids: dead, nothing read. Escaped, they stay dots, and httpx
    resolves them away: ``..`` read the API's parent path (Graph's root, LinkedIn's and
    HubSpot's collection) and ``.`` HubSpot's list of contacts, with the endpoint's token,
    the answer taken for the lead. Ids holding dots among other characters are still read."""
    url, fake = api
    async with httpx.AsyncClient() as http:
        outcome = await read(http, url + "/v1", ident)
        kept = await read(http, url + "/v1", "..12")
    assert isinstance(outcome, FetchDead), outcome
    assert outcome.kind == "rejected"
    assert outcome.reason.startswith(f"{ident!r} is not a")
    assert isinstance(kept, Fetched)
    assert len(fake.paths) == 1
    assert fake.paths[0].startswith("/v1/")
    assert fake.paths[0].endswith("/..12")


#: A Facebook change's ``leadgen_id`` that is no id, and the JSON its dead reason shows.
NOT_IDS = [({"id": "1"}, '{"id":"1"}'), (["12"], '["12"]'), (True, "true"), (12.5, "12.5")]


async def test_a_facebook_leadgen_id_that_is_not_text_is_dead_without_a_read(
    tmp_path: Path, api: tuple[str, Api]
) -> None:
    """An object, an array, a boolean or a fraction as ``leadgen_id`` (ingest keeps a change
    whatever its values, so that Meta does not retry the batch) is dead at once, its JSON
    named. Python's text of it (``{'id': '1'}``, ``True``) was read as a lead id: retried
    for as long as ``give_up_after`` when Graph failed, and sent on when it answered. A
    number is an id (Meta sends ids as numbers too) and is read."""
    graph_url, fake = api
    with sandbox_server() as (url, _):
        endpoint = facebook_endpoint_yaml(graph_url) + "target: default\nfields:\n  mx_Id: $.id\n"
        target = target_yaml("default", url)
        config = write_config(tmp_path / "cfg", target, endpoint, environ=FB_ENV)
        async with opened_store(tmp_path / "hub.db") as store:
            changes = [{"leadgen_id": value, "page_id": "1"} for value, _ in NOT_IDS]
            ids = await enqueue(store, "fb", [*changes, {"leadgen_id": 4242, "page_id": "1"}])
            async with running(config, store):
                await wait_for(all_in(State.DEAD, store, ids[:-1]), what="dead")
                await wait_for(all_in(State.DELIVERED, store, ids[-1:]), what="delivered")
            events = await states(store, ids)
    for event_id, (_, shown) in zip(ids, NOT_IDS, strict=False):
        reason = f"Facebook lead fetch failed: {shown} is not a Facebook lead id"
        assert events[event_id].last_error == reason
        assert events[event_id].attempts == 1
    assert fake.paths == ["/4242"]
