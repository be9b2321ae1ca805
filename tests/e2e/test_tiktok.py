"""The shipped TikTok Lead Generation example (``mappings/tiktok.yaml``), by configuration
only, through a real ``leadhub serve`` of the shipped ``mappings/`` and its embedded sandbox.

TikTok batches leads in ``entry`` (one event each, only when the delivery's ``object`` is
1; another object is accepted with no event), signs with ``X-Open-Signature`` (hex
HMAC-SHA256 of the body under the app secret) and delivers at least once; its lead ids are
JSON numbers beyond 2^53, which must stay exact: the fixture's two ids differ only past a
double's precision, so a lost digit would make them one delivery id (the second lead a
duplicate) and send wrong ids to the CRM.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.e2e.support import (
    FIXTURES,
    SHIPPED,
    attributes,
    fixture,
    lead_by_email,
    post,
    stored_events,
    tiktok_signature,
    wait_until,
)
from tests.e2e.test_reload import Log
from tests.e2e.test_shipped_mappings import EXPECTED
from tests.mappings.cases import DEMO_ENV
from tests.support.server import free_port, leadhub_process, leadhub_run

LEAD_IDS = ["7312345678901234567", "7312345678901234568"]
#: The first lead of ``tiktok/lead_delivery.json`` as LeadSquared gets it: the \\u-escaped
#: name and city as text, the email trimmed and lowered, every id with all its digits.
FIRST_LEAD = EXPECTED["tiktok"]
SECOND_EMAIL = "hannah.brooks@example.com"


class Hub(NamedTuple):
    base: str
    store: str
    log: Log


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A real ``leadhub serve`` of the shipped examples with the demo secrets."""
    work: Path = tmp_path_factory.mktemp("tiktok")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store = f"sqlite:///{work}/hub.db"
    args = ["serve", "--config-dir", str(SHIPPED), "--port", str(port), "--db", store]
    with leadhub_process(args, ready_url=f"{base}/healthz", env=DEMO_ENV) as proc:
        yield Hub(base, store, Log(proc))


def _tiktok_events(hub: Hub) -> list[tuple[str, object]]:
    """The stored events of the tiktok endpoint: delivery id and the document's lead id."""
    events = stored_events(hub.store)
    return sorted((e.delivery_id, e.document["id"]) for e in events if e.endpoint == "tiktok")


@pytest.mark.slow
def test_a_signed_batch_gives_both_leads_with_their_exact_ids_and_a_resend_is_a_duplicate(
    hub: Hub,
) -> None:
    """The fixture's delivery, signed as TikTok does, is accepted as two events named by
    their exact lead ids (the documents hold the ids as the integers sent); both leads
    reach the sandbox, the first with exactly the mapped attributes. The same delivery
    again (at-least-once) is answered duplicate and stores nothing."""
    body, headers = fixture("tiktok", "lead_delivery")
    assert headers["X-Open-Signature"] == tiktok_signature(body)  # the fixture's own
    before = _tiktok_events(hub)
    answer = post(hub.base, "/hooks/tiktok", body, headers)
    assert answer.status_code == 200, answer.text
    accepted = answer.json()
    assert accepted["status"] == "accepted"
    assert len(accepted["ids"]) == 2
    stored = _tiktok_events(hub)
    new = [event for event in stored if event not in before]
    assert new == [(LEAD_IDS[0], int(LEAD_IDS[0])), (LEAD_IDS[1], int(LEAD_IDS[1]))]

    wait_until(lambda: len(lead_by_email(hub.base, SECOND_EMAIL)) == 1, what="the second lead")
    wait_until(lambda: len(lead_by_email(hub.base, FIRST_LEAD["EmailAddress"])) == 1)
    (first,) = lead_by_email(hub.base, FIRST_LEAD["EmailAddress"])
    (second,) = lead_by_email(hub.base, SECOND_EMAIL)
    assert attributes(first) == FIRST_LEAD
    assert second["mx_TikTok_Lead_Id"] == LEAD_IDS[1]
    assert (second["FirstName"], second["LastName"]) == ("Hannah", "Brooks")

    again = post(hub.base, "/hooks/tiktok", body, headers)
    assert again.status_code == 200, again.text
    assert again.json() == {"status": "duplicate", "id": accepted["ids"][0]}
    assert _tiktok_events(hub) == stored


