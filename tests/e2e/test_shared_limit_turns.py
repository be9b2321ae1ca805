"""Worker processes sharing an account's rate limit take turns (real processes).

Three ``serve --role worker`` on one database, each serving an endpoint of its own (so each
sends its own leads), drain into a standalone sandbox limited as their target is (8/2s).
What the sandbox saw is read back from it: its leads, in the order they were created (the
order the calls came in), and its ``sandbox_lead_captured`` log lines, whose times are
checked against the limit (see :func:`_most_in_a_window`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.config import load
from hub.dispatch.ratelimit import account_of
from hub.store import EventStore
from hub.store.base import ENDPOINT_ABSENT
from hub.store.models import State
from tests.dispatch.support import KEYS, flat_endpoint_yaml, target_yaml
from tests.e2e.support import lead_delivery, on_store, stored_events, wait_until
from tests.pg_server import sql
from tests.support.server import free_port, leadhub_process, serve_args

LIMIT, CALLS, WINDOW = "8/2s", 8, 2.0
EACH = 16  # leads per worker
NAMES = ("forms-a", "forms-b", "forms-c")
HEADERS = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}


def _sandbox_args(port: int) -> list[str]:
    args = ["sandbox", "--port", str(port), "--rate-limit", LIMIT]
    return [*args, "--access-key", KEYS["LSQ_ACCESS"], "--secret-key", KEYS["LSQ_SECRET"]]


def _worker(tmp_path: Path, name: str, sandbox: str, db: str, lease: str) -> tuple[list[str], str]:
    """``serve --role worker --lease LEASE`` arguments for a worker serving endpoint ``name``
    alone (its configuration in ``tmp_path/name``; again for the same name, the same
    directory and a new port), and its base URL. Its calls last 6 s at most (timeout 3 s,
    as in test_shared_limit), so each holds its slot 7 s at most if it never ends."""
    target = target_yaml("default", sandbox, rate_limit=LIMIT, timeout="3s")
    (tmp_path / name).mkdir(exist_ok=True)
    files = {"forms.yaml": flat_endpoint_yaml(name, "default"), "targets.yaml": target}
    args, url, _ = serve_args(tmp_path / name, files, "--role", "worker", "--lease", lease, db=db)
    return args, url


def _queue_together(db: str) -> None:
    """Store :data:`EACH` one-lead deliveries of every endpoint in :data:`NAMES`, the
    endpoints taking turns (as :func:`tests.e2e.support.queue_leads` stores one endpoint's),
    so that every worker finds its events due at about the same moment."""

    async def queue(store: EventStore) -> None:
        for n in range(EACH):
            for name in NAMES:
                await store.enqueue(lead_delivery(name, n, prefix=name))

    on_store(db, queue)


def _expected() -> list[str]:
    return sorted(f"{name}{n}@example.com" for name in NAMES for n in range(EACH))


def _endpoint(lead: dict[str, Any]) -> str:
    """The endpoint a sandbox lead was sent from (its email is ``{endpoint}{n}@...``)."""
    return str(lead["EmailAddress"]).split("@")[0].rstrip("0123456789")


def _leads(sandbox: str) -> list[dict[str, Any]]:
    """The sandbox's leads in the order they were created: the order their calls came in."""
    response = httpx.get(f"{sandbox}/_sandbox/leads", headers=HEADERS, timeout=10)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def _captures(log: Path) -> list[tuple[float, str]]:
    """Every call the sandbox answered with a lead, as ``(unix time, lead id)``: the time of
    its ``sandbox_lead_captured`` line, which the sandbox stamps after the call came in and
    before it answers."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"sandbox_lead_captured"' in line:
            record = orjson.loads(line)
            at = datetime.datetime.fromisoformat(record["timestamp"]).timestamp()
            found.append((at, str(record["lead_id"])))
    return found


def _wait_for_captures(log: Path, leads: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """The sandbox's captures once its log shows every one of ``leads`` (it writes its lines
    a moment after it answers)."""
    ids = {lead["ProspectID"] for lead in leads}
    wait_until(
        lambda: ids <= {lead_id for _, lead_id in _captures(log)},
        timeout=30,
        what="the sandbox's log of every lead",
    )
    return _captures(log)


def _most_in_a_window(times: list[float]) -> int:
    """The most of ``times`` inside any half-open window of :data:`WINDOW` seconds.

    A call's slot counts from before the call is sent until a window after its answer came
    back, and the sandbox stamps its line in between: so if the workers kept the limit, any
    CALLS + 1 stamps span more than a window. (A millisecond of slack for the stamps'
    microseconds.)
    """
    times = sorted(times)
    return max(
        sum(1 for t in times[i:] if t < start + WINDOW - 1e-3) for i, start in enumerate(times)
    )


def _outcomes(base: str) -> dict[str, float]:
    """A worker's Lead.Capture calls by outcome (``leadhub_sends_total``): a 429 is retried,
    and counts as ``retry``."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.findall(r'^leadhub_sends_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$', text, re.M)
    return {outcome: float(n) for outcome, n in found}


