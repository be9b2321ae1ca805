"""HubSpot app events through a fake CRM API: the object read, errors, merge, delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from hub.config.models import HubSpotOptions
from hub.dispatch.fetch import FetchDead, Fetched, FetchRetry, merge_missing
from hub.dispatch.hubspot import HubSpotClient
from hub.secrets import Secret
from hub.store.models import State
from tests.dispatch.support import (
    KEYS,
    RecordedReads,
    all_in,
    enqueue,
    opened_store,
    retried,
    running,
    sandbox_get,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hubspot"
EVENTS = orjson.loads((FIXTURES / "app_events.json").read_bytes())
CONTACT = orjson.loads((FIXTURES / "crm_contact.json").read_bytes())
GOOD_TOKEN = "pat-na1-good-hubspot-token"
#: Object ids the fake answers with an error: (status, body).
ERRORS: dict[str, tuple[int, bytes]] = {
    "404": (404, b'{"status":"error","message":"Object not found","category":"OBJECT_NOT_FOUND"}'),
    "429": (429, b'{"status":"error","message":"You have reached your secondly limit."}'),
    "502": (502, b"Bad gateway"),
    "400": (400, b'{"status":"error","message":"Invalid id","category":"VALIDATION_ERROR"}'),
    # a 404 that is no HubSpot error: api_url names another server or path
    "999": (404, b"<html><body>Not Found</body></html>"),
}


class FakeCrm(RecordedReads):
    """A HubSpot CRM double: the fixture's contact for any id, 401 for any token but the
    good one (echoing it), the errors above; it records each read."""

    async def contact(self, request: Request) -> Response:
        object_id = request.path_params["object_id"]
        self.record(object_id, **request.query_params)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token != GOOD_TOKEN:
            body = {"status": "error", "message": f"Authentication credentials {token} invalid"}
            return JSONResponse(body, status_code=401)
        if object_id in ERRORS:
            status, content = ERRORS[object_id]
            return Response(content, status_code=status, media_type="application/json")
        return JSONResponse({**CONTACT, "id": object_id})


@pytest.fixture
def crm() -> Iterator[tuple[str, FakeCrm]]:
    fake = FakeCrm()
    app = Starlette(routes=[Route("/crm/v3/objects/contacts/{object_id}", fake.contact)])
    with serve_in_thread(app) as url:
        yield url, fake


def _options(api_url: str, token: str = GOOD_TOKEN) -> HubSpotOptions:
    return HubSpotOptions(
        client_secret=Secret("cs"),
        webhook_url="https://hub.example.com/hooks/hs",
        access_token=Secret(token),
        api_url=api_url,
        properties=("email", "firstname"),
    )


def _event(object_id: int | str) -> dict[str, Any]:
    return {**EVENTS[0], "objectId": object_id}


def _config(directory: Path, sandbox_url: str, api_url: str, token: str) -> Any:
    endpoint = f"""kind: endpoint
name: hs
source: hubspot
client_secret: ${{HS_SECRET}}
webhook_url: https://hub.example.com/hooks/hs
access_token: ${{HS_TOKEN}}
api_url: {api_url}
---
kind: mapping
name: hs-map
endpoint: hs
fields:
  EmailAddress: {{ path: $.properties.email, transform: [trim, lower], required: true }}
  FirstName: $.properties.firstname
  mx_Contact: $.id
  mx_Portal: $.portalId
