"""Fixtures for the sandbox tests: a sandbox served by uvicorn on loopback, and a client for it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sandbox.helpers import Lsq, serve_sandbox


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., Lsq]]:
    """Start sandboxes on demand (``create_app`` keyword arguments); all stop at test end."""
    with contextlib.ExitStack() as stack:

        def make(**kwargs: Any) -> Lsq:
            return stack.enter_context(serve_sandbox(**kwargs))

        yield make


@pytest.fixture
def lsq(sandbox_factory: Callable[..., Lsq]) -> Lsq:
    """A sandbox with an in-memory database and no rate limit."""
    return sandbox_factory()
