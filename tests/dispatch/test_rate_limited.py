"""A rate-limited answer (429, or the MX rate-limit exception on any status) is retried past the
retry schedule's ``give_up_after``: the account was busy, nothing is wrong with the lead, so
the event is never dead for it. Other transient failures still give up (test_worker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.store.base import EventStore
from hub.store.models import State
from tests.dispatch.support import (
    CAPTURE,
    all_in,
    enqueue,
    forms_config,
    leads,
    opened_store,
    running,
    sandbox_post,
    sandbox_server,
    states,
    wait_for,
)
from tests.support.server import serve_in_thread

#: A schedule that gives up a second after receipt.
GIVE_UP = 1.0
QUICK = "{initial: 20ms, max_interval: 100ms, give_up_after: 1s}"
BUSY = {
    "Status": "Error",
    "ExceptionType": "MXAPIRateLimitExceededException",
    "ExceptionMessage": "API calls exceeded the limit of 25 in 5 second(s)",
}


async def _busy_in_200(request: Request) -> Response:
    await request.body()
    return JSONResponse(BUSY)  # LeadSquared has been seen to say it in a 200


async def _bare_429(request: Request) -> Response:
    await request.body()
    return Response(b"Too Many Requests", status_code=429)


#: When each call to ``/counted429`` arrived (the server's clock: the machine's).
ARRIVALS: list[float] = []


async def _counted_429(request: Request) -> Response:
    ARRIVALS.append(time.time())
    return await _bare_429(request)


@pytest.fixture(scope="module")
def busy_lsq() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/mx200" + CAPTURE, _busy_in_200, methods=["POST"]),
            Route("/bare429" + CAPTURE, _bare_429, methods=["POST"]),
            Route("/counted429" + CAPTURE, _counted_429, methods=["POST"]),
        ]
    )
    with serve_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("path", ["mx200", "bare429"])
async def test_rate_limited_answers_are_retried_past_give_up_after(
    tmp_path: Path, busy_lsq: str, path: str
) -> None:
    """Two seconds of rate-limited answers against a one-second give_up_after: the events
    are retrying (not dead), many attempts made, the last error naming the rate limit."""
    config = forms_config(tmp_path, f"{busy_lsq}/{path}", retry=QUICK)
    async with opened_store(tmp_path / "hub.db") as store:
        ids = await enqueue(store, "forms", leads("busy", 3))
        async with running(config, store):
            await wait_for(
                lambda: _all_tried(store, ids, 8), timeout=20, what="many rate-limited tries"
            )
        events = (await states(store, ids)).values()
    assert not [e for e in events if e.state is State.DEAD], [e.last_error for e in events]
    assert all("rate limited" in (e.last_error or "") for e in events)
    assert all("rate_limit" in (e.last_error or "") for e in events)  # what to do about it


async def _all_tried(store: EventStore, ids: list[int], attempts: int) -> bool:
    """Every event tried ``attempts`` times, the last time past give_up_after (or one dead:
    the assertions after the wait say what went wrong)."""
    events = (await states(store, ids)).values()
    if any(e.state is State.DEAD for e in events):
        return True
    late = time.time() > max(e.received_at for e in events) + 2 * GIVE_UP
    return late and all(e.attempts >= attempts for e in events)


async def test_the_sandbox_s_429_never_kills_and_the_lead_goes_once_it_has_room(
    tmp_path: Path,
) -> None:
    """Against the real sandbox answering 429 to every call for longer than give_up_after,
    then no more: the lead is retried throughout and delivered."""
    with sandbox_server() as (url, _):
        sandbox_post(url, "/_sandbox/faults", {"every": 1, "kinds": ["429"]})
        config = forms_config(tmp_path, url, retry=QUICK)
        async with opened_store(tmp_path / "hub.db") as store:
            ids = await enqueue(store, "forms", leads("room", 2))
            async with running(config, store):
                await wait_for(lambda: _all_tried(store, ids, 8), timeout=20, what="429s")
                assert not [e for e in (await states(store, ids)).values() if e.state is State.DEAD]
                sandbox_post(url, "/_sandbox/faults", {"rate": 0})
                await wait_for(all_in(State.DELIVERED, store, ids), what="delivered with room")


async def test_a_rate_limited_answer_stops_the_target_for_a_whole_window(
    tmp_path: Path, busy_lsq: str
) -> None:
    """LeadSquared stops taking calls for a while once its limit is passed (another caller
    shares the account, or the plan allows fewer calls than ``rate_limit``): after a refusal
    the target sends nothing for a whole window, where it used to go on at its own limit
    (here 10 a second, each event retried every 20-100 ms). Three events, each refused every
    time: never more than the three of one burst in any second of the server's arrivals."""
    ARRIVALS.clear()
    config = forms_config(tmp_path, f"{busy_lsq}/counted429", retry=QUICK, rate_limit="10/1s")
    async with opened_store(tmp_path / "hub.db") as store:
        await enqueue(store, "forms", leads("window", 3))
        async with running(config, store):
            await wait_for(lambda: len(ARRIVALS) >= 9, timeout=30, what="three bursts of calls")
    times = sorted(ARRIVALS)
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 3, times
