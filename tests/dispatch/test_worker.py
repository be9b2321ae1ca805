"""The dispatcher against real servers: outcomes, pause and resume, ordering, isolation, stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.dispatch.leadsquared import MX_ADVICE, LeadSquaredClient
from hub.dispatch.worker import Dispatcher, make_http_client
from hub.store.base import EventStore
from hub.store.models import Event, State
from tests.dispatch.support import (
    all_in,
    enqueue,
    flat_endpoint_yaml,
    forms_config,
    leads,
    opened_store,
    running,
    sandbox_get,
    sandbox_server,
    states,
    target_yaml,
    wait_for,
    write_config,
)
from tests.support.server import free_port, serve_in_thread

MX = {
    "mx400": (400, "MXInvalidInputException", "'Phone' must hold 7 to 15 digits"),
    "mx500": (500, "MXDuplicateEntryException", "A Lead with same Email already exists."),
    "mx200": (200, "MXUnknownAttributeException", "Unknown attribute mx_Nope"),
}


async def _scripted(request: Request) -> Response:
    """Answers by the email's local part: mxNNN gives an MX error, anything else succeeds."""
    body = await request.json()
    email = next(i["Value"] for i in body if i["Attribute"] == "EmailAddress")
    local = email.split("@")[0]
    if local in MX:
        status, kind, message = MX[local]
        return JSONResponse(
            {"Status": "Error", "ExceptionType": kind, "ExceptionMessage": message},
            status_code=status,
        )
    return JSONResponse(
        {
            "Status": "Success",
            "Message": {"Id": "a", "RelatedId": f"lead-{local}", "IsCreated": True},
        }
    )


#: Calls to ``/slow`` are answered once this is set (a target slower than any other).
_SLOW_GATE = threading.Event()


async def _slow(request: Request) -> Response:
    while not _SLOW_GATE.is_set():
        await asyncio.sleep(0.01)
    return await _scripted(request)


async def _refuse_keys(request: Request) -> Response:
    await request.body()
    body = {"Status": "Error", "ExceptionType": "MXUnAuthorizedAccessException"}
    return JSONResponse(body, status_code=401)


async def _always_500(request: Request) -> Response:
    await request.body()
    return Response(b"Internal Server Error", status_code=500)


CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"


@pytest.fixture(scope="module")
def fake_lsq() -> Iterator[str]:
    """A scripted fake LeadSquared (``/ok``) and one answering 500 to everything (``/broken``)."""
    app = Starlette(
        routes=[
            Route("/ok" + CAPTURE, _scripted, methods=["POST"]),
            Route("/broken" + CAPTURE, _always_500, methods=["POST"]),
            Route("/slow" + CAPTURE, _slow, methods=["POST"]),
            Route("/refused" + CAPTURE, _refuse_keys, methods=["POST"]),
        ]
    )
    with serve_in_thread(app) as url:
        yield url


async def test_mx_errors_in_400_500_and_200_end_dead_with_the_reason(
    tmp_path: Path, fake_lsq: str
) -> None:
    """Events answered with an MX exception (400, 500, 200+Error) are dead with that exception,
    what to do about it when it is one seen in practice (a duplicate email or phone, an unknown
    field), and the replay that sends the event again once that is done."""
    config = forms_config(tmp_path, f"{fake_lsq}/ok")
    async with opened_store(tmp_path / "hub.db") as store:
        docs = [{"email": f"{k}@example.com"} for k in MX] + [{"email": "fine@example.com"}]
        ids = await enqueue(store, "forms", docs)
        async with running(config, store) as dispatcher:
            await wait_for(all_in(State.DEAD, store, ids[:3]), what="MX events dead")
            await wait_for(all_in(State.DELIVERED, store, ids[3:]), what="good event delivered")
        events = await states(store, ids)
        for event_id, (_, kind, message) in zip(ids, MX.values(), strict=False):
            advice = MX_ADVICE.get(kind)
            said = f"{message.rstrip('.')}; {advice}" if advice else message
            assert events[event_id].last_error == (
                f"{kind}: {said.rstrip('.')}; once that is fixed, send it again: "
                f"leadhub replay --id {event_id}"
            )
            assert events[event_id].attempts == 1  # dead at once, never retried
        assert events[ids[3]].lead_id == "lead-fine"
        assert dispatcher.metrics.sends.labels("default", "dead")._value.get() == 3


