"""What the three enrichment clients share (``hub.dispatch.fetch``): an unreachable API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from hub.config.models import FacebookOptions, HubSpotOptions, LinkedInOptions
from hub.dispatch.fetch import FetchOutcome, FetchRetry
from hub.dispatch.graph import GraphClient
from hub.dispatch.hubspot import HubSpotClient
from hub.dispatch.linkedin import LinkedInClient
from hub.secrets import Secret
from tests.support.server import free_port

TOKEN = "tok-never-shown-42"
Read = Callable[[httpx.AsyncClient, str], Awaitable[FetchOutcome]]


async def _graph(http: httpx.AsyncClient, url: str) -> FetchOutcome:
    options = FacebookOptions(
        app_secret=Secret("a"),
        verify_token=Secret("v"),
        page_access_token=Secret(TOKEN),
        graph_url=url,
    )
    return await GraphClient(http).fetch_lead(options, "1")


async def _linkedin(http: httpx.AsyncClient, url: str) -> FetchOutcome:
    options = LinkedInOptions(client_secret=Secret("c"), access_token=Secret(TOKEN), api_url=url)
    return await LinkedInClient(http).fetch_response(options, "urn:li:leadGenFormResponse:r1")


async def _hubspot(http: httpx.AsyncClient, url: str) -> FetchOutcome:
    options = HubSpotOptions(
        client_secret=Secret("c"),
        webhook_url="https://hub.example.com/hooks/hs",
        access_token=Secret(TOKEN),
        api_url=url,
    )
    event = {"subscriptionType": "contact.creation", "objectId": 1}
    return await HubSpotClient(http).fetch_object(options, event)


@pytest.mark.parametrize("read", [_graph, _linkedin, _hubspot], ids=["graph", "li", "hubspot"])
async def test_an_unreachable_api_is_a_retry_that_never_shows_the_token(read: Read) -> None:
    """A refused connection is a ``network`` retry (the lead waits), its reason without the
    token, whether the token travels in the query (Graph) or a header."""
    async with httpx.AsyncClient() as http:
        outcome = await read(http, f"http://127.0.0.1:{free_port()}/api")
    assert isinstance(outcome, FetchRetry)
    assert outcome.kind == "network"
    assert "connection refused" in outcome.reason
    assert TOKEN not in outcome.reason
