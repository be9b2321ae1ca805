"""``leadhub try`` given a thin notification (Facebook's, LinkedIn's, a HubSpot app's) rather
than the lead it names, which the hub reads from an API when it sends it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.mappings.cases import DEMO_ENV, ROOT, SHIPPED
from tests.support.server import leadhub_run

FIXTURES = ROOT / "tests" / "fixtures" / "facebook"
GRAPH = (
    "https://graph.facebook.com/v21.0/1287634509812345?fields=id,created_time,field_data,ad_id,"
    "ad_name,adset_id,adset_name,campaign_id,campaign_name,form_id,is_organic,platform,"
    "custom_disclaimer_responses&access_token=PAGE_TOKEN"
)


def test_a_notification_says_what_try_needs() -> None:
    """The webhook's body names its lead but holds no answer (the hub reads the lead from
    Graph when it sends it, try reads nothing): try said only "required value missing ...
    EmailAddress found nothing", as if the mapping were wrong. It now says what the document
    is, and how to get the lead to try: Graph's url for that lead, with the endpoint's
    fields. Exit 1, nothing mapped."""
    payload = FIXTURES / "leadgen_notification_single.json"
    done = leadhub_run(["try", "facebook", str(payload), "--config-dir", str(SHIPPED)])
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        "error: this is a Facebook leadgen notification (the webhook's body): it names lead "
        "1287634509812345 but holds none of its values, which the hub reads from the API when "
        "it sends the lead; try reads nothing. Try the lead as the API returns it: "
        f"curl -s '{GRAPH}' > lead.json (PAGE_TOKEN: a page access token with "
        "leads_retrieval), with the notification's page_id, form_id, ad_id, adgroup_id, "
        "leadgen_id, created_time added where it lacks them"
    )
    assert done.stderr.endswith("then leadhub try facebook lead.json\n")
    assert "required value missing" not in done.stderr


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"leadgen_id": "1287634509812345", "form_id": "1"}, "it names lead 1287634509812345"),
        (
            json.loads((FIXTURES / "leadgen_notification_batched_mixed_types.json").read_text()),
            "it names 3 leads (1287634509898765, 1287634509800001, 5412398761234567)",
        ),
        (
            {"entry": [{"changes": [{"field": "feed", "value": {}}]}]},
            "naming no lead, so it holds no lead to try",
        ),
    ],
)
def test_a_notification_or_its_change_is_refused_in_json_too(
    tmp_path: Path, document: object, says: str
) -> None:
    """One change's value (what a log line shows) is a notification too; --json gives the
    same reason as an error object."""
    payload = tmp_path / "notification.json"
    payload.write_text(json.dumps(document))
    args = ["try", "facebook", str(payload), "--config-dir", str(SHIPPED), "--json"]
    done = leadhub_run(args)
    assert done.returncode == 1
    answer = json.loads(done.stdout)
    assert answer["status"] == "error" and answer["mapping"] is None
    assert says in answer["reason"]
    assert "lead as the API returns it" in answer["reason"]


@pytest.mark.parametrize(
    ("endpoint", "payload", "says"),
    [
        (
            "linkedin",
            "linkedin/lead_notification.json",
            "this is a LinkedIn lead notification (the webhook's body): it names form response "
            "urn:li:leadGenFormResponse:6f1c2b3a-4d5e-4f60-8a71-b2c3d4e5f607-3 but holds none "
            "of its values, which the hub reads from the API when it sends the lead; try reads "
            "nothing. Try the lead as the API returns it: curl -s "
            "'https://api.linkedin.com/rest/leadFormResponses/"
            "6f1c2b3a-4d5e-4f60-8a71-b2c3d4e5f607-3' -H 'Authorization: Bearer ACCESS_TOKEN' "
            "-H 'LinkedIn-Version: ",
        ),
        (
            # an array of events: try advised a split: $[*] that a hubspot endpoint may not have
            "hubspot-crm",
            "hubspot/app_events.json",
            "this is a HubSpot webhook delivery (the webhook's body): it names contact object "
            "96027715412 but holds none of its values, which the hub reads from the API when it "
            "sends the lead; try reads nothing. Try the lead as the API returns it: curl -s "
            "'https://api.hubapi.com/crm/v3/objects/contacts/96027715412?properties=email,",
        ),
    ],
)
def test_other_thin_notifications_say_what_try_needs(
    endpoint: str, payload: str, says: str
) -> None:
    """LinkedIn's and a HubSpot app's notifications are as thin as Facebook's: the same."""
    args = ["try", endpoint, str(ROOT / "tests" / "fixtures" / payload)]
    done = leadhub_run([*args, "--config-dir", str(SHIPPED)], env=DEMO_ENV)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {says}")
    assert "split" not in done.stderr and "required value missing" not in done.stderr
    assert done.stderr.endswith(f"then leadhub try {endpoint} lead.json\n")


@pytest.mark.parametrize(
    ("endpoint", "payload"),
    [
        ("facebook", "facebook/graph_lead_full_fields.json"),
        ("hubspot-crm", "hubspot/crm_contact.json"),
    ],
)
def test_the_lead_the_api_returns_is_still_tried(endpoint: str, payload: str) -> None:
    """The control: the lead as the API returns it is mapped as before."""
    args = ["try", endpoint, str(ROOT / "tests" / "fixtures" / payload)]
    done = leadhub_run([*args, "--config-dir", str(SHIPPED)], env=DEMO_ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mapping: ")


HOSTILE_ID = "12'; touch owned; echo '"


@pytest.mark.parametrize(
    ("endpoint", "document"),
    [
        ("facebook", {"leadgen_id": HOSTILE_ID, "form_id": "1"}),
        (
            "linkedin",
            {
                "leadGenFormResponse": f"urn:li:leadGenFormResponse:{HOSTILE_ID}",
                "leadAction": "CREATED",
            },
        ),
        ("hubspot-crm", [{"subscriptionType": "contact.creation", "objectId": HOSTILE_ID}]),
    ],
)
def test_the_command_to_read_a_lead_is_one_safe_shell_word_whatever_the_id(
    tmp_path: Path, endpoint: str, document: object
) -> None:
    """The command try prints holds the id the document gave: a ``'`` in it ended the
    command's quotes, and the rest of the id (``touch owned``) was run by the shell the
    command was pasted into. The id is escaped as the dispatcher's read escapes it, and the
    url is one quoted word: the shell reads ``curl -s URL`` and nothing more."""
    payload = tmp_path / "notification.json"
    payload.write_text(json.dumps(document))
    done = leadhub_run(["try", endpoint, str(payload), "--config-dir", str(SHIPPED)], env=DEMO_ENV)
    assert done.returncode == 1
    command = done.stderr.split("returns it: ", 1)[1].split(" > lead.json", 1)[0]
    words = shlex.split(command)
    assert words[:2] == ["curl", "-s"]
    assert "/12%27%3B%20touch%20owned%3B%20echo%20%27" in words[2], words
    assert all(word == "-H" or ": " in word for word in words[3:]), words