async def test_missing_required_field_is_dead_without_a_send(tmp_path: Path, fake_lsq: str) -> None:
    """A mapping whose required field is missing ends the event dead, naming the field."""
    config = forms_config(tmp_path, f"{fake_lsq}/ok")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", [{"first_name": "NoMail"}])
        async with running(config, store) as dispatcher:
            await wait_for(all_in(State.DEAD, store, ids), what="event dead")
        event = (await states(store, ids))[ids[0]]
        assert "EmailAddress" in (event.last_error or "")
        assert dispatcher.metrics.sends.labels("default", "dead")._value.get() == 0


async def test_an_endpoint_without_mappings_is_unmatched(tmp_path: Path, fake_lsq: str) -> None:
    """Events of an endpoint without mappings are kept unmatched. (Those of an endpoint not
    configured wait for one that has it: tests/dispatch/test_unknown_endpoint.py.)"""
    config = write_config(
        tmp_path / "cfg",
        target_yaml("default", f"{fake_lsq}/ok"),
        flat_endpoint_yaml("forms", "default"),
        "kind: endpoint\nname: lonely\nsource: none\n",
    )
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "lonely", [{"email": "a@example.com"}], prefix="l")
        async with running(config, store):
            await wait_for(all_in(State.UNMATCHED, store, ids), what="events unmatched")
        events = await states(store, ids)
        assert "no mappings" in (events[ids[0]].last_error or "")


async def test_401_pauses_the_target_and_events_are_delivered_once_keys_are_fixed(
    tmp_path: Path,
) -> None:
    """Wrong keys pause the target without killing events; with the right keys they go through,
    each recorded as of its call (the first one, a probe's, written before the next send; the
    rest behind the next sends): after the keys were fixed, before the last was seen."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = forms_config(tmp_path, url, retry="{initial: 50ms, max_interval: 300ms}")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("p", 10))
        async with running(config, store) as dispatcher:
            with sandbox_server(access_key="other", secret_key="keys", port=port):
                lane = dispatcher.lanes["default"]
                await wait_for(lambda: lane.pause_level >= 3, what="several refused probes")
                paused = dispatcher.metrics.paused.labels("default")._value.get()
                events = await states(store, ids)
                assert paused == 1
                assert not [e for e in events.values() if e.state == State.DEAD]
                assert not [e for e in events.values() if e.state == State.DELIVERED]
                assert any("HTTP 401" in (e.last_error or "") for e in events.values())
                waiting = [e for e in events.values() if e.state != State.SENDING]
                assert all(e.attempts == 0 for e in waiting)  # a pause is not a failure
            fixed = store.clock.time()
            with sandbox_server(port=port) as (sandbox_url, _):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivery after fix")
                seen = store.clock.time()
                assert len(sandbox_get(sandbox_url, "/_sandbox/leads")) == 10
            assert dispatcher.metrics.paused.labels("default")._value.get() == 0
        delivered = await states(store, ids)
        times = [e.updated_at for e in delivered.values()]
        assert all(fixed <= t <= seen for t in times), (fixed, times, seen)


async def test_a_broken_target_never_delays_a_healthy_one(tmp_path: Path, fake_lsq: str) -> None:
    """With one target answering 500 to everything, the other's events are all delivered."""
    config = write_config(
        tmp_path / "cfg",
        target_yaml("default", f"{fake_lsq}/ok"),
        target_yaml("broken", f"{fake_lsq}/broken", retry="{initial: 10ms, max_interval: 20ms}"),
        flat_endpoint_yaml("good", "default"),
        flat_endpoint_yaml("bad", "broken"),
    )
    async with opened_store(tmp_path / "hub.db") as store:
        # The broken target's events come first, so they are claimed first and keep coming back.
        bad = await enqueue(store, "bad", leads("b", 100), prefix="b")
        good = await enqueue(store, "good", leads("g", 100), prefix="g")
        async with running(config, store, batch=16):
            await wait_for(all_in(State.DELIVERED, store, good), what="healthy target delivered")
            broken = await states(store, bad)
        assert not [e for e in broken.values() if e.state == State.DELIVERED]
        assert sum(e.attempts for e in broken.values()) >= 100
        assert [
            e for e in broken.values() if e.state in (State.RETRYING, State.SENDING, State.QUEUED)
        ]