def _waiters(db: str) -> list[str]:
    """The store's queue of processes waiting for rate-limit slots (``rate_waiters``)."""
    query = "SELECT waiter FROM rate_waiters"
    if db.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn:
            return [str(row[0]) for row in conn.execute(query)]
    dsn, schema = db.split("?schema=")
    return [str(row[0]) for row in asyncio.run(sql(dsn, query, schema=schema))]


def _fill_the_window(db: str, config: Path, hold: float) -> None:
    """Take every slot of the workers' account for ``hold`` seconds (as calls in flight of
    another process would): room then comes, all at once, ``hold`` + a window from now."""
    target = load(config, KEYS).targets["default"]

    async def take(store: EventStore) -> int:
        answer = await store.take_slots(
            account_of(target), calls=CALLS, window=WINDOW, hold=hold, want=CALLS
        )
        return len(answer.slots)

    assert on_store(db, take) == CALLS


def _hold_the_window(db: str, config: Path) -> list[int]:
    """Take every slot of the workers' account, as calls in flight of another process would,
    until :func:`_end_slots` ends them (their hold, far longer than the test, is a bound
    only): the workers send nothing meanwhile. The slots' ids."""
    target = load(config, KEYS).targets["default"]

    async def take(store: EventStore) -> list[int]:
        answer = await store.take_slots(
            account_of(target), calls=CALLS, window=WINDOW, hold=200.0, want=CALLS
        )
        return list(answer.slots)

    slots = on_store(db, take)
    assert len(slots) == CALLS
    return slots


def _end_slots(db: str, slots: list[int]) -> None:
    """The calls of :func:`_hold_the_window` end now: their room comes a window later."""

    async def end(store: EventStore) -> None:
        for slot in slots:
            await store.end_slots("acct", [(slot, store.clock.time())])

    on_store(db, end)


def _left(db: str, endpoints: set[str]) -> bool:
    """Whether every event of ``endpoints`` waits in the queue, left by an instance without
    its endpoint (:data:`ENDPOINT_ABSENT`): claims of instances without it pass it by."""
    events = [e for e in stored_events(db) if e.endpoint in endpoints]
    return len(events) == len(endpoints) * EACH and all(
        e.state is not State.SENDING and (e.last_error or "").startswith(ENDPOINT_ABSENT)
        for e in events
    )


def _none_of_theirs_claimable(db: str, victim: str) -> bool:
    """Whether no event of an endpoint other than ``victim`` is claimed without the mark of
    an instance that left it (:data:`ENDPOINT_ABSENT`): the worker of ``victim`` alone, its
    claims passing marked events by, then holds none of them (it cannot have claimed a
    marked one, and an event it holds keeps its last error until it gives it back)."""
    return all(
        (e.last_error or "").startswith(ENDPOINT_ABSENT)
        for e in stored_events(db)
        if e.endpoint != victim and e.state is State.SENDING
    )