@pytest.mark.slow
def test_a_wrong_signature_is_401_and_stores_nothing(hub: Hub) -> None:
    """A delivery signed with another secret, one changed after signing (the first lead's
    escaped name) and one without X-Open-Signature are each 401 ``unauthorized`` and
    store nothing."""
    body, headers = fixture("tiktok", "lead_delivery")
    body = body.replace(b"7312345678901234567", b"7312345678901299999")  # a lead not stored
    before = _tiktok_events(hub)
    wrong = hmac.new(b"another_app_secret", body, hashlib.sha256).hexdigest()
    other_secret = {**headers, "X-Open-Signature": wrong}
    changed = {**headers, "X-Open-Signature": tiktok_signature(body)}
    unsigned = {k: v for k, v in headers.items() if k != "X-Open-Signature"}
    answers = [
        post(hub.base, "/hooks/tiktok", body, other_secret),
        post(hub.base, "/hooks/tiktok", body.replace(b"Jos\\u00e9", b"Jose"), changed),
        post(hub.base, "/hooks/tiktok", body, unsigned),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(401, {"error": "unauthorized"})] * 3
    assert _tiktok_events(hub) == before
    # the right signature over the same body is taken: the 401s were the signatures'
    assert post(hub.base, "/hooks/tiktok", body, changed).status_code == 200


@pytest.mark.slow
def test_another_object_is_accepted_with_no_event(hub: Hub) -> None:
    """A signed delivery of another object (an ad review notice, object 2) is no lead: the
    split keeps its entries only when object is 1, so it is accepted with no event (TikTok
    has nothing to retry) and nothing is stored. Its delivery_received line says the
    split's filter on the root kept none of the delivery's one entry."""
    body, headers = fixture("tiktok", "other_object")
    assert headers["X-Open-Signature"] == tiktok_signature(body)
    before = _tiktok_events(hub)
    answer = post(hub.base, "/hooks/tiktok", body, headers)
    assert (answer.status_code, answer.json()) == (200, {"status": "accepted", "ids": []})
    assert _tiktok_events(hub) == before

    def kept_none() -> list[dict[str, object]]:
        lines = hub.log.events("delivery_received")
        return [x for x in lines if x.get("endpoint") == "tiktok" and "split_kept_none" in x]

    wait_until(lambda: len(kept_none()) == 1, what="the delivery's line")
    (line,) = kept_none()
    assert {k: line.get(k) for k in ("level", "outcome", "status", "reason", "events")} == {
        "level": "info",
        "outcome": "accepted",
        "status": 200,
        "reason": None,
        "events": 0,
    }
    assert (line["split_kept_none"], line["split_left_out"], line["split_filter"]) == (
        True,
        1,
        "[?$.object == 1]",
    )
    assert _tiktok_events(hub) == before


@pytest.mark.slow
def test_leadhub_try_tries_the_fixture_lead_by_lead() -> None:
    """``leadhub try tiktok`` on the whole delivery (a real subprocess) prints one request per
    lead, both sent, with the exact ids and the \\u-escaped name as text; on the other
    object it tries nothing and says the hub would accept it with no event, its filter on
    the root having kept none of the entry (exit 0)."""
    delivery = FIXTURES / "tiktok" / "lead_delivery.json"
    done = leadhub_run(
        ["try", "tiktok", str(delivery), "--config-dir", str(SHIPPED), "--json"], env=DEMO_ENV
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert (first["status"], second["status"]) == ("send", "send")
    assert {x["Attribute"]: x["Value"] for x in first["body"]} == FIRST_LEAD
    sent_ids = [x["Value"] for r in (first, second) for x in r["body"]]
    assert LEAD_IDS[1] in sent_ids

    other = FIXTURES / "tiktok" / "other_object.json"
    done = leadhub_run(["try", "tiktok", str(other), "--config-dir", str(SHIPPED)], env=DEMO_ENV)
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.startswith(
        "note: split $.entry[?($.object == 1)]: its filter [?$.object == 1] left out 1 item and "
        "kept none: posted to the hub, it would be accepted with no event"
    )


def test_the_fixture_signatures_are_over_the_exact_bytes() -> None:
    """Both fixture bodies are pure ASCII (non-ASCII sent as \\u escapes) and carry the hex
    HMAC-SHA256 of their exact bytes under the demo app secret."""
    for name in ("lead_delivery", "other_object"):
        body, headers = fixture("tiktok", name)
        assert body.isascii()
        assert headers["X-Open-Signature"] == tiktok_signature(body)
