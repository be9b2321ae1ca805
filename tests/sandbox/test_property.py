"""Property: whatever is sent to Lead.Capture, the answer is a well-formed LeadSquared answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.sandbox.helpers import CAPTURE, KEY, SECRET, serve_sandbox

NAMES = [
    "EmailAddress",
    "emailaddress",
    "Phone",
    "Mobile",
    "ProspectID",
    "ProspectId",
    "FirstName",
    "Source",
    "SourceCampaign",
    "RelatedCompanyId",
    "SearchBy",
    "mx_City",
    "MX_city",
    "Unknown",
    "",
]
EMAILS = ["a@example.com", "A@Example.com", "b@example.com", "not-an-email", " "]
PHONES = ["+91-9876543210", "919876543210", "5550001111", "123", "phone"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(EMAILS + PHONES + ["EmailAddress", "Phone", "phone", "Mobile"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)
items = st.one_of(
    st.fixed_dictionaries({"Attribute": st.sampled_from(NAMES), "Value": values}),
    st.fixed_dictionaries(
        {
            "Attribute": st.one_of(
                st.text(max_size=12), st.integers(min_value=-(2**63), max_value=2**63 - 1)
            ),
            "Value": values,
        }
    ),
    st.dictionaries(st.sampled_from(["Attribute", "Value", "Other"]), values, max_size=3),
    scalars,
)


def _item(names: list[str], pool: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"Attribute": st.sampled_from(names), "Value": pool})


plausible_items = st.one_of(
    _item(["EmailAddress", "emailaddress"], st.sampled_from(EMAILS[:3])),
    _item(["Phone", "Mobile"], st.sampled_from(PHONES[:3])),
    _item(["ProspectID", "ProspectId"], st.sampled_from([str(uuid.UUID(int=1)), "x"])),
    _item(
        ["FirstName", "Source", "mx_City", "MX_city", "Notes"],
        st.one_of(st.none(), st.text(max_size=8)),
    ),
    _item(["SearchBy"], st.sampled_from(["EmailAddress", "phone"])),
)
json_bodies = st.one_of(st.lists(items, max_size=6), items, scalars).map(orjson.dumps)
raw_bodies = st.one_of(
    st.lists(plausible_items, max_size=5).map(orjson.dumps), json_bodies, st.binary(max_size=64)
)
# httpx refuses header values with leading or trailing blanks before anything is sent.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(
    str.strip
)
content_types = st.one_of(
    st.just("application/json"),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "",
        ]
    ),
    header_text,
)
query_names = st.sampled_from(
    ["LeadUpdateBehavior", "leadupdatebehavior", "accessKey", "secretkey", "foo", "id"]
)
query_values = st.one_of(
    st.sampled_from(
        ["DoNotUpdate", "UpdateOnlyEmptyFields", "DoNotUpdateUniqueFields", "None", KEY, SECRET]
    ),
    st.text(max_size=12),
)
queries: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}), st.dictionaries(query_names, query_values, max_size=3)
)

plausible_requests = st.tuples(
    st.lists(plausible_items, min_size=1, max_size=4).map(orjson.dumps),
    st.just("application/json"),
    st.one_of(st.just({}), st.fixed_dictionaries({"LeadUpdateBehavior": query_values})),
)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One sandbox (rate limit off) for every example, keys sent as headers."""
    headers = {"x-LSQ-AccessKey": KEY, "x-LSQ-SecretKey": SECRET}
    with (
        serve_sandbox() as lsq,
        httpx.Client(base_url=lsq.base, headers=headers, timeout=10) as http,
    ):
        yield http


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=st.one_of(plausible_requests, st.tuples(raw_bodies, content_types, queries)))
def test_capture_always_answers_200_400_401_or_duplicate(
    client: httpx.Client, request: tuple[bytes, str, dict[str, Any]]
) -> None:
    """Any body, Content-Type and query string gets 200 Success, or 400/401/429 (or a rule 9
    duplicate 500) with the MX error envelope; never an unexpected 500."""
    raw, content_type, query = request
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(CAPTURE, content=raw, headers=headers, params=query)
    event(f"status {response.status_code}")
    data = response.json()
    if response.status_code == 200:
        assert data["Status"] == "Success"
        assert set(data["Message"]) == {"Id", "RelatedId", "IsCreated"}
        return
    assert response.status_code in (400, 401, 429, 500), response.text
    assert data["Status"] == "Error" and data["ExceptionMessage"]
    if response.status_code == 500:
        assert data["ExceptionType"] == "MXDuplicateEntryException"
