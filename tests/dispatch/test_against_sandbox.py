"""The dispatcher against the real sandbox: no 429 at its rate limit, no lead lost to faults."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from hub.store.models import State
from hub.units import RateLimit
from tests.dispatch.support import (
    all_in,
    enqueue,
    flat_endpoint_yaml,
    forms_config,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_post,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)


@pytest.mark.slow
async def test_a_burst_of_100_at_25_per_5s_sees_no_429(tmp_path: Path) -> None:
    """100 queued events against a sandbox limited to 25/5s are all delivered without one 429."""
    with sandbox_server(rate_limit=RateLimit(25, 5.0)) as (url, _):
        config = forms_config(tmp_path, url, rate_limit="25/5s")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("r", 100))
            with structlog.testing.capture_logs() as logs:
                async with running(config, store, concurrency=8) as dispatcher:
                    await wait_for(all_in(State.DELIVERED, store, ids), timeout=90, what="sent")
                    sends = dispatcher.metrics.sends
                    delivered = sends.labels("default", "delivered")._value.get()
        retried = [e["reason"] for e in logs if e["event"] == "event_retrying"]
        # Zero 429s. (A machine under heavy load may still time a call out; that is no 429.)
        assert not [r for r in retried if "429" in r or "rate limit" in r], retried
        assert delivered == 100
        assert len(sandbox_get(url, "/_sandbox/leads")) == 100


async def test_faults_never_lose_or_duplicate_a_lead(tmp_path: Path) -> None:
    """With 30 % of calls failing (500, 429, timeout, reset, lost reply), 200 leads arrive once."""
    with sandbox_server() as (url, _):
        sandbox_post(
            url,
            "/_sandbox/faults",
            {
                "rate": 0.3,
                "seed": 7,
                "kinds": ["500", "429", "timeout", "reset", "lost_response"],
                "timeout_s": 1.0,
            },
        )
        config = write_config(
            tmp_path / "cfg",
            target_yaml(
                "default",
                url,
                timeout="500ms",
                retry="{initial: 50ms, max_interval: 200ms, give_up_after: 1h}",
            ),
            flat_endpoint_yaml("forms", "default"),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            emails = [f"f{n}@example.com" for n in range(200)]
            ids = await enqueue(store, "forms", [{"email": e} for e in emails])
            async with running(config, store, concurrency=8) as dispatcher:
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=100, what="all sent")
                retries = dispatcher.metrics.sends.labels("default", "retry")._value.get()
            events = await states(store, ids)
        leads = sandbox_get(url, "/_sandbox/leads")
        assert sorted(lead["EmailAddress"] for lead in leads) == sorted(emails)  # each once
        assert not [e for e in events.values() if e.state == State.DEAD]
        assert retries > 20  # the faults really happened
        reasons = {(e.last_error or "") for e in events.values()}
        assert reasons == {""}  # delivered events carry no stale error
        # A resend after a lost response is an update: some leads were captured more than once.
        updated = [e for e in events.values() if e.lead_created is False]
        print(f"faults: {int(retries)} retried sends, {len(updated)} leads updated by a resend")


async def test_a_value_the_mapping_leaves_out_is_logged_and_the_lead_still_sent(
    tmp_path: Path,
) -> None:
    """A phone that is no number is left out of the lead, which is still delivered: the
    ``event_mapped`` warning names the event and why (before, nothing anywhere showed it);
    a lead with nothing left out logs no such line."""
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            flat_endpoint_yaml(
                "forms", "default", extra="  Phone: { path: $.phone, transform: phone }\n"
            ),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            documents = [
                {"email": "nophone@example.com", "phone": "abc"},
                {"email": "phone@example.com", "phone": "+91 98765 43210"},
            ]
            ids = await enqueue(store, "forms", documents)
            with structlog.testing.capture_logs() as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="both delivered")
        mapped = [e for e in logs if e["event"] == "event_mapped"]
        assert len(mapped) == 1, mapped
        (line,) = mapped
        assert (line["log_level"], line["event_id"], line["mapping"]) == (
            "warning",
            ids[0],
            "forms-map",
        )
        assert line["warnings"] == [
            "Phone: 'abc' is not a phone number (no default_region set); left out"
        ]
        leads = {lead["EmailAddress"]: lead for lead in sandbox_get(url, "/_sandbox/leads")}
        assert not leads["nophone@example.com"].get("Phone")
        assert leads["phone@example.com"]["Phone"] == "+91-9876543210"


async def test_an_opt_out_flag_given_other_than_0_or_1_is_sent_as_written_and_logged(
    tmp_path: Path,
) -> None:
    """An opt-out flag fed from a sender's value went to LeadSquared as "true" (a Typeform
    yes/no answer) or as a text its map does not list, and nothing said so: the sandbox
    takes any text. The lead is still sent, values as written (the hub cannot know what the
    answer means), and its ``event_mapped`` warning names each flag, the value and the fix;
    a lead whose flags are "1" and "0" logs no such line."""
    fields = (
        "  DoNotEmail: $.optout\n"
        '  DoNotCall: { path: $.call, transform: { map: { true: "1", false: "0" } } }\n'
    )
    with sandbox_server() as (url, _):
        config = write_config(
            tmp_path / "cfg",
            target_yaml("default", url),
            flat_endpoint_yaml("forms", "default", extra=fields),
        )
        async with opened_store(tmp_path / "hub.db") as store:
            documents = [
                {"email": "asis@example.com", "optout": True, "call": "maybe"},
                {"email": "flags@example.com", "optout": 1, "call": False},
            ]
            ids = await enqueue(store, "forms", documents)
            with structlog.testing.capture_logs() as logs:
                async with running(config, store):
                    await wait_for(all_in(State.DELIVERED, store, ids), what="both delivered")
        mapped = [e for e in logs if e["event"] == "event_mapped"]
        assert [(e["log_level"], e["event_id"]) for e in mapped] == [("warning", ids[0])]
        assert mapped[0]["warnings"] == [
            "DoNotEmail: sent 'true' (from $.optout); LeadSquared's DoNotEmail takes \"1\" (do "
            'not email) or "0": add transform: {map: {true: "1", false: "0"}} (or the inverse, '
            '{map: {true: "0", false: "1"}}, when the question asks for consent)',
            "DoNotCall: sent 'maybe' (from $.call); LeadSquared's DoNotCall takes \"1\" (do not "
            'call) or "0": its map does not list it: add it, mapped to "1" or "0" (or a \'*\' '
            "entry for every value the map does not list)",
        ]
        leads = {lead["EmailAddress"]: lead for lead in sandbox_get(url, "/_sandbox/leads")}
        flags = {email: (lead["DoNotEmail"], lead["DoNotCall"]) for email, lead in leads.items()}
        assert flags == {"asis@example.com": ("true", "maybe"), "flags@example.com": ("1", "0")}
