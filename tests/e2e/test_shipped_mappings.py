"""Every shipped mapping end to end: a sender's fixture in, exactly the expected lead out.

A real ``leadhub serve`` runs the shipped ``mappings/`` directory with its embedded
sandbox; Facebook, LinkedIn and HubSpot app leads are read from fake APIs. A second
delivery of the same lead (a new delivery id) updates the lead rather than creating another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.e2e.support import (
    FIXTURES,
    SHIPPED,
    activities,
    attributes,
    facebook_signature,
    fixture,
    hubspot_headers,
    lead_by_email,
    linkedin_signature,
    post,
    standard_headers,
    tally_signature,
    tiktok_signature,
    typeform_signature,
    wait_until,
    webflow_headers,
)
from tests.mappings.cases import DEMO_ENV
from tests.support.server import free_port, leadhub_process, serve_in_thread

GRAPH_LEAD = orjson.loads((FIXTURES / "facebook" / "graph_lead_full_fields.json").read_bytes())
HUBSPOT_CONTACT = orjson.loads((FIXTURES / "hubspot" / "crm_contact.json").read_bytes())
LINKEDIN_RESPONSE = orjson.loads((FIXTURES / "linkedin" / "lead_form_response.json").read_bytes())

EXPECTED: dict[str, dict[str, str]] = {
    "zapier": {
        "FirstName": "Aarav",
        "LastName": "Shah",
        "EmailAddress": "aarav.shah@example.com",
        "Phone": "+91-5550011223",
        "Source": "Facebook Lead Ads",
        "mx_Interested_In": "Home loan,Car loan",
        "mx_Consent": "true",
        "mx_External_Lead_Id": "1287634509812345",
        "mx_Lead_Created_On": "2025-10-31 12:47:01",
    },
    "typeform": {
        "FirstName": "Jordan",
        "EmailAddress": "jordan.lee@example.com",
        "Phone": "+1-5555550187",
        "mx_Roof_Type": "Metal",
        "mx_Interests": "Solar panels; Home battery",
        "mx_Monthly_Bill": "180",
        "mx_Homeowner": "true",
        "mx_Install_Date": "2026-01-15 00:00:00",
        "Source": "google",
        "SourceMedium": "cpc",
        "SourceCampaign": "solar_q4",
        "mx_GCLID": "Cj0KCQjw-example",
        "mx_Typeform_Response": "01JBQ7ZK3M9X2R4T6V8W0Y1A2B",
    },
    "google": {
        "FirstName": "Meera",
        "LastName": "Kulkarni",
        "EmailAddress": "meera.kulkarni@example.com",
        "Phone": "+91-5550098765",
        "mx_City": "Pune",
        "mx_Zip": "411001",
        "mx_Service": "Home loan balance transfer",
        "mx_Loan_Timeline": "Within 3 months",
        "Source": "Google Ads",
        "mx_Google_Lead_Id": "Cj0KEQjw3rnGBhCi2_DJ9o2F8xwSJACD8Mm5Yt3Lx9Q-0001",
        "mx_Google_Campaign_Id": "21000000001",
        "mx_Google_Form_Id": "40000000001",
        "mx_GCLID": "Cj0KCQjw-example-gclid-AaBbCcDdEeFf",
        "mx_Lead_Submitted_On": "2025-10-31 12:47:01",
    },
    "facebook": {
        "FirstName": "Priya",
        "LastName": "Raman",
        "EmailAddress": "priya.raman@example.com",
        "Phone": "+91-5550012345",
        "mx_City": "Pune",
        "mx_Loan_Interest": "Home Loan",
        "Source": "Facebook Lead Ads",
        "SourceCampaign": "Q4 Home Loans - Leads",
        "SourceContent": "Diwali Offer - Lead Form - Video A",
        "mx_FB_Lead_Id": "1287634509812345",
        "mx_FB_Form_Id": "1873650096712204",
        "mx_FB_Ad_Id": "120213456789012345",
        "mx_FB_Page_Id": "104729318842215",
        "mx_Lead_Created_On": "2025-10-31 12:47:01",
    },
    "unbounce": {
        "FirstName": "Lucas",
        "LastName": "Ferreira",
        "EmailAddress": "lucas.ferreira@example.com",
        "Phone": "+1-5550100144",
        "SourceIPAddress": "203.0.113.24",
        "Source": "Unbounce",
        "SourceContent": "A",
        "mx_Landing_Page": "https://offers.example.com/solar-quote/",
        "mx_Landing_Page_Name": "Solar Quote LP",
        "mx_Submitted_On": "2025-10-31 00:00:00",
    },
    "jotform": {
        "FirstName": "Olivia",
        "LastName": "Bennett",
        "EmailAddress": "olivia.bennett@example.com",
        "Phone": "+1-5550100177",
        "Company": "Bennett Bakery LLC",
        "Notes": "Need pricing for 3 stores.",
        "Source": "Jotform",
        "mx_Jotform_Form_Id": "251234567890123",
        "mx_Jotform_Submission_Id": "6201234567890123456",
    },
    "tally": {
        "FirstName": "Ananya",
        "LastName": "Iyer",
        "EmailAddress": "ananya.iyer@example.com",
        "Phone": "+91-5550123456",
        "mx_Loan_Amount": "4500000",
        "mx_Loan_Type": "Home loan",
        "mx_Call_Time": "Evening",
        "mx_Consent": "true",
        "Notes": "Prefer a call in Tamil.",
        "Source": "newsletter",
        "SourceCampaign": "diwali_2025",
        "mx_Tally_Response": "2wgx4n",
        "mx_Submitted_On": "2025-11-03 09:14:26",
    },
    "elementor": {
        "FirstName": "Rohan",
        "LastName": "Mehta",
        "EmailAddress": "rohan.mehta@example.com",
        "Phone": "+91-5550198765",
        "mx_Services": "Solar panels, Home battery",
        "Notes": "Call after 6 pm please.",
        "SourceIPAddress": "203.0.113.77",
        "Source": "Elementor",
        "mx_Landing_Page": "https://www.example.com/free-consultation/",
    },
    "make": {
        "FirstName": "Chloé",
        "LastName": "Dubois",
        "EmailAddress": "chloe.dubois@example.com",
        "Phone": "+33-555010203",
        "Source": "newsletter",
        "SourceMedium": "email",
        "SourceCampaign": "nov_webinar",
        "mx_Consent": "true",
        "mx_Origin_Platform": "typeform",
        "mx_Submitted_On": "2025-10-31 12:47:01",
    },
    "standard": {
        "FirstName": "Chloé",
        "LastName": "Dubois",
        "EmailAddress": "chloe.d@example.com",  # another address than make's fixture
        "Source": "Standard Webhooks",
        "mx_External_Lead_Id": "lead_01JBQ7ZK3M",
        "mx_Lead_Created_On": "2025-10-31 12:47:01",
    },
    "hubspot": {
        "FirstName": "Grace",
        "LastName": "Whitfield",
        "EmailAddress": "grace.whitfield@example.com",
        "Phone": "+44-7700900123",
        "Company": "Whitfield Analytics Ltd",
        "JobTitle": "Head of Data",
        "mx_City": "Leeds",
        "Notes": "We'd like a demo for a team of 40.",
        "Source": "HubSpot",
        "SourceMedium": "cpc",
        "mx_HubSpot_Contact_Id": "85203",
        "mx_HubSpot_Form": "Book a demo form",
        "mx_Landing_Page": "https://www.example.com/book-a-demo",
        "mx_Submitted_On": "2025-11-06 10:25:11",
    },
    "hubspot-crm": {
        "FirstName": "Tunde",
        "LastName": "Okafor",
        "EmailAddress": "tunde.okafor@example.com",
        "Phone": "+44-1174960321",
        "Company": "Okafor Design Studio",
        "JobTitle": "Founder",
        "mx_City": "Bristol",
        "mx_Country": "United Kingdom",
        "Source": "HubSpot",
        "SourceMedium": "organic",
        "mx_HubSpot_Contact_Id": "96027715412",
        "mx_Submitted_On": "2025-11-08 12:35:31",
    },
    "linkedin": {
        "FirstName": "Kwame",
        "LastName": "Asante",
        "EmailAddress": "kwame.asante@example.com",
        "Phone": "+44-2079460958",
        "Company": "Asante Logistics",
        "JobTitle": "Operations Director",
        "mx_Country": "United Kingdom",
        "Source": "LinkedIn Lead Gen Forms",
        "SourceCampaign": "urn:li:sponsoredCampaign:287736514",
        "mx_LinkedIn_Response": "6f1c2b3a-4d5e-4f60-8a71-b2c3d4e5f607-3",
        "mx_Submitted_On": "2025-11-07 12:35:33",
    },
    "tiktok": {  # the first of the delivery's two leads (tests/e2e/test_tiktok.py: both)
        "FirstName": "José",
        "LastName": "Álvarez Núñez",
        "EmailAddress": "jose.alvarez@example.com",
        "Phone": "+1-5550100166",
        "mx_City": "San José",
        "Source": "TikTok Ads",
        "SourceCampaign": "1781234567890123",
        "mx_TikTok_Lead_Id": "7312345678901234567",
        "mx_TikTok_Form_Id": "7301234567890123456",
        "mx_TikTok_Ad_Id": "1781234567890789",
        "mx_TikTok_Adgroup_Id": "1781234567890456",
        "mx_TikTok_Advertiser_Id": "7001234567890123456",
        "mx_Lead_Created_On": "2025-11-06 10:26:11",
    },
    "webflow": {
        "FirstName": "Mateo",
        "LastName": "García",
        "EmailAddress": "mateo.garcia@example.com",
        "Phone": "+1-5550100199",
        "Company": "García Solar SL",
        "mx_Team_Size": "11-50",
        "Notes": "Looking for a demo next week.",
        "mx_Newsletter": "true",
        "Source": "Webflow",
        "mx_Landing_Page": "https://www.example.com/contact-sales",
        "mx_Submitted_On": "2025-11-04 16:20:05",
    },
}


def _first(sender: str) -> tuple[str, bytes, dict[str, str]]:
    """The path, exact fixture bytes and headers of the first delivery of each sender."""
    if sender == "zapier":
        body, headers = fixture("zapier", "post_json_flat")
        return "/hooks/zapier", body, {**headers, "X-Api-Key": DEMO_ENV["ZAPIER_TOKEN"]}
    if sender == "typeform":
        body, headers = fixture("typeform", "form_response_full")
        return "/hooks/typeform", body, headers
    if sender == "google":
        body, headers = fixture("google_ads", "lead_full")
        return "/hooks/google", body, headers
    if sender == "facebook":
        body, headers = fixture("facebook", "leadgen_notification_single")
        return "/hooks/facebook", body, headers
    if sender == "linkedin":  # the fixture's own signature; the answers come from the fake API
        body, headers = fixture("linkedin", "lead_notification")
        return "/hooks/linkedin", body, headers
    if sender == "elementor":  # no signature: the token rides in the URL
        body, headers = fixture("elementor", "advanced_data")
        return f"/hooks/elementor?token={quote(DEMO_ENV['ELEMENTOR_TOKEN'])}", body, headers
    if sender == "make":
        body, headers = fixture("generic_json", "make_http_module_lead")
        return "/hooks/make", body, {**headers, "X-Api-Key": DEMO_ENV["MAKE_TOKEN"]}
    if sender == "standard":  # another email (make's fixture has the same person), signed now
        body, headers = fixture("generic_json", "standard_webhooks_lead_created")
        body = body.replace(b"chloe.dubois@", b"chloe.d@")
        return "/hooks/standard", body, standard_headers(body, headers)
    if sender == "tally":  # the fixture's own signature
        body, headers = fixture("tally", "form_response")
        return "/hooks/tally", body, headers
    if sender == "tiktok":  # the fixture's own signature; two leads, one event each
        body, headers = fixture("tiktok", "lead_delivery")
        return "/hooks/tiktok", body, headers
    if sender == "webflow":  # signed again: a Webflow timestamp is good for 5 minutes
        body, headers = fixture("webflow", "form_submission")
        return "/hooks/webflow", body, webflow_headers(body, headers)
    if sender == "hubspot":  # signed again: a HubSpot timestamp is good for 5 minutes
        body, headers = fixture("hubspot", "workflow_contact")
        return "/hooks/hubspot", body, hubspot_headers(body, headers)
    if sender == "hubspot-crm":  # signed again for now, with the app's target URL
        body, headers = fixture("hubspot", "app_events")
        url = DEMO_ENV["HUBSPOT_CRM_WEBHOOK_URL"]
        return "/hooks/hubspot-crm", body, hubspot_headers(body, headers, url=url)
    if sender == "jotform":
        body, headers = fixture("jotform", "submission_basic")
        return f"/hooks/jotform?token={quote(DEMO_ENV['JOTFORM_TOKEN'])}", body, headers
    body, headers = fixture("unbounce", "submission_basic")
    return f"/hooks/unbounce?token={quote(DEMO_ENV['UNBOUNCE_TOKEN'])}", body, headers


def _repeat(sender: str) -> tuple[str, bytes, dict[str, str]]:
    """A second delivery of the same lead under a new delivery id, signed where needed."""
    path, body, headers = _first(sender)
    if sender == "elementor":  # no delivery id: another body is another one
        return path, body + b"&resent=1", headers
    if sender == "unbounce":  # named by page, day, minute and email: a minute later
        return path, body.replace(b"12%3A47+PM+UTC", b"12%3A48+PM+UTC"), headers
    if sender == "jotform":  # the same answers under another submission id
        return path, body.replace(b"6201234567890123456", b"6201234567890999999"), headers
    document: Any = json.loads(body)
    if sender == "zapier":
        document["resent"] = "1"
    elif sender == "typeform":
        document["event_id"] = "01JBQ7ZK3M9X2R4T6V8W0RESENT"
    elif sender == "google":
        document["lead_id"] = document["lead_id"] + "-resent"
    elif sender == "facebook":
        document["entry"][0]["changes"][0]["value"]["leadgen_id"] = "9999000011112222"
    elif sender == "make":
        document["source"]["submission_id"] = "01JBQ7ZK3M9X2R4T6V8W0RESENT"
    elif sender == "standard":
        headers = {**headers, "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPRESENT"}
    elif sender == "tally":
        document["eventId"] = "a4cb511e-d513-4fa5-baee-b815d718resent"
    elif sender == "tiktok":  # new lead ids (named by them): the same people again
        for n, entry in enumerate(document["entry"]):
            entry["id"] = 7312345678901299990 + n
    elif sender == "webflow":
        document["payload"]["id"] = "6729a1b2c3d4e5f6071829ff"
    elif sender == "linkedin":  # the member submitted the form again: another response
        document["leadGenFormResponse"] = "urn:li:leadGenFormResponse:0a9b8c7d-resent-1"
    elif sender == "hubspot-crm":  # the contact was created again (another event and object)
        document = [{**document[0], "eventId": 3271499999, "objectId": 96027719999}]
    elif sender == "hubspot":  # named by vid + conversion-id: the contact submitting again
        submission = document["form-submissions"][0]
        submission["conversion-id"] = "5c2e9a41-8b7d-4f3e-a6c1-0d9e8f7a6b52"
        submission["timestamp"] += 60_000
    new_body = json.dumps(document).encode()
    if sender == "typeform":
        headers = {**headers, "Typeform-Signature": typeform_signature(new_body)}
    if sender == "standard":
        headers = standard_headers(new_body, headers)
    if sender == "tally":
        headers = {**headers, "Tally-Signature": tally_signature(new_body)}
    if sender == "tiktok":
        headers = {**headers, "X-Open-Signature": tiktok_signature(new_body)}
    if sender == "webflow":
        headers = webflow_headers(new_body, headers)
    if sender == "hubspot":
        headers = hubspot_headers(new_body, headers)
    if sender == "linkedin":
        headers = {**headers, "X-LI-Signature": linkedin_signature(new_body)}
    if sender == "hubspot-crm":
        headers = hubspot_headers(new_body, headers, url=DEMO_ENV["HUBSPOT_CRM_WEBHOOK_URL"])
    if sender == "facebook":
        headers = {k: v for k, v in headers.items() if k != "X-Hub-Signature"}
        headers["X-Hub-Signature-256"] = facebook_signature(new_body)
    return path, new_body, headers


def _resent(sender: str) -> tuple[str, bytes, dict[str, str]] | None:
    """The first delivery's submission sent again in another body, for the senders whose
    delivery id is made of the submission's fields (a ``dedupe`` list): a duplicate."""
    path, body, headers = _first(sender)
    if sender == "unbounce":
        return path, body + b"&resent=1", headers
    if sender == "hubspot":  # the contact saved again since: another timestamp
        document = json.loads(body)
        document["identity-profiles"][0]["saved-at-timestamp"] += 60_000
        new_body = json.dumps(document).encode()
        return path, new_body, hubspot_headers(new_body, headers)
    return None


