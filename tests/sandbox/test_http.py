"""The sandbox's HTTP surface: keys, paths, the check order, read-back and control APIs."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from hub.clock import ManualClock
from hub.sandbox import create_app
from hub.units import RateLimit
from tests.sandbox.helpers import AUTH, CAPTURE, KEY, SECRET, Lsq, assert_error, body
from tests.support.server import serve_in_thread

UNAUTHORIZED = "MXUnAuthorizedAccessException"
NOT_FOUND = "MXInvalidAPIException"
INVALID = "MXInvalidInputException"
EMAIL = body(("EmailAddress", "a@example.com"))


@pytest.mark.parametrize(
    "params",
    [
        {"accesskey": KEY, "secretkey": SECRET},
        {"ACCESSKEY": KEY, "SecretKey": SECRET},
        {"AccessKey": KEY, "secretKey": SECRET},
    ],
)
def test_query_key_names_match_case_insensitively(lsq: Lsq, params: dict[str, str]) -> None:
    """accessKey/secretKey are accepted under any capitalisation of their names."""
    with httpx.Client(base_url=lsq.base) as client:
        response = client.post(CAPTURE, json=EMAIL, params=params)
    assert response.status_code == 200, response.text


def test_keys_in_headers_are_accepted(lsq: Lsq) -> None:
    """x-LSQ-AccessKey / x-LSQ-SecretKey headers authenticate like the query parameters."""
    headers = {"x-LSQ-AccessKey": KEY, "x-LSQ-SecretKey": SECRET}
    with httpx.Client(base_url=lsq.base) as client:
        response = client.post(CAPTURE, json=EMAIL, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"accessKey": KEY},
        {"accessKey": KEY, "secretKey": "wrong"},
        {"accessKey": "x", "secretKey": SECRET},
    ],
)
def test_wrong_or_missing_keys_are_401(lsq: Lsq, params: dict[str, str]) -> None:
    """Missing or wrong keys get 401 MXUnAuthorizedAccessException and nothing is stored."""
    with httpx.Client(base_url=lsq.base) as client:
        response = client.post(CAPTURE, json=EMAIL, params=params)
    message = assert_error(response, 401, UNAUTHORIZED)
    assert SECRET not in message and lsq.leads() == []


def test_keys_are_checked_before_the_path(lsq: Lsq) -> None:
    """An unknown path with bad keys is a 401, not a 404."""
    with httpx.Client(base_url=lsq.base) as client:
        response = client.get("/nowhere", params={"accessKey": KEY, "secretKey": "bad"})
    assert_error(response, 401, UNAUTHORIZED)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nowhere"),
        ("GET", CAPTURE),
        ("PUT", CAPTURE),
        ("POST", "/v2/LeadManagement.svc/Lead.Create"),
        ("POST", CAPTURE + "/extra"),
        ("DELETE", "/_sandbox/leads"),
    ],
)
def test_unknown_path_or_method_is_404(lsq: Lsq, method: str, path: str) -> None:
    """Any other path, or a known path with the wrong method, is a 404 with the envelope."""
    response = lsq.http.request(method, path, json=EMAIL)
    assert_error(response, 404, NOT_FOUND)


def test_paths_match_case_insensitively(lsq: Lsq) -> None:
    """/V2/leadmanagement.svc/LEAD.CAPTURE is Lead.Capture."""
    response = lsq.http.post("/V2/leadmanagement.svc/LEAD.CAPTURE", json=EMAIL)
    assert response.status_code == 200, response.text
    found = lsq.http.get(
        "/v2/LEADMANAGEMENT.SVC/leads.getbyemailaddress", params={"EmailAddress": "a@example.com"}
    )
    assert len(found.json()) == 1


def test_path_is_checked_before_the_rate_limit(sandbox_factory: Callable[..., Lsq]) -> None:
    """Once the limit is used up, an unknown /v2 path is still a 404, not a 429."""
    lsq = sandbox_factory(rate_limit=RateLimit(1, 5.0), clock=ManualClock())
    assert lsq.capture(("FirstName", "A")).status_code == 200
    assert_error(lsq.capture(("FirstName", "A")), 429, "MXAPIRateLimitExceededException")
    assert_error(lsq.http.post("/v2/LeadManagement.svc/Nope", json=EMAIL), 404, NOT_FOUND)


def test_rate_limit_is_checked_before_faults_and_faults_before_the_body(
    sandbox_factory: Callable[..., Lsq],
) -> None:
    """A faulted call with a bad body fails with the fault; past the limit it is a 429."""
    lsq = sandbox_factory(rate_limit=RateLimit(2, 5.0), clock=ManualClock())
    lsq.faults(rate=1.0, kinds=["500"])
    bad = lsq.http.post(CAPTURE, content=b"not json", headers={"content-type": "text/plain"})
    assert (bad.status_code, bad.text) == (500, "Internal Server Error")
    assert lsq.http.get("/_sandbox/leads").status_code == 200
    lsq.capture(("FirstName", "A"))
    assert_error(lsq.capture(("FirstName", "A")), 429, "MXAPIRateLimitExceededException")


def test_get_by_id_returns_the_lead_or_an_empty_array(lsq: Lsq) -> None:
    """Leads.GetById answers [lead] with ProspectID, attributes and dates, or [] when unknown."""
    lead_id = lsq.ok(("EmailAddress", "a@example.com"), ("FirstName", "Ann"))["RelatedId"]
    path = "/v2/LeadManagement.svc/Leads.GetById"
    (lead,) = lsq.http.get(path, params={"id": lead_id}).json()
    assert set(lead) == {"ProspectID", "EmailAddress", "FirstName", "CreatedOn", "ModifiedOn"}
    assert lead["ProspectID"] == lead_id
    assert lsq.http.get(path, params={"id": str(uuid.uuid4())}).json() == []
    assert lsq.http.get(path).json() == []


def test_get_by_id_finds_the_lead_by_a_padded_id_as_a_capture_does(lsq: Lsq) -> None:
    """An id with spaces around it (a pasted URL, a form's field) is the lead's id to
    Leads.GetById, as it is to a capture, which trims its ProspectID: the capture matched
    the lead and the read of the same id answered []."""
    lead_id = lsq.ok(("EmailAddress", "pad@example.com"))["RelatedId"]
    padded = f"  {lead_id.upper()} "
    assert lsq.ok(("ProspectID", padded), ("FirstName", "Pad"))["RelatedId"] == lead_id
    path = "/v2/LeadManagement.svc/Leads.GetById"
    found = lsq.http.get(path, params={"id": padded}).json()
    assert [(lead["ProspectID"], lead["FirstName"]) for lead in found] == [(lead_id, "Pad")]
    assert lsq.http.get(path, params={"id": "   "}).json() == []


def test_get_by_email_is_case_insensitive(lsq: Lsq) -> None:
    """Leads.GetByEmailaddress finds the lead whatever the case; [] when unknown or missing."""
    lead_id = lsq.ok(("EmailAddress", "Ann@Example.com"))["RelatedId"]
    path = "/v2/LeadManagement.svc/Leads.GetByEmailaddress"
    found = lsq.http.get(path, params={"emailaddress": "ANN@example.COM"}).json()
    assert [lead["ProspectID"] for lead in found] == [lead_id]
    assert lsq.http.get(path, params={"emailaddress": "bo@example.com"}).json() == []
    assert lsq.http.get(path).json() == []


def test_retrieve_by_phone_compares_digits_of_phone_and_mobile(lsq: Lsq) -> None:
    """RetrieveLeadByPhoneNumber matches Phone or Mobile by digits; [] when unknown or missing."""
    by_phone = lsq.ok(("Phone", "+91-9876543210"))["RelatedId"]
    by_mobile = lsq.ok(("EmailAddress", "m@example.com"), ("Mobile", "+1 555 000 1111"))[
        "RelatedId"
    ]
    path = "/v2/LeadManagement.svc/RetrieveLeadByPhoneNumber"
    first = lsq.http.get(path, params={"phone": "919876543210"}).json()
    assert [lead["ProspectID"] for lead in first] == [by_phone]
    second = lsq.http.get(path, params={"phone": "15550001111"}).json()
    assert [lead["ProspectID"] for lead in second] == [by_mobile]
    assert lsq.http.get(path, params={"phone": "9876543210"}).json() == []
    assert lsq.http.get(path).json() == []


def test_visitors_are_registered_idempotently_and_must_be_uuids(lsq: Lsq) -> None:
    """POST /_sandbox/visitors answers 201 with the id (twice is fine); a non-UUID is a 400."""
    visitor = str(uuid.uuid4())
    for _ in range(2):
        response = lsq.http.post("/_sandbox/visitors", json={"ProspectId": visitor})
        assert (response.status_code, response.json()) == (201, {"ProspectId": visitor})
    bad = lsq.http.post("/_sandbox/visitors", json={"ProspectId": "visitor-1"})
    assert "'visitor-1'" in assert_error(bad, 400, INVALID)
    assert_error(lsq.http.post("/_sandbox/visitors", content=b"{"), 400, INVALID)


@pytest.mark.parametrize("body", [{}, {"VisitorId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}])
def test_a_visitor_without_a_prospect_id_is_told_to_send_one(lsq: Lsq, body: object) -> None:
    """A body without ProspectId (the id under another key, or none) was told "ProspectId
    None is not a UUID", a Python None for a key it never sent; it is told to send one."""
    refused = lsq.http.post("/_sandbox/visitors", json=body)
    reason = assert_error(refused, 400, INVALID)
    assert reason.startswith("Send a JSON object with 'ProspectId', the visitor's id"), reason
    assert "None" not in reason


@pytest.mark.parametrize("form", ["{%s}", "urn:uuid:%s", "%s"])
def test_a_visitor_in_another_form_than_8_4_4_4_12_is_refused(lsq: Lsq, form: str) -> None:
    """A visitor id in a form uuid.UUID reads but a capture does not match (braces, a URN, 32
    bare digits) is a 400, as an account's Id is: it was answered 201 under the hyphenated
    form, and a capture sending the id as registered made a lead of a fresh id."""
    visitor = uuid.uuid4()
    sent = form % (visitor.hex if form == "%s" else str(visitor))
    refused = lsq.http.post("/_sandbox/visitors", json={"ProspectId": sent})
    assert f"ProspectId {sent!r} is not a UUID in its hyphenated form" in assert_error(
        refused, 400, INVALID
    )
    captured = lsq.ok(("ProspectID", sent), ("FirstName", "V"))
    assert captured["IsCreated"] is True
    assert captured["RelatedId"] != str(visitor)


def test_a_visitor_in_upper_case_is_held_and_converted_in_lower_case(lsq: Lsq) -> None:
    """The hyphenated form in any letter case is taken, answered in lower case, and a capture
    sending it in either case makes the lead of that id (rule 3)."""
    visitor = str(uuid.uuid4())
    registered = lsq.http.post("/_sandbox/visitors", json={"ProspectId": visitor.upper()})
    assert (registered.status_code, registered.json()) == (201, {"ProspectId": visitor})
    captured = lsq.ok(("ProspectID", visitor.upper()), ("FirstName", "V"))
    assert (captured["RelatedId"], captured["IsCreated"]) == (visitor, True)


def test_accounts_need_a_name(lsq: Lsq) -> None:
    """POST /_sandbox/accounts creates an account with a UUID; no name is a 400."""
    created = lsq.http.post("/_sandbox/accounts", json={"Name": "Acme"})
    assert created.status_code == 201
    assert str(uuid.UUID(created.json()["Id"])) == created.json()["Id"]
    assert_error(lsq.http.post("/_sandbox/accounts", json={"Name": " "}), 400, INVALID)
    assert_error(lsq.http.post("/_sandbox/accounts", json=["Acme"]), 400, INVALID)


def test_control_lists_leads_oldest_first_and_activities(lsq: Lsq) -> None:
    """GET /_sandbox/leads lists every lead in creation order; activities of an unknown id
    are []."""
    ids = [lsq.ok(("FirstName", name))["RelatedId"] for name in ("A", "B", "C")]
    assert [lead["ProspectID"] for lead in lsq.leads()] == ids
    assert lsq.activities(str(uuid.uuid4())) == []


def test_control_api_needs_the_keys(lsq: Lsq) -> None:
    """The control API is behind the same keys."""
    with httpx.Client(base_url=lsq.base) as client:
        assert_error(client.get("/_sandbox/leads"), 401, UNAUTHORIZED)


def test_unexpected_failure_is_a_500_envelope_and_serving_goes_on(lsq: Lsq) -> None:
    """When the store fails (here: closed under it), the call gets a 500 MX envelope and
    the server keeps answering."""
    lsq.sandbox.close()
    response = lsq.capture(("FirstName", "A"))
    assert_error(response, 500, "MXUnexpectedException")
    assert_error(lsq.http.get("/nowhere"), 404, NOT_FOUND)


class _PassThrough(BaseHTTPMiddleware):
    """Middleware that runs the app in another task and wraps send in a stream."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


@pytest.mark.parametrize("middleware", [[], [Middleware(_PassThrough)]])
def test_mounted_under_a_prefix_it_serves_and_drops_connections(
    middleware: list[Middleware],
) -> None:
    """Mounted at /sandbox inside another Starlette app (no lifespan, with or without
    BaseHTTPMiddleware), it captures, reads back, and a reset fault still closes the
    connection without an answer."""
    app = create_app(access_key=KEY, secret_key=SECRET, rate_limit=None)
    outer = Starlette(routes=[Mount("/sandbox", app=app)], middleware=middleware)
    try:
        with (
            serve_in_thread(outer, lifespan="off") as base,
            httpx.Client(base_url=base + "/sandbox", params=AUTH) as client,
        ):
            assert client.post(CAPTURE, json=EMAIL).status_code == 200
            assert len(client.get("/_sandbox/leads").json()) == 1
            client.post("/_sandbox/faults", json={"every": 1, "kinds": ["reset"]})
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                client.post(CAPTURE, json=EMAIL)
            assert client.get("/nowhere").status_code == 404
    finally:
        app.state.sandbox.close()
