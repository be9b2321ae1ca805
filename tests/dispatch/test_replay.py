"""Dead events come back: a fixed mapping plus ``leadhub replay --status dead`` delivers them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    flat_endpoint_yaml,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)


async def test_fixed_mapping_and_replay_deliver_dead_events(tmp_path: Path) -> None:
    """Events dead on a missing required field are delivered after the fix and `leadhub replay`."""
    db = tmp_path / "hub.db"
    with sandbox_server() as (url, _):
        broken = write_config(
            tmp_path / "a", target_yaml("default", url), flat_endpoint_yaml("forms", "default")
        )
        async with opened_store(db) as store:
            docs = [{"mail": f"late{n}@example.com", "first_name": f"L{n}"} for n in range(5)]
            ids = await enqueue(store, "forms", docs)
            async with running(broken, store):
                await wait_for(all_in(State.DEAD, store, ids), what="dead on required field")
            for event in (await states(store, ids)).values():
                assert "EmailAddress" in (event.last_error or "")

            replay = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "hub",
                    "replay",
                    "--status",
                    "dead",
                    "--db",
                    f"sqlite:///{db}",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert replay.returncode == 0, replay.stderr
            assert "Requeued 5 events" in replay.stdout
            assert {e.state for e in (await states(store, ids)).values()} == {State.QUEUED}

            fixed = write_config(
                tmp_path / "b",
                target_yaml("default", url),
                flat_endpoint_yaml("forms", "default", required="mail"),
            )
            async with running(fixed, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered on replay")
        leads = sandbox_get(url, "/_sandbox/leads")
        assert sorted(lead["EmailAddress"] for lead in leads) == [
            f"late{n}@example.com" for n in range(5)
        ]
