"""Log lines a hub serving in another thread writes after its answer."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

#: How long :func:`logged` waits for the lines: a hang guard, never a measure.
HANG_GUARD = 30.0


def logged(
    logs: list[MutableMapping[str, Any]], event: str, count: int = 1
) -> list[MutableMapping[str, Any]]:
    """The ``event`` lines in ``logs`` (a ``structlog.testing.capture_logs`` list, while it
    captures) once there are ``count`` of them.

    The hub writes a request's ``delivery_received`` line after its answer (both protocols:
    answer, then count and log), from the thread serving it. The test's client holds the
    answer as soon as it is written, and on a loaded machine the server thread may not have
    run the line's call yet: read at once, or after leaving ``capture_logs``, the line was
    missing ("not enough values to unpack (expected 1, got 0)"). Called inside the
    ``capture_logs`` block, after the requests, it waits for them (at most
    :data:`HANG_GUARD` s, then returns what there is, for the test's own assertion to say).
    """
    deadline = time.monotonic() + HANG_GUARD
    while True:
        found = [line for line in logs if line["event"] == event]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.005)
