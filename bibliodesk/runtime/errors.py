"""Domain errors with a stable reason, mapped once to gRPC status codes at the edge.

Raise these anywhere below the servicer; the error interceptor turns them into a gRPC status with
``google.rpc.ErrorInfo`` (reason, domain ``bibliodesk.<service>``, metadata) and, for bad input,
``google.rpc.BadRequest`` field violations. Never raise INTERNAL for bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str = "INVALID"


class DomainError(Exception):
    """Base: a rule of the domain refused the operation. ``reason`` is UPPER_SNAKE and stable."""

    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.violations = list(violations)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidArgument(DomainError):
    """Bad input. Always names the offending field(s)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        violations: Iterable[FieldViolation] | None = None,
        *,
        field: str | None = None,
        description: str | None = None,
        reason: str = "INVALID_ARGUMENT",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        found = list(violations or [])
        if field is not None:
            found.append(FieldViolation(field, description or "is invalid", reason))
        message = "; ".join(f"{v.field}: {v.description}" for v in found) or "invalid argument"
        super().__init__(reason, message, violations=found, metadata=metadata)


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """A concurrent change won (stale etag, lost race). The client re-reads and retries."""

    code = grpc.StatusCode.ABORTED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency is down; retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class Violations:
    """Collects field violations so a client learns about every bad field at once.

    >>> v = Violations()
    >>> v.required("surname", request.surname)
    >>> v.max_length("surname", request.surname, 100)
    >>> v.raise_if_any()
    """

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "INVALID") -> None:
        self.items.append(FieldViolation(field, description, reason))

    def required(self, field: str, value: object) -> bool:
        if value is None or (isinstance(value, str) and not value.strip()) or value == b"":
            self.add(field, "is required", "REQUIRED")
            return False
        return True

    def max_length(self, field: str, value: str, limit: int) -> bool:
        if value is not None and len(value) > limit:
            self.add(field, f"must be at most {limit} characters", "TOO_LONG")
            return False
        return True

    def check(self, condition: bool, field: str, description: str, reason: str = "INVALID") -> bool:
        if not condition:
            self.add(field, description, reason)
        return condition

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
