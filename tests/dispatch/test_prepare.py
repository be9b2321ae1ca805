"""Preparing an event (enrich, map, settle) never leaves it looping untried: a document the
mapping cannot evaluate is dead with the reason, an unexpected error is a counted attempt."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.store import open_store
from hub.store.base import EventStore
from hub.store.models import EventIn, IncomingDelivery, State
from tests.dispatch.support import (
    KEYS,
    all_in,
    enqueue,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import serve_in_thread


def _mapping_yaml(*, with_object: bool) -> str:
    """The ``forms`` endpoint; with ``with_object`` its mapping also sends ``$.o`` as text."""
    extra = "  mx_O: { path: $.o, transform: string }\n" if with_object else ""
    return (
        "kind: endpoint\nname: forms\nsource: none\n---\n"
        "kind: mapping\nname: forms-map\nendpoint: forms\ntarget: default\nfields:\n"
        "  EmailAddress: { path: $.email, required: true }\n" + extra
    )


async def _stored_body(store: EventStore, delivery_id: str, body: bytes) -> int:
    """An event stored as an older ingest stored it: the body itself is the document (orjson
    reads bodies nested up to 1024 levels; ingest now refuses more than 200)."""
    (result,) = await store.enqueue(
        IncomingDelivery(
            endpoint="forms",
            received_at=time.time(),
            body=body,
            content_type="application/json",
            headers={},
            events=(EventIn(delivery_id, orjson.loads(body), document_is_body=True),),
        )
    )
    return result.id


async def test_a_document_the_mapping_cannot_evaluate_is_dead_once_and_replayable(
    tmp_path: Path,
) -> None:
    """A stored document with an object 1000 levels deep, which the mapping cannot write as
    text, is dead after one attempt with the reason (not looping); an email inside arrays
    1000 deep is delivered; after a fixed mapping the dead event is replayed and delivered."""
    deep_object = b'{"email": "deep@example.com", "o": ' + b'{"a":' * 1000 + b"1" + b"}" * 1001
    deep_email = b'{"email": ' + b"[" * 1000 + b'"arrays@example.com"' + b"]" * 1000 + b"}"
    with sandbox_server() as (url, _):
        broken = write_config(
            tmp_path / "a", target_yaml("default", url), _mapping_yaml(with_object=True)
        )
        async with opened_store(tmp_path / "hub.db") as store:
            dead = await _stored_body(store, "d-object", deep_object)
            fine = [await _stored_body(store, "d-arrays", deep_email)]
            fine += await enqueue(store, "forms", [{"email": "plain@example.com"}])
            async with running(broken, store):
                await wait_for(all_in(State.DEAD, store, [dead]), what="dead", timeout=20)
                await wait_for(all_in(State.DELIVERED, store, fine), what="others delivered")
            event = (await states(store, [dead]))[dead]
            assert event.attempts == 1
            assert event.last_error == (
                "mapping failed: mapping 'forms-map' cannot evaluate this document: a value "
                "nests arrays and objects more than 400 levels deep, too deep to write as text"
            )
            assert await store.replay(state=State.DEAD) == 1
            fixed = write_config(
                tmp_path / "b", target_yaml("default", url), _mapping_yaml(with_object=False)
            )
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, [dead]), what="replayed, delivered")
        emails = sorted(lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads"))
        assert emails == ["arrays@example.com", "deep@example.com", "plain@example.com"]


@pytest.mark.timeout(120)
async def test_a_regex_that_backtracks_on_a_senders_value_is_dead_not_a_stalled_dispatcher(
    tmp_path: Path,
) -> None:
    """A mapping whose filter regex backtracks without end on one sender's value (with the
    standard library's re, the dispatcher's only thread would be held for good and nothing
    else delivered): that event is dead after one attempt with the path and pattern in its
    reason, and the events after it are delivered."""
    mapping = (
        "kind: endpoint\nname: forms\nsource: none\n---\n"
        "kind: mapping\nname: forms-map\nendpoint: forms\ntarget: default\nfields:\n"
        "  EmailAddress: { path: $.email, required: true }\n"
        "  mx_Code: \"$.codes[?(@.c =~ '^(a|aa)+$')].c\"\n"
    )
    with sandbox_server() as (url, _):
        config = write_config(tmp_path / "cfg", target_yaml("default", url), mapping)
        async with opened_store(tmp_path / "hub.db") as store:
            hostile, *fine = await enqueue(
                store,
                "forms",
                [
                    {"email": "hostile@example.com", "codes": [{"c": "a" * 40 + "b"}]},
                    {"email": "one@example.com", "codes": [{"c": "aaa"}]},
                    {"email": "two@example.com"},
                ],
            )
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, fine), what="others delivered")
                await wait_for(all_in(State.DEAD, store, [hostile]), what="dead")
            event = (await states(store, [hostile]))[hostile]
        leads = {lead["EmailAddress"]: lead for lead in sandbox_get(url, "/_sandbox/leads")}
    assert event.attempts == 1
    assert event.last_error == (
        "mapping failed: mapping 'forms-map' cannot evaluate this document: JSONPath "
        "$.codes[?(@.c =~ '^(a|aa)+$')].c: the regular expression '^(a|aa)+$' took more than "
        "0.2 s on this document's values; write it without nested repeats such as (a|aa)+ or "
        "(a+)*"
    )
    assert sorted(leads) == ["one@example.com", "two@example.com"]
    assert leads["one@example.com"]["mx_Code"] == "aaa"


#: A Graph lead nested deeper than the store could write (orjson writes 254 levels at most).
TOO_DEEP_LEAD = {
    "id": "deep",
    "field_data": [{"name": "email", "values": ["deep@example.com"]}],
    "extra": json.loads("[" * 300 + "]" * 300),
}
#: A lead whose enrichment the database refuses to store (:data:`REFUSE_ENRICHMENT`).
REFUSED_LEAD = {"id": "refused", "field_data": [{"name": "email", "values": ["no@example.com"]}]}
FINE_LEAD = {"id": "fine", "field_data": [{"name": "email", "values": ["fine@example.com"]}]}
LEADS = {"deep": TOO_DEEP_LEAD, "refused": REFUSED_LEAD, "fine": FINE_LEAD}
#: A SQLite trigger: the database refuses to store the refused lead's enrichment.
REFUSE_ENRICHMENT = """
CREATE TRIGGER refuse_enrichment BEFORE UPDATE OF enrichment ON events
WHEN instr(CAST(NEW.enrichment AS TEXT), 'no@example.com') > 0
BEGIN SELECT RAISE(ABORT, 'refused by the test''s trigger'); END;
"""


@pytest.fixture
def graph() -> Iterator[str]:
    """A Graph API double answering the leads above by id."""

    async def lead(request: Request) -> Response:
        found = LEADS.get(request.path_params["lead_id"])
        if found is None:
            return Response(b"", status_code=404)
        # json, not orjson: orjson refuses to write what is nested deeper than 254 levels.
        return Response(json.dumps(found), media_type="application/json")

    app = Starlette(routes=[Route("/v21.0/{lead_id}", lead)])
    with serve_in_thread(app) as url:
        yield f"{url}/v21.0"


def _facebook_config(directory: Path, sandbox_url: str, graph_url: str) -> Any:
    endpoint = f"""kind: endpoint
