"""LinkedIn enrichment through a fake LinkedIn REST API: headers, errors, merge, deletions."""

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

from hub.config.models import LinkedInOptions
from hub.dispatch.fetch import FetchDead, Fetched, FetchRetry, merge_missing
from hub.dispatch.linkedin import LinkedInClient, response_id
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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "linkedin"
NOTICE = orjson.loads((FIXTURES / "lead_notification.json").read_bytes())
RESPONSE = orjson.loads((FIXTURES / "lead_form_response.json").read_bytes())
GOOD_TOKEN = "AQX-good-linkedin-token-42"
#: Response ids the fake answers with an error: (status, body).
ERRORS: dict[str, tuple[int, bytes]] = {
    "gone-1": (404, b'{"status":404,"serviceErrorCode":100,"message":"Not found"}'),
    "busy-1": (429, b'{"status":429,"message":"Resource level throttle limit reached"}'),
    "down-1": (503, b"<html>unavailable</html>"),
    "odd-1": (200, b"[]"),
    "bad-1": (400, b'{"status":400,"message":"Invalid id"}'),
    # a 404 that is no LinkedIn error (an empty body): api_url names another server or path
    "nowhere-1": (404, b""),
    "old-1": (
        426,
        b'{"status":426,"code":"NONEXISTENT_VERSION","message":"Requested version 20250401'
        b' is not active"}',
    ),
}


