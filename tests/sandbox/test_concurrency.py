"""Concurrent captures: uniqueness holds, enforced by the database itself."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.sandbox import capture as rules
from hub.sandbox.attributes import parse_capture_body
from hub.sandbox.db import Lead, SandboxDB
from tests.sandbox.helpers import AUTH, CAPTURE, Lsq, body


async def _capture_many(base: str, n: int, email: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, params=AUTH, timeout=30.0) as client:
        calls = [
            client.post(CAPTURE, json=body(("EmailAddress", email), ("mx_Seq", i)))
            for i in range(n)
        ]
        return await asyncio.gather(*calls)


async def test_fifty_simultaneous_captures_of_one_email_make_one_lead(lsq: Lsq) -> None:
    """50 concurrent captures of one new email: one lead, one IsCreated, 49 updates, no 500."""
    responses = await _capture_many(lsq.base, 50, "same@example.com")
    assert [r.status_code for r in responses] == [200] * 50
    messages = [r.json()["Message"] for r in responses]
    assert sum(m["IsCreated"] for m in messages) == 1
    assert len({m["RelatedId"] for m in messages}) == 1
    (lead,) = lsq.leads()
    assert len(lsq.activities(lead["ProspectID"])) == 50


async def test_two_sandboxes_on_one_file_still_make_one_lead(
    sandbox_factory: Callable[..., Lsq], tmp_path: Path
) -> None:
    """Two sandbox processes' worth of connections on one SQLite file, capturing one email
    at once, still produce a single lead."""
    db = str(tmp_path / "sandbox.db")
    first, second = sandbox_factory(db_path=db), sandbox_factory(db_path=db)
    results = await asyncio.gather(
        _capture_many(first.base, 20, "shared@example.com"),
        _capture_many(second.base, 20, "shared@example.com"),
    )
    responses = [r for batch in results for r in batch]
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["Message"]["IsCreated"] for r in responses) == 1
    assert len(first.leads()) == 1 and first.leads() == second.leads()


def test_unique_indexes_refuse_a_second_lead_with_the_same_email_or_phone(
    tmp_path: Path,
) -> None:
    """The database itself refuses two leads with one email (any case) or one phone (digits)."""
    db = SandboxDB(str(tmp_path / "sandbox.db"))
    try:
        db.insert_lead(Lead("a", {"EmailAddress": "A@x.com", "Phone": "+1 555 000 1111"}))
        with pytest.raises(sqlite3.IntegrityError):
            db.insert_lead(Lead("b", {"EmailAddress": "a@X.COM"}))
        with pytest.raises(sqlite3.IntegrityError):
            db.insert_lead(Lead("c", {"Phone": "15550001111"}))
    finally:
        db.close()


class _StaleReads(SandboxDB):
    """A store whose first two email look-ups (match, duplicate check) miss, as if another
    writer had committed the lead just after them."""

    stale = 2

    def lead_by_email(self, email: str) -> Lead | None:
        if self.stale:
            self.stale -= 1
            return None
        return super().lead_by_email(email)


def test_insert_racing_a_unique_index_is_matched_again_as_an_update(tmp_path: Path) -> None:
    """When an insert trips the unique email index, the capture is matched again and becomes
    an update of the existing lead."""
    db = _StaleReads(str(tmp_path / "sandbox.db"))
    try:
        db.insert_lead(Lead("existing", {"EmailAddress": "a@example.com"}))
        raw = orjson.dumps(body(("EmailAddress", "a@example.com"), ("FirstName", "Ann")))
        parsed = parse_capture_body("application/json", raw)
        result: Any = rules.capture(db, parsed, rules.NORMAL, "2024-01-01 00:00:00")
        assert (result.lead_id, result.created, result.duplicate) == ("existing", False, None)
        lead = db.lead_by_id("existing")
        assert lead is not None and lead.attrs["FirstName"] == "Ann"
        assert len(db.all_leads()) == 1
    finally:
        db.close()
