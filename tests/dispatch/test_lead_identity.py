"""Per-lead ordering for leads known by more than an email or phone: an anonymous visitor's
ProspectID, and a unique custom field a mapping's ``search_by`` names. Two captures of one
such lead are sent in the order received, a retried earlier one before the later ones, also
across targets (one whose key was rotated, or that was renamed, included)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.dispatch.worker import ABSENT_WAIT
from hub.store.base import EventStore
from hub.store.models import State
from tests.dispatch.support import (
    CAPTURE,
    all_in,
    enqueue,
    opened_store,
    recording_target,
    retried,
    running,
    sandbox_get,
    sandbox_post,
    sandbox_server,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread


def _endpoint_yaml(fields: str, extra: str = "") -> str:
    """The unauthenticated ``forms`` endpoint, mapped to ``default`` with ``fields``."""
    return (
        "kind: endpoint\nname: forms\nsource: none\n---\n"
        "kind: mapping\nname: forms-map\nendpoint: forms\ntarget: default\n"
        f"{extra}fields:\n{fields}"
    )


async def test_captures_of_one_visitor_s_prospect_id_keep_their_order(tmp_path: Path) -> None:
    """Four captures of one anonymous visitor (ProspectID, no email or phone) against the
    sandbox failing every second call: each goes out after the one before is delivered, so
    the lead ends with the last one's values. (They went out together, and the retried
    second capture landed last: the lead held step 2 of 4.)"""
    visitor = str(uuid.uuid4())
    with sandbox_server() as (url, _):
        sandbox_post(url, "/_sandbox/visitors", {"ProspectId": visitor})
        sandbox_post(url, "/_sandbox/faults", {"every": 2, "kinds": ["500"]})
        fields = "  ProspectID: { path: $.pid, required: true }\n  mx_Step: $.step\n"
        config = write_config(tmp_path / "cfg", target_yaml("default", url), _endpoint_yaml(fields))
        async with opened_store(tmp_path / "hub.db") as store:
            docs = [{"pid": visitor, "step": str(n)} for n in range(1, 5)]
            ids = await enqueue(store, "forms", docs)
            async with running(config, store, concurrency=4):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
        sandbox_post(url, "/_sandbox/faults", {"rate": 0})
        (lead,) = sandbox_get(url, "/v2/LeadManagement.svc/Leads.GetById", id=visitor)
        activities = sandbox_get(url, f"/_sandbox/leads/{visitor}/activities")
    steps = [next(d["Value"] for d in a["Data"] if d["Attribute"] == "mx_Step") for a in activities]
    assert steps == ["1", "2", "3", "4"]
    assert lead["mx_Step"] == "4"


class _FailsFirst:
    """A LeadSquared that answers the first call a plain 500 (retried) and records each
    call's ``mx_Step`` in arrival order."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def capture(self, request: Request) -> Response:
        attributes = {a["Attribute"]: a["Value"] for a in await request.json()}
        self.steps.append(attributes.get("mx_Step", ""))
        if len(self.steps) == 1:
            return Response("busy", status_code=500)
        message = {"Id": "a", "RelatedId": "lead-1", "IsCreated": len(self.steps) == 2}
        return JSONResponse({"Status": "Success", "Message": message})


