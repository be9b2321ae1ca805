"""How JSON values become the strings Lead.Capture is sent.

Every value sent is a string: strings as they are, integers as their decimal
digits, floats without a trailing ``.0`` when integral (``180.0`` -> ``180``,
``21000000002.0`` -> ``21000000002``) and in Python's shortest form otherwise
(``0.1``), booleans as ``true`` / ``false``. Objects and arrays are written as
compact JSON (only the ``string`` transform ever sends one). ``None`` and strings
that are empty or only whitespace are "blank": they count as absent.
"""

from __future__ import annotations

import json
import math
from typing import Any


def is_blank(value: Any) -> bool:
    """Whether ``value`` counts as absent: ``None``, or a string of only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())


def to_text(value: Any) -> str:
    """The string form of a JSON value (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def present(values: list[Any]) -> list[Any]:
    """``values`` with arrays opened up (recursively) and blanks left out, in order.

    The same as ``[v for v in flatten(values) if not is_blank(v)]``, in one pass.
    """
    out: list[Any] = []
    for value in values:
        if isinstance(value, str):
            if value.strip():
                out.append(value)
        elif isinstance(value, list | tuple):
            out.extend(present(list(value)))
        elif value is not None:
            out.append(value)
    return out


def flatten(values: list[Any]) -> list[Any]:
    """``values`` with arrays opened up (recursively), in order."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, list | tuple):
            out.extend(flatten(list(value)))
        else:
            out.append(value)
    return out
