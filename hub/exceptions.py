"""The root of every error Lead Hub raises on purpose.

Each package keeps its own errors next to its code (``hub.config.errors``,
``hub.store.errors``, ...) and derives them from :class:`HubError`. A class's
docstring is its default message.
"""

from __future__ import annotations


class HubError(Exception):
    """Lead Hub failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
