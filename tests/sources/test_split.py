"""``split:``: several leads in one delivery become one event each, by config alone."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from hub.config import ConfigError, load
from hub.config.models import Endpoint, JsonPath
from hub.sources import BodyError, Incoming, VerificationError, delivery_ids
from hub.sources.build import build_source
from hub.sources.split import MAX_LEADS, Noted, find_leads
from tests.e2e.support import leads, wait_until
from tests.support.logs import logged
from tests.support.server import leadhub_process, leadhub_run, serve_args
from tests.web.conftest import running_hub


def leads_at(path: JsonPath, document: Any) -> tuple[list[Any], str | None]:
    """The leads ``path`` finds in ``document`` and where they were kept whole, if so."""
    found = find_leads(path, document)
    return found.leads, found.opened


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


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_lead_without_an_id_is_named_by_its_json_also_when_it_comes_alone(
    tmp_path: Path, writer: str
) -> None:
    """Over real HTTP, on a split endpoint without ``dedupe``: a lead is named by its own
    JSON whether its delivery holds it alone or with others, and whatever the envelope
    around it says. Named by the body when the path found one lead, the same lead posted
    again alone after a batch, or its resend in an envelope with a new send time, was a
    new event, sent to LeadSquared a second time; two distinct leads stay two."""
    (tmp_path / "cfg").mkdir()
    text = CONFIG.replace("$.data.leads[*]", '"$.leads[*]"').replace("dedupe: $.lead_id\n", "")
    endpoint = _endpoint(tmp_path / "cfg", text)
    assert endpoint.dedupe is None
    a, b = {"email": "a@example.com"}, {"email": "b@example.com"}
    bodies = [
        {"sent_at": 1, "leads": [a, b]},
        {"sent_at": 2, "leads": [a]},  # a, posted again alone
        {"sent_at": 3, "leads": [b]},  # b, too
        {"sent_at": 4, "leads": [{"email": "c@example.com"}]},  # a lead alone
        {"sent_at": 5, "leads": [{"email": "c@example.com"}]},  # its resend
        {"sent_at": 6, "leads": [{"email": "d@example.com"}]},  # another lead: new
    ]
    auth = {"authorization": f"Bearer {TOKEN}"}
    with running_hub(tmp_path, {"bulk": endpoint}, writer) as hub:
        answers = [hub.client.post("/hooks/bulk", json=body, headers=auth) for body in bodies]
        stored = hub.events()
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"status": "accepted", "id": 1, "ids": [1, 2]}),
        (200, {"status": "duplicate", "id": 1}),
        (200, {"status": "duplicate", "id": 2}),
        (200, {"status": "accepted", "id": 3, "ids": [3]}),
        (200, {"status": "duplicate", "id": 3}),
        (200, {"status": "accepted", "id": 4, "ids": [4]}),
    ]
    assert [e.document["email"] for e in stored] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
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
        first = httpx.post(f"{base}/hooks/bulk", json=BATCH, headers=headers, timeout=30)
        again = httpx.post(f"{base}/hooks/bulk", json=BATCH, headers=headers, timeout=30)
        empty = httpx.post(
            f"{base}/hooks/bulk", json={"data": {"leads": []}}, headers=headers, timeout=30
        )
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
    # a filter on the delivery's root (TikTok's object) that does not hold for it
    ("$.entry[?($.object == 1)]", {"object": 2, "entry": [LEAD]}, True),
    ("$.entry[?($.object == 1)]", {"object": 2, "entry": []}, True),
    ("$.entry[?($.object == 1)]", {"entry": [LEAD]}, True),
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
    ("$.entry[?($.object == 1)]", {"object": 1, "entries": [LEAD]}, False),
    ("$.entry[?($.object == 1)]", {"object": 2}, False),
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


CHANGE = {"field": "leadgen", "value": LEAD}
#: A page subscription's delivery: its changes, of which one or none is a lead.
PAGE = {"entry": [{"changes": [{"field": "feed"}, {"field": "photos"}]}, {"changes": [CHANGE]}]}

# (split path, a delivery where a filter kept none of its items: the filter, items left out)
KEPT_NONE = [
    # a typo in the filter: every item left out, whatever the delivery
    ("$.entry[*].changes[?(@.feild=='leadgen')]", PAGE, "[?@.feild == 'leadgen']", 3),
    # the filter right, and no change a lead: legitimate, and said all the same
    (
        "$.entry[*].changes[?(@.field=='leadgen')]",
        {"entry": [{"changes": [{"field": "feed"}]}]},
        "[?@.field == 'leadgen']",
        1,
    ),
    # a regular expression; an object's values; a path going on past the filter
    (
        "$.entries[?(@.type =~ '^lead$')]",
        {"entries": {"a": {"type": "page"}}},
        "[?@.type =~ '^lead$']",
        1,
    ),
    (
        "$.entry[?(@.field=='leadgen')].value",
        {"entry": [{"field": "feed"}] * 4},
        "[?@.field == 'leadgen']",
        4,
    ),
    # a filter on the delivery's root that does not hold for it leaves out every item,
    # alone (TikTok's other objects), beside a test of the item (which CHANGE passes), or
    # with a path going on past it
    ("$.entry[?($.object == 1)]", {"object": 2, "entry": [LEAD, OTHER]}, "[?$.object == 1]", 2),
    (
        "$.entry[*].changes[?($.object == 'page' && @.field == 'leadgen')]",
        {**PAGE, "object": "user"},
        "[?$.object == 'page' && @.field == 'leadgen']",
        3,
    ),
    ("$.entry[?(!$.test)].changes[*]", {**PAGE, "test": True}, "[?!$.test]", 2),
]


@pytest.mark.parametrize(("split", "delivery", "where", "left_out"), KEPT_NONE)
def test_a_filter_that_kept_none_of_its_items_is_an_empty_batch_that_says_so(
    tmp_path: Path, split: str, delivery: object, where: str, left_out: int
) -> None:
    """A filter that keeps none of the items it is given (a typo in it drops every
    delivery so) is still an empty batch (no event, a 200), but the split says which
    filter and how many items it left out, for the delivery's line and ``try``."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    found = find_leads(endpoint.split, delivery)
    assert (found.leads, found.empty, found.missed) == ([], True, 0)
    assert found.kept_none == (where, left_out)
    splits = build_source(endpoint).split(_request(b"{}"), delivery)
    assert isinstance(splits, Noted) and list(splits) == []
    assert splits.fields() == {
        "split_kept_none": True,
        "split_left_out": left_out,
        "split_filter": where,
    }
    assert not splits.warns


