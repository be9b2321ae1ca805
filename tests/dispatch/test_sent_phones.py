"""A phone number longer than E.164 allows, through the ``phone`` transform, into the real
sandbox: left out with a warning, the lead sent, not the whole lead refused."""

from __future__ import annotations

from pathlib import Path

import structlog

from hub.store.models import State
from tests.dispatch.support import (
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

EXTRA = "  Phone: {path: $.phone, transform: phone}\n"


async def test_a_number_longer_than_e164_is_left_out_and_the_lead_sent(tmp_path: Path) -> None:
    """phonenumbers calls '+49 1512 34567890123' (17 digits) possible; it was sent as
    +49-151234567890123, which the sandbox's Phone refuses (7 to 15 digits), and the lead
    was dead. It is left out like any number that is none, with its warning; a number of
    15 digits is still sent."""
    documents = [
        {"email": "a@example.com", "phone": "+49 1512 34567890123"},
        {"email": "b@example.com", "phone": "+43 1 234567890123"},
    ]
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            flat_endpoint_yaml("forms", "default", extra=EXTRA),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", documents)

            async def settled() -> bool:
                done = (State.DELIVERED, State.DEAD)
                return all(e.state in done for e in (await states(store, ids)).values())

            with structlog.testing.capture_logs() as logs:
                async with running(config, store):
                    await wait_for(settled, timeout=60, what="both leads sent or dead")
            events = await states(store, ids)
        assert [e.state for e in events.values()] == [State.DELIVERED] * 2, [
            e.last_error for e in events.values()
        ]
        leads = sandbox_get(url, "/_sandbox/leads")
    found = {lead["EmailAddress"]: lead.get("Phone") for lead in leads}
    assert found == {"a@example.com": None, "b@example.com": "+43-1234567890123"}
    warned = [e["warnings"] for e in logs if e["event"] == "event_mapped" and e.get("warnings")]
    assert warned == [
        ["Phone: '+49 1512 34567890123' is not a phone number (wrong length); left out"]
    ]
