"""A store that cannot be reached while the dispatcher writes an outcome is an outage, not a bug
of the event: logged without a traceback (the store's message says what to check), and the
event goes back to the queue untried rather than spending an attempt of its schedule.

The outage is a real PostgreSQL one for the writes it should hit: a trigger raises SQLSTATE
57P03 ("the database system is starting up", what a restarting server answers) on an event's
move to ``unmatched`` while the ``outage`` table has a row, as the server did for some writes
in tests/web/test_store_wait.py's outage under load (which logged tracebacks now and then)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from structlog.testing import capture_logs

from hub.store import open_store
from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    refusing_update,
    running,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)

OUTAGE = refusing_update(
    "outage",
    "NEW.state = 'unmatched' AND OLD.state <> 'unmatched'",
    "RAISE EXCEPTION 'the database system is starting up' USING ERRCODE = '57P03'",
)
NO_MAPPING = "kind: endpoint\nname: nomap\nsource: none\n"


async def test_an_outage_writing_an_outcome_logs_no_traceback_and_spends_no_attempt(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    dsn, schema = postgres_schema
    retry = "{initial: 50ms, max_interval: 100ms, give_up_after: 1h}"
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg", target_yaml("default", url, retry=retry), NO_MAPPING
        )
        store = open_store(f"{dsn}?schema={schema}")
        await store.open()
        conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
        try:
            await conn.execute(OUTAGE)
            ids = await enqueue(store, "nomap", [{"n": n} for n in range(3)])
            with capture_logs() as logs:
                async with running(config, store) as dispatcher:
                    # each event's outcome refused at every claim: logged once, then counted
                    await wait_for(
                        lambda: dispatcher.outage_lines.left_out() >= 5,
                        what="outcomes refused by the outage",
                    )
                    await conn.execute("DELETE FROM outage")
                    await wait_for(all_in(State.UNMATCHED, store, ids), what="unmatched after")
            events = (await states(store, ids)).values()
        finally:
            await conn.close()
            await store.close()
    failed = [entry for entry in logs if entry["event"] == "prepare_failed"]
    assert failed and all("cannot be reached" in entry["error"] for entry in failed), failed[:2]
    # one line per error a minute, not one per event and claim (6 or more here)
    assert len(failed) == len({entry["error"] for entry in failed}), failed
    traced = [entry for entry in logs if entry.get("exc_info")]
    assert not traced, traced[:2]
    assert [e.attempts for e in events] == [1, 1, 1], [e.last_error for e in events]