@pytest.mark.slow
def test_three_workers_take_turns_within_the_account_s_limit(
    tmp_path: Path, hub_db_url: str
) -> None:
    """Three workers at 8/2s, 16 leads each, their account's window full when they start.

    Safety: every event is delivered with one attempt and no worker retried a call (the
    sandbox, limited to 8/2s too, refused none with a 429), and the sandbox's stamps of the
    calls never put more than 8 in a window.

    Turns: the window's 8 slots free at one moment, while all three workers wait (the test
    took them first, for 3 s, as another process's calls would). The first to ask deals them
    out one at a time to every waiting process, itself included: the first window's calls
    come from more than one worker. (Without turns, the first to ask took all 8.) And every
    worker has leads among the first half: each later window is dealt out the same way.

    Neither can fail on a slow or loaded machine: the workers have queued by then (their
    events were due 5 s earlier); the share set aside for a worker waits for it until a
    second past the moment it is due to ask again, so both others would have to be that
    late; and the first 8 leads the sandbox creates are that window's calls, however late
    each starts, since no slot frees before a window has passed. With a lease longer than
    the drain (40 s), no event waits so long that it goes back to the store, which would
    leave its worker out of the queue for a while.
    """
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    db = hub_db_url
    workers = [_worker(tmp_path, name, sandbox, db, "40s") for name in NAMES]
    with contextlib.ExitStack() as stack:
        sandbox_proc = stack.enter_context(
            leadhub_process(_sandbox_args(sandbox_port), ready_url=f"{sandbox}/")
        )
        for args, url in workers:
            stack.enter_context(leadhub_process(args, ready_url=f"{url}/healthz", env=KEYS))
        _fill_the_window(db, tmp_path / NAMES[0] / "cfg", hold=3.0)
        _queue_together(db)
        wait_until(
            lambda: all(e.state is State.DELIVERED for e in stored_events(db)),
            timeout=120,
            what="every event delivered",
        )
        outcomes = [_outcomes(url) for _, url in workers]
        leads = _leads(sandbox)
        assert sandbox_proc.stdout is not None
        captures = _wait_for_captures(Path(sandbox_proc.stdout.name), leads)
    events = stored_events(db)
    assert len(events) == 3 * EACH
    assert [e.attempts for e in events] == [1] * 3 * EACH, [e.last_error for e in events]
    assert outcomes == [{"delivered": EACH}] * 3
    assert sorted(lead["EmailAddress"] for lead in leads) == _expected()
    assert len(captures) == 3 * EACH
    assert _most_in_a_window([at for at, _ in captures]) <= CALLS
    order = [_endpoint(lead) for lead in leads]
    assert len(set(order[:CALLS])) > 1, order
    assert set(order[: len(order) // 2]) == set(NAMES), order


@pytest.mark.slow
def test_a_worker_killed_while_waiting_does_not_hold_up_the_others(
    tmp_path: Path, hub_db_url: str
) -> None:
    """Three workers at 8/2s, 16 leads each; one is killed (SIGKILL) while all three wait for
    the limit (all three in the store's queue of waiters), once it has sent a lead and while
    the others have more than a window of leads left to send.

    The other two deliver every event of theirs while it is dead: the slots dealt to the
    dead worker, set aside for an ask that never comes, do not hold them up for good. Started
    again, it delivers its events once their leases (14 s) run out. No worker retried a call
    (a 429 is retried), and the sandbox's stamps of the calls never put more than 8 in a
    window, the killed worker's last calls included.

    At the end the store's queue of waiters is empty: the dead worker lost its place. It was
    due to ask again a window after its last ask at most, and lost its place a second later,
    at the next ask of another worker: the worker started again asks for its events once
    their leases run out, more than 10 s after the kill (an event a worker holds has at least
    its longest call and a margin of its lease left). (How long the others waited is not
    asserted: slots set aside also stop counting by themselves after their calls' ``hold``,
    7 s, so only the queue tells that a dead waiter kept its place.)

    The killed worker holds none of the others' events: a worker claims events of endpoints
    it lacks, to put them back (another instance may have them), and one killed before it
    did kept them for a lease, each with an attempt counted (README: attempts count claims;
    a run under load failed so, 1 in 15). So it starts alone and puts back every event of
    the others' first (its later claims pass them by), while the test holds the account's
    window so that nobody sends until all three wait; and it is stopped (SIGSTOP) before it
    is killed, the kill waiting for a moment when none of the others' events lost that mark
    while claimed (an ordering wait rewrites it).
    """
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    db = hub_db_url
    workers = [_worker(tmp_path, name, sandbox, db, "14s") for name in NAMES]
    survivors, victim = [url for _, url in workers[:2]], NAMES[2]
    with contextlib.ExitStack() as stack:
        sandbox_proc = stack.enter_context(
            leadhub_process(_sandbox_args(sandbox_port), ready_url=f"{sandbox}/")
        )
        args, url = workers[2]
        victim_proc = stack.enter_context(
            leadhub_process(args, ready_url=f"{url}/healthz", env=KEYS)
        )
        held = _hold_the_window(db, tmp_path / victim / "cfg")
        _queue_together(db)
        wait_until(
            lambda: _left(db, set(NAMES) - {victim}),
            timeout=60,
            what="the others' events put back by the last worker",
        )
        for args, url in workers[:2]:
            stack.enter_context(leadhub_process(args, ready_url=f"{url}/healthz", env=KEYS))
        wait_until(lambda: len(_waiters(db)) == 3, timeout=60, what="all three waiting")
        _end_slots(db, held)

        def all_waiting() -> bool:
            sent = [_endpoint(lead) for lead in _leads(sandbox)]
            left = 2 * EACH - (len(sent) - sent.count(victim))  # the survivors' leads to send
            return victim in sent and left > CALLS and len(_waiters(db)) == 3

        def killed_holding_none_of_theirs() -> bool:
            if not all_waiting():
                return False
            victim_proc.send_signal(signal.SIGSTOP)
            if all_waiting() and _none_of_theirs_claimable(db, victim):
                victim_proc.send_signal(signal.SIGKILL)
                return True
            victim_proc.send_signal(signal.SIGCONT)
            return False

        wait_until(
            killed_holding_none_of_theirs,
            timeout=60,
            what="all three waiting, the last one's lead sent, none of the others' events held",
        )
        victim_proc.wait(timeout=10)
        wait_until(
            lambda: all(
                e.state is State.DELIVERED for e in stored_events(db) if e.endpoint != victim
            ),
            timeout=60,
            what="the survivors' events delivered",
        )
        survivors_outcomes = [_outcomes(url) for url in survivors]
        args, url = _worker(tmp_path, victim, sandbox, db, "14s")
        stack.enter_context(leadhub_process(args, ready_url=f"{url}/healthz", env=KEYS))
        wait_until(
            lambda: all(e.state is State.DELIVERED for e in stored_events(db)),
            timeout=90,
            what="every event delivered",
        )
        restarted = _outcomes(url)
        leads = _leads(sandbox)
        assert sandbox_proc.stdout is not None
        captures = _wait_for_captures(Path(sandbox_proc.stdout.name), leads)
    events = stored_events(db)
    assert len(events) == 3 * EACH
    theirs = [e.attempts for e in events if e.endpoint != victim]
    assert theirs == [1] * 2 * EACH, [e.last_error for e in events]
    # a claim by the killed worker, then one by the worker started again
    assert all(e.attempts <= 2 for e in events if e.endpoint == victim), events
    assert survivors_outcomes == [{"delivered": EACH}] * 2
    assert set(restarted) == {"delivered"}
    assert sorted(lead["EmailAddress"] for lead in leads) == _expected()
    assert _most_in_a_window([at for at, _ in captures]) <= CALLS
    assert _waiters(db) == []
