"""The sandbox's errors: each one becomes LeadSquared's MX error envelope.

``MXError`` carries the HTTP status and the ``ExceptionType`` the real API
would answer with; :func:`envelope` renders the body
``{"Status":"Error","ExceptionType":..,"ExceptionMessage":..}``.
"""

from __future__ import annotations

from typing import Any

from hub.exceptions import HubError

INVALID_INPUT = "MXInvalidInputException"
UNAUTHORIZED = "MXUnAuthorizedAccessException"
NOT_FOUND = "MXInvalidAPIException"
RATE_LIMITED = "MXAPIRateLimitExceededException"
DUPLICATE = "MXDuplicateEntryException"
UNEXPECTED = "MXUnexpectedException"


class MXError(HubError):
    """The sandbox refused a call."""

    def __init__(self, status: int, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.exception_type = exception_type
        self.message = message


def invalid_input(message: str) -> MXError:
    """A 400 ``MXInvalidInputException`` with ``message``."""
    return MXError(400, INVALID_INPUT, message)


def envelope(exception_type: str, message: str) -> dict[str, Any]:
    """The body LeadSquared sends with every error."""
    return {"Status": "Error", "ExceptionType": exception_type, "ExceptionMessage": message}