async def test_retries_end_dead_once_the_schedule_gives_up(tmp_path: Path, fake_lsq: str) -> None:
    """A target failing past give_up_after leaves its events dead, saying why and after how many.

    The events are queued once the dispatcher runs, and give_up_after (counted from then)
    leaves seconds for the first failure: queued before it started, with 300 ms, a loaded
    machine's start used them up and the first failure was the last (1 attempt)."""
    config = write_config(
        tmp_path / "cfg",
        target_yaml(
            "default",
            f"{fake_lsq}/broken",
            retry="{initial: 20ms, max_interval: 50ms, give_up_after: 3s}",
        ),
        flat_endpoint_yaml("forms", "default"),
    )
    async with opened_store(tmp_path / "hub.db") as store:
        async with running(config, store):
            ids = await enqueue(store, "forms", leads("x", 3))
            await wait_for(all_in(State.DEAD, store, ids), what="given up")
        for event in (await states(store, ids)).values():
            assert event.attempts >= 2
            assert (event.last_error or "").startswith(f"gave up after {event.attempts} attempt")
            assert "HTTP 500" in (event.last_error or "")


async def test_pause_is_logged_as_an_error_with_the_reason(tmp_path: Path, fake_lsq: str) -> None:
    """A refused key logs target_paused at error level with the reason and never the keys."""
    import structlog

    config = forms_config(tmp_path, f"{fake_lsq}/refused")
    async with opened_store(tmp_path / "hub.db") as store:
        await enqueue(store, "forms", [{"email": "k@example.com"}])
        merge = structlog.contextvars.merge_contextvars
        with structlog.testing.capture_logs(processors=[merge]) as logs:
            async with running(config, store) as dispatcher:
                await wait_for(lambda: dispatcher.lanes["default"].pause_level >= 1, what="pause")
    paused = [entry for entry in logs if entry["event"] == "target_paused"]
    assert paused and paused[0]["log_level"] == "error"
    assert paused[0]["target"] == "default"
    assert "HTTP 401" in paused[0]["reason"]
    assert not any("sk-test" in repr(entry) or "ak-test" in repr(entry) for entry in logs)


async def test_slow_and_paused_targets_never_delay_a_healthy_one(
    tmp_path: Path, fake_lsq: str
) -> None:
    """A slow target's backlog and a paused target's events never hold the healthy one up.

    The slow target answers nothing until the healthy one has sent all its leads (it slept
    0.5 s a call, and a loaded machine took longer to send the healthy 80 than it to send
    its 80: the test's own timing, not a hold-up)."""
    config = write_config(
        tmp_path / "cfg",
        target_yaml("default", f"{fake_lsq}/ok"),
        target_yaml("slow", f"{fake_lsq}/slow"),
        target_yaml("refused", f"{fake_lsq}/refused"),
        flat_endpoint_yaml("good", "default"),
        flat_endpoint_yaml("sluggish", "slow"),
        flat_endpoint_yaml("locked", "refused"),
    )
    async with opened_store(tmp_path / "hub.db") as store:
        slow = await enqueue(store, "sluggish", leads("s", 80), prefix="s")
        locked = await enqueue(store, "locked", leads("l", 80), prefix="l")
        good = await enqueue(store, "good", leads("g", 80), prefix="g")
        _SLOW_GATE.clear()
        try:
            async with running(config, store, batch=16) as dispatcher:
                await wait_for(
                    all_in(State.DELIVERED, store, good), what="healthy target delivered"
                )
                slow_events = await states(store, slow)
                locked_events = await states(store, locked)
                assert dispatcher.lanes["refused"].pause_level >= 1
                _SLOW_GATE.set()  # (its calls end before the dispatcher stops)
        finally:
            _SLOW_GATE.set()
        assert not [e for e in slow_events.values() if e.state == State.DELIVERED]
        assert not [e for e in locked_events.values() if e.state in (State.DELIVERED, State.DEAD)]


async def test_events_for_one_lead_are_sent_in_arrival_order(tmp_path: Path) -> None:
    """Twenty updates of one email arrive in the sandbox in order: the last one wins."""
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url)
        async with opened_store(tmp_path / "hub.db") as store:
            docs = [{"email": "same@example.com", "seq": n} for n in range(1, 21)]
            ids = await enqueue(store, "forms", docs)
            async with running(config, store, concurrency=8):
                await wait_for(all_in(State.DELIVERED, store, ids), what="all delivered")
        leads = sandbox_get(url, "/_sandbox/leads")
        assert len(leads) == 1
        assert leads[0]["mx_Seq"] == "20"
        activities = sandbox_get(url, f"/_sandbox/leads/{leads[0]['ProspectID']}/activities")
        seqs = [
            next(d["Value"] for d in a["Data"] if d["Attribute"] == "mx_Seq") for a in activities
        ]
        assert seqs == [str(n) for n in range(1, 21)]


