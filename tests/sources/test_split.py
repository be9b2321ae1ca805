"""``split:``: several leads in one delivery become one event each, by config alone."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import orjson
import pytest

from hub.config import ConfigError, load
from hub.config.models import Endpoint
from hub.sources import BodyError, Incoming, VerificationError, build_source, delivery_ids
from hub.sources.split import MAX_LEADS, leads_at
from tests.e2e.support import leads, wait_until
from tests.support.server import leadhub_process, leadhub_run, serve_args

TOKEN = "bulk-token"
CONFIG = """kind: endpoint
name: bulk
source: token
token: ${BULK_TOKEN}
split: $.data.leads[*]
dedupe: $.lead_id
---
kind: mapping
name: bulk-map
endpoint: bulk
fields:
  EmailAddress: { path: $.email, required: true }
  FirstName: $.name
"""


def _endpoint(tmp_path: Path, text: str = CONFIG) -> Endpoint:
    (tmp_path / "bulk.yaml").write_text(text)
    return load(tmp_path, {"BULK_TOKEN": TOKEN}).endpoints["bulk"]


def _request(body: bytes, token: str = TOKEN) -> Incoming:
    return Incoming("POST", {"authorization": f"Bearer {token}"}, body)


BATCH = {
    "data": {
        "leads": [
            {"lead_id": 11, "email": "a@example.com", "name": "A"},
            {"lead_id": 12, "email": "b@example.com", "name": "B"},
            {"email": "c@example.com"},  # no lead_id: named by its canonical JSON
        ]
    }
}


def test_each_value_the_path_finds_is_an_event_named_by_dedupe(tmp_path: Path) -> None:
    endpoint = _endpoint(tmp_path)
    source = build_source(endpoint)
    body = orjson.dumps(BATCH)
    source.verify(_request(body), 0)
    splits = source.split(_request(body), BATCH)
    assert [s.document for s in splits] == BATCH["data"]["leads"]
    assert source.batches
    canonical = orjson.dumps({"email": "c@example.com"}, option=orjson.OPT_SORT_KEYS)
    assert delivery_ids(endpoint, splits, body) == [
        "11",
        "12",
        "sha256:" + hashlib.sha256(canonical).hexdigest(),
    ]


def test_the_senders_own_check_still_runs(tmp_path: Path) -> None:
    source = build_source(_endpoint(tmp_path))
    with pytest.raises(VerificationError):
        source.verify(_request(b"{}", token="wrong"), 0)


def test_an_empty_batch_is_no_event_a_miss_a_422_and_too_many_a_400(tmp_path: Path) -> None:
    source = build_source(_endpoint(tmp_path))
    assert source.split(_request(b"{}"), {"data": {"leads": []}}) == []
    with pytest.raises(BodyError) as missed:
        source.split(_request(b"{}"), {"other": 1})
    assert (missed.value.status, missed.value.reason) == (
        422,
        "split path $.data.leads[*] finds no lead in this delivery, nor an empty list of them; "
        "nothing was stored: fix the endpoint's split or what is posted, then send it again",
    )
    many = {"data": {"leads": [{"email": f"{n}@example.com"} for n in range(MAX_LEADS + 1)]}}
    with pytest.raises(BodyError) as info:
        source.split(_request(b"{}"), many)
    assert info.value.status == 400
    assert info.value.reason == (
        f"the delivery holds more than {MAX_LEADS} leads at $.data.leads[*]; "
        f"send at most {MAX_LEADS} per delivery"
    )
    exactly = {"data": {"leads": many["data"]["leads"][:MAX_LEADS]}}
    assert len(source.split(_request(b"{}"), exactly)) == MAX_LEADS


TOKEN_SOURCE = "source: token\ntoken: t\n"
FACEBOOK_SOURCE = "source: facebook\napp_secret: s\nverify_token: v\npage_access_token: p\n"


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            TOKEN_SOURCE + "split: leads[*]",
            r":5: 'split' of endpoint 'e': 'leads\[\*\]' is not a JSONPath",
        ),
        (
            TOKEN_SOURCE + 'split: "$.leads["',
            r":5: 'split' of endpoint 'e': JSONPath .* does not compile",
        ),
        (
            FACEBOOK_SOURCE + "split: $.entry[*]",
            r":7: 'split' of endpoint 'e': source facebook splits its deliveries into leads "
            r"itself; remove 'split'",
        ),
    ],
)
def test_a_bad_split_is_a_config_error_at_its_line(tmp_path: Path, extra: str, error: str) -> None:
    (tmp_path / "e.yaml").write_text(f"kind: endpoint\nname: e\n{extra}\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {})
    (issue,) = [i for i in info.value.issues if "'split'" in i]
    assert issue.startswith(str(tmp_path / "e.yaml"))
    assert re.search(error, issue), issue


@pytest.mark.slow
def test_a_batch_is_stored_answered_and_delivered_lead_by_lead(tmp_path: Path) -> None:
    """A real ``leadhub serve``: one POST of three leads is answered with three event ids,
    the same POST again is a duplicate, an empty batch is accepted with no event, and the
    three leads reach the embedded sandbox one by one."""
    args, base, _ = serve_args(tmp_path, {"bulk.yaml": CONFIG})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with leadhub_process(args, ready_url=f"{base}/healthz", env={"BULK_TOKEN": TOKEN}):
        first = httpx.post(f"{base}/hooks/bulk", json=BATCH, headers=headers)
        again = httpx.post(f"{base}/hooks/bulk", json=BATCH, headers=headers)
        empty = httpx.post(f"{base}/hooks/bulk", json={"data": {"leads": []}}, headers=headers)
        wait_until(lambda: len(leads(base)) == 3, what="three leads in the sandbox")
        found = {lead["EmailAddress"]: lead.get("FirstName") for lead in leads(base)}
    assert first.status_code == 200 and first.json() == {
        "status": "accepted",
        "id": 1,
        "ids": [1, 2, 3],
    }
    assert again.json() == {"status": "duplicate", "id": 1}
    assert empty.json() == {"status": "accepted", "ids": []}
    assert found == {"a@example.com": "A", "b@example.com": "B", "c@example.com": None}


def test_try_maps_a_whole_delivery_lead_by_lead(tmp_path: Path) -> None:
    """``leadhub try`` on a split endpoint: a whole delivery is tried lead by lead (exit 1 as
    one lead lacks its email), ``--json`` prints one object per lead; one lead alone (the
    path finds nothing in it) is tried as it is."""
    (tmp_path / "bulk.yaml").write_text(CONFIG)
    batch = dict(BATCH, data={"leads": [*BATCH["data"]["leads"], {"lead_id": 13}]})
    payload = tmp_path / "batch.json"
    payload.write_bytes(orjson.dumps(batch))
    one = tmp_path / "one.json"
    one.write_bytes(orjson.dumps(BATCH["data"]["leads"][0]))
    common = ["--config-dir", str(tmp_path)]
    human = leadhub_run(["try", "bulk", str(payload), *common])
    assert human.returncode == 1
    assert "lead 1 of 4:" in human.stdout and "lead 4 of 4:" in human.stdout
    assert human.stdout.count("POST (embedded sandbox)/v2/LeadManagement.svc/Lead.Capture") == 3
    as_json = leadhub_run(["try", "bulk", str(payload), *common, "--json"])
    answers = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert [a["status"] for a in answers] == ["send", "send", "send", "error"]
    assert [a["body"][0]["Value"] for a in answers[:3]] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert "EmailAddress" in answers[3]["reason"]
    single = leadhub_run(["try", "bulk", str(one), *common, "--json"])
    assert single.returncode == 0
    assert orjson.loads(single.stdout)["body"][0] == {
        "Attribute": "EmailAddress",
        "Value": "a@example.com",
    }


def test_try_says_when_the_split_path_finds_no_lead(tmp_path: Path) -> None:
    """A payload where ``split`` finds nothing is tried as one lead, and ``try`` says so: the
    hub refuses such a delivery (422) and stores nothing, so a delivery the path misses (here
    ``lead`` for ``leads``) must not pass for one lead that fails (or passes) its mapping. An
    empty batch is no lead to try: the note says the hub accepts it with no event, and
    nothing is printed or tried. A delivery the path finds leads in gets no note."""
    (tmp_path / "bulk.yaml").write_text(CONFIG)
    missed = tmp_path / "missed.json"
    missed.write_bytes(orjson.dumps({"data": {"lead": BATCH["data"]["leads"]}}))
    one = tmp_path / "one.json"
    one.write_bytes(orjson.dumps(BATCH["data"]["leads"][0]))
    whole = tmp_path / "whole.json"
    whole.write_bytes(orjson.dumps(BATCH))
    empty = tmp_path / "empty.json"
    empty.write_bytes(orjson.dumps({"data": {"leads": []}}))
    common = ["--config-dir", str(tmp_path)]
    note = (
        "note: split $.data.leads[*] finds no lead in this document, nor an empty list of "
        "them, so it is tried as one lead; posted to the hub as it is, it would be refused "
        "(422) and nothing stored: if it is a whole delivery, fix the endpoint's split path"
    )
    empty_note = (
        "note: split $.data.leads[*] finds an empty batch in this document (where its leads "
        "would be, there are none): posted to the hub, it would be accepted with no event "
        '({"status":"accepted","ids":[]}); there is no lead to try'
    )
    for payload, code in ((missed, 1), (one, 0)):
        for extra in ([], ["--json"]):
            done = leadhub_run(["try", "bulk", str(payload), *common, *extra])
            assert done.returncode == code, done.stderr
            assert note in done.stderr and "empty batch" not in done.stderr
            assert "note:" not in done.stdout
    for extra in ([], ["--json"]):
        done = leadhub_run(["try", "bulk", str(empty), *common, *extra])
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        assert done.stderr.strip() == empty_note
    found = leadhub_run(["try", "bulk", str(whole), *common])
    assert found.returncode == 0 and "note:" not in found.stderr


LEAD = {"email": "a@example.com", "name": "A", "utm": {"source": "ads"}, "tags": ["x"]}
OTHER = {"email": "b@example.com"}

# (split path, delivery, the documents of its events, where the leads were kept whole)
SHAPES = [
    # one lead where a list of them was expected: the lead, whole (the delivery itself)
    ("$[*]", LEAD, [LEAD], "$"),
    ("$.*", LEAD, [LEAD], "$"),
    ("$.data[*]", {"data": LEAD}, [LEAD], "$.data"),
    (
        "$.groups[*].leads[*]",
        {"groups": [{"leads": LEAD}, {"leads": OTHER}]},
        [LEAD, OTHER],
        ("$.groups[*].leads"),
    ),
    # lists, whatever their items, and objects of leads: split as before
    ("$[*]", [LEAD, OTHER], [LEAD, OTHER], None),
    ("$[*]", ["a@example.com", 7], ["a@example.com", 7], None),
    ("$[*]", [LEAD, "a@example.com"], [LEAD, "a@example.com"], None),
    ("$.leads[*]", {"leads": ["a@example.com"], "n": 1}, ["a@example.com"], None),
    ("$.*", {"first": LEAD, "second": OTHER}, [LEAD, OTHER], None),
    ("$.data[*]", {"data": [LEAD], "other": LEAD}, [LEAD], None),
    # a path past the leads, or an empty batch: as before
    ("$.leads[*].email", {"leads": [LEAD]}, ["a@example.com"], None),
    ("$[*]", {}, [], None),
]


@pytest.mark.parametrize(("split", "delivery", "events", "whole"), SHAPES)
def test_a_wildcard_that_opened_a_lead_keeps_it_whole(
    tmp_path: Path, split: str, delivery: object, events: list[object], whole: str | None
) -> None:
    """A split path whose last wildcard opened an object with values that are no objects
    (a lead posted without the list it was expected in) keeps that object as one event,
    not each value as one (each died, its document no object). A list is opened as before
    whatever its items, and so is an object of objects."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    body = orjson.dumps(delivery)
    splits = build_source(endpoint).split(_request(body), delivery)
    assert [s.document for s in splits] == events
    assert leads_at(endpoint.split, delivery) == (events, whole)
    if whole == "$":
        (event,) = splits
        assert event.document is delivery  # stored as the body, named as an unsplit one
        assert delivery_ids(endpoint, splits, body) == [
            "sha256:" + hashlib.sha256(body).hexdigest()
        ]


