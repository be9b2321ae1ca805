"""``leadhub try`` given a Facebook leadgen notification rather than the lead it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mappings.cases import ROOT, SHIPPED
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
        "1287634509812345 but holds none of the answers, which the hub reads from the Graph "
        "API when it sends the lead; try reads nothing. Try the lead as Graph returns it"
    )
    assert f"curl -s '{GRAPH}' > lead.json" in done.stderr
    assert "then leadhub try facebook lead.json" in done.stderr
    assert "required value missing" not in done.stderr


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"leadgen_id": "1287634509812345", "form_id": "1"}, "it names lead 1287634509812345"),
        (
            json.loads((FIXTURES / "leadgen_notification_batched_mixed_types.json").read_text()),
            "it names 3 leads (1287634509898765, 1287634509800001, 5412398761234567)",
        ),
        ({"entry": [{"changes": [{"field": "feed", "value": {}}]}]}, "with no leadgen change"),
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
    assert says in answer["reason"] and "Try the lead as Graph returns it" in answer["reason"]


def test_the_lead_graph_returns_is_still_tried() -> None:
    """The control: the lead as Graph returns it maps as before."""
    payload = FIXTURES / "graph_lead_full_fields.json"
    done = leadhub_run(["try", "facebook", str(payload), "--config-dir", str(SHIPPED)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mapping: facebook-lead-ads -> target: default\n")
