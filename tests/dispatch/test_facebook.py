"""Facebook enrichment through a fake Graph API: merge, token errors, missing leads, replay."""

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

from hub.config.models import DEFAULT_GRAPH_FIELDS, FacebookOptions
from hub.dispatch.fetch import FetchDead, Fetched, FetchRetry
from hub.dispatch.graph import GraphClient, merge_document
from hub.secrets import Secret
from hub.store.models import State
from tests.dispatch.support import (
    KEYS,
    RecordedReads,
    all_in,
    enqueue,
    facebook_endpoint_yaml,
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

FIXTURES = Path(__file__).parent / "fixtures"
LEAD = orjson.loads((FIXTURES / "graph_lead_full_fields.json").read_bytes())
EXPIRED = orjson.loads((FIXTURES / "graph_lead_error_response.json").read_bytes())
GOOD_TOKEN = "EAAB-good-page-token-123"
NO_MAIL = {
    "id": "555",
    "created_time": "2025-10-31T12:47:01+0000",
    "field_data": [
        {"name": "full_name", "values": ["Ravi Kumar"]},
        {"name": "phone_number", "values": ["+919876500001"]},
    ],
}

#: A lead whose first two reads hit the LeadGen rate limit (Business Use Case code 80005).
THROTTLED = "80005123"
LEADGEN_LIMIT = {
    "error": {
        "message": "(#80005) There have been too many leadgen api calls to this Page account. "
        "Wait a bit and try again.",
        "type": "OAuthException",
        "code": 80005,
    }
}


#: Leads whose reads answer a Graph error whose ``code`` is no integer: (status, code).
ODD_CODES: dict[str, tuple[int, Any]] = {"31": (400, [1]), "32": (500, {"a": 1}), "33": (400, "4")}

#: Leads whose reads answer a Graph error Meta's guide says to wait for or fix, never a
#: refusal of the lead: 368 (temporarily blocked for a policy violation: wait and retry),
#: 3 (the app lacks a capability or permission). Both killed the lead as rejected.
WAIT_CODES = {
    "368368": (
        400,
        368,
        "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
    ),
    "333": (400, 3, "(#3) Application does not have the capability to make this API call."),
}

#: A lead read with code 200 (permission not granted) while ``FakeGraph.denied``.
UNPERMITTED = "200200123"
NO_PERMISSION = {
    "error": {
        "message": "(#200) Requires pages_manage_ads permission to manage the object",
        "type": "OAuthException",
        "code": 200,
    }
}


#: The fields FakeGraph's leads have; a read asking for another is refused with code 100.
LEAD_FIELDS = {
    *"ad_id ad_name adset_id adset_name campaign_id campaign_name created_time".split(),
    *"custom_disclaimer_responses field_data form_id home_listing id is_organic".split(),
    *"partner_name platform post post_submission_check_result retailer_item_id".split(),
    "vehicle",
}


#: A lead whose reads Graph answers code 2 (loaded) 4 times, then code 1 "reduce" each time.
LOADED_FIRST = "778"


class FakeGraph(RecordedReads):
    """A Graph API double: leads by id, 190 for any token but the good one, counts reads."""

    #: Whether the page token lacks a permission (UNPERMITTED's reads answer code 200).
    denied = True

    async def lead(self, request: Request) -> Response:
        lead_id = request.path_params["lead_id"]
        self.record(lead_id, **request.query_params)
        if request.query_params.get("access_token") != GOOD_TOKEN:
            return JSONResponse(EXPIRED, status_code=400)
        unknown = sorted(set(request.query_params.get("fields", "").split(",")) - LEAD_FIELDS)
        if unknown:  # Graph's answer, as it words it, to a field its lead has not
            message = f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type "
            error = {"message": message + "(LeadgenLeads)", "type": "OAuthException", "code": 100}
            return JSONResponse({"error": error}, status_code=400)
        if lead_id == LEAD["id"]:
            return JSONResponse(LEAD)
        if lead_id == "555":
            return JSONResponse(NO_MAIL)
        if lead_id == "777" or (lead_id == LOADED_FIRST and self.count(lead_id) > 4):
            return JSONResponse(
                {"error": {"message": "Please reduce the amount of data", "code": 1, "type": "x"}},
                status_code=500,
            )
        if lead_id == LOADED_FIRST:  # (its first 4 reads: Graph loaded, code 2)
            body = {"error": {"message": "Service temporarily unavailable", "code": 2}}
            return JSONResponse(body, status_code=500)
        if lead_id in WAIT_CODES:
            status, code, message = WAIT_CODES[lead_id]
            body = {"error": {"message": message, "code": code, "type": "OAuthException"}}
            return JSONResponse(body, status_code=status)
        if lead_id in ODD_CODES:
            status, code = ODD_CODES[lead_id]
            body = {"error": {"message": "odd", "code": code, "type": "OAuthException"}}
            return JSONResponse(body, status_code=status)
        if lead_id == UNPERMITTED and self.denied:
            return JSONResponse(NO_PERMISSION, status_code=403)
        if lead_id == UNPERMITTED:
            return JSONResponse({**LEAD, "id": UNPERMITTED})
        if lead_id == THROTTLED and self.count(THROTTLED) <= 2:
            return JSONResponse(LEADGEN_LIMIT, status_code=400)
        if lead_id == THROTTLED:
            return JSONResponse({**LEAD, "id": THROTTLED})
        if lead_id == "10010033":  # how Graph answers for a deleted lead
            body = {
                "error": {
                    "message": f"Unsupported get request. Object with ID '{lead_id}' does not "
                    "exist, cannot be loaded due to missing permissions, or does not support "
                    "this operation.",
                    "code": 100,
                    "error_subcode": 33,
                    "type": "OAuthException",
                }
            }
            return JSONResponse(body, status_code=400)
        if lead_id == "100100":
            body = {
                "error": {
                    "message": "Unsupported get request.",
                    "code": 100,
                    "type": "GraphMethodException",
                }
            }
            return JSONResponse(body, status_code=400)
        if lead_id == "html404":  # a page that is no Graph's: graph_url names another server
            return Response(b"<html><body>Not Found</body></html>", status_code=404)
        message = f"(#803) Some of the aliases you requested do not exist: {lead_id}"
        body = {"error": {"message": message, "type": "OAuthException", "code": 803}}
        return JSONResponse(body, status_code=404)


@pytest.fixture
def graph() -> Iterator[tuple[str, FakeGraph]]:
    """A fresh fake Graph API on loopback."""
    fake = FakeGraph()
    app = Starlette(routes=[Route("/v21.0/{lead_id}", fake.lead)])
    with serve_in_thread(app) as url:
        yield f"{url}/v21.0", fake


def _options(graph_url: str, token: str = GOOD_TOKEN) -> FacebookOptions:
    return FacebookOptions(
        app_secret=Secret("a"),
        verify_token=Secret("v"),
        page_access_token=Secret(token),
        graph_url=graph_url,
        fields=("id", "field_data", "campaign_name"),
    )


def _config(
    directory: Path,
    sandbox_url: str,
    graph_url: str,
    token: str,
    *,
    email: str,
    extra: str = "",
    retry: str | None = None,
) -> Any:
    endpoint = (
        facebook_endpoint_yaml(graph_url, extra)
        + f"""fields:
  EmailAddress: {{ path: "$.field_data[?(@.name=='email')].values[0]", {email} }}
  Phone: {{ path: "$.field_data[?(@.name=='phone_number')].values[0]" }}
  FirstName: {{ path: "$.field_data[?(@.name=='full_name')].values[0]", transform: first_word }}
  SourceCampaign: $.campaign_name
  mx_FB_Page_Id: $.page_id
  mx_FB_Adgroup_Id: $.adgroup_id
  mx_FB_Lead_Id: $.leadgen_id
"""
    )
    environ = {**KEYS, "FB_APP_SECRET": "a", "FB_VERIFY_TOKEN": "v", "FB_PAGE_TOKEN": token}
    target = target_yaml("default", sandbox_url, **({} if retry is None else {"retry": retry}))
    return write_config(directory, target, endpoint, environ=environ)


def _change(leadgen_id: str) -> dict[str, Any]:
    return {
        "leadgen_id": leadgen_id,
        "page_id": "104729318842215",
        "form_id": "1873650096712204",
        "adgroup_id": "120213456789012345",
        "ad_id": "120213456789012345",
        "created_time": 1761914821,
        "entry_id": "104729318842215",
        "entry_time": 1761914823,
    }


async def test_graph_client_reads_the_lead_with_fields_and_token(
    graph: tuple[str, FakeGraph],
) -> None:
    """The lead is read with GET {graph_url}/{id}?fields=...&access_token=..."""
    url, fake = graph
    async with httpx.AsyncClient() as http:
        outcome = await GraphClient(http).fetch_lead(_options(url), LEAD["id"])
    assert outcome == Fetched(LEAD)
    assert fake.reads[-1] == {
        "id": LEAD["id"],
        "fields": "id,field_data,campaign_name",
        "access_token": GOOD_TOKEN,
    }


@pytest.mark.parametrize(
    ("lead_id", "token", "expected", "kind"),
    [
        ("1287634509812345", "expired-token-xyz", FetchRetry, "token"),
        ("777", GOOD_TOKEN, FetchRetry, "transient"),
        ("100100", GOOD_TOKEN, FetchDead, "not_found"),
        ("10010033", GOOD_TOKEN, FetchDead, "not_found"),
        ("368368", GOOD_TOKEN, FetchRetry, "transient"),
        ("html404", GOOD_TOKEN, FetchRetry, "config"),
        ("333", GOOD_TOKEN, FetchRetry, "token"),
        ("424242", GOOD_TOKEN, FetchDead, "not_found"),
        ("31", GOOD_TOKEN, FetchDead, "rejected"),
        ("32", GOOD_TOKEN, FetchRetry, "server_error"),
        ("33", GOOD_TOKEN, FetchDead, "rejected"),
    ],
)
async def test_graph_errors_are_classified(
    graph: tuple[str, FakeGraph], lead_id: str, token: str, expected: type, kind: str
) -> None:
    """Code 190 and transient codes are retried; a 404 or code 100 means the lead is gone.
    An error whose code is no integer (a list, an object, text) is classified by its status,
    where a list or an object raised TypeError (a traceback at every retry)."""
    url, _ = graph
    async with httpx.AsyncClient() as http:
        outcome = await GraphClient(http).fetch_lead(_options(url, token), lead_id)
    assert isinstance(outcome, expected)
    assert not isinstance(outcome, Fetched)
    assert outcome.kind == kind
    assert token not in outcome.reason


def test_merge_adds_change_keys_only_where_the_lead_lacks_them() -> None:
    """The mapping document is the lead plus the change's ids, the lead's own values kept."""
    merged = merge_document({"id": "1", "form_id": "from-lead"}, _change("1"))
    assert merged["form_id"] == "from-lead"
    assert merged["page_id"] == "104729318842215"
    assert merged["leadgen_id"] == "1"
    assert merged["created_time"] == 1761914821
    assert "entry_id" not in merged


async def test_enriched_lead_is_merged_stored_and_sent(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """A leadgen event is fetched once, stored with the event, merged and delivered."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(LEAD["id"])])
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
            event = (await states(store, ids))[ids[0]]
        assert event.enrichment == LEAD
        assert fake.count(LEAD["id"]) == 1
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["EmailAddress"] == "priya.raman@example.com"
        assert lead["FirstName"] == "Priya"
        assert lead["SourceCampaign"] == "Q4 Home Loans - Leads"
        assert lead["mx_FB_Page_Id"] == "104729318842215"  # from the change
        assert lead["mx_FB_Adgroup_Id"] == "120213456789012345"  # from the change
        assert lead["mx_FB_Lead_Id"] == LEAD["id"]


async def test_expired_token_is_retried_visibly_then_delivered_once_fixed(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """Code 190 keeps the event retrying with the reason visible; a fresh token delivers it."""
    graph_url, _ = graph
    with sandbox_server() as (url, _):
        expired = _config(tmp_path / "a", url, graph_url, "EAAB-expired-9", email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(LEAD["id"])])
            async with running(expired, store) as dispatcher:
                await wait_for(retried(store, ids[0]), what="retries on code 190")
                errors = dispatcher.metrics.graph_errors.labels("token")._value.get()
            event = (await states(store, ids))[ids[0]]
            assert event.state == State.RETRYING
            assert "Graph error 190" in (event.last_error or "")
            assert "refresh" in (event.last_error or "")
            assert "EAAB-expired-9" not in (event.last_error or "")
            assert errors >= 2
            fixed = _config(tmp_path / "b", url, graph_url, GOOD_TOKEN, email="required: true")
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered after fix")


def _expired_then_fixed(tmp_path: Path, url: str, graph_url: str) -> tuple[Any, Any]:
    """The endpoint's configuration with an expired page token, then with a good one; each
    retry waits an hour, so a lead read on time after the fix was made due by it."""
    hourly = "{initial: 1h, max_interval: 1h, give_up_after: 72h}"
    expired = _config(
        tmp_path / "a", url, graph_url, "EAAB-expired-9", email="required: true", retry=hourly
    )
    fixed = _config(
        tmp_path / "b", url, graph_url, GOOD_TOKEN, email="required: true", retry=hourly
    )
    return expired, fixed


async def test_a_reload_that_fixes_the_token_reads_the_waiting_leads_at_once(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """A lead whose read failed on an expired token waits for its next try, up to the
    target's max_interval (an hour); the reload that gives the endpoint a fresh token makes
    it due at once, as a reload that fixes a paused target's keys does for its events. It
    was read only when its hour was up. Its attempts are kept."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        expired, fixed = _expired_then_fixed(tmp_path, url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(LEAD["id"])])
            # every wait the whole hour (the top of its jitter)
            async with running(expired, store, random=lambda: 1.0) as dispatcher:
                await wait_for(all_in(State.RETRYING, store, ids), what="retrying on code 190")
                await dispatcher.reload(fixed)
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered on reload")
            event = (await states(store, ids))[ids[0]]
        assert event.attempts == 2
        assert fake.count(LEAD["id"]) == 2


async def test_a_restart_with_the_fixed_token_reads_the_waiting_leads_at_once(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """A page token given in a variable is fixed by a restart (a reload does not read the
    environment again): the restarted hub makes due at once the leads whose read failed, as a
    reload that changes the endpoint does. They waited out their backoff (up to the target's
    max_interval, an hour) with the right token in place. Their attempts are kept."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        expired, fixed = _expired_then_fixed(tmp_path, url, graph_url)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(LEAD["id"])])
            # every wait the whole hour (the top of its jitter)
            async with running(expired, store, random=lambda: 1.0):
                await wait_for(all_in(State.RETRYING, store, ids), what="retrying on code 190")
            async with running(fixed, store, random=lambda: 1.0):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered on restart")
            event = (await states(store, ids))[ids[0]]
        assert event.attempts == 2
        assert fake.count(LEAD["id"]) == 2


async def test_a_lead_that_no_longer_exists_is_dead(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """HTTP 404 or Graph code 100 on the lead read ends the event dead with the reason.
    Code 100 with subcode 33 (Graph's "does not exist, cannot be loaded due to missing
    permissions", as it answers a token of another page for every lead) says so and ends
    with the replay that reads the lead again once the token is fixed, where it said only
    that the lead was deleted."""
    graph_url, _ = graph
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            changes = [_change("424242"), _change("100100"), _change("10010033")]
            ids = await enqueue(store, "fb", changes)
            async with running(config, store) as dispatcher:
                await wait_for(all_in(State.DEAD, store, ids), what="dead")
                assert dispatcher.metrics.graph_errors.labels("not_found")._value.get() == 3
            events = await states(store, ids)
        assert "Graph error 803" in (events[ids[0]].last_error or "")
        assert "does not exist (deleted?)" in (events[ids[0]].last_error or "")
        assert "replay" not in (events[ids[0]].last_error or "")
        assert "Graph error 100" in (events[ids[1]].last_error or "")
        unseen = events[ids[2]].last_error or ""
        assert "Graph error 100" in unseen
        assert "the page access token cannot see it (a token of another page" in unseen
        assert unseen.endswith(f"send it again: leadhub replay --id {ids[2]}")


async def test_a_field_graph_has_not_is_retried_naming_fields_then_delivered_once_fixed(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """Graph's code 100 for a name in the endpoint's ``fields`` its lead has not (a typo, a
    field a newer version dropped) fails every lead's read alike: the lead is retried, its
    last error naming ``fields``, where it was killed as deleted (every lead of the endpoint
    lost); with ``fields`` fixed, it is read and delivered."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        typo = "fields: [id, field_data, campain_name]\n"
        wrong = _config(
            tmp_path / "a", url, graph_url, GOOD_TOKEN, email="required: true", extra=typo
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(LEAD["id"])])
            async with running(wrong, store) as dispatcher:
                await wait_for(retried(store, ids[0]), what="retries on code 100 for a field")
                assert dispatcher.metrics.graph_errors.labels("config")._value.get() >= 2
            event = (await states(store, ids))[ids[0]]
            assert event.state == State.RETRYING
            assert "nonexisting field (campain_name)" in (event.last_error or "")
            assert "check the endpoint's fields" in (event.last_error or "")
            assert "does not exist (deleted?)" not in (event.last_error or "")
            fixed = _config(tmp_path / "b", url, graph_url, GOOD_TOKEN, email="required: true")
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered after fix")
        assert fake.reads[-1]["fields"] == ",".join(DEFAULT_GRAPH_FIELDS)
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["mx_FB_Lead_Id"] == LEAD["id"]


async def test_replay_uses_the_stored_lead_and_does_not_fetch_again(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """A lead dead on a required field is replayed after the mapping fix without a second fetch."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        strict = _config(tmp_path / "a", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change("555")])
            async with running(strict, store):
                await wait_for(all_in(State.DEAD, store, ids), what="dead on required email")
            assert fake.count("555") == 1
            assert await store.replay(state=State.DEAD) == 1
            lenient = _config(tmp_path / "b", url, graph_url, GOOD_TOKEN, email="default: null")
            async with running(lenient, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered on replay")
        assert fake.count("555") == 1
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["Phone"] == "+919876500001"


async def test_a_leadgen_rate_limit_is_retried_then_delivered(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """Graph's Business Use Case rate limits (80005: LeadGen's, which every lead read counts
    against) say to wait: the lead is retried and delivered once the limit lifts, where it
    was killed as a refusal, one lead after another for as long as the limit held."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(THROTTLED)])
            async with running(config, store) as dispatcher:
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
                throttled = dispatcher.metrics.graph_errors.labels("transient")._value.get()
            event = (await states(store, ids))[ids[0]]
        assert fake.count(THROTTLED) == 3
        assert throttled == 2
        assert event.attempts == 3
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["mx_FB_Lead_Id"] == THROTTLED


async def test_a_read_graph_asks_to_ask_less_of_is_dead_after_a_few_tries(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """Graph's code 1 "Please reduce the amount of data you're asking for" answers the same
    read the same way: after a few tries (Graph may have been loaded for a moment) the lead is
    dead, its reason naming the endpoint's fields and the replay, where it was retried for as
    long as give_up_after (72 hours by default) without a word of what to change."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change("777")])
            async with running(config, store):
                await wait_for(all_in(State.DEAD, store, ids), what="dead")
            event = (await states(store, ids))[ids[0]]
        assert fake.count("777") == event.attempts == 5
        reason = event.last_error or ""
        assert "Graph error 1 " in reason
        assert "the endpoint's fields" in reason
        assert reason.endswith(f"send it again: leadhub replay --id {ids[0]}")


async def test_a_read_asked_to_ask_less_gets_its_tries_whatever_failed_before(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """The few tries of a read Graph asks to ask less of are counted from its first such
    answer, not from the event's first attempt: a lead whose reads had failed otherwise (a
    loaded Graph here; an expired token for hours, as often) was dead at its first "reduce"
    answer, its reason saying it had been answered so 5 times."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(LOADED_FIRST)])
            async with running(config, store):
                await wait_for(all_in(State.DEAD, store, ids), what="dead")
            event = (await states(store, ids))[ids[0]]
        assert fake.count(LOADED_FIRST) == event.attempts == 4 + 5
        reason = event.last_error or ""
        assert "Graph error 1 " in reason
        assert "(answered so 5 times)" in reason


async def test_a_missing_permission_is_retried_visibly_then_delivered_once_granted(
    tmp_path: Path, graph: tuple[str, FakeGraph]
) -> None:
    """Graph code 200 (a permission not granted: every lead's read fails alike until a human
    grants it) keeps the lead retrying with the reason and the fix in its last error, where
    it was killed as a refusal; once granted, the lead is read and delivered."""
    graph_url, fake = graph
    with sandbox_server() as (url, _):
        config = _config(tmp_path / "cfg", url, graph_url, GOOD_TOKEN, email="required: true")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [_change(UNPERMITTED)])
            async with running(config, store) as dispatcher:
                await wait_for(retried(store, ids[0]), what="retries on code 200")
                event = (await states(store, ids))[ids[0]]
                assert "Graph error 200" in (event.last_error or "")
                assert "lacks a permission" in (event.last_error or "")
                assert dispatcher.metrics.graph_errors.labels("token")._value.get() >= 2
                fake.denied = False
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered once granted")