def test_a_lead_kept_whole_keeps_the_senders_delivery_id(tmp_path: Path) -> None:
    """A standard-webhooks sender's lead posted unwrapped to a split: $[*] endpoint is named
    by its webhook-id, as on an endpoint without split (so a resend is a duplicate), not by
    the hash of its JSON as a lead of a batch is."""
    text = (
        'kind: endpoint\nname: std\nsource: standard\nsecret: "${STD}"\nsplit: $[*]\n---\n'
        "name: m\nendpoint: std\nfields: {EmailAddress: $.email}\n"
    )
    (tmp_path / "std.yaml").write_text(text)
    config = load(tmp_path, {"STD": "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ="})
    std = config.endpoints["std"]
    body = orjson.dumps(LEAD)
    request = Incoming("POST", {"webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"}, body)
    splits = build_source(std).split(request, LEAD)
    assert delivery_ids(std, splits, body) == ["msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"]


# (split path, a delivery where it finds nothing, whether that is an empty batch)
NOTHING_FOUND = [
    # the container is there, and empty: an empty batch
    ("$.data.leads[*]", {"data": {"leads": []}}, True),
    ("$.data.leads[*]", {"data": {"leads": {}}}, True),
    ("$[*]", [], True),
    ("$[*]", {}, True),
    ("$.*", {}, True),
    ("$.groups[*].leads[*]", {"groups": []}, True),
    ("$.groups[*].leads[*]", {"groups": [{"leads": []}, {"leads": {}}]}, True),
    ("$.entries[?(@.type == 'lead')]", {"entries": [{"type": "page"}]}, True),
    ("$.entries[?(@.type =~ '^lead$')]", {"entries": []}, True),
    ("$..leads[*]", {"batch": {"leads": []}}, True),
    ("$.leads[2:5]", {"leads": [LEAD]}, True),
    # the structure is not there: a miss
    ("$.data.leads[*]", {"data": {"lead": [LEAD]}}, False),
    ("$.data.leads[*]", {"data": {"leads": None}}, False),
    ("$.data.leads[*]", {"data": {"leads": "none"}}, False),
    ("$.data.leads[*]", LEAD, False),
    ("$[*]", "a@example.com", False),
    ("$.*", 7, False),
    ("$.groups[*].leads[*]", {"groups": [{"lead": [LEAD]}]}, False),
    ("$.groups[*].leads[*]", {"group": []}, False),
    ("$.entries[?(@.type == 'lead')]", {"entry": [{"type": "lead"}]}, False),
    ("$..leads[*]", {"batch": {"lead": [LEAD]}}, False),
    ("$.data.leads", {"data": {}}, False),
    ("$.leads[0]", {"leads": []}, False),
    ("$.leads[*].`sorted`", {"leads": []}, False),  # walked by jsonpath-ng: cannot tell
]


@pytest.mark.parametrize(("split", "delivery", "empty"), NOTHING_FOUND)
def test_an_empty_batch_is_told_from_a_miss(
    tmp_path: Path, split: str, delivery: object, empty: bool
) -> None:
    """Where the split path finds nothing, the delivery is an empty batch (no event, a 200)
    when the path ran dry opening containers that are there (a wildcard, filter, slice or
    ``..`` given a list or object), and a miss (a 422 naming the path) when it ran dry at a
    name or index, or at a wildcard given no list or object."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    source = build_source(endpoint)
    assert leads_at(endpoint.split, delivery) == ([], None)
    if empty:
        assert source.split(_request(b"{}"), delivery) == []
        return
    with pytest.raises(BodyError) as info:
        source.split(_request(b"{}"), delivery)
    assert info.value.status == 422
    assert info.value.reason.startswith(f"split path {split} finds no lead in this delivery")
