"""Helpers shared by the test suite: real servers on loopback, real subprocesses."""

from __future__ import annotations

import os

#: Whether the suite runs as CI runs it (``CI`` set): property tests are then derandomized
#: (tests/conftest.py), the same examples at every run.
IN_CI = bool(os.environ.get("CI"))


def examples(local: int, ci: int) -> int:
    """How many examples a costly property test runs: ``ci`` under CI, where they are the same
    examples at every run and the whole suite has ten minutes on two cores; ``local``
    elsewhere, where each run draws fresh ones."""
    return ci if IN_CI else local