async def test_stop_releases_queued_events_and_leaves_nothing_claimed(tmp_path: Path) -> None:
    """stop() ends with every event delivered or back in the queue, none left 'sending'."""
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url, rate_limit="5/1s")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("s", 60))
            async with running(config, store) as dispatcher:
                await wait_for(
                    lambda: (
                        dispatcher.metrics.sends.labels("default", "delivered")._value.get() >= 5
                    ),
                    what="first sends",
                )
            events = await states(store, ids)
            by_state = {s: sum(1 for e in events.values() if e.state == s) for s in State}
            assert by_state[State.SENDING] == 0
            assert by_state[State.DELIVERED] >= 5
            assert by_state[State.DELIVERED] + by_state[State.QUEUED] == 60
            assert all(e.attempts == 0 for e in events.values() if e.state == State.QUEUED)
            # A second dispatcher (no rate limit this time) picks the rest up.
            unlimited = write_config(
                tmp_path / "cfg2",
                target_yaml("default", url),
                flat_endpoint_yaml("forms", "default"),
            )
            async with running(unlimited, store):
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=90, what="the rest")
        assert len(sandbox_get(url, "/_sandbox/leads")) == 60


async def test_stop_starts_no_call_for_a_sender_waiting_for_its_rate_limit_slot(
    tmp_path: Path,
) -> None:
    """At stop, senders waiting for their rate-limit slot give the wait up: their events go
    back untried, and no call starts after the stop began. They waited for the slot (here 5 s
    after the first call) and then made their call, within the stop's timeout (9 s)."""
    with sandbox_server() as (url, _):
        config = forms_config(tmp_path, url, rate_limit="1/5s")
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("w", 5))
            dispatcher = Dispatcher(config=config, store=store, poll=0.05)
            await dispatcher.start()
            try:
                delivered = dispatcher.metrics.sends.labels("default", "delivered")
                await wait_for(lambda: delivered._value.get() >= 1, what="the first send")
            finally:
                await dispatcher.stop(timeout=9.0)
            events = await states(store, ids)
        assert len(sandbox_get(url, "/_sandbox/leads")) == 1
        by_state = {s: [e for e in events.values() if e.state == s] for s in State}
        assert len(by_state[State.DELIVERED]) == 1
        assert len(by_state[State.QUEUED]) == 4
        assert all(e.attempts == 0 for e in by_state[State.QUEUED])


async def test_metrics_are_exposed_on_the_given_registry(tmp_path: Path, fake_lsq: str) -> None:
    """Sends, latency and pause gauges appear in the Prometheus text of the registry passed in."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    config = forms_config(tmp_path, f"{fake_lsq}/ok")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", [{"email": "m@example.com"}])
        async with running(config, store, registry=registry):
            await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    text = generate_latest(registry).decode()
    assert 'leadhub_sends_total{outcome="delivered",target="default"} 1.0' in text
    assert 'leadhub_send_seconds_count{target="default"} 1.0' in text
    assert "leadhub_target_paused" in text
    assert "leadhub_graph_fetch_errors_total" in text or "leadhub_graph_fetch_errors" in text


async def test_logs_one_event_per_step_with_ids_bound(tmp_path: Path, fake_lsq: str) -> None:
    """Claim and send are logged as event_claimed and lead_sent with the delivery id bound."""
    import structlog

    config = forms_config(tmp_path, f"{fake_lsq}/ok")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", [{"email": "log@example.com"}], prefix="logged")
        merge = structlog.contextvars.merge_contextvars
        with structlog.testing.capture_logs(processors=[merge]) as logs:
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
    names = [entry["event"] for entry in logs]
    assert "event_claimed" in names and "lead_sent" in names
    sent = next(entry for entry in logs if entry["event"] == "lead_sent")
    assert sent["delivery_id"] == "logged-0"
    assert sent["lead_id"] == "lead-log"
    assert not any("sk-test" in repr(entry) for entry in logs)


async def test_httpx_is_the_client() -> None:
    """The dispatcher's HTTP client is httpx (one shared AsyncClient), as the issue asks."""
    client = make_http_client()
    try:
        assert isinstance(client, httpx.AsyncClient)
    finally:
        await client.aclose()
    assert asyncio.iscoroutinefunction(LeadSquaredClient.capture)


