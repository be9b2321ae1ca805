"""The hub's web side: webhook ingest, health, metrics (``create_app``)."""

from __future__ import annotations

from hub.web.app import create_app

__all__ = ["create_app"]
