"""Named SQL queries, kept out of Python: ``-- name: NAME`` headers split each ``.sql`` file."""

from __future__ import annotations

import functools
import importlib.resources
import re

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: query}`` at each ``-- name: NAME`` line."""
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@functools.cache
def queries(dialect: str) -> dict[str, str]:
    """The named queries of ``<dialect>.sql`` in this package."""
    text = importlib.resources.files(__package__).joinpath(f"{dialect}.sql").read_text("utf-8")
    return parse(text)