@contextlib.contextmanager
def _fails_first() -> Iterator[tuple[str, _FailsFirst]]:
    fake = _FailsFirst()
    app = Starlette(routes=[Route(CAPTURE, fake.capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield url, fake


async def test_captures_searched_by_one_custom_field_value_keep_their_order(
    tmp_path: Path,
) -> None:
    """A mapping that finds its lead by a unique custom field (``search_by: mx_Ext_Id``, no
    email or phone): the first capture of an id is retried, and the second waits for it
    instead of going first (and being overwritten by the older one)."""
    with _fails_first() as (url, fake):
        fields = "  mx_Ext_Id: { path: $.ext, required: true }\n  mx_Step: $.step\n"
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            _endpoint_yaml(fields, extra="search_by: mx_Ext_Id\n"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            docs = [{"ext": "X-1", "step": "1"}, {"ext": "x-1 ", "step": "2"}]
            ids = await enqueue(store, "forms", docs)
            async with running(config, store, concurrency=4):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    assert fake.steps == ["1", "1", "2"]


def _email_endpoint_yaml(name: str, target: str) -> str:
    """An unauthenticated endpoint ``name`` whose email and step are sent to ``target``."""
    return (
        f"kind: endpoint\nname: {name}\nsource: none\n---\n"
        f"kind: mapping\nname: {name}-map\nendpoint: {name}\ntarget: {target}\n"
        "fields:\n  EmailAddress: { path: $.email, required: true }\n  mx_Step: $.step\n"
    )


async def _waiting_for(store: EventStore, event_id: int, blocker: int) -> bool:
    event = await store.get(event_id)
    assert event is not None and event.state != State.DELIVERED
    return f"waiting for event {blocker}" in (event.last_error or "")


async def test_a_lead_held_by_an_event_of_a_removed_endpoint_says_so_and_waits_calmly(
    tmp_path: Path,
) -> None:
    """A person's event A failed and waits for its retry, then its endpoint is taken out of the
    configuration: no instance here sends A, so B, a later event of that person, waits. Its
    last error says why and what to do, and it is looked at again every ABSENT_WAIT, not every
    ORDER_WAIT. (It said only 'waiting for event 1 (same lead) to be sent first', and was
    claimed, put back and logged five times a second for as long as the endpoint stayed out.)"""
    slow = "{initial: 1h, max_interval: 1h, give_up_after: 72h}"
    with _fails_first() as (url, fake):
        target = target_yaml("default", url, retry=slow)
        forms = _email_endpoint_yaml("forms", "default")
        before = write_config(
            tmp_path / "before", target, forms, _email_endpoint_yaml("gone", "default")
        )
        after = write_config(tmp_path / "after", target, forms)
        async with opened_store(tmp_path / "hub.db") as store:
            (a,) = await enqueue(store, "gone", [{"email": "p@example.com", "step": "1"}])
            async with running(before, store):
                await wait_for(retried(store, a, attempts=1), what="A retrying")
            docs = [{"email": "p@example.com", "step": "2"}]
            (b,) = await enqueue(store, "forms", docs, prefix="b")
            async with running(after, store):
                await wait_for(lambda: _waiting_for(store, b, a), what="B waiting for A")
            first, second = await store.get(a), await store.get(b)
    assert first is not None and second is not None
    assert "its endpoint 'gone' is not in this hub's configuration: put it back" in (
        second.last_error or ""
    )
    # (less a millisecond: the store keeps times as floats of seconds since 1970)
    assert second.next_attempt_at >= first.next_attempt_at + ABSENT_WAIT - 0.001
    assert fake.steps == ["1"]


def _other_account(name: str, url: str) -> str:
    """A target on ``url`` with keys of its own: another LeadSquared account."""
    return (
        f"kind: target\nname: {name}\nurl: {url}\naccess_key: other-access\n"
        "secret_key: other-secret\nrate_limit: off\n"
    )


@pytest.mark.parametrize("how", ["same keys", "account name"])
async def test_two_targets_of_one_account_keep_a_person_s_order(tmp_path: Path, how: str) -> None:
    """Two targets with the same host and keys, or two users' keys each naming the account
    (``account: acme``), are one account: the person's event through the second waits for the
    first's retry, as within one target."""
    with _fails_first() as (url, fake):
        if how == "same keys":
            first, second = target_yaml("default", url), target_yaml("again", url)
        else:
            first = target_yaml("default", url) + "account: acme\n"
            second = _other_account("again", url) + "account: acme\n"
        config = write_config(
            tmp_path / "cfg",
            first,
            second,
            _other_account("elsewhere", url),
            _email_endpoint_yaml("typeform", "default"),
            _email_endpoint_yaml("zapier", "again"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            (a,) = await enqueue(store, "typeform", [{"email": "p@example.com", "step": "1"}])
            docs = [{"email": "p@example.com", "step": "2"}]
            (b,) = await enqueue(store, "zapier", docs, prefix="z")
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, [a, b]), what="delivered")
    assert fake.steps == ["1", "1", "2"]


@pytest.mark.parametrize("change", ["key", "name"])
async def test_a_target_whose_key_or_name_changed_still_holds_back_its_lead(
    tmp_path: Path, change: str
) -> None:
    """A person's event A failed on target ``default`` and waits for its retry; then the
    target's access key is rotated (same name), or the target is renamed. B, a later event of
    that person to the target, waits for A (sent after it, A would overwrite B's newer data
    when its retry went out): the old target is not another account. (With keys scoped by
    account, the rotated key made B's keys new ones, and B went first.)"""
    with recording_target() as (url, target):
        # A was routed to 'default' by the configuration before; this is the one after.
        if change == "key":
            now = _other_account("default", url)
            elsewhere = _other_account("elsewhere", url)
        else:
            now = target_yaml("renamed", url)  # ('default' is now the embedded sandbox)
            elsewhere = target_yaml("elsewhere", url)
        after = write_config(
            tmp_path / "after",
            now,
            elsewhere,
            _email_endpoint_yaml("forms", "default" if change == "key" else "renamed"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            (a,) = await enqueue(store, "forms", [{"email": "p@example.com", "step": "1"}])
            (claimed,) = await store.claim(limit=1, lease=60)
            keys = ["email:p@example.com"]
            await store.set_route(a, target="default", mapping="forms-map", lead_keys=keys)
            await store.retry(a, at=time.time() + 3600, error="HTTP 500", lease=claimed.lease)
            (b,) = await enqueue(
                store, "forms", [{"email": "p@example.com", "step": "2"}], prefix="b"
            )
            async with running(after, store):
                await wait_for(lambda: _waiting_for(store, b, a), what="B waiting for A")
    assert target.calls == []
