"""Values the transforms make, sent through the dispatcher into the real sandbox: what
LeadSquared's fields would refuse is written so they read it (``digits``), or left out with
its warning and the lead sent (``phone``), never the whole lead refused."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

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


async def sent(
    tmp_path: Path, extra: str, documents: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[MutableMapping[str, Any]]]:
    """The sandbox's leads once every document mapped with the ``forms`` endpoint's fields
    plus ``extra`` was sent (each must be delivered), and the log lines of the run."""
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            flat_endpoint_yaml("forms", "default", extra=extra),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", documents)

            async def settled() -> bool:
                done = (State.DELIVERED, State.DEAD)
                return all(e.state in done for e in (await states(store, ids)).values())

            with structlog.testing.capture_logs() as logs:
                async with running(config, store):
                    await wait_for(settled, timeout=60, what="every lead sent or dead")
            events = await states(store, ids)
        assert [e.state for e in events.values()] == [State.DELIVERED] * len(ids), [
            e.last_error for e in events.values()
        ]
        leads: list[dict[str, Any]] = sandbox_get(url, "/_sandbox/leads")
    return leads, logs


async def test_digits_of_other_scripts_are_sent_as_0_to_9(tmp_path: Path) -> None:
    """Arabic-Indic, Persian and Devanagari digits (a phone keyboard's) are written 0-9: they
    were sent as typed, which the sandbox's Phone refuses (400), and the lead was dead."""
    extra = (
        "  Phone: {path: $.phone, transform: digits}\n  mx_Zip: {path: $.zip, transform: digits}\n"
    )
    documents = [
        {"email": "a@example.com", "phone": "+٩١ ٩٨٧٦٥٤٣٢١٠", "zip": "٤١١٠٠١"},
        {"email": "b@example.com", "phone": "۰۹۱۲ ۳۴۵ ۶۷۸۹", "zip": "४११००२"},
    ]
    leads, _ = await sent(tmp_path, extra, documents)
    found = {lead["EmailAddress"]: (lead["Phone"], lead["mx_Zip"]) for lead in leads}
    assert found == {
        "a@example.com": ("919876543210", "411001"),
        "b@example.com": ("09123456789", "411002"),
    }


async def test_a_number_longer_than_e164_is_left_out_and_the_lead_sent(tmp_path: Path) -> None:
    """phonenumbers calls '+49 1512 34567890123' (17 digits) possible; it was sent as
    +49-151234567890123, which the sandbox's Phone refuses (7 to 15 digits), and the lead
    was dead. It is left out like any number that is none, with its warning; a number of
    15 digits is still sent."""
    documents = [
        {"email": "a@example.com", "phone": "+49 1512 34567890123"},
        {"email": "b@example.com", "phone": "+43 1 234567890123"},
    ]
    leads, logs = await sent(tmp_path, "  Phone: {path: $.phone, transform: phone}\n", documents)
    found = {lead["EmailAddress"]: lead.get("Phone") for lead in leads}
    assert found == {"a@example.com": None, "b@example.com": "+43-1234567890123"}
    warned = [e["warnings"] for e in logs if e["event"] == "event_mapped" and e.get("warnings")]
    assert warned == [
        ["Phone: '+49 1512 34567890123' is not a phone number (wrong length); left out"]
    ]
