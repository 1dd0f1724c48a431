"""Domain errors of the notify service: a stable UPPER_SNAKE reason, mapped to gRPC once at the edge."""

from __future__ import annotations


class NotifyError(Exception):
    """Base class: `reason` is the stable machine-readable code, the message is for humans."""

    reason = "NOTIFY_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.field = field


class InvalidInput(NotifyError):
    """Bad input from the caller; `field` names the offending request field."""

    reason = "INVALID_ARGUMENT"


class NotFound(NotifyError):
    reason = "NOT_FOUND"


class Conflict(NotifyError):
    """The operation does not fit the current state (FAILED_PRECONDITION)."""

    reason = "FAILED_PRECONDITION"


class IllegalTransition(Conflict):
    reason = "ILLEGAL_TRANSITION"


class EtagMismatch(NotifyError):
    reason = "ETAG_MISMATCH"