async def _graph_lead(request: Request) -> Response:
    if request.query_params.get("access_token") != DEMO_ENV["FB_PAGE_TOKEN"]:
        return JSONResponse({"error": {"code": 190, "message": "bad token"}}, status_code=400)
    return JSONResponse(GRAPH_LEAD)  # the same person, whatever the lead id


async def _linkedin_response(request: Request) -> Response:
    token = DEMO_ENV["LINKEDIN_ACCESS_TOKEN"]
    if request.headers.get("authorization") != f"Bearer {token}":
        return JSONResponse({"status": 401, "message": "Invalid access token"}, status_code=401)
    return JSONResponse({**LINKEDIN_RESPONSE, "id": request.path_params["ident"]})


async def _hubspot_contact(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {DEMO_ENV['HUBSPOT_ACCESS_TOKEN']}":
        return JSONResponse({"status": "error", "message": "bad token"}, status_code=401)
    return JSONResponse({**HUBSPOT_CONTACT, "id": request.path_params["object_id"]})


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``leadhub serve`` on the shipped mappings, with fake Graph, LinkedIn and HubSpot
    APIs."""
    graph = Starlette(
        routes=[
            Route("/v21.0/{lead_id}", _graph_lead),
            Route("/rest/leadFormResponses/{ident}", _linkedin_response),
            Route("/crm/v3/objects/contacts/{object_id}", _hubspot_contact),
        ]
    )
    work: Path = tmp_path_factory.mktemp("e2e")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve_in_thread(graph) as graph_url:
        args = [
            "serve",
            "--config-dir",
            str(SHIPPED),
            "--port",
            str(port),
            "--db",
            f"sqlite:///{work}/hub.db",
        ]
        env = {
            **DEMO_ENV,
            "FB_GRAPH_URL": f"{graph_url}/v21.0",
            "LINKEDIN_API_URL": f"{graph_url}/rest",
            "HUBSPOT_API_URL": graph_url,
        }
        with leadhub_process(args, ready_url=f"{base}/healthz", env=env) as proc:
            yield base
            if proc.stdout is not None:  # the hub's log, shown by pytest when a test failed
                print(proc.stdout.read()[-20000:])


@pytest.mark.slow
@pytest.mark.parametrize("sender", sorted(EXPECTED))
def test_fixture_becomes_exactly_the_expected_lead_and_a_repeat_updates_it(
    hub: str, sender: str
) -> None:
    """A sender's fixture gives one lead with exactly the mapped attributes; a resend updates it
    (one with another delivery id; the same submission in another body is a duplicate for a
    sender named by a ``dedupe`` list)."""
    expected = EXPECTED[sender]
    email = expected["EmailAddress"]
    path, body, headers = _first(sender)
    answer = post(hub, path, body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
    wait_until(lambda: len(lead_by_email(hub, email)) == 1, what=f"the {sender} lead")
    (lead,) = lead_by_email(hub, email)
    assert attributes(lead) == expected

    resent = _resent(sender)
    if resent is not None:
        first_id = answer.json()["id"]
        again = post(hub, *resent)
        assert again.json() == {"status": "duplicate", "id": first_id}, again.text

    path, body, headers = _repeat(sender)
    answer = post(hub, path, body, headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
    lead_id = lead["ProspectID"]
    wait_until(lambda: len(activities(hub, lead_id)) == 2, what=f"the {sender} update")
    assert [x["ProspectID"] for x in lead_by_email(hub, email)] == [lead_id]


@pytest.mark.slow
def test_the_hmac_examples_refuse_a_changed_body_and_a_stale_timestamp(hub: str) -> None:
    """The Tally, Webflow and HubSpot examples check their signatures: a body changed after
    signing, a delivery signed longer ago than its 5 minutes, and a HubSpot signature made
    for another webhook URL get 401 and store nothing."""
    body, headers = fixture("tally", "form_response")
    changed = body.replace(b"Iyer", b"Iyar")
    assert post(hub, "/hooks/tally", changed, headers).status_code == 401
    body, headers = fixture("webflow", "form_submission")
    assert post(hub, "/hooks/webflow", body, headers).status_code == 401  # signed in 2025
    fresh = webflow_headers(body, headers)
    assert post(hub, "/hooks/webflow", body + b" ", fresh).status_code == 401
    body, headers = fixture("hubspot", "workflow_contact")
    assert post(hub, "/hooks/hubspot", body, headers).status_code == 401  # signed in 2025
    fresh = hubspot_headers(body, headers)
    assert post(hub, "/hooks/hubspot", body.replace(b"Grace", b"Grase"), fresh).status_code == 401
    other_url = hubspot_headers(body, headers, url="https://other.example.com/hooks/hubspot")
    assert post(hub, "/hooks/hubspot", body, other_url).status_code == 401
    metrics = httpx.get(f"{hub}/metrics").text
    for endpoint, refused in (("tally", 1), ("webflow", 2), ("hubspot", 3)):
        line = (
            f'leadhub_deliveries_total{{endpoint="{endpoint}",outcome="rejected",'
            f'reason="unauthorized"}} {float(refused)}'
        )
        assert line in metrics
