"""The ceiling: an empty grpc.aio handler in its own process, answering raw bytes of a chosen size.

The bench sends it requests of the same size as an operation's requests, with the same metadata,
from the same clients, and asks for responses of the operation's response size: whatever that
costs is gRPC + asyncio + the clients themselves on this machine, right now. Every operation is
reported as a ratio to it, so a result holds on a noisy machine.

Run: ``python -m bench.ceiling --port 0`` (prints the port it listens on, one line).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import subprocess
import sys
import time
from typing import Any

import grpc

METHOD = "/bench.ceiling.v1.EmptyService/Echo"


async def serve(port: int) -> None:
    replies: dict[int, bytes] = {}

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        (size,) = struct.unpack_from(">I", request)
        reply = replies.get(size)
        if reply is None:
            reply = replies.setdefault(size, b"\x00" * size)
        return reply

    handler = grpc.method_handlers_generic_handler(
        "bench.ceiling.v1.EmptyService", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(bound, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def payload(request_size: int, response_size: int) -> bytes:
    """A request body of ``request_size`` bytes asking for ``response_size`` bytes back."""
    return struct.pack(">I", response_size) + b"\x01" * max(0, request_size - 4)


class Ceiling:
    """The empty-handler server as a child process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling", "--port", "0"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        line = self.proc.stdout.readline()
        if not line.strip().isdigit() or time.monotonic() > deadline:
            raise RuntimeError(f"the ceiling server did not start: {line!r}")
        self.port = int(line)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def callable_for(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
