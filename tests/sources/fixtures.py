"""Sender fixtures (copied byte for byte from the shared set) and endpoints that accept them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hub.config.models import (
    Endpoint,
    FacebookOptions,
    GoogleOptions,
    HmacOptions,
    HubSpotOptions,
    LinkedInOptions,
    NoneOptions,
    StandardOptions,
    TokenOptions,
    TypeformOptions,
)
from hub.mapping.paths import compile_path
from hub.secrets import Secret

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

FB_APP_SECRET = "fb_test_app_secret_0123456789abcdef"
FB_VERIFY_TOKEN = "hub-verify-token-example"
FB_PAGE_TOKEN = "fb-page-token-never-logged"
TYPEFORM_SECRET = "tf_test_secret_9f8e7d"
STANDARD_SECRET = "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ="
GOOGLE_KEY = "gk_test_7c1e2b"
ZAPIER_PASSWORD = "hubpass-example"  # the password in the fixture's Basic credentials
API_KEY = "<hub-issued-key>"  # the placeholder the Make and Zapier fixtures send in X-Api-Key
BEARER = "<hub-issued-token>"  # the placeholder the Pipedream fixture sends as Bearer
URL_TOKEN = "url-token-for-form-senders"
HMAC_SECRET = "hmac-test-secret-4242"
LINKEDIN_SECRET = "li_test_client_secret_5d6e7f"
LINKEDIN_TOKEN = "li-access-token-never-logged"
HUBSPOT_SECRET = "hs_test_client_secret_3e4f5a"
HUBSPOT_TOKEN = "hs-access-token-never-logged"
HUBSPOT_URL = "http://127.0.0.1:8000/hooks/hubspot-crm"  # the app fixture's target URL
#: Every secret the test endpoints use: none of them may ever show up in a log line.
ALL_SECRETS = (
    FB_APP_SECRET,
    FB_VERIFY_TOKEN,
    FB_PAGE_TOKEN,
    TYPEFORM_SECRET,
    STANDARD_SECRET,
    GOOGLE_KEY,
    ZAPIER_PASSWORD,
    API_KEY,
    BEARER,
    URL_TOKEN,
    HMAC_SECRET,
    LINKEDIN_SECRET,
    LINKEDIN_TOKEN,
    HUBSPOT_SECRET,
    HUBSPOT_TOKEN,
)
#: The Standard Webhooks fixture's timestamp: tests freeze the clock here.
STANDARD_TIME = 1761914821.0


def endpoints() -> dict[str, Endpoint]:
    """One endpoint per way the fixtures are sent, named as its URL path segment."""
    fb = FacebookOptions(
        app_secret=Secret(FB_APP_SECRET),
        verify_token=Secret(FB_VERIFY_TOKEN),
        page_access_token=Secret(FB_PAGE_TOKEN),
    )
    items = [
        Endpoint("facebook", "facebook", fb),
        Endpoint(
            "linkedin",
            "linkedin",
            LinkedInOptions(
                client_secret=Secret(LINKEDIN_SECRET), access_token=Secret(LINKEDIN_TOKEN)
            ),
        ),
        Endpoint(
            "hubspot-crm",
            "hubspot",
            HubSpotOptions(
                client_secret=Secret(HUBSPOT_SECRET),
                webhook_url=HUBSPOT_URL,
                access_token=Secret(HUBSPOT_TOKEN),
            ),
        ),
        Endpoint("google", "google", GoogleOptions(key=Secret(GOOGLE_KEY))),
        Endpoint("typeform", "typeform", TypeformOptions(secret=Secret(TYPEFORM_SECRET))),
        Endpoint("standard", "standard", StandardOptions(secret=Secret(STANDARD_SECRET))),
        Endpoint("zapier-form", "token", TokenOptions(token=Secret(ZAPIER_PASSWORD))),
        Endpoint(
            "zapier-json",
            "token",
            TokenOptions(token=Secret(API_KEY), header="X-Api-Key"),
            dedupe=compile_path("$.lead_id"),
        ),
        Endpoint("make", "token", TokenOptions(token=Secret(API_KEY), header="X-Api-Key")),
        Endpoint("pipedream", "token", TokenOptions(token=Secret(BEARER))),
        Endpoint(
            "unbounce",
            "token",
            TokenOptions(token=Secret(URL_TOKEN)),
            dedupe=compile_path("$['data.json'].email[0]"),
        ),
        Endpoint("jotform", "token", TokenOptions(token=Secret(URL_TOKEN))),
        Endpoint("open", "none", NoneOptions()),
        Endpoint(
            "webflow",
            "hmac",
            HmacOptions(
                header="x-webflow-signature",
                secret=Secret(HMAC_SECRET),
                signed="{timestamp}:{body}",
                timestamp_header="x-webflow-timestamp",
                timestamp_unit="ms",
            ),
        ),
    ]
    return {e.name: e for e in items}


@dataclass(frozen=True)
class Delivery:
    """One fixture request: the endpoint it goes to, raw body, headers and query."""

    name: str  # sender/stem
    endpoint: str
    body: bytes
    headers: dict[str, str]
    query: str = ""

    @property
    def path(self) -> str:
        return f"/hooks/{self.endpoint}" + (f"?{self.query}" if self.query else "")

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items() if k.lower() != "content-length"}


def load(sender: str, stem: str, endpoint: str, query: str = "") -> Delivery:
    """The fixture ``sender/stem`` as a request to ``endpoint``."""
    folder = FIXTURES / sender
    meta: dict[str, Any] = orjson.loads((folder / f"{stem}.headers.json").read_bytes())
    body_file = folder / f"{stem}.json"
    if not body_file.exists():
        body_file = folder / f"{stem}.body"
    headers = {k: v for k, v in meta["headers"].items() if k.lower() != "content-length"}
    return Delivery(f"{sender}/{stem}", endpoint, body_file.read_bytes(), headers, query)


#: Every shipped delivery fixture that must be accepted, with the endpoint it goes to.
ACCEPTED = [
    ("facebook", "leadgen_notification_single", "facebook", ""),
    ("facebook", "leadgen_notification_single_retry_duplicate", "facebook", ""),
    ("facebook", "leadgen_notification_batched_mixed_types", "facebook", ""),
    ("facebook", "leadgen_notification_testing_tool", "facebook", ""),
    ("linkedin", "lead_notification", "linkedin", ""),
    ("hubspot", "app_events", "hubspot-crm", ""),
    ("google_ads", "lead_full", "google", ""),
    ("google_ads", "lead_full_duplicate_delivery", "google", ""),
    ("google_ads", "lead_send_test_data", "google", ""),
    ("google_ads", "lead_minimal_missing_optional", "google", ""),
    ("typeform", "form_response_full", "typeform", ""),
    ("typeform", "form_response_full_redelivery", "typeform", ""),
    ("generic_json", "standard_webhooks_lead_created", "standard", ""),
    ("generic_json", "make_http_module_lead", "make", ""),
    ("generic_json", "pipedream_http_lead", "pipedream", ""),
    ("zapier", "post_form_default", "zapier-form", ""),
    ("zapier", "post_json_flat", "zapier-json", ""),
    ("zapier", "post_json_flat_replayed_duplicate", "zapier-json", ""),
    ("unbounce", "submission_basic", "unbounce", f"token={URL_TOKEN}"),
    ("jotform", "submission_basic", "jotform", f"token={URL_TOKEN}"),
]


def accepted() -> list[Delivery]:
    """Every fixture delivery that must be accepted."""
    return [load(*row) for row in ACCEPTED]


#: The headers that carry the signatures of the SIGNED fixtures.
SIGNATURE_HEADERS = frozenset(
    {
        "x-hub-signature-256",
        "x-hub-signature",
        "x-li-signature",
        "x-hubspot-signature-v3",
        "typeform-signature",
        "webhook-signature",
    }
)
#: Fixtures whose check is a signature over the body (a flipped byte must fail them).
SIGNED = [
    d for d in ACCEPTED if d[2] in ("facebook", "linkedin", "hubspot-crm", "typeform", "standard")
]
