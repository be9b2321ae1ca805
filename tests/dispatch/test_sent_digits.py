"""A number typed in another script's digits, through the ``digits`` transform, into the
real sandbox: LeadSquared's phone and number fields read 0-9."""

from __future__ import annotations

from pathlib import Path

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

EXTRA = "  Phone: {path: $.phone, transform: digits}\n  mx_Zip: {path: $.zip, transform: digits}\n"


async def test_digits_of_other_scripts_are_sent_as_0_to_9(tmp_path: Path) -> None:
    """Arabic-Indic, Persian and Devanagari digits (a phone keyboard's) are written 0-9: they
    were sent as typed, which the sandbox's Phone refuses (400), and the lead was dead."""
    documents = [
        {"email": "a@example.com", "phone": "+٩١ ٩٨٧٦٥٤٣٢١٠", "zip": "٤١١٠٠١"},
        {"email": "b@example.com", "phone": "۰۹۱۲ ۳۴۵ ۶۷۸۹", "zip": "४११००२"},
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

            async with running(config, store):
                await wait_for(settled, timeout=60, what="both leads sent or dead")
            events = await states(store, ids)
        assert [e.state for e in events.values()] == [State.DELIVERED] * 2, [
            e.last_error for e in events.values()
        ]
        leads = sandbox_get(url, "/_sandbox/leads")
    found = {lead["EmailAddress"]: (lead["Phone"], lead["mx_Zip"]) for lead in leads}
    assert found == {
        "a@example.com": ("919876543210", "411001"),
        "b@example.com": ("09123456789", "411002"),
    }
