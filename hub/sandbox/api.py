"""The sandbox's endpoints: Lead.Capture, the read-back APIs and the control API.

Each handler takes the :class:`~hub.sandbox.app.Sandbox` and the request and
returns a Starlette response (sending it, or dropping the connection instead,
is the caller's decision). Errors are raised as :class:`MXError`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from hub.sandbox import capture as capture_rules
from hub.sandbox.attributes import parse_capture_body
from hub.sandbox.db import Lead, SandboxDB
from hub.sandbox.errors import DUPLICATE, MXError, invalid_input
from hub.sandbox.faults import parse_fault_config
from hub.sandbox.wire import SandboxRequest, json_reply

if TYPE_CHECKING:
    from hub.sandbox.app import Sandbox

Handler = Callable[["Sandbox", SandboxRequest, str], Awaitable[Response]]

V2 = "/v2/leadmanagement.svc/"
CONTROL = "/_sandbox/"


def timestamp(unix: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, the date format of every LeadSquared API."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix))


def _leads(leads: list[Lead]) -> Response:
    return json_reply([lead.to_api() for lead in leads])


async def lead_capture(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``POST Lead.Capture``: create or update a lead (sandbox.md rules 1-12)."""
    behavior = capture_rules.parse_behavior(req.query.get("leadupdatebehavior"))
    body = parse_capture_body(req.headers.get("content-type"), await req.body())
    now = timestamp(sb.clock.time())
    result = await sb.db.call(capture_rules.capture, body, behavior, now)
    if result.duplicate:
        sb.log.info(
            "sandbox_duplicate_refused",
            lead_id=result.lead_id,
            activity_id=result.activity_id,
            field=result.duplicate,
        )
        msg = f"A Lead with same {result.duplicate} already exists."
        raise MXError(500, DUPLICATE, msg)
    sb.log.info(
        "sandbox_lead_captured",
        lead_id=result.lead_id,
        activity_id=result.activity_id,
        created=result.created,
    )
    message = {"Id": result.activity_id, "RelatedId": result.lead_id, "IsCreated": result.created}
    return json_reply({"Status": "Success", "Message": message})


def _by_id(db: SandboxDB, lead_id: str) -> list[Lead]:
    lead = db.lead_by_id(lead_id) if lead_id.strip() else None
    return [lead] if lead else []


def _by_email(db: SandboxDB, email: str) -> list[Lead]:
    lead = db.lead_by_email(email) if email.strip() else None
    return [lead] if lead else []


