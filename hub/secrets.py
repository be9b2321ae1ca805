"""Secrets from the environment: masked when printed, compared in constant time."""

from __future__ import annotations

import hmac


class Secret:
    """A secret string. ``repr`` and ``str`` never show it; use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for signing and sending. Never log the result."""
        return self._value

    def encode(self) -> bytes:
        """The secret as UTF-8 bytes (an HMAC key)."""
        return self._value.encode()

    def matches(self, candidate: str | bytes) -> bool:
        """Whether ``candidate`` equals the secret, compared in constant time."""
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8", "surrogatepass")  # odd text never matches
        return hmac.compare_digest(self._value.encode(), candidate)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__
