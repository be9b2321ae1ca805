"""Mappings: compiled at load, applied as pure functions at dispatch.

Public API: :func:`map_document`, :func:`apply`, :class:`CompiledMapping`, and the
outcomes :class:`CaptureRequest`, :class:`Skip`, :class:`Unmatched`,
:class:`MappingError`. JSONPaths: :func:`hub.mapping.paths.compile_path`.
"""

from __future__ import annotations

from hub.mapping.engine import apply, map_document
from hub.mapping.model import (
    CaptureRequest,
    CompiledMapping,
    Condition,
    FieldSpec,
    MappingError,
    Result,
    Skip,
    Unmatched,
)
from hub.mapping.paths import PathError, compile_path

__all__ = [
    "CaptureRequest",
    "CompiledMapping",
    "Condition",
    "FieldSpec",
    "MappingError",
    "PathError",
    "Result",
    "Skip",
    "Unmatched",
    "apply",
    "compile_path",
    "map_document",
]
