"""Each delivery step is one log line with its ids bound, for events whose lead is read first
too (Facebook, LinkedIn, HubSpot apps): found by an audit of a running hub's log."""

from __future__ import annotations

import socket
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from hub.store.models import State
from tests.dispatch.support import (
    FB_ENV,
    all_in,
    enqueue,
    facebook_yaml,
    opened_store,
    retried,
    running,
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


async def test_a_failed_lead_read_is_logged_after_its_claim(tmp_path: Path) -> None:
    """A Facebook event whose Graph read fails is retried; each attempt's lines are its
    ``event_claimed`` (that attempt) and then its ``event_retrying``, the ids bound to both.
    (The claim of an event whose lead is read first went unlogged: its retries showed up
    with no claim before them.)"""
    graph_url = f"http://127.0.0.1:{_closed_port()}/v21.0"
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            facebook_yaml(graph_url),
            environ=FB_ENV,
        )
        async with opened_store(tmp_path / "hub.db") as store:
            (event_id,) = await enqueue(store, "fb", [{"leadgen_id": "4242"}], prefix="fb")
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store):
                    await wait_for(retried(store, event_id), what="two failed reads")
    lines = _lines_of(logs, event_id)
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
    with sandbox_server() as (url, _), slow_graph(0.0) as (graph_url, _graph):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            facebook_yaml(graph_url),
            environ=FB_ENV,
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "fb", [{"leadgen_id": "777"}], prefix="fb")
            merge = structlog.contextvars.merge_contextvars
            with structlog.testing.capture_logs(processors=[merge]) as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    lines = _lines_of(logs, ids[0])
    assert [entry["event"] for entry in lines] == ["event_claimed", "event_enriched", "lead_sent"]
    assert all(entry["delivery_id"] == "fb-0" for entry in lines)
