"""Domain errors of the notify service, built on the runtime's errors (mapped to gRPC once at the edge).

The helpers keep the call sites short: ``InvalidInput("is required", field="patron_id")``.
"""

from __future__ import annotations

from bibliodesk.runtime import errors as rt


class InvalidInput(rt.InvalidArgument):
    """Bad input from the caller; ``field`` names the offending request field."""

    def __init__(self, message: str, *, field: str, reason: str = "INVALID_ARGUMENT") -> None:
        super().__init__(field=field, description=message, reason=reason)
        self.field = field


class NotFound(rt.NotFound):
    def __init__(self, message: str, *, reason: str = "NOT_FOUND") -> None:
        super().__init__(reason, message)


class Conflict(rt.FailedPrecondition):
    """The operation does not fit the current state (FAILED_PRECONDITION)."""

    def __init__(
        self, message: str, *, reason: str = "FAILED_PRECONDITION", metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason, message, metadata=metadata)


class IllegalTransition(Conflict):
    def __init__(self, message: str, *, reason: str = "ILLEGAL_TRANSITION") -> None:
        super().__init__(message, reason=reason)


class EtagMismatch(rt.Aborted):
    def __init__(self, message: str, *, reason: str = "ETAG_MISMATCH") -> None:
        super().__init__(reason, message)
