"""How JSON values become the strings Lead.Capture is sent.

Every value sent is a string: strings as they are, integers as their decimal
digits, floats without a trailing ``.0`` when integral (``180.0`` -> ``180``,
``21000000002.0`` -> ``21000000002``) and otherwise as their shortest round-trip
digits in plain decimal notation, never with an exponent (``0.1``, ``0.00001``,
``1e21`` -> ``1000000000000000000000``), booleans as ``true`` / ``false``. Objects
and arrays are written as compact JSON (only the ``string`` transform ever sends
one). ``None`` and strings that are empty or only whitespace are "blank": they
count as absent.

Nothing here recurses on the document: arrays are opened with an explicit stack, and
a value nested deeper than :data:`MAX_DEPTH` is refused with :class:`DocumentError`
before it is written as JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hub.exceptions import HubError

#: Deepest nesting of arrays and objects a value may have to be written as text. Far
#: beyond what ingest accepts (``hub.sources.bodies.MAX_DEPTH``), well within what the
#: JSON encoder's recursion allows.
MAX_DEPTH = 400


class DocumentError(HubError):
    """The document cannot be evaluated (a value nested too deeply, say)."""


#: Characters that show nothing yet are no whitespace to ``str.strip``: zero-width space,
#: non-joiner and joiner, word joiner, and the byte-order mark (U+FEFF, a zero-width no-break
#: space inside text) that a value pasted into a form may carry.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_SHOWS_NOTHING = re.compile(f"[\\s{INVISIBLE}]*")


#: The types of a JSON array as documents hold them (``isinstance(x, ARRAYS)``: a tuple of
#: types is tested faster than ``list | tuple``, made again at each call).
ARRAYS = (list, tuple)


def is_blank(value: Any) -> bool:
    """Whether ``value`` counts as absent: ``None``, or a string that shows nothing (empty,
    whitespace, or whitespace and :data:`INVISIBLE` characters alone: a form's answer of one
    zero-width space was sent as a name).

    Where this runs for most values mapped, its callers first test what settles most
    strings without the call: ``(kept := text.strip()) and kept[0] not in INVISIBLE``
    (holds: not blank)."""
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    kept = value.strip()
    return not kept or (kept[0] in INVISIBLE and _SHOWS_NOTHING.fullmatch(kept) is not None)


def to_text(value: Any) -> str:
    """The string form of a JSON value (see the module docstring).

    Raises:
        DocumentError: ``value`` nests arrays and objects more than :data:`MAX_DEPTH` deep.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if value is None:
        return ""
    if deeper_than(value, MAX_DEPTH):
        msg = (
            f"a value nests arrays and objects more than {MAX_DEPTH} levels deep, "
            "too deep to write as text"
        )
        raise DocumentError(msg)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


#: The most characters of a value a warning or reason quotes.
SHOWN = 60


def shown_text(value: Any) -> str:
    """``value``'s string form as a warning or reason quotes it: at most :data:`SHOWN`
    characters, a longer one cut with "..."."""
    text = to_text(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _float_text(value: float) -> str:
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    shortest = repr(value)
    if "e" not in shortest or not math.isfinite(value):
        return shortest
    # 1e-05 -> 0.00001, 1e+21 -> 1000000000000000000000: the same digits, no exponent.
    return format(Decimal(shortest), "f")


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep.

    A scalar is 0 levels deep, ``[]`` and ``{}`` are 1. Walks with an explicit stack,
    and stops as soon as the answer is known.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return False


def present(values: list[Any]) -> list[Any]:
    """``values`` with arrays opened up (at any depth) and blanks left out, in order.

    The same as ``[v for v in flatten(values) if not is_blank(v)]``, in one pass.
    """
    out: list[Any] = []
    for value in values:
        if isinstance(value, str):
            if ((kept := value.strip()) and kept[0] not in INVISIBLE) or not is_blank(value):
                out.append(value)
        elif isinstance(value, ARRAYS):  # a multi-select answer: its items, in a plain loop
            for item in value:
                if isinstance(item, str):
                    if ((kept := item.strip()) and kept[0] not in INVISIBLE) or not is_blank(item):
                        out.append(item)
                elif isinstance(item, ARRAYS):  # nested deeper: opened without recursion
                    out.extend(v for v in _opened(item) if not is_blank(v))
                elif item is not None:
                    out.append(item)
        elif value is not None:
            out.append(value)
    return out


def flatten(values: list[Any]) -> list[Any]:
    """``values`` with arrays opened up (at any depth), in order."""
    return list(_opened(values))


def _opened(values: list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    """Every value of ``values`` that is not an array, arrays opened, in order.

    An explicit stack of iterators instead of recursion: a document from the store or a
    lead API may nest arrays a thousand levels deep.
    """
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list | tuple):
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()
