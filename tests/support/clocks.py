"""Clocks for tests of machines whose clocks disagree."""

from __future__ import annotations

import time

from hub.clock import SystemClock


class Ahead(SystemClock):
    """The real clock of a machine whose wall clock runs ``seconds`` ahead (a real clock:
    a PostgreSQL store sets it to the server's, as it would the machine's own)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def time(self) -> float:
        return time.time() + self.seconds
