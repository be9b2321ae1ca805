"""Events of an endpoint this hub's configuration lacks wait, saying why, instead of ending
``unmatched``: another instance on the store may have the endpoint (a rolling deploy that adds
it), or it may be put back. Each is claimed once, not at every poll (the claim leaves alone
what an instance without the endpoint already left), and is sent once the endpoint is back
(a reload), without a replay. Two instances together: tests/e2e/test_unknown_endpoint.py."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from hub.store.models import State
from tests.dispatch.support import (
    all_in,
    enqueue,
    flat_endpoint_yaml,
    leads,
    opened_store,
    running,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)

GONE = 40  # more than fit one claim's room in the default lane


async def test_events_of_an_endpoint_not_configured_wait_and_go_once_it_is_back(
    tmp_path: Path,
) -> None:
    """A hub without endpoint ``late``: its events go back untried, each claimed once (the
    forms events queued after them are delivered meanwhile, and claims go on), last error
    saying why, one ``event_left`` line for them all. Given the endpoint back (a reload),
    they are delivered, each at its first attempt."""
    with sandbox_server() as (url, _):
        target = target_yaml("default", url)
        without = write_config(tmp_path / "without", target, flat_endpoint_yaml("forms", "default"))
        with_late = write_config(
            tmp_path / "with",
            target,
            flat_endpoint_yaml("forms", "default"),
            flat_endpoint_yaml("late", "default"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            gone = await enqueue(store, "late", leads("late", GONE), prefix="late")
            with capture_logs() as logs:
                async with running(without, store) as dispatcher:
                    await wait_for(
                        lambda: sum(e["event"] == "event_claimed" for e in logs) >= GONE,
                        what="each late event claimed",
                    )
                    forms = await enqueue(store, "forms", leads("forms", 3), prefix="forms")
                    await wait_for(all_in(State.DELIVERED, store, forms), what="forms delivered")
                    waiting = await states(store, gone)
                    claims_before = _claims(logs, gone)
                    # another claim, and another: none takes the late events again
                    more = await enqueue(store, "forms", leads("more", 2), prefix="more")
                    await wait_for(all_in(State.DELIVERED, store, more), what="more delivered")
                    claims_after = _claims(logs, gone)
                    await dispatcher.reload(with_late)
                    await wait_for(all_in(State.DELIVERED, store, gone), what="late delivered")
            delivered = await states(store, gone)
    assert {e.state for e in waiting.values()} == {State.QUEUED}
    assert {e.attempts for e in waiting.values()} == {0}
    reasons = {e.last_error for e in waiting.values()}
    assert reasons == {
        "endpoint not configured: 'late' is not in this hub's configuration; waiting for an "
        "instance that has it, or put it back (leadhub replay needs nothing: it is sent once "
        "configured)"
    }
    assert claims_before == claims_after == GONE
    left = [e for e in logs if e["event"] == "event_left"]
    assert [(e["endpoint"], e["events"]) for e in left] == [("late", 1)], left
    assert {e.attempts for e in delivered.values()} == {1}
    assert not [e for e in logs if e["event"] == "event_unmatched"]


def _claims(logs: list[MutableMapping[str, Any]], ids: list[int]) -> int:
    """How many ``event_claimed`` lines are of the events ``ids``."""
    return sum(e["event"] == "event_claimed" and e["event_id"] in ids for e in logs)
