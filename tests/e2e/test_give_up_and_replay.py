"""A target failing past its retry schedule leaves the event dead, saying after how many tries
over how long and how to send it again; ``leadhub replay`` then does (real processes: a
``leadhub sandbox`` with its 500 fault, ``leadhub serve``, the ``leadhub`` commands)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from hub.cli import main
from hub.store.base import EventStore
from hub.store.models import Event, State
from tests.dispatch.support import KEYS, target_yaml
from tests.e2e.support import on_store, wait_until
from tests.e2e.test_crash import CONFIG, TOKEN
from tests.e2e.test_paused_target import sandbox, sandbox_args
from tests.support.server import free_port, leadhub_process, leadhub_run, serve_args

QUICK = "{initial: 50ms, max_interval: 200ms, give_up_after: 2s}"
SANDBOX_KEYS = {"x-LSQ-AccessKey": KEYS["LSQ_ACCESS"], "x-LSQ-SecretKey": KEYS["LSQ_SECRET"]}


def faults(sandbox_url: str, setting: dict[str, object]) -> None:
    answer = httpx.post(f"{sandbox_url}/_sandbox/faults", json=setting, headers=SANDBOX_KEYS)
    assert answer.status_code == 200, answer.text


def post_lead(base: str, lead: dict[str, str]) -> int:
    """Post ``lead`` to the forms endpoint of the hub at ``base``; the stored event's id."""
    answer = httpx.post(
        f"{base}/hooks/forms", json=lead, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200, answer.text
    event_id: int = answer.json()["id"]
    return event_id


def stored(db: str, event_id: int) -> Event:
    """Event ``event_id`` as the store at ``db`` holds it now."""
    found = on_store(db, lambda store: store.get(event_id))
    assert found is not None
    return found


def test_given_up_event_says_how_to_send_it_again_and_replay_does(tmp_path: Path) -> None:
    with sandbox(tmp_path) as sandbox_url:
        target = target_yaml("default", sandbox_url, timeout="1s", retry=QUICK)
        args, base, sqlite = serve_args(
            tmp_path, {"forms.yaml": CONFIG, "targets.yaml": target}, "--lease", "8s"
        )
        db = f"sqlite:///{sqlite}"
        env = {**KEYS, "FORMS_TOKEN": TOKEN}
        faults(sandbox_url, {"every": 1, "kinds": ["500"]})
        with leadhub_process(args, ready_url=f"{base}/readyz", env=env):
            event_id = post_lead(base, {"email": "late@example.com"})

            def event() -> Event:
                return stored(db, event_id)

            wait_until(lambda: event().state is State.DEAD, timeout=15, what="given up")
            dead = event()
            error = dead.last_error or ""
            assert error.startswith(f"gave up after {dead.attempts} attempt(s) over 2s"), error
            assert "HTTP 500" in error and f"leadhub replay --id {event_id}" in error, error
            listed = leadhub_run(["events", "--id", str(event_id), "--json", "--db", db])
            assert json.loads(listed.stdout)["last_error"] == error

            faults(sandbox_url, {"rate": 0})
            dry = leadhub_run(["replay", "--id", str(event_id), "--dry-run", "--db", db])
            assert (dry.returncode, dry.stdout) == (0, "Would requeue 1 event.\n")
            assert event().state is State.DEAD
            done = leadhub_run(["replay", "--status", "dead", "--since", "1m", "--db", db])
            assert (done.returncode, done.stdout) == (0, "Requeued 1 event.\n"), done.stderr
            wait_until(lambda: event().state is State.DELIVERED, timeout=10, what="delivered")
            assert event().attempts == 1


def test_replay_of_an_event_being_sent_or_waiting_to_retry_says_it_is_still_queued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``leadhub replay --id N`` of an event in flight (the sandbox holds its call) or waiting
    for its next try changes nothing, and says why in those terms (when the next try is; how
    to follow it), not only that such events are not replayed. (The command runs in this
    process: a new interpreter's start, seconds on a loaded machine, would slow each step.)

    The call is held until the test has replayed it in flight: the sandbox holds it for
    good, the hub's timeout (30 s) is only a hang guard, and stopping the sandbox (which lets
    go of its held calls) ends it. Held 2 s (the hub's timeout, as it was), the test had to
    see the event sending, and replay it, within those 2 s; a second sandbox on the same port
    then takes the replayed event."""

    def replay(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["replay", *args, "--db", db])
        out, err = capsys.readouterr()
        return code, out, err

    retry = "{initial: 1h, max_interval: 1h, give_up_after: 72h}"
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    with leadhub_process(sandbox_args(port), ready_url=f"{sandbox_url}/") as holding:
        target = target_yaml("default", sandbox_url, timeout="30s", retry=retry)
        args, base, sqlite = serve_args(
            tmp_path, {"forms.yaml": CONFIG, "targets.yaml": target}, "--lease", "66s"
        )
        db = f"sqlite:///{sqlite}"
        faults(sandbox_url, {"every": 1, "kinds": ["timeout"], "timeout_s": 3600})
        with leadhub_process(args, ready_url=f"{base}/readyz", env={**KEYS, "FORMS_TOKEN": TOKEN}):
            event_id = post_lead(base, {"email": "held@example.com"})

            def event() -> Event:
                return stored(db, event_id)

            wait_until(lambda: event().state is State.SENDING, timeout=30, what="in flight")
            code, out, err = replay("--id", str(event_id))
            assert (code, out) == (0, "Requeued 0 events.\n")
            note = err.strip()
            assert note.startswith(f"leadhub replay: note: event {event_id} is being sent"), note
            assert f"leadhub events --id {event_id}" in note, note
            assert event().state is State.SENDING  # (still held: the note was about that)

            holding.send_signal(signal.SIGTERM)  # lets go of the call: the try fails
            assert holding.wait(timeout=30) == 0
            wait_until(lambda: event().state is State.RETRYING, timeout=30, what="retrying")
            code, out, err = replay("--id", str(event_id))
            assert (code, out) == (0, "Requeued 0 events.\n")
            note = err.strip()
            assert note.startswith(f"leadhub replay: note: event {event_id} is retrying"), note
            assert "still in the queue" in note and "next try" in note, note
            assert note.endswith(f"leadhub replay --status retrying --id {event_id}."), note
            assert event().state is State.RETRYING and event().attempts == 1

            # its next try is an hour away: --status retrying sends it now (to a sandbox
            # without faults, on the port the target names)
            with sandbox(tmp_path, port=port):
                code, out, err = replay("--status", "retrying", "--id", str(event_id))
                assert (code, out) == (0, "Requeued 1 event.\n"), err
                wait_until(lambda: event().state is State.DELIVERED, timeout=30, what="delivered")
            assert event().attempts == 1


#: The crash tests' config, with a phone instead of a first name.
PHONES = CONFIG.replace("FirstName: $.name", "Phone: $.phone")


def test_a_duplicate_email_or_phone_is_dead_saying_what_to_do(tmp_path: Path) -> None:
    """The sandbox refuses a capture that would give one lead another's phone (its rule 9,
    MXDuplicateEntryException in a 500): the event is dead at once, its reason LeadSquared's
    message, what to do about it, and the replay that sends it again."""
    with sandbox(tmp_path) as sandbox_url:
        target = target_yaml("default", sandbox_url, timeout="2s")
        args, base, sqlite = serve_args(tmp_path, {"forms.yaml": PHONES, "targets.yaml": target})
        db = f"sqlite:///{sqlite}"
        with leadhub_process(args, ready_url=f"{base}/readyz", env={**KEYS, "FORMS_TOKEN": TOKEN}):
            ids = [
                post_lead(base, lead)
                for lead in (
                    {"email": "asha@example.com", "phone": "9876500001"},
                    {"email": "ravi@example.com", "phone": "9876500002"},
                    {"email": "asha@example.com", "phone": "9876500002"},  # Ravi's phone
                )
            ]

            def states() -> list[State]:
                async def get_all(store: EventStore) -> list[State]:
                    found = [await store.get(i) for i in ids]
                    return [e.state if e else State.QUEUED for e in found]

                return on_store(db, get_all)

            wait_until(lambda: not any(s.pending for s in states()), timeout=15, what="done")
            assert states() == [State.DELIVERED, State.DELIVERED, State.DEAD]
            dead = on_store(db, lambda store: store.get(ids[2]))
            assert dead is not None and dead.attempts == 1
            assert dead.last_error == (
                "MXDuplicateEntryException: A Lead with same Phone Number already exists; "
                "another lead already holds this email or phone (LeadSquared keeps each unique): "
                "merge the two leads there, or match by the colliding field (the mapping's "
                "search_by), or leave it out of the mapping's fields; once that is fixed, send "
                f"it again: leadhub replay --id {ids[2]}"
            )
