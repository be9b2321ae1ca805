"""A real small filesystem for tests of a full disk: a tmpfs mounted for the test (root only)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``3m``) mounted at ``where`` (made), unmounted on exit; skips the
    test where mounting is not allowed (not root)."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (it needs root): {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def resize(disk: Path, size: str) -> None:
    """Give the tmpfs at ``disk`` a new ``size``: space again, for a full one."""
    _mount("-o", f"remount,size={size}", str(disk))