class FakeLinkedIn(RecordedReads):
    """A LinkedIn REST double: the fixture's response for any id, 401 for any token but the
    good one (its message echoing the token), the errors above; it records each read."""

    async def response(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        self.record(ident, **{k.lower(): v for k, v in request.headers.items()})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token != GOOD_TOKEN:
            message = f"Invalid access token {token}"
            return JSONResponse({"status": 401, "serviceErrorCode": 65600, "message": message}, 401)
        if ident in ERRORS:
            status, body = ERRORS[ident]
            return Response(body, status_code=status, media_type="application/json")
        return JSONResponse({**RESPONSE, "id": ident})


@pytest.fixture
def linkedin() -> Iterator[tuple[str, FakeLinkedIn]]:
    """A fresh fake LinkedIn REST API on loopback."""
    fake = FakeLinkedIn()
    app = Starlette(routes=[Route("/rest/leadFormResponses/{ident:path}", fake.response)])
    with serve_in_thread(app) as url:
        yield f"{url}/rest", fake


def _options(api_url: str, token: str = GOOD_TOKEN) -> LinkedInOptions:
    return LinkedInOptions(client_secret=Secret("cs"), access_token=Secret(token), api_url=api_url)


def _notice(ident: str, action: str = "CREATED") -> dict[str, Any]:
    return {
        **NOTICE,
        "leadGenFormResponse": f"urn:li:leadGenFormResponse:{ident}",
        "leadAction": action,
    }


def _config(directory: Path, sandbox_url: str, api_url: str, token: str, *, email: str) -> Any:
    endpoint = f"""kind: endpoint
name: li
source: linkedin
client_secret: ${{LI_SECRET}}
access_token: ${{LI_TOKEN}}
api_url: {api_url}
---
kind: mapping
name: li-map
endpoint: li
skip_if:
  $.leadAction: DELETED
fields:
  EmailAddress:
    path: $.formResponse.answers[?(@.questionId==3)].answerDetails.textQuestionAnswer.answer
    transform: [trim, lower]
    {email}
  FirstName: $.formResponse.answers[?(@.questionId==1)].answerDetails.textQuestionAnswer.answer
  mx_Response: $.id
  mx_Urn: $.leadGenFormResponse
  SourceCampaign: $.leadMetadata.sponsoredLeadMetadata.campaign
"""
    environ = {**KEYS, "LI_SECRET": "cs", "LI_TOKEN": token}
    return write_config(directory, target_yaml("default", sandbox_url), endpoint, environ=environ)


def test_a_urn_names_its_response_id() -> None:
    assert response_id("urn:li:leadGenFormResponse:6f1c-3") == "6f1c-3"
    assert response_id("6f1c-3") == "6f1c-3"


def test_merge_adds_the_notification_keys_the_response_lacks() -> None:
    merged = merge_missing({"id": "r1", "leadType": "SPONSORED"}, _notice("r1"))
    assert merged["id"] == "r1"
    assert merged["leadAction"] == "CREATED"
    assert merged["leadGenFormResponse"] == "urn:li:leadGenFormResponse:r1"
    assert merged["leadType"] == "SPONSORED"


async def test_the_client_reads_the_response_with_linkedins_headers(
    linkedin: tuple[str, FakeLinkedIn],
) -> None:
    """GET {api_url}/leadFormResponses/{id} with the bearer token, LinkedIn-Version and the
    Rest.li protocol version; the id is taken out of the URN and escaped. An id holding a
    ``/`` (no LinkedIn id does) is dead unread: escaped, a gateway decoding ``%2F`` before
    routing would read another path with the token."""
    url, fake = linkedin
    async with httpx.AsyncClient() as http:
        client = LinkedInClient(http)
        outcome = await client.fetch_response(_options(url), NOTICE["leadGenFormResponse"])
        odd = await client.fetch_response(_options(url), "urn:li:leadGenFormResponse:a?b#c")
        slashed = await client.fetch_response(_options(url), "urn:li:leadGenFormResponse:a/b")
    assert outcome == Fetched(RESPONSE)
    first, second = fake.reads
    assert first["id"] == RESPONSE["id"]
    assert first["authorization"] == f"Bearer {GOOD_TOKEN}"
    assert first["linkedin-version"] == "202606"
    assert first["x-restli-protocol-version"] == "2.0.0"
    assert second["id"] == "a?b#c"  # one path segment, not a path, a query and a fragment
    assert isinstance(odd, Fetched)
    assert isinstance(slashed, FetchDead) and slashed.kind == "rejected"


@pytest.mark.parametrize(
    ("ident", "token", "expected", "kind", "says"),
    [
        ("r1", "AQX-expired-7", FetchRetry, "token", "HTTP 401: Invalid access token"),
        ("busy-1", GOOD_TOKEN, FetchRetry, "server_error", "HTTP 429: Resource level"),
        ("down-1", GOOD_TOKEN, FetchRetry, "server_error", "HTTP 503: <html>"),
        ("odd-1", GOOD_TOKEN, FetchRetry, "bad_answer", "unexpected body"),
        ("old-1", GOOD_TOKEN, FetchRetry, "version", "set the endpoint's api_version"),
        ("gone-1", GOOD_TOKEN, FetchDead, "not_found", "(serviceErrorCode 100)"),
        ("bad-1", GOOD_TOKEN, FetchDead, "rejected", "HTTP 400: Invalid id"),
        ("nowhere-1", GOOD_TOKEN, FetchRetry, "config", "(empty body); no error of the API's"),
    ],
)
async def test_read_failures_are_classified_and_never_show_the_token(
    linkedin: tuple[str, FakeLinkedIn],
    ident: str,
    token: str,
    expected: type,
    kind: str,
    says: str,
) -> None:
    """401/403 (token or permission), 426 (a retired API version), 429 and 5xx are retried;
    404 and other refusals are final. The fake echoes a bad token in its message: the
    reason masks it."""
    url, _ = linkedin
    async with httpx.AsyncClient() as http:
        outcome = await LinkedInClient(http).fetch_response(_options(url, token), ident)
    assert isinstance(outcome, expected)
    assert not isinstance(outcome, Fetched)
    assert outcome.kind == kind
    assert says in outcome.reason
    assert token not in outcome.reason


async def test_a_notification_is_read_once_merged_stored_and_sent(
    tmp_path: Path, linkedin: tuple[str, FakeLinkedIn]
) -> None:
    """A CREATED notification's response is read once, stored with the event, merged with
    the notification and delivered; a DELETED one is skipped without any read."""
    api_url, fake = linkedin
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, api_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "li", [_notice("r-100"), _notice("r-200", "DELETED")])
            with capture_logs() as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DELIVERED, store, ids[:1]), what="delivered")
                    await wait_for(all_in(State.SKIPPED, store, ids[1:]), what="skipped")
            events = await states(store, ids)
        assert events[ids[0]].enrichment == {**RESPONSE, "id": "r-100"}
        assert fake.count("r-100") == 1
        assert fake.count("r-200") == 0
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["EmailAddress"] == "kwame.asante@example.com"
        assert lead["FirstName"] == "Kwame"
        assert lead["mx_Response"] == "r-100"
        assert lead["mx_Urn"] == "urn:li:leadGenFormResponse:r-100"  # from the notification
        assert lead["SourceCampaign"] == "urn:li:sponsoredCampaign:287736514"
        (enriched,) = (e for e in logs if e["event"] == "event_enriched")
        assert enriched["response"] == "urn:li:leadGenFormResponse:r-100"
        assert GOOD_TOKEN not in repr(logs)


