"""A small probe service used only to test the shared runtime through real gRPC calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2, wrappers_pb2
from sqlalchemy import Column, MetaData, String, Table, insert, select

from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import InvalidArgument
from bibliodesk.runtime.idempotency import idempotent
from bibliodesk.runtime.outbox import add_runtime_tables, enqueue
from bibliodesk.runtime.service import ServiceModule, ServiceRuntime
from bibliodesk.runtime.types import UtcDateTime, new_id

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("text", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
add_runtime_tables(metadata)

SERVICE = "bibliodesk.testing.v1.ProbeService"
S = wrappers_pb2.StringValue


def _unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
    )


async def setup(rt: ServiceRuntime) -> None:
    rt.state.setdefault("delivered", [])
    rt.state.setdefault("fail_times", 0)
    rt.state.setdefault("hang", None)

    async def ping(request: S, context: Any) -> S:
        principal = auth.optional_principal()
        return S(value=f"pong {request.value} {principal.subject if principal else '-'}")

    async def who_am_i(request: S, context: Any) -> S:
        p = auth.current_principal()
        return S(value=f"{p.kind}:{p.subject}")

    async def admin_only(request: S, context: Any) -> S:
        auth.require_admin()
        return S(value="ok")

    async def validate(request: S, context: Any) -> S:
        if not request.value:
            raise InvalidArgument(field="value", description="is required")
        return S(value=request.value)

    async def boom(request: S, context: Any) -> S:
        raise RuntimeError("secret internal detail: password=hunter2")

    async def slow(request: S, context: Any) -> S:
        await asyncio.sleep(float(request.value or "1"))
        return S(value="done")

    async def add_note(request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        text = request.fields["text"].string_value
        if not text:
            raise InvalidArgument(field="text", description="is required")

        def write(session: Any) -> struct_pb2.Struct:
            def produce() -> struct_pb2.Struct:
                note_id = new_id()
                now = rt.clock.now()
                session.execute(insert(notes).values(id=note_id, text=text, created_at=now))
                enqueue(
                    session,
                    rt.outbox,
                    "probe.deliver",
                    f"note:{note_id}",
                    {"note_id": note_id, "secret_code": "s3cr3t"},
                    now=now,
                )
                out = struct_pb2.Struct()
                out.update({"note_id": note_id})
                return out

            request_id = request.fields["request_id"].string_value if "request_id" in request.fields else ""
            return idempotent(
                session,
                rt.idempotency,
                "AddNote",
                request,
                produce,
                struct_pb2.Struct,
                now=rt.clock.now(),
                request_id=request_id,
            )

        result = await rt.db.write(write)
        rt.relay.wake()
        return result

    async def count_notes(request: S, context: Any) -> S:
        rows = await rt.db.read(lambda s: s.execute(select(notes.c.id)).all())
        return S(value=str(len(rows)))

    async def stream(request: S, context: Any) -> Any:
        auth.current_principal()
        for i in range(3):
            yield S(value=f"{request.value}-{i}")
        if request.value == "fail":
            raise InvalidArgument(field="value", description="stream refused")

    async def deliver(payload: dict[str, Any], key: str) -> None:
        if rt.state["hang"] is not None:
            await rt.state["hang"].wait()
        if rt.state["fail_times"] > 0:
            rt.state["fail_times"] -= 1
            raise ConnectionError("peer down")
        rt.state["delivered"].append(key)

    handlers = {
        "Ping": _unary(ping, S, S),
        "WhoAmI": _unary(who_am_i, S, S),
        "AdminOnly": _unary(admin_only, S, S),
        "Validate": _unary(validate, S, S),
        "Boom": _unary(boom, S, S),
        "Slow": _unary(slow, S, S),
        "AddNote": _unary(add_note, struct_pb2.Struct, struct_pb2.Struct),
        "CountNotes": _unary(count_notes, S, S),
        "Stream": grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=S.FromString, response_serializer=S.SerializeToString
        ),
    }
    rt.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    rt.service_names.append(SERVICE)
    rt.relay.register("probe.deliver", deliver)


def make_module(name: str = "requests") -> ServiceModule:
    return ServiceModule(
        name=name,
        metadata=metadata,
        migrations=Path(__file__).parent / "migrations",
        setup=setup,
        public_methods={f"/{SERVICE}/Ping"},
    )
