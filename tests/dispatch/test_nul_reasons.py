"""A reason quoting a NUL character (LeadSquared's ExceptionMessage echoing a sender's value,
an answer's body) is written to PostgreSQL, whose text refuses NUL, as ``\\x00``: refused, the
outcome was never written, and the event went back untried, its call made again each second."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.store import open_store
from hub.store.models import State
from tests.dispatch.support import (
    CAPTURE,
    all_in,
    enqueue,
    forms_config,
    retried,
    running,
    states,
    wait_for,
)
from tests.support.server import serve_in_thread


@contextlib.contextmanager
def answering_with_nul() -> Iterator[tuple[str, list[str]]]:
    """A LeadSquared whose answers quote a NUL: an MX error for ``dead@``, a 503 body for
    ``busy@``. Yields its URL and the emails of the calls it got, in order."""
    calls: list[str] = []

    async def capture(request: Request) -> Response:
        email = {a["Attribute"]: a["Value"] for a in await request.json()}["EmailAddress"]
        calls.append(email)
        if email.startswith("dead@"):
            return JSONResponse(
                {
                    "Status": "Error",
                    "ExceptionType": "MXInvalidInputException",
                    "ExceptionMessage": "Invalid value 'a\x00b' for mx_Seq",
                },
                status_code=400,
            )
        return Response(b"busy\x00for now", status_code=503)

    app = Starlette(routes=[Route(CAPTURE, capture, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield url, calls


async def test_a_reason_quoting_a_nul_is_written_on_postgresql(
    tmp_path: Path, postgres_schema: tuple[str, str]
) -> None:
    """The MX error makes its event dead after its one call, the 503 its event retrying, each
    reason with the NUL written as ``\\x00``; the dead event's lead was not sent again."""
    dsn, schema = postgres_schema
    store = open_store(f"{dsn}?schema={schema}")
    await store.open()
    try:
        with answering_with_nul() as (url, calls):
            config = forms_config(tmp_path, url)
            dead, busy = await enqueue(
                store, "forms", [{"email": "dead@example.com"}, {"email": "busy@example.com"}]
            )
            async with running(config, store):
                await wait_for(all_in(State.DEAD, store, [dead]), what="dead", timeout=30)
                await wait_for(retried(store, busy), what="retrying", timeout=30)
            found = await states(store, [dead, busy])
    finally:
        await store.close()
    error = found[dead].last_error or ""
    assert error.startswith(
        "MXInvalidInputException: Invalid value 'a\\x00b' for mx_Seq; once that is fixed"
    ), error
    assert found[busy].last_error == "HTTP 503: busy\\x00for now", found[busy].last_error
    assert calls.count("dead@example.com") == 1, calls
