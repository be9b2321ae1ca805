"""The configuration directory: targets, endpoints and mappings, loaded and validated.

Public API: :func:`load` (``load(directory, environ) -> Config``) and
:class:`ConfigError` (``.issues``: every problem as ``file:line: message``).
"""

from __future__ import annotations

from hub.config.issues import ConfigError
from hub.config.loader import load
from hub.config.models import Config

__all__ = ["Config", "ConfigError", "load"]
