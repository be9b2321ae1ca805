"""The store's errors, where ``hub.exceptions`` says each package keeps them.

They are defined in :mod:`hub.store.base` beside the protocol; import from either.
"""

from __future__ import annotations

from hub.store.base import StoreError, StoreUnavailable

__all__ = ["StoreError", "StoreUnavailable"]