class _HeldClaims:
    """A store whose later claims, and routing, wait until the test lets them finish."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.claims = 0
        self.second_started = asyncio.Event()
        self.let_go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(self, **kwargs: Any) -> list[Event]:
        self.claims += 1
        if self.claims >= 2:
            self.second_started.set()
            await self.let_go.wait()
        return await self._store.claim(**kwargs)

    async def set_routes(self, routes: Any, *, reading: Any = ()) -> list[int]:
        await self.let_go.wait()  # the first batch is still being dispatched at stop
        return await self._store.set_routes(routes, reading=reading)


async def test_a_claim_still_running_at_stop_gives_its_events_back_at_once(
    tmp_path: Path,
) -> None:
    """The next claim runs while a batch is dispatched; stopping meanwhile releases what it got.

    Its events go back due now with their attempt not counted: none waits for a lease to end.
    """
    with sandbox_server() as (url, _):
        # 4/10s: the lane holds 8 (what the limit lets out in a third of the 60 s lease),
        # room for the claim ahead while the first batch is held
        config = forms_config(tmp_path, url, rate_limit="4/10s")
        async with opened_store(tmp_path / "hub.db") as real:
            ids = await enqueue(real, "forms", leads("ahead", 12))
            store = _HeldClaims(real)
            dispatcher = Dispatcher(config=config, store=store, batch=4, poll=0.05)
            await dispatcher.start()
            await asyncio.wait_for(store.second_started.wait(), 10)
            dispatcher.drain()  # stop claiming: the first batch and the claim ahead are running
            await asyncio.sleep(0.2)
            store.let_go.set()
            await dispatcher.stop(timeout=5.0)
            events = await states(real, ids)
    assert store.claims == 2
    assert all(e.state != State.SENDING for e in events.values())
    queued = [e for e in events.values() if e.state == State.QUEUED]
    assert len(queued) >= 12 - 4  # the claim ahead's events and those never claimed at least
    assert all(e.attempts == 0 and e.next_attempt_at <= time.time() for e in queued)


class _BuggyClaims(Dispatcher):
    """A dispatcher whose claim loop meets a bug (anything but a store error) ``failures``
    times, in a step outside the store calls, then works."""

    failures = 2

    def _claim_size(self, pending: int = 0) -> int:
        if self.failures:
            self.failures -= 1
            msg = "a bug in the claim loop"
            raise RuntimeError(msg)
        return super()._claim_size(pending)


async def test_a_bug_in_the_claim_loop_is_logged_and_the_loop_starts_again(
    tmp_path: Path, fake_lsq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim loop does not end on a bug while ingest goes on accepting: each failure is
    logged with its traceback and counted, and the loop starts again and delivers."""
    import structlog
    from prometheus_client import CollectorRegistry

    from hub.dispatch import worker

    monkeypatch.setattr(worker, "RESTART_PAUSE", 0.05)
    registry = CollectorRegistry()
    config = forms_config(tmp_path, f"{fake_lsq}/ok")
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", [{"email": "again@example.com"}])
        dispatcher = _BuggyClaims(config=config, store=store, poll=0.05, registry=registry)
        with structlog.testing.capture_logs() as logs:
            await dispatcher.start()
            try:
                await wait_for(all_in(State.DELIVERED, store, ids), timeout=10, what="delivered")
            finally:
                await dispatcher.stop()
    failed = [e for e in logs if e["event"] == "claim_loop_failed"]
    assert [e["restart_in"] for e in failed] == [0.05, 0.1]
    assert all(e["log_level"] == "error" and e["exc_info"] for e in failed)
    assert all(e["error"] == "a bug in the claim loop" for e in failed)
    assert registry.get_sample_value("leadhub_claim_loop_restarts_total") == 2


#: Pauses of 25-300 ms, and a give_up_after that a pause of 3 s outlasts.
SHORT_WINDOW = "{initial: 50ms, max_interval: 300ms, give_up_after: 2s}"


