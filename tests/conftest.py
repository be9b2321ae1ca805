"""Fixtures shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts with structlog's defaults, so captured logs never leak between tests."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
