"""Reading a bibliodesk error on the client side (CLI, peers): code, reason, field violations."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def error_details(exc: grpc.aio.AioRpcError) -> tuple[str, list[tuple[str, str]]]:
    """(reason, [(field, description)]) from the status details, when present."""
    reason, fields = "", []
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except Exception:
        status = None
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [(v.field, v.description) for v in bad.field_violations]
    return reason, fields


def describe_rpc_error(exc: grpc.aio.AioRpcError) -> str:
    reason, fields = error_details(exc)
    text = f"{exc.code().name}: {exc.details()}"
    if reason:
        text += f" [{reason}]"
    for field, description in fields:
        text += f"\n  - {field}: {description}"
    return text
