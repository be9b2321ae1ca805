"""A small client for the sandbox, speaking its HTTP API the way the hub does."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from hub.sandbox import create_app
from tests.support.server import serve_in_thread

KEY = "test-access-key"
SECRET = "test-secret-key"
AUTH = {"accessKey": KEY, "secretKey": SECRET}
CAPTURE = "/v2/LeadManagement.svc/Lead.Capture"


def body(*pairs: tuple[str, Any]) -> list[dict[str, Any]]:
    """A Lead.Capture body from ``(attribute, value)`` pairs."""
    return [{"Attribute": name, "Value": value} for name, value in pairs]


class Lsq:
    """The sandbox at ``base``: capture, read back, and drive the control API."""

    def __init__(self, base: str, client: httpx.Client, app: Any) -> None:
        self.base = base
        self.http = client
        self.app = app

    @property
    def sandbox(self) -> Any:
        """The :class:`hub.sandbox.Sandbox` behind the app."""
        return self.app.state.sandbox

    def capture(
        self, *pairs: tuple[str, Any], behavior: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST Lead.Capture with these attributes (and ``LeadUpdateBehavior``)."""
        params = {**AUTH, "LeadUpdateBehavior": behavior} if behavior else AUTH
        return self.http.post(CAPTURE, json=body(*pairs), params=params, **kwargs)

    def ok(self, *pairs: tuple[str, Any], behavior: str | None = None) -> dict[str, Any]:
        """Capture and return ``Message``; fails the test unless the answer is 200 Success."""
        response = self.capture(*pairs, behavior=behavior)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["Status"] == "Success"
        message: dict[str, Any] = data["Message"]
        return message

    def lead(self, lead_id: str) -> dict[str, Any] | None:
        """The lead with this id (Leads.GetById), or ``None``."""
        response = self.http.get("/v2/LeadManagement.svc/Leads.GetById", params={"id": lead_id})
        assert response.status_code == 200, response.text
        found = response.json()
        return found[0] if found else None

    def leads(self) -> list[dict[str, Any]]:
        """Every lead (control API)."""
        response = self.http.get("/_sandbox/leads")
        assert response.status_code == 200, response.text
        leads: list[dict[str, Any]] = response.json()
        return leads

    def activities(self, lead_id: str) -> list[dict[str, Any]]:
        """The Lead Capture activities of a lead (control API)."""
        response = self.http.get(f"/_sandbox/leads/{lead_id}/activities")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found

    def faults(self, **config: Any) -> dict[str, Any]:
        """Configure injected faults."""
        response = self.http.post("/_sandbox/faults", json=config)
        assert response.status_code == 200, response.text
        echoed: dict[str, Any] = response.json()
        return echoed


def assert_error(response: httpx.Response, status: int, exception_type: str) -> str:
    """Check an MX error envelope; returns its message."""
    assert response.status_code == status, response.text
    data = response.json()
    assert data["Status"] == "Error"
    assert data["ExceptionType"] == exception_type
    message: str = data["ExceptionMessage"]
    assert message
    return message


@contextlib.contextmanager
def serve_sandbox(*, http: str = "auto", **kwargs: Any) -> Iterator[Lsq]:
    """Serve ``create_app(**kwargs)`` (rate limit off unless given) and yield a client for it."""
    kwargs.setdefault("rate_limit", None)
    app = create_app(access_key=KEY, secret_key=SECRET, **kwargs)
    try:
        with (
            serve_in_thread(app, http=http) as base,
            httpx.Client(base_url=base, params=AUTH, timeout=10.0) as client,
        ):
            yield Lsq(base, client, app)
    finally:
        app.state.sandbox.close()


class Stopped(NamedTuple):
    """What :func:`sigterm_while_a_call_is_held` saw."""

    code: int
    #: Seconds from SIGTERM to the process's exit.
    seconds: float
    #: What the held call raised (a connection closed unanswered), if anything.
    raised: list[BaseException]


def sigterm_while_a_call_is_held(
    proc: subprocess.Popen[str], sandbox: str, params: dict[str, str], hold: float = 120
) -> Stopped:
    """Make the sandbox at ``sandbox`` (``proc``'s, started by ``leadhub_process``) hold every
    call for ``hold`` seconds (a ``timeout`` fault), send it one Lead.Capture from a thread,
    and once ``proc`` logs that it holds it, SIGTERM ``proc``: how it stopped."""
    raised: list[BaseException] = []

    def held_call() -> None:
        with httpx.Client(base_url=sandbox, params=params, timeout=hold + 30) as client:
            try:
                client.post(CAPTURE, json=body(("EmailAddress", "held@example.com")))
            except httpx.HTTPError as exc:
                raised.append(exc)

    faults = {"rate": 1.0, "kinds": ["timeout"], "timeout_s": hold}
    answer = httpx.post(f"{sandbox}/_sandbox/faults", params=params, json=faults, timeout=60)
    assert answer.status_code == 200, answer.text
    caller = threading.Thread(target=held_call)
    caller.start()
    assert proc.stdout is not None
    log = Path(proc.stdout.name)
    # A hang guard, not a measure: the call is made from a thread, to another process, on a
    # machine that may be loaded (10 s was short of what a start or stop there can take).
    deadline = time.monotonic() + 60
    while "sandbox_fault_injected" not in log.read_text():
        assert time.monotonic() < deadline, "the call was never held"
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=hold / 2)
    seconds = time.monotonic() - started
    caller.join(timeout=10)
    return Stopped(code, seconds, raised)


def sandbox_args(port: int, access: str, secret: str, *extra: str) -> list[str]:
    """``leadhub sandbox``'s arguments: on ``port``, with these keys, then ``extra``."""
    return ["sandbox", "--port", str(port), "--access-key", access, "--secret-key", secret, *extra]