async def get_by_id(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``GET Leads.GetById?id=ID``: the lead in an array, or ``[]``."""
    return _leads(await sb.db.call(_by_id, req.query.get("id", "")))


async def get_by_email(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``GET Leads.GetByEmailaddress?emailaddress=E``: case-insensitive."""
    return _leads(await sb.db.call(_by_email, req.query.get("emailaddress", "")))


async def get_by_phone(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``GET RetrieveLeadByPhoneNumber?phone=DIGITS``: digits against Phone and Mobile."""
    phone = req.query.get("phone", "")
    return _leads(await sb.db.call(SandboxDB.leads_by_phone_or_mobile, phone))


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict):
        msg = f"Send a JSON object with {name!r}."
        raise invalid_input(msg)
    lowered = name.lower()
    return next((value for key, value in body.items() if key.lower() == lowered), None)


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


async def add_visitor(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``POST /_sandbox/visitors {"ProspectId": UUID}``: register an anonymous visitor.

    Only the hyphenated 8-4-4-4-12 form (any case) is taken, as for an account's ``Id``: a
    capture's ProspectId is compared as sent (in lower case), so a visitor registered as
    ``{...}``, ``urn:uuid:...`` or 32 bare digits was answered 201 under the hyphenated form,
    and a capture sending the id as registered made a lead of a fresh id, not the visitor's.
    """
    value = _field(await req.json(), "ProspectId")
    if value is None:
        # Said so, not "ProspectId None is not a UUID": a body sending the id under another
        # key ("Id", as an account's is, or "VisitorId") was told of a Python None.
        example = json.dumps({"ProspectId": capture_rules.new_uuid()})
        msg = f"Send a JSON object with 'ProspectId', the visitor's id as a UUID, like {example}."
        raise invalid_input(msg)
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        msg = (
            f"ProspectId {value!r} is not a UUID in its hyphenated form; send one like "
            f"{capture_rules.new_uuid()!r}, as captures will send it."
        )
        raise invalid_input(msg)
    visitor_id = value.lower()
    await sb.db.call(SandboxDB.add_visitor, visitor_id)
    sb.log.info("sandbox_visitor_registered", visitor_id=visitor_id)
    return json_reply({"ProspectId": visitor_id}, 201)


def _account_id(value: Any) -> str:
    """The account id to hold: the caller's ``Id`` in lower case, or a new one when absent.

    Only the hyphenated 8-4-4-4-12 form (any case) is taken, not everything ``uuid.UUID``
    parses: a lead's RelatedCompanyId is compared as sent (in lower case), so an account
    held under ``{...}`` or an unhyphenated form would never match the mapping's value.
    """
    if value is None:
        return capture_rules.new_uuid()
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        msg = f"Id {value!r} is not a GUID; send one like {capture_rules.new_uuid()!r}, or no Id."
        raise invalid_input(msg)
    return value.lower()


async def add_account(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``POST /_sandbox/accounts {"Name": ..., "Id": optional GUID}``: create an account for
    RelatedCompanyId, under the caller's id when given (a mapping's fixed RelatedCompanyId
    then works unedited) or a new one.

    Raises:
        MXError: 400 for a missing name or an Id that is not a GUID, 409 for an Id held.
    """
    body = await req.json()
    name = _field(body, "Name")
    if not isinstance(name, str) or not name.strip():
        msg = f"Name {name!r} is not an account name; send a non-empty string."
        raise invalid_input(msg)
    account_id = _account_id(_field(body, "Id"))
    if not await sb.db.call(SandboxDB.add_account, account_id, name):
        msg = f"An account with Id {account_id!r} already exists; use it, or send another Id."
        raise MXError(409, DUPLICATE, msg)
    sb.log.info("sandbox_account_created", account_id=account_id)
    return json_reply({"Id": account_id}, 201)


async def all_leads(sb: Sandbox, _req: SandboxRequest, _arg: str) -> Response:
    """``GET /_sandbox/leads``: every lead, oldest first."""
    return _leads(await sb.db.call(SandboxDB.all_leads))


async def activities(sb: Sandbox, _req: SandboxRequest, lead_id: str) -> Response:
    """``GET /_sandbox/leads/{id}/activities``: the lead's Lead Capture activities."""
    found = await sb.db.call(SandboxDB.activities_of, lead_id)
    return json_reply([activity.to_api() for activity in found])


async def set_faults(sb: Sandbox, req: SandboxRequest, _arg: str) -> Response:
    """``POST /_sandbox/faults``: configure (or, with ``rate`` 0, stop) injected failures."""
    config = parse_fault_config(await req.json())
    sb.faults.configure(config)
    sb.log.info("sandbox_faults_set", **config.to_api())
    return json_reply(config.to_api())


async def get_faults(sb: Sandbox, _req: SandboxRequest, _arg: str) -> Response:
    """``GET /_sandbox/faults``: the fault configuration in force."""
    return json_reply(sb.faults.config.to_api())


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", V2 + "lead.capture"): lead_capture,
    ("GET", V2 + "leads.getbyid"): get_by_id,
    ("GET", V2 + "leads.getbyemailaddress"): get_by_email,
    ("GET", V2 + "retrieveleadbyphonenumber"): get_by_phone,
    ("POST", CONTROL + "visitors"): add_visitor,
    ("POST", CONTROL + "accounts"): add_account,
    ("GET", CONTROL + "leads"): all_leads,
    ("POST", CONTROL + "faults"): set_faults,
    ("GET", CONTROL + "faults"): get_faults,
}


def resolve(method: str, path: str) -> tuple[Handler, str] | None:
    """The handler for ``method path`` (path compared case-insensitively) and its argument."""
    lowered = path.lower()
    handler = ROUTES.get((method, lowered))
    if handler is not None:
        return handler, ""
    prefix, suffix = CONTROL + "leads/", "/activities"
    if method == "GET" and lowered.startswith(prefix) and lowered.endswith(suffix):
        lead_id = path[len(prefix) : len(path) - len(suffix)]
        if lead_id and "/" not in lead_id:
            return activities, lead_id
    return None