def _refused_then_one_500() -> tuple[dict[str, bool], dict[str, int], Starlette]:
    """A Lead.Capture refusing the keys (401) while ``mode["refuse"]``, then failing each
    lead's first call (500) and taking the next; ``calls`` counts each lead's calls."""
    mode = {"refuse": True}
    calls: dict[str, int] = {}

    async def capture(request: Request) -> Response:
        body = await request.json()
        if mode["refuse"]:
            return JSONResponse({"Status": "Error", "ExceptionType": "MXUnAuthorized"}, 401)
        email = next(i["Value"] for i in body if i["Attribute"] == "EmailAddress")
        calls[email] = calls.get(email, 0) + 1
        if calls[email] == 1:
            return Response(b"Internal Server Error", status_code=500)
        return JSONResponse(
            {"Status": "Success", "Message": {"Id": "a", "RelatedId": email, "IsCreated": True}}
        )

    return mode, calls, Starlette(routes=[Route(CAPTURE, capture, methods=["POST"])])


async def test_time_the_target_was_paused_does_not_use_up_give_up_after(tmp_path: Path) -> None:
    """A target refusing the keys (401: paused) for longer than give_up_after, then failing
    each lead once (500) before taking it: every lead is retried and delivered, none given up
    at its first failure because the pause ate its window."""
    mode, calls, app = _refused_then_one_500()
    with serve_in_thread(app) as url:
        config = forms_config(tmp_path, url, retry=SHORT_WINDOW)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("g", 3))
            async with running(config, store) as dispatcher:
                lane = dispatcher.lanes["default"]
                await wait_for(lambda: lane.pause_level >= 1, what="the pause")
                await asyncio.sleep(3.0)  # paused for longer than give_up_after
                mode["refuse"] = False
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
            events = await states(store, ids)
    assert all(event.attempts == 2 for event in events.values())
    assert calls == {f"g{n}@example.com": 2 for n in range(3)}


async def test_a_pause_before_a_restart_does_not_use_up_give_up_after(tmp_path: Path) -> None:
    """As above, across a restart: the first process finds the keys refused (paused) for
    longer than give_up_after and stops; the next one, the keys fixed, meets one 500 a lead.
    Every lead is retried and delivered: the store kept the first process's pause, so it did
    not eat the leads' window. (Forgotten at the restart, each lead was dead at its 500: "gave
    up after 1 attempt(s)".) While the pause lasted, the store held it with the end it was due
    to have: what a process killed mid-pause leaves."""
    mode, calls, app = _refused_then_one_500()
    with serve_in_thread(app) as url:
        config = forms_config(tmp_path, url, retry=SHORT_WINDOW)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("r", 3))
            async with running(config, store) as first:
                lane = first.lanes["default"]
                await wait_for(lambda: lane.pause_level >= 1, what="the pause")
                await asyncio.sleep(0.1)  # (the pause's write, behind the lane)
                (began, due), *_ = (await store.kept_spans("target", ["default"]))["default"]
                assert due > began  # (its end to come, not the moment it began)
                await asyncio.sleep(3.0)  # paused for longer than give_up_after
            stopped = time.time()
            mode["refuse"] = False
            async with running(config, store):
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered")
            events = await states(store, ids)
            kept = (await store.kept_spans("target", ["default"]))["default"]
    assert all(event.attempts == 2 for event in events.values())
    assert calls == {f"r{n}@example.com": 2 for n in range(3)}
    # one run of pauses, kept as ending when the first process stopped
    assert [b for b, _ in kept] == [began]
    assert began < kept[0][1] <= stopped


async def test_a_pause_left_under_way_counts_up_to_the_start_that_reads_it(
    tmp_path: Path, fake_lsq: str
) -> None:
    """A pause a killed process left in the store (its end when it was due to end, an hour
    on) counts for the next process only up to its start, when its lane is not paused: what
    failed after that start was no pause of its."""
    config = forms_config(tmp_path, f"{fake_lsq}/ok")
    async with opened_store(tmp_path / "hub.db") as store:
        began = time.time() - 600
        spans = [(began - 60, began - 30), (began, began + 3600)]
        await store.keep_spans("target", "default", spans)
        before = time.time()
        async with running(config, store) as dispatcher:
            after = time.time()
            lane = dispatcher.lanes["default"]
            assert not lane.paused()
            spans = lane.pause_spans(time.time())
    assert spans[0] == (began - 60, began - 30)
    assert spans[1][0] == began
    assert before <= spans[1][1] <= after
    assert len(spans) == 2