async def test_a_lead_action_in_another_case_is_read_and_an_unknown_one_is_named(
    tmp_path: Path, linkedin: tuple[str, FakeLinkedIn]
) -> None:
    """A notice stored with ``leadAction: created`` (before the source upper-cased it) is a
    creation: its response is read and the lead delivered. An action that is neither
    CREATED nor DELETED reads nothing, and ``linkedin_lead_action_unknown`` names it."""
    api_url, fake = linkedin
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, api_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            notices = [_notice("r-110", "created"), _notice("r-120", "UPDATED")]
            ids = await enqueue(store, "li", notices)
            with capture_logs() as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DELIVERED, store, ids[:1]), what="delivered")
                    await wait_for(all_in(State.DEAD, store, ids[1:]), what="dead")
        assert (fake.count("r-110"), fake.count("r-120")) == (1, 0)
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["mx_Response"] == "r-110"
        (unknown,) = (e for e in logs if e["event"] == "linkedin_lead_action_unknown")
        assert unknown["log_level"] == "warning" and unknown["lead_action"] == "UPDATED"
        assert unknown["response"] == "urn:li:leadGenFormResponse:r-120"


async def test_a_refused_token_is_retried_visibly_then_delivered_once_fixed(
    tmp_path: Path, linkedin: tuple[str, FakeLinkedIn]
) -> None:
    """A 401 keeps the event retrying with the reason (token masked) and the metric counted;
    with a good token the same event is delivered."""
    api_url, _ = linkedin
    with sandbox_server() as (url, _):
        expired = _config(tmp_path / "a", url, api_url, "AQX-expired-9", email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "li", [_notice("r-300")])
            with capture_logs() as logs:
                async with running(expired, store) as dispatcher:
                    await wait_for(retried(store, ids[0]), what="retries on 401")
                    errors = dispatcher.metrics.linkedin_errors.labels("token")._value.get()
            event = (await states(store, ids))[ids[0]]
            assert event.state == State.RETRYING
            assert "LinkedIn form response fetch failed: HTTP 401" in (event.last_error or "")
            assert "r_marketing_leadgen_automation" in (event.last_error or "")
            assert "AQX-expired-9" not in (event.last_error or "")
            assert "AQX-expired-9" not in repr(logs)
            assert errors >= 2
            fixed = _config(tmp_path / "b", url, api_url, GOOD_TOKEN, email="required: true")
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered after fix")


async def test_a_response_that_no_longer_exists_is_dead_and_replay_reads_no_more(
    tmp_path: Path, linkedin: tuple[str, FakeLinkedIn]
) -> None:
    """A 404 ends the event dead with the reason; a response stored with an event that
    died on its mapping is not read again when the event is replayed."""
    api_url, fake = linkedin
    with sandbox_server() as (url, _):
        strict = _config(tmp_path / "a", url, api_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            gone, kept = await enqueue(store, "li", [_notice("gone-1"), _notice("r-400")])
            # r-400's response was read before (without the email): stored with its event
            await store.set_enrichment(kept, {"id": "r-400", "formResponse": {"answers": []}})
            async with running(strict, store) as dispatcher:
                await wait_for(all_in(State.DEAD, store, [gone, kept]), what="dead")
                assert dispatcher.metrics.linkedin_errors.labels("not_found")._value.get() == 1
            events = await states(store, [gone, kept])
            assert "does not exist (deleted?)" in (events[gone].last_error or "")
            assert "EmailAddress" in (events[kept].last_error or "")
            assert await store.replay(state=State.DEAD) == 2
            lenient = _config(tmp_path / "b", url, api_url, GOOD_TOKEN, email="default: x@y.z")
            async with running(lenient, store):
                await wait_for(all_in(State.DELIVERED, store, [kept]), what="delivered on replay")
                await wait_for(all_in(State.DEAD, store, [gone]), what="dead again")
        assert fake.count("r-400") == 0
        assert fake.count("gone-1") == 2  # dead on the read: read again on replay
