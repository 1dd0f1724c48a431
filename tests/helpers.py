"""Reading the rich error details a bibliodesk service returns."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def _details(exc: grpc.aio.AioRpcError) -> list[object]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[object] = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


def error_reason(exc: grpc.aio.AioRpcError) -> str:
    for detail in _details(exc):
        if isinstance(detail, error_details_pb2.ErrorInfo):
            return detail.reason
    return ""


def error_domain(exc: grpc.aio.AioRpcError) -> str:
    for detail in _details(exc):
        if isinstance(detail, error_details_pb2.ErrorInfo):
            return detail.domain
    return ""


def error_fields(exc: grpc.aio.AioRpcError) -> list[str]:
    for detail in _details(exc):
        if isinstance(detail, error_details_pb2.BadRequest):
            return [v.field for v in detail.field_violations]
    return []