# (split path, a delivery where it finds no lead and no filter left an item out)
NOT_KEPT_NONE = [
    ("$.entry[*].changes[?(@.field=='leadgen')]", {"entry": [{"changes": []}]}),
    ("$.entry[*].changes[?(@.field=='leadgen')]", {"entry": [{"changes": {}}, {"changes": []}]}),
    ("$.entry[*].changes[?(@.field=='leadgen')]", {"entry": []}),
    ("$.entries[?(@.type == 'lead')]", {"entries": []}),
    ("$.data.leads[*]", {"data": {"leads": []}}),
    ("$.leads[2:5]", {"leads": [LEAD]}),
    ("$.entry[?($.object == 1)]", {"object": 2, "entry": []}),
]


@pytest.mark.parametrize(("split", "delivery"), NOT_KEPT_NONE)
def test_an_empty_list_is_an_empty_batch_with_nothing_to_say(
    tmp_path: Path, split: str, delivery: object
) -> None:
    """A list that is there and empty (even one a filter would have been given) is an
    empty batch as before: no filter left anything out, and nothing more is said."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    found = find_leads(endpoint.split, delivery)
    assert (found.leads, found.empty, found.missed, found.kept_none) == ([], True, 0, None)
    splits = build_source(endpoint).split(_request(b"{}"), delivery)
    assert splits == [] and not isinstance(splits, Noted)


def test_a_filter_on_the_delivery_root_keeps_all_its_items_or_none(tmp_path: Path) -> None:
    """``$.entry[?($.object == 1)]`` (TikTok's split) keeps every entry of a delivery whose
    object is 1, each an event, and none of another object's: no event, and the filter
    named as having left them all out. Beside a test of the item (``||``), a delivery the
    root test holds for keeps every item, another the items that pass the other test."""
    split = "$.entry[?($.object == 1)]"
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    source = build_source(endpoint)
    lead = source.split(_request(b"{}"), {"object": 1, "entry": [LEAD, OTHER]})
    assert [event.document for event in lead] == [LEAD, OTHER]
    other = source.split(_request(b"{}"), {"object": 2, "entry": [LEAD, OTHER]})
    assert isinstance(other, Noted) and list(other) == []
    assert other.fields()["split_filter"] == "[?$.object == 1]"
    split = "$.entry[?($.all == true || @.name)]"
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    assert leads_at(endpoint.split, {"all": True, "entry": [LEAD, OTHER]}) == ([LEAD, OTHER], None)
    assert leads_at(endpoint.split, {"all": 1, "entry": [LEAD, OTHER]}) == ([LEAD], None)


# (split path, a delivery, the leads found, how many of the path's containers missed)
PARTIAL = [
    # groups without their leads list, or with null for it, beside groups with leads
    ("$.groups[*].leads[*]", {"groups": [{"leads": [LEAD]}, {"id": 2}]}, [LEAD], 1),
    (
        "$.groups[*].leads[*]",
        {"groups": [{"leads": [LEAD]}, {"leads": None}, {"leads": [OTHER]}, 7]},
        [LEAD, OTHER],
        2,
    ),
    (
        "$.groups[*].data.leads[*]",
        {"groups": [{"data": None}, {"data": {"leads": [LEAD]}}]},
        [LEAD],
        1,
    ),
    (
        "$.entry[*].changes[?(@.field=='leadgen')].value",
        {"entry": [{"changes": [CHANGE]}, {"id": 1}, {"changes": [{"field": "leadgen"}]}]},
        [LEAD],
        2,
    ),
    # leads kept whole where the wildcard opened them (see SHAPES): the missing group counted
    ("$.groups[*].leads[*]", {"groups": [{"leads": LEAD}, {"id": 2}]}, [LEAD], 1),
    # an empty list among them: an empty batch, the missing group said all the same
    ("$.groups[*].leads[*]", {"groups": [{"leads": []}, {"id": 2}]}, [], 1),
    # a null where a lead should be: no lead, counted as a container without its leads
    ("$.leads[*]", {"leads": [LEAD, None, OTHER, None]}, [LEAD, OTHER], 2),
    ("$.groups[*].lead", {"groups": [{"lead": LEAD}, {"lead": None}]}, [LEAD], 1),
    ("$.groups[*].lead", {"groups": [{"lead": None}, {"id": 2}, {"lead": OTHER}]}, [OTHER], 2),
    ("$.leads[*].email", {"leads": [{"email": None}, LEAD]}, ["a@example.com"], 1),
    ("$..lead", {"a": {"lead": LEAD}, "b": {"lead": None}}, [LEAD], 1),
    # for a path jsonpath-ng walks too (which counts no container)
    ("$.groups[*].lead.`this`", {"groups": [{"lead": LEAD}, {"lead": None}]}, [LEAD], 1),
    # leads kept whole (see SHAPES), a null among them: left out, counted once (the walk's)
    ("$.groups[*].leads[*]", {"groups": [{"leads": LEAD}, {"leads": None}]}, [LEAD], 1),
    # nothing missed
    ("$.groups[*].leads[*]", {"groups": [{"leads": [LEAD]}, {"leads": []}]}, [LEAD], 0),
    ("$.data.leads[*]", {"data": {"leads": [LEAD, OTHER]}}, [LEAD, OTHER], 0),
    # ``..`` visits values without the name by design; one of a union's names is enough
    ("$..leads[*]", {"a": {"leads": [LEAD]}, "b": {"id": 2}, "c": [1]}, [LEAD], 0),
    (
        "$.groups[*].data..leads[*]",
        {"groups": [{"data": {"a": {"leads": [LEAD]}, "b": {"id": 2}}}, {"data": []}]},
        [LEAD],
        0,
    ),
    (
        "$.groups[*]['leads','people'][*]",
        {"groups": [{"leads": [LEAD]}, {"people": [OTHER]}, {"leads": [], "people": [OTHER]}]},
        [LEAD, OTHER, OTHER],
        0,
    ),
]


@pytest.mark.parametrize(("split", "delivery", "events", "missed"), PARTIAL)
def test_containers_without_their_leads_are_counted_and_the_leads_found_kept(
    tmp_path: Path, split: str, delivery: object, events: list[object], missed: int
) -> None:
    """Where some of the containers the split path opens have no list of leads (a name
    not there, or null) and others have one, the leads found are the delivery's events
    and the split says how many containers missed: a warning on the delivery's line."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    found = find_leads(endpoint.split, delivery)
    assert (found.leads, found.missed, found.kept_none) == (events, missed, None)
    splits = build_source(endpoint).split(_request(b"{}"), delivery)
    assert [s.document for s in splits] == events
    if not missed:
        assert not isinstance(splits, Noted)
        return
    assert isinstance(splits, Noted) and splits.warns
    assert splits.fields() == {"split_partial_miss": missed}


def test_every_container_missing_its_leads_is_still_a_miss(tmp_path: Path) -> None:
    """When no container the path opened has its leads list, the delivery is a miss (422),
    as before: nothing found, nothing of an empty batch."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", '"$.groups[*].leads[*]"'))
    source = build_source(endpoint)
    for delivery in ({"groups": [{"id": 2}]}, {"groups": [{"leads": None}, {"id": 3}]}):
        with pytest.raises(BodyError) as info:
            source.split(_request(b"{}"), delivery)
        assert info.value.status == 422


# (split path, a delivery whose every value where a lead should be is null)
ALL_NULL = [
    ("$.leads[*]", {"leads": [None]}),
    ("$.leads[*]", {"leads": [None, None]}),
    ("$.groups[*].lead", {"groups": [{"lead": None}]}),
    ("$.groups[*].lead", {"groups": [{"lead": None}, {"id": 2}]}),
    ("$.groups[*].leads[*]", {"groups": [{"leads": [None]}, {"leads": None}]}),
    ("$.lead", {"lead": None}),
]


@pytest.mark.parametrize(("split", "delivery"), ALL_NULL)
def test_a_delivery_of_nulls_where_leads_should_be_is_a_miss(
    tmp_path: Path, split: str, delivery: object
) -> None:
    """A null is no lead, and a delivery whose every value found is null holds none: a
    miss (422 naming the path, nothing stored), as when every container misses its leads
    list; not an empty batch, which is a list there and empty."""
    endpoint = _endpoint(tmp_path, CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    assert endpoint.split is not None
    found = find_leads(endpoint.split, delivery)
    assert (found.leads, found.empty, found.kept_none) == ([], False, None)
    with pytest.raises(BodyError) as info:
        build_source(endpoint).split(_request(b"{}"), delivery)
    assert info.value.status == 422
    assert info.value.reason.startswith(f"split path {split} finds no lead in this delivery")


def test_try_names_the_filter_that_kept_none_and_the_containers_missed(tmp_path: Path) -> None:
    """``leadhub try`` on a delivery a filter of the split path kept no item of says which
    filter and how many items it left out (a typo in it drops every delivery so), tries
    nothing and exits 0, as the hub accepts it; on one where some containers have no list
    of leads, it says how many missed and tries the leads found in the others."""
    split = "$.groups[*].changes[?(@.feild=='leadgen')].value"
    (tmp_path / "bulk.yaml").write_text(CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    kept_none = tmp_path / "kept_none.json"
    kept_none.write_bytes(orjson.dumps({"groups": [{"changes": [CHANGE, CHANGE]}]}))
    common = ["--config-dir", str(tmp_path)]
    note = (
        f"note: split {split}: its filter [?@.feild == 'leadgen'] left out 2 items and kept "
        'none: posted to the hub, it would be accepted with no event ({"status":"accepted",'
        '"ids":[]}), its delivery_received line saying split_kept_none, and counted in '
        "leadhub_split_kept_none_total; there is no lead to try: if this document holds "
        "leads, fix the filter"
    )
    for extra in ([], ["--json"]):
        done = leadhub_run(["try", "bulk", str(kept_none), *common, *extra])
        assert (done.returncode, done.stdout, done.stderr.strip()) == (0, "", note)

    split = "$.groups[*].leads[*]"
    (tmp_path / "bulk.yaml").write_text(CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    partial = tmp_path / "partial.json"
    groups = [{"leads": [LEAD]}, {"id": 2}, {"leads": None}, {"leads": [OTHER]}]
    partial.write_bytes(orjson.dumps({"groups": groups}))
    note = (
        f"note: split {split} found no lead in 2 places where it expected a list of leads or "
        "a lead (a name not there, or null); the 2 leads found in the others are tried: "
        "posted to the hub, they would be stored, and its delivery_received line would be a "
        "warning (split_partial_miss=2)"
    )
    done = leadhub_run(["try", "bulk", str(partial), *common, "--json"])
    assert done.returncode == 0 and done.stderr.strip() == note
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [a["body"][0]["Value"] for a in answers] == ["a@example.com", "b@example.com"]
    whole = tmp_path / "whole.json"
    whole.write_bytes(orjson.dumps({"groups": [{"leads": [LEAD]}, {"leads": []}]}))
    found = leadhub_run(["try", "bulk", str(whole), *common])
    assert found.returncode == 0 and "note:" not in found.stderr


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_the_delivery_line_says_what_the_split_noted_and_metrics_count_it(
    tmp_path: Path, writer: str
) -> None:
    """Over real HTTP (both protocols and store writers): a delivery a filter kept no item
    of is accepted with no event, its ``delivery_received`` line (info) saying
    ``split_kept_none``, how many items were left out and the filter, and
    ``leadhub_split_kept_none_total`` counts it; an empty list is accepted with nothing
    said or counted. A delivery where a group has no leads list is stored lead by lead,
    its line a warning with ``split_partial_miss``."""
    split = "$.groups[*].leads[?(@.kind=='lead')]"
    (tmp_path / "cfg").mkdir()
    endpoint = _endpoint(tmp_path / "cfg", CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    lead = dict(LEAD, kind="lead", lead_id=1)
    page = {"kind": "page"}
    bodies = [
        {"groups": [{"leads": [page, page]}, {"leads": [page]}]},  # kept none: 3 left out
        {"groups": [{"leads": []}]},  # an empty list
        {"groups": [{"leads": [lead]}, {"id": 2}]},  # a group without its leads
    ]
    auth = {"authorization": f"Bearer {TOKEN}"}
    with capture_logs() as logs, running_hub(tmp_path, {"bulk": endpoint}, writer) as hub:
        answers = [hub.client.post("/hooks/bulk", json=body, headers=auth) for body in bodies]
        lines = logged(logs, "delivery_received", 3)
        metrics = hub.client.get("/metrics").text.splitlines()
        stored = hub.events()
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"status": "accepted", "ids": []}),
        (200, {"status": "accepted", "ids": []}),
        (200, {"status": "accepted", "id": 1, "ids": [1]}),
    ]
    assert [e.document for e in stored] == [lead]
    kept_none, empty, partial = lines
    assert {k: kept_none.get(k) for k in ("log_level", "outcome", "events")} == {
        "log_level": "info",
        "outcome": "accepted",
        "events": 0,
    }
    assert (
        kept_none["split_kept_none"],
        kept_none["split_left_out"],
        kept_none["split_filter"],
    ) == (True, 3, "[?@.kind == 'lead']")
    assert (empty["log_level"], empty["events"]) == ("info", 0)
    assert not any(key.startswith("split_") for key in empty)
    assert (partial["log_level"], partial["outcome"]) == ("warning", "accepted")
    assert partial["split_partial_miss"] == 1 and "split_kept_none" not in partial
    assert 'leadhub_split_kept_none_total{endpoint="bulk"} 1.0' in metrics


def test_try_leaves_out_nulls_where_leads_should_be_as_ingest_does(tmp_path: Path) -> None:
    """``leadhub try`` on a delivery with a null among its leads tries the others, saying
    how many places held no lead (as the hub's warning would); on one whose every lead is
    null it says, as for any delivery the path misses, that the hub would refuse it."""
    split = "$.groups[*].lead"
    (tmp_path / "bulk.yaml").write_text(CONFIG.replace("$.data.leads[*]", f'"{split}"'))
    common = ["--config-dir", str(tmp_path)]
    partial = tmp_path / "partial.json"
    partial.write_bytes(orjson.dumps({"groups": [{"lead": LEAD}, {"lead": None}]}))
    done = leadhub_run(["try", "bulk", str(partial), *common, "--json"])
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        f"note: split {split} found no lead in 1 place where it expected a list of leads or "
        "a lead (a name not there, or null); the 1 lead found in the others are tried: posted "
        "to the hub, they would be stored, and its delivery_received line would be a warning "
        "(split_partial_miss=1)"
    )
    answers = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [a["body"][0]["Value"] for a in answers] == ["a@example.com"]
    nulls = tmp_path / "nulls.json"
    nulls.write_bytes(orjson.dumps({"groups": [{"lead": None}, {"lead": None}]}))
    done = leadhub_run(["try", "bulk", str(nulls), *common])
    assert done.returncode == 1
    assert f"note: split {split} finds no lead in this document" in done.stderr
    assert "would be refused (422)" in done.stderr


def test_nulls_where_leads_should_be_are_left_out_over_http(tmp_path: Path) -> None:
    """Over real HTTP: a delivery with a null among its leads stores the others, its
    ``delivery_received`` line a warning with ``split_partial_miss``; one whose every lead
    is null is refused (422 naming the path), nothing stored, its line saying why."""
    (tmp_path / "cfg").mkdir()
    endpoint = _endpoint(tmp_path / "cfg", CONFIG.replace("$.data.leads[*]", '"$.leads[*]"'))
    lead = dict(LEAD, lead_id=1)
    bodies = [{"leads": [lead, None]}, {"leads": [None, None]}]
    auth = {"authorization": f"Bearer {TOKEN}"}
    with capture_logs() as logs, running_hub(tmp_path, {"bulk": endpoint}) as hub:
        answers = [hub.client.post("/hooks/bulk", json=body, headers=auth) for body in bodies]
        partial, nulls = logged(logs, "delivery_received", 2)
        stored = hub.events()
    assert (answers[0].status_code, answers[0].json()) == (
        200,
        {"status": "accepted", "id": 1, "ids": [1]},
    )
    assert answers[1].status_code == 422
    assert answers[1].json()["error"].startswith("split path $.leads[*] finds no lead")
    assert [e.document for e in stored] == [lead]
    assert (partial["log_level"], partial["outcome"]) == ("warning", "accepted")
    assert partial["split_partial_miss"] == 1
    assert (nulls["log_level"], nulls["reason"]) == ("warning", "split_found_nothing")
