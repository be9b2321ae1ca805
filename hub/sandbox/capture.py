"""The matching and update rules of ``Lead.Capture`` (sandbox.md rules 1-12).

:func:`capture` runs on the database thread inside one write transaction: it
finds the lead the call identifies, creates or updates it, refuses a duplicate
email or phone (posting the activity on the lead that owns it), and posts the
"Lead Capture" activity. The unique indexes have the last word: when a write
still trips one (another process won the race), the transaction is rolled back
and the call is matched again, so it becomes an update or a duplicate, as the
real API would answer.

A ProspectId that names a registered visitor is used as the new lead's id only
when nothing matches (no lead has that id, email or phone): a lead found by
email or phone is the first hit and is updated (rules 2, 3, 7).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hub.sandbox.attributes import (
    EMAIL,
    PHONE,
    PROSPECT_ID,
    RELATED_COMPANY,
    SOURCE_FIELDS,
    UNIQUE_FIELDS,
    CaptureBody,
)
from hub.sandbox.db import Activity, Lead, SandboxDB
from hub.sandbox.errors import invalid_input

NORMAL = "None"
DO_NOT_UPDATE = "DoNotUpdate"
ONLY_EMPTY = "UpdateOnlyEmptyFields"
KEEP_UNIQUE = "DoNotUpdateUniqueFields"
_BEHAVIORS = (NORMAL, DO_NOT_UPDATE, ONLY_EMPTY, KEEP_UNIQUE)
_RACE_RETRIES = 3


def new_uuid() -> str:
    """A lowercase, hyphenated UUID, the form of every sandbox id."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """What a capture did: the lead, the activity, whether it was created.

    ``duplicate`` is ``"Email"`` or ``"Phone Number"`` when the call was refused
    under rule 9; then ``lead_id`` is the existing lead the activity went to.
    """

    lead_id: str
    activity_id: str
    created: bool
    duplicate: str | None = None


def parse_behavior(value: str | None) -> str:
    """The ``LeadUpdateBehavior`` of a call; absent means ``None``.

    The value is one of the four names of sandbox.md rule 12, spelled exactly so: the
    contract says where letter case does not matter (parameter names, attribute names,
    SearchBy values) and says it of none of these, so ``donotupdate``, an empty value or
    a padded one is "any other value".

    Raises:
        MXError: 400 for any other value.
    """
    if value is None:
        return NORMAL
    if value in _BEHAVIORS:
        return value
    same = next((name for name in _BEHAVIORS if name.lower() == value.strip().lower()), None)
    if same is not None:
        hint = f" (write it exactly {same!r}: letter case and spaces count)"
    elif not value.strip():
        hint = " (or leave the parameter out)"
    else:
        hint = ""
    msg = (
        f"LeadUpdateBehavior {value!r} is not supported; use 'None', 'DoNotUpdate', "
        f"'UpdateOnlyEmptyFields' or 'DoNotUpdateUniqueFields'{hint}."
    )
    raise invalid_input(msg)


def capture(
    db: SandboxDB,
    body: CaptureBody,
    behavior: str,
    now: str,
    new_id: Callable[[], str] = new_uuid,
) -> CaptureResult:
    """Create or update the lead ``body`` identifies; call on the database thread.

    Raises:
        MXError: 400 when RelatedCompanyId names no known account.
    """
    related = body.get(RELATED_COMPANY)
    if related is not None and not db.account_exists(related):
        msg = f"RelatedCompanyId {related!r} is not a known account; create the account first."
        raise invalid_input(msg)
    for attempt in range(_RACE_RETRIES):
        try:
            with db.transaction():
                return _capture_once(db, body, behavior, now, new_id)
        except sqlite3.IntegrityError:
            if attempt == _RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _find(db: SandboxDB, body: CaptureBody) -> Lead | None:
    """The lead the call matches, or ``None`` when a new lead must be created."""
    pid, email, phone = body.get(PROSPECT_ID), body.get(EMAIL), body.get(PHONE)
    if body.search_by and not (pid and email and phone):
        value = body.attrs[body.search_by]
        return db.lead_by_email(value) if body.search_by == EMAIL else db.lead_by_phone(value)
    if not (pid or email or phone):
        return None
    by_id = db.lead_by_id(pid) if pid else None
    if by_id is not None:
        if email is not None and by_id.email_key not in (None, email.lower()):
            return None  # rule 4: another email means another person
        return by_id
    if email is not None and (by_email := db.lead_by_email(email)) is not None:
        return by_email
    if phone is not None:
        return db.lead_by_phone(phone)
    return None


def _merged(lead: Lead, body: CaptureBody, behavior: str, now: str) -> Lead:
    if behavior == DO_NOT_UPDATE:
        return lead
    attrs = dict(lead.attrs)
    # A custom field is one field in any letter case: the lead's spelling of each, looked up
    # once (a walk over the lead's fields for each one sent took 80 s for a 1 MiB body).
    custom: dict[str, str] = {}
    for key in attrs:
        if key.startswith("mx_"):
            custom.setdefault(key.lower(), key)
    for name, value in body.attrs.items():
        if name == PROSPECT_ID:
            continue
        if name in attrs or not name.startswith("mx_"):
            key = name
        else:
            key = custom.setdefault(name.lower(), name)
        current = attrs.get(key)
        if current is not None and current.strip():
            if behavior == ONLY_EMPTY or name in SOURCE_FIELDS:
                continue
            if behavior == KEEP_UNIQUE and name in UNIQUE_FIELDS:
                continue
        attrs[key] = value
    if attrs == lead.attrs:
        return lead
    return Lead(id=lead.id, attrs=attrs, created_on=lead.created_on, modified_on=now)


def _created(db: SandboxDB, body: CaptureBody, now: str, new_id: Callable[[], str]) -> Lead:
    pid = body.get(PROSPECT_ID)
    if pid and db.lead_by_id(pid) is None and db.is_visitor(pid):
        lead_id = pid.lower()  # rule 3: the visitor becomes the lead
    else:
        lead_id = new_id()
    attrs = {name: value for name, value in body.attrs.items() if name != PROSPECT_ID}
    return Lead(id=lead_id, attrs=attrs, created_on=now, modified_on=now)


def _holder(db: SandboxDB, lead: Lead) -> tuple[Lead, str] | None:
    """Another lead that already has ``lead``'s email (checked first) or phone."""
    if lead.email_key:
        other = db.lead_by_email(lead.email_key)
        if other is not None and other.id != lead.id:
            return other, "Email"
    if lead.phone_key:
        other = db.lead_by_phone(lead.phone_key)
        if other is not None and other.id != lead.id:
            return other, "Phone Number"
    return None


def _capture_once(
    db: SandboxDB, body: CaptureBody, behavior: str, now: str, new_id: Callable[[], str]
) -> CaptureResult:
    found = _find(db, body)
    lead = _created(db, body, now, new_id) if found is None else _merged(found, body, behavior, now)
    data = list(body.attrs.items())
    activity_id = new_id()
    holder = _holder(db, lead)
    if holder is not None:
        other, what = holder
        db.add_activity(Activity(id=activity_id, lead_id=other.id, created_on=now, data=data))
        return CaptureResult(other.id, activity_id, created=False, duplicate=what)
    if found is None:
        db.insert_lead(lead)
    elif lead is not found:
        db.update_lead(lead)
    db.add_activity(Activity(id=activity_id, lead_id=lead.id, created_on=now, data=data))
    return CaptureResult(lead.id, activity_id, created=found is None)