name: fb
source: facebook
app_secret: a
verify_token: v
page_access_token: EAAB-token
graph_url: {graph_url}
---
kind: mapping
name: fb-map
endpoint: fb
fields:
  EmailAddress: {{ path: "$.field_data[?(@.name=='email')].values[0]", required: true }}
"""
    retry = "{initial: 50ms, max_interval: 100ms, give_up_after: 2s}"
    return write_config(
        directory, target_yaml("default", sandbox_url, retry=retry), endpoint, environ=KEYS
    )


async def test_an_unexpected_error_preparing_one_event_is_an_attempt_not_a_loop(
    tmp_path: Path, graph: str
) -> None:
    """A Graph lead whose enrichment the database refuses to store fails preparing its event:
    the event is retried on its target's schedule with the exception as its last error, then
    dead when the schedule gives up, instead of coming back untried every second. A lead
    nested 300 deep (which the store could not keep either, and failed so before)
    is dead at its first attempt, saying why; the other event is delivered meanwhile."""
    with sandbox_server() as (url, _):
        config = _facebook_config(tmp_path / "cfg", url, graph)
        async with opened_store(tmp_path / "hub.db") as store:
            with sqlite3.connect(tmp_path / "hub.db") as conn:
                conn.executescript(REFUSE_ENRICHMENT)
            refused, deep, fine = await enqueue(
                store, "fb", [{"leadgen_id": name} for name in ("refused", "deep", "fine")]
            )
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, [fine]), what="fine delivered")
                await wait_for(all_in(State.DEAD, store, [refused, deep]), what="dead", timeout=20)
            event, too_deep = (await states(store, [refused, deep])).values()
        assert event.attempts >= 2
        error = event.last_error or ""
        assert error.startswith(f"gave up after {event.attempts} attempt(s) over "), error
        assert (
            "give_up_after): preparing the event failed (StoreError: The event store" in error
            and "refused by the test's trigger" in error
        ), error
        assert error.endswith(f"send it again: leadhub replay --id {refused}"), error
        assert too_deep.attempts == 1
        assert "the API answered a lead nested more than 200 levels deep" in (
            too_deep.last_error or ""
        )
        (lead,) = sandbox_get(url, "/_sandbox/leads")
        assert lead["EmailAddress"] == "fine@example.com"


REFUSE = """
CREATE FUNCTION refuse_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the test''s trigger: %', NEW.key; END $$;
CREATE TRIGGER refuse_key BEFORE INSERT ON lead_keys FOR EACH ROW
WHEN (NEW.key LIKE '%refused.by.trigger%') EXECUTE FUNCTION refuse_key();
"""


async def test_an_event_the_database_refuses_to_route_does_not_hold_up_its_batch(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """When PostgreSQL refuses one event's routes (a trigger here), that one event is retried
    with the database's reason and dead when its schedule gives up, while the events claimed
    with it are delivered, instead of the whole claim going back to the queue every second.
    A NUL in an email (valid JSON, taken at ingest), which PostgreSQL's text cannot hold, is no
    such refusal: its lead key keeps a stand-in and the lead is delivered."""
    dsn, schema = postgres_schema
    retry = "{initial: 50ms, max_interval: 100ms, give_up_after: 2s}"
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url, retry=retry),
            _mapping_yaml(with_object=False),
        )
        store = open_store(f"{dsn}?schema={schema}")
        await store.open()
        conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            await conn.execute(REFUSE)
            bodies = [
                b'{"email": "first@example.com"}',
                b'{"email": "refused.by.trigger@example.com"}',
                b'{"email": "nul\\u0000@example.com"}',
                b'{"email": "last@example.com"}',
            ]
            ids = [await _stored_body(store, f"d-{n}", body) for n, body in enumerate(bodies)]
            fine, refused = [ids[0], ids[2], ids[3]], ids[1]
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, fine), what="others delivered")
                await wait_for(all_in(State.DEAD, store, [refused]), what="dead", timeout=20)
            event = (await states(store, [refused]))[refused]
        finally:
            await conn.close()
            await store.close()
        emails = sorted(lead["EmailAddress"] for lead in sandbox_get(url, "/_sandbox/leads"))
    assert emails == ["first@example.com", "last@example.com", "nul\x00@example.com"]
    assert event.attempts >= 2
    error = event.last_error or ""
    assert error.startswith(f"gave up after {event.attempts} attempt(s) over "), error
    assert "give_up_after): preparing the event failed (StoreError: " in error, error
    assert "refused by the test's trigger: email:refused.by.trigger@example.com" in (
        event.last_error or ""
    )
