"""``POST /_sandbox/accounts`` with the caller's own ``Id``: a mapping that sends a fixed
RelatedCompanyId (the id of the user's real account) works on the sandbox unedited.

Every test runs on an in-memory sandbox and on one backed by a SQLite file (``--db``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandbox.helpers import Lsq, assert_error, serve_sandbox

INVALID = "MXInvalidInputException"
DUPLICATE = "MXDuplicateEntryException"
ACCOUNTS = "/_sandbox/accounts"
#: The RelatedCompanyId of README.md's example mapping.
OWN_ID = "8e3b1c9a-0d5e-4c55-9a7e-2f6d0f1b7c11"


@pytest.fixture(params=["memory", "file"])
def sb(request: pytest.FixtureRequest, sandbox_factory: Callable[..., Lsq], tmp_path: Path) -> Lsq:
    """A sandbox keeping its data in memory, or in a SQLite file."""
    if request.param == "file":
        return sandbox_factory(db_path=str(tmp_path / "sandbox.db"))
    return sandbox_factory()


def _create(lsq: Lsq, **account: Any) -> httpx.Response:
    return lsq.http.post(ACCOUNTS, json=account)


def test_an_account_made_under_a_given_id_takes_leads_naming_it(sb: Lsq) -> None:
    """An account made with {"Name", "Id"} is held under that Id, and a Lead.Capture with it as
    RelatedCompanyId succeeds, the lead carrying it; an Id of null is no Id (a new one)."""
    created = _create(sb, Name="Acme", Id=OWN_ID)
    assert (created.status_code, created.json()) == (201, {"Id": OWN_ID})
    lead_id = sb.ok(("EmailAddress", "a@example.com"), ("RelatedCompanyId", OWN_ID))["RelatedId"]
    lead = sb.lead(lead_id)
    assert lead is not None and lead["RelatedCompanyId"] == OWN_ID
    fresh = _create(sb, Name="Other", Id=None)
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["Id"] != OWN_ID and uuid.UUID(fresh.json()["Id"]).version == 4


def test_a_given_id_in_upper_case_is_held_in_lower_case(sb: Lsq) -> None:
    """Ids are lowercase in the sandbox: an upper-case Id is answered and held in lower case,
    and a RelatedCompanyId in either case names the account."""
    created = _create(sb, Name="Acme", id=OWN_ID.upper())  # key matched case-insensitively
    assert (created.status_code, created.json()) == (201, {"Id": OWN_ID})
    for value in (OWN_ID.upper(), OWN_ID):
        assert sb.ok(("FirstName", "Ann"), ("RelatedCompanyId", value))["IsCreated"]


@pytest.mark.parametrize(
    "bad",
    [
        "acme-1",
        "",
        OWN_ID.replace("-", ""),
        "{" + OWN_ID + "}",
        "urn:uuid:" + OWN_ID,
        " " + OWN_ID,
        OWN_ID[:-1] + "g",
        OWN_ID + "0",
        12345,
        [OWN_ID],
    ],
)
def test_an_id_that_is_not_a_guid_is_a_400_and_holds_nothing(sb: Lsq, bad: Any) -> None:
    """An Id that is not a hyphenated GUID is refused with a 400 naming it, and no account is
    made: the GUID it might have been read as is still free."""
    message = assert_error(_create(sb, Name="Acme", Id=bad), 400, INVALID)
    assert repr(bad) in message and "GUID" in message
    assert _create(sb, Name="Acme", Id=OWN_ID).status_code == 201


def test_an_id_already_held_is_a_409(sb: Lsq) -> None:
    """A second account under an Id already held (in any case, or one the sandbox made) is
    refused with 409 MXDuplicateEntryException naming the Id; the first still takes leads."""
    assert _create(sb, Name="Acme", Id=OWN_ID).status_code == 201
    for again in (OWN_ID, OWN_ID.upper()):
        message = assert_error(_create(sb, Name="Acme 2", Id=again), 409, DUPLICATE)
        assert OWN_ID in message
    made = _create(sb, Name="Made").json()["Id"]
    assert made in assert_error(_create(sb, Name="Copy", Id=made), 409, DUPLICATE)
    sb.ok(("EmailAddress", "a@example.com"), ("RelatedCompanyId", OWN_ID))


def test_an_account_made_under_a_given_id_survives_a_restart_on_its_db_file(
    tmp_path: Path,
) -> None:
    """With a SQLite file, an account made under a given Id is still held after the sandbox
    restarts: a lead naming it is taken, and the Id is still refused as a duplicate."""
    db = str(tmp_path / "sandbox.db")
    with serve_sandbox(db_path=db) as first:
        assert _create(first, Name="Acme", Id=OWN_ID).status_code == 201
    with serve_sandbox(db_path=db) as second:
        lead_id = second.ok(("FirstName", "Ann"), ("RelatedCompanyId", OWN_ID))["RelatedId"]
        lead = second.lead(lead_id)
        assert lead is not None and lead["RelatedCompanyId"] == OWN_ID
        assert_error(_create(second, Name="Acme", Id=OWN_ID), 409, DUPLICATE)