"""
    environ = {**KEYS, "HS_SECRET": "cs", "HS_TOKEN": token}
    return write_config(directory, target_yaml("default", sandbox_url), endpoint, environ=environ)


def test_merge_adds_the_event_keys_the_object_lacks() -> None:
    merged = merge_missing({"id": "7", "properties": {}}, _event(7))
    assert merged["id"] == "7"
    assert merged["portalId"] == 4815162
    assert merged["subscriptionType"] == "contact.creation"


async def test_the_client_reads_the_contact_with_its_properties_and_token(
    crm: tuple[str, FakeCrm],
) -> None:
    url, fake = crm
    async with httpx.AsyncClient() as http:
        client = HubSpotClient(http)
        outcome = await client.fetch_object(_options(url), _event(96027715412))
        odd = await client.fetch_object(_options(url), {"subscriptionType": "form.submitted"})
    assert outcome == Fetched({**CONTACT, "id": "96027715412"})
    assert fake.reads == [{"id": "96027715412", "properties": "email,firstname"}]
    assert isinstance(odd, FetchDead) and "which CRM object" in odd.reason


@pytest.mark.parametrize(
    ("object_id", "token", "expected", "kind", "says"),
    [
        ("1", "pat-expired-7", FetchRetry, "token", "HTTP 401: Authentication credentials"),
        ("429", GOOD_TOKEN, FetchRetry, "server_error", "HTTP 429: You have reached"),
        ("502", GOOD_TOKEN, FetchRetry, "server_error", "HTTP 502: Bad gateway"),
        ("404", GOOD_TOKEN, FetchDead, "not_found", "Object not found (OBJECT_NOT_FOUND)"),
        ("400", GOOD_TOKEN, FetchDead, "rejected", "HTTP 400: Invalid id"),
        ("999", GOOD_TOKEN, FetchRetry, "config", "does the endpoint's api_url name the API?"),
    ],
)
async def test_read_failures_are_classified_and_never_show_the_token(
    crm: tuple[str, FakeCrm], object_id: str, token: str, expected: type, kind: str, says: str
) -> None:
    url, _ = crm
    async with httpx.AsyncClient() as http:
        outcome = await HubSpotClient(http).fetch_object(_options(url, token), _event(object_id))
    assert isinstance(outcome, expected)
    assert not isinstance(outcome, Fetched)
    assert (outcome.kind, token in outcome.reason) == (kind, False)
    assert says in outcome.reason


async def test_an_event_is_read_once_merged_stored_and_sent(
    tmp_path: Path, crm: tuple[str, FakeCrm]
) -> None:
    """The contact behind a contact.creation event is read once, stored with the event,
    merged with the event and delivered; a gone contact ends dead."""
    api_url, fake = crm
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, api_url, GOOD_TOKEN)
        async with opened_store(tmp_path / "hub.db") as store:
            sent, gone = await enqueue(store, "hs", [_event(5001), _event("404")])
            with capture_logs() as logs:
                async with running(config, store) as dispatcher:
                    await wait_for(all_in(State.DELIVERED, store, [sent]), what="delivered")
                    await wait_for(all_in(State.DEAD, store, [gone]), what="dead")
                    errors = dispatcher.metrics.hubspot_errors.labels("not_found")._value.get()
            events = await states(store, [sent, gone])
        assert events[sent].enrichment == {**CONTACT, "id": "5001"}
        assert "the object does not exist" in (events[gone].last_error or "")
        assert (fake.count("5001"), errors) == (1, 1)
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["EmailAddress"] == "tunde.okafor@example.com"
        assert lead["FirstName"] == "Tunde"
        assert lead["mx_Contact"] == "5001"
        assert lead["mx_Portal"] == "4815162"  # from the event
        assert GOOD_TOKEN not in repr(logs)


async def test_a_refused_token_is_retried_then_delivered_once_fixed(
    tmp_path: Path, crm: tuple[str, FakeCrm]
) -> None:
    api_url, _ = crm
    with sandbox_server() as (url, _):
        expired = _config(tmp_path / "a", url, api_url, "pat-expired-9")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "hs", [_event(5002)])
            async with running(expired, store):
                await wait_for(retried(store, ids[0]), what="retries on 401")
            event = (await states(store, ids))[ids[0]]
            assert "HubSpot object fetch failed: HTTP 401" in (event.last_error or "")
            assert "pat-expired-9" not in (event.last_error or "")
            fixed = _config(tmp_path / "b", url, api_url, GOOD_TOKEN)
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered after fix")
