"""An unexpected error sending an event, or recording what its call did, is a failed attempt:
the event is retried on its target's schedule with the error as its last error, and dead once
the schedule gives up (replayable). Put back untried, such a failure repeated the event's
Lead.Capture call every second, without end and uncounted; in a batch of deliveries written
together, one refused row made every event of the batch go back and be sent again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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

#: The first retry is due at once (1 ms), as the refused one's must be to be claimed while its
#: lane still writes the others. The window is a hang guard's size, not a measure: an event
#: tried first after it is dead after one attempt, and the first attempt's failure (behind 39
#: slow records) came 6 s after the start under a load average of 20, past the 2 s it was.
RETRY = "{initial: 1ms, max_interval: 1s, give_up_after: 20s}"


def refuse_delivered(event_id: int) -> str:
    """SQLite: a trigger refusing to record event ``event_id`` as delivered, and one making
    every other event's record slow (about 30 ms of work), so that the refused one's retry,
    due at once, is claimed again while its lane still writes the others of its batch."""
    return f"""
CREATE TRIGGER refuse_delivered BEFORE UPDATE ON events
WHEN NEW.id = {event_id} AND NEW.state = 'delivered'
BEGIN SELECT RAISE(ABORT, 'refused by the test''s trigger'); END;
CREATE TRIGGER slow_delivered BEFORE UPDATE ON events
WHEN NEW.id <> {event_id} AND NEW.state = 'delivered'
BEGIN SELECT length(hex(randomblob(4000000))); END;
"""


@pytest.mark.parametrize("rate_limit", ["25/5s", "off"])
async def test_a_delivery_the_store_refuses_to_record_is_an_attempt_not_a_loop(
    tmp_path: Path, rate_limit: str
) -> None:
    """The store refuses to record one event's delivery (a trigger): that event is retried,
    each call counted, then dead naming the store's error; the events sent beside it (at
    ``off``, recorded in the same batches) are delivered once each. Claimed again while its
    lane still held it, the retry was taken for the lane's own send in flight and dropped:
    the event waited for its lease to end."""
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url, rate_limit=rate_limit, retry=RETRY),
            flat_endpoint_yaml("forms", "default"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            leads = [{"email": f"p{n}@example.com"} for n in range(40)]
            ids = await enqueue(store, "forms", leads, prefix="sf")
            refused, others = ids[5], ids[:5] + ids[6:]
            with sqlite3.connect(tmp_path / "hub.db") as conn:
                conn.executescript(refuse_delivered(refused))
            # A lease far past the waits: a retry dropped and left to its lease never dies here.
            async with running(config, store, lease=600.0):
                await wait_for(all_in(State.DELIVERED, store, others), what="others delivered")
                await wait_for(all_in(State.DEAD, store, [refused]), what="dead", timeout=90)
            event = (await states(store, [refused]))[refused]
        leads_seen = sandbox_get(url, "/_sandbox/leads")
        captures = {
            lead["EmailAddress"]: len(
                sandbox_get(url, f"/_sandbox/leads/{lead['ProspectID']}/activities")
            )
            for lead in leads_seen
        }
    assert event.attempts >= 2
    error = event.last_error or ""
    assert error.startswith(f"gave up after {event.attempts} attempt(s) over "), error
    assert "sending the event failed (StoreError: " in error, error
    assert "refused by the test's trigger" in error, error
    emails = sorted(lead["EmailAddress"] for lead in leads_seen)
    assert emails == sorted(lead["email"] for lead in leads)
    # each other lead was captured once: a batch refused with it was not sent again whole
    assert captures.pop("p5@example.com") == event.attempts
    assert set(captures.values()) == {1}, captures
