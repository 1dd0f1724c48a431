"""A stand-in for the network in front of the reservations service, for failure-injection tests.

It forwards every call to the real server untouched, except the calls a test arms: ``down`` fails
the call before it reaches the server (the service is unreachable), ``lose_answer`` lets the server
do the work and then drops its answer (a crash or a cut connection after the commit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

_FORWARDED = ("authorization", "x-request-id")


class FlakyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = grpc.aio.insecure_channel(upstream)
        self.server = grpc.aio.server()
        self.armed: dict[str, list[str]] = {}
        self.address = ""

    def down(self, method: str, times: int = 1) -> None:
        self.armed.setdefault(method, []).extend(["down"] * times)

    def lose_answer(self, method: str, times: int = 1) -> None:
        self.armed.setdefault(method, []).extend(["lose"] * times)

    async def start(self) -> str:
        self.server.add_generic_rpc_handlers([_Handler(self)])
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        await self.server.stop(0)
        await self.upstream.close()

    def behaviour(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            name = method.rsplit("/", 1)[-1]
            fault = self.armed[name].pop(0) if self.armed.get(name) else ""
            if fault == "down":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection refused (injected)")
            metadata = [(k, v) for k, v in context.invocation_metadata() or () if k in _FORWARDED]
            call = self.upstream.unary_unary(method)
            answer: bytes = await call(request, metadata=metadata, timeout=10)
            if fault == "lose":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset after the call (injected)")
            return answer

        return forward


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: FlakyProxy) -> None:
        self.proxy = proxy

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(self.proxy.behaviour(handler_call_details.method))
