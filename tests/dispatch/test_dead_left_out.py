"""A lead dead for a missing required value says, in its stored reason, what else the
mapping left out of it: those warnings are often why the value is missing."""

from __future__ import annotations

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


async def test_a_dead_events_reason_ends_with_what_else_was_left_out(tmp_path: Path) -> None:
    """A lead without its required email whose phone was "12" (no number) was dead with
    "EmailAddress ($.email found nothing)" alone: the phone warning went nowhere (only a lead
    to send carries warnings). Its stored reason now ends with it, briefly; a lead with a good
    phone and no email has the reason it had; one with its email is delivered."""
    extra = "  Phone: { path: $.phone, transform: phone }\n"
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            flat_endpoint_yaml("forms", "default", extra=extra),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            bad_phone, good_phone, fine = await enqueue(
                store,
                "forms",
                [{"phone": "12"}, {"phone": "+14155550100"}, {"email": "a@example.com"}],
            )
            async with running(config, store):
                await wait_for(all_in(State.DEAD, store, [bad_phone, good_phone]), what="dead")
                await wait_for(all_in(State.DELIVERED, store, [fine]), what="delivered")
            found = await states(store, [bad_phone, good_phone])
        leads = sandbox_get(url, "/_sandbox/leads")
    missing = (
        "mapping failed: required value missing in mapping 'forms-map': "
        "EmailAddress ($.email found nothing)"
    )
    assert found[bad_phone].last_error == (
        f"{missing}; also left out: Phone: '12' is not a phone number (no default_region set)"
    )
    assert found[good_phone].last_error == missing
    assert [lead["EmailAddress"] for lead in leads] == ["a@example.com"]
