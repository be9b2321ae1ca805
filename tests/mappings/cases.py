"""The golden cases and the demo environment the shipped examples need."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings"
CASES_DIR = Path(__file__).resolve().parent

_DEMO_LINE = re.compile(r"^run: export (\w+)\s*\?=\s*(\S+)\s*$", re.MULTILINE)


def demo_env() -> dict[str, str]:
    """Every variable the shipped examples use, with the fixtures' test secrets.

    Read from the Makefile's ``run: export NAME ?= value`` lines, the one place they are
    written, so ``make run``, the tests and the benches cannot drift apart.
    """
    env = dict(_DEMO_LINE.findall((ROOT / "Makefile").read_text()))
    if not env:
        msg = "no 'run: export NAME ?= value' lines in the Makefile"
        raise RuntimeError(msg)
    return env


DEMO_ENV = demo_env()


def case_dirs() -> list[Path]:
    """Every case directory (one holding an ``endpoint`` file)."""
    return sorted(p.parent for p in CASES_DIR.glob("*/endpoint"))
