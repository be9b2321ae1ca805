"""Each delivery step is one log line with its ids bound, for events whose lead is read first
too (Facebook, LinkedIn, HubSpot apps): found by an audit of a running hub's log."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from hub.store import EventStore, open_store
from hub.store.models import State
from tests.dispatch.support import (
    FB_ENV,
    all_in,
    enqueue,
    facebook_yaml,
    flat_endpoint_yaml,
    forms_config,
    opened_store,
    refusing_update,
    retried,
    running,
    sandbox_post,
    sandbox_server,
    slow_graph,
    target_yaml,
    wait_for,
    write_config,
)


def _closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lines_of(
    logs: list[MutableMapping[str, Any]], event_id: int
) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry.get("event_id") == event_id]


async def _facebook_lead(
    tmp_path: Path,
    graph_url: str,
    leadgen_id: str,
    until: Callable[[EventStore, int], Callable[[], Awaitable[bool]]],
    what: str,
) -> list[MutableMapping[str, Any]]:
    """One Facebook lead (``leadgen_id``, read from ``graph_url``) dispatched to a real
    sandbox until ``until(store, event_id)`` holds: its event's log lines."""
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            facebook_yaml(graph_url),
            environ=FB_ENV,
        )
        async with opened_store(tmp_path / "hub.db") as store:
            (event_id,) = await enqueue(store, "fb", [{"leadgen_id": leadgen_id}], prefix="fb")
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store):
                    await wait_for(until(store, event_id), what=what)
    return _lines_of(logs, event_id)


async def test_a_failed_lead_read_is_logged_after_its_claim(tmp_path: Path) -> None:
    """A Facebook event whose Graph read fails is retried; each attempt's lines are its
    ``event_claimed`` (that attempt) and then its ``event_retrying``, the ids bound to both.
    (The claim of an event whose lead is read first went unlogged: its retries showed up
    with no claim before them.)"""
    graph_url = f"http://127.0.0.1:{_closed_port()}/v21.0"
    lines = await _facebook_lead(tmp_path, graph_url, "4242", retried, "two failed reads")
    retries = [entry for entry in lines if entry["event"] == "event_retrying"]
    assert len(retries) >= 2
    for retry in retries:
        before = lines[: lines.index(retry)]
        claims = [e for e in before if e["event"] == "event_claimed"]
        assert [c["attempt"] for c in claims][-1:] == [retry["attempt"]], lines
        assert retry["delivery_id"] == "fb-0" and retry["endpoint"] == "fb"
    claims = [entry for entry in lines if entry["event"] == "event_claimed"]
    assert all(c["delivery_id"] == "fb-0" and c["endpoint"] == "fb" for c in claims)
    assert len({c["attempt"] for c in claims}) == len(claims), "one claim line per attempt"


async def test_a_read_lead_is_claimed_once_then_enriched_then_sent(tmp_path: Path) -> None:
    """An event whose lead is read and sent logs ``event_claimed`` once, before the read
    (``event_enriched``) and the send (``lead_sent``), not after the read."""
    with slow_graph(0.0) as (graph_url, _graph):
        lines = await _facebook_lead(
            tmp_path, graph_url, "777", lambda store, i: all_in(State.DELIVERED, store, [i]), "sent"
        )
    assert [entry["event"] for entry in lines] == ["event_claimed", "event_enriched", "lead_sent"]
    assert all(entry["delivery_id"] == "fb-0" for entry in lines)


#: A real failure of the write that records a delivery: a trigger refuses the move to
#: ``delivered`` while the ``refuse`` table has a row.
REFUSE_RETRY = refusing_update(
    "refuse", "NEW.state = 'retrying'", "RAISE EXCEPTION 'refused for the test'"
)


async def test_a_failed_send_step_names_its_delivery(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """``send_failed`` (the store refused to record what a call did: here the retry of a
    call LeadSquared failed) carries the delivery id, endpoint and target of its event, as
    every other line of a send does, not its event id alone; the event goes back and is
    delivered once the store takes writes again."""
    dsn, schema = postgres_schema
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url)
        store = open_store(f"{dsn}?schema={schema}")
        await store.open()
        conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            await conn.execute(REFUSE_RETRY)
            sandbox_post(url, "/_sandbox/faults", {"every": 1, "kinds": ["500"]})
            ids = await enqueue(store, "forms", [{"email": "f@example.com"}], prefix="sf")
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store):
                    await wait_for(
                        lambda: any(e["event"] == "send_failed" for e in logs),
                        what="a refused retry write",
                    )
                    sandbox_post(url, "/_sandbox/faults", {"rate": 0})
                    await conn.execute("DELETE FROM refuse")
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered after")
        finally:
            await conn.close()
            await store.close()
    failed = [entry for entry in logs if entry["event"] == "send_failed"]
    for entry in failed:
        assert entry["event_id"] == ids[0]
        assert entry["delivery_id"] == "sf-0", entry
        assert entry["endpoint"] == "forms" and entry["target"] == "default", entry


async def test_an_event_dead_on_its_send_names_its_mapping(tmp_path: Path) -> None:
    """``event_dead`` for a lead LeadSquared refused names the mapping that made the lead, as
    a mapping failure's does (it said ``mapping: null``, as if the event had none)."""
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            flat_endpoint_yaml("forms", "default", extra="  RelatedCompanyId: $.account\n"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", [{"email": "d@example.com", "account": "nope"}])
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DEAD, store, ids), what="dead")
    (dead,) = [entry for entry in logs if entry["event"] == "event_dead"]
    assert "not a known account" in dead["reason"]
    assert dead["mapping"] == "forms-map"
    assert dead["delivery_id"] == "d-0" and dead["target"] == "default"


@pytest.mark.parametrize("rate_limit", ["off", "25/5s"])
async def test_lead_sent_has_the_same_fields_whatever_the_rate_limit(
    tmp_path: Path, rate_limit: str
) -> None:
    """``lead_sent`` names the event, delivery, endpoint, target and mapping whatever the
    target's rate limit (the limiter's slot around the call; its ack written behind)."""
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url, rate_limit=rate_limit)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", [{"email": "s@example.com"}], prefix="s")
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    (sent,) = [entry for entry in logs if entry["event"] == "lead_sent"]
    expected = {
        "event_id": ids[0],
        "delivery_id": "s-0",
        "endpoint": "forms",
        "target": "default",
        "mapping": "forms-map",
        "attempt": 1,
    }
    assert {key: sent.get(key) for key in expected} == expected
