"""What every CLI command gets: settings, an authenticated channel per service, rich output."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from rich.console import Console

from bibliodesk.runtime.interceptors import client_interceptors
from bibliodesk.runtime.peers import open_channel
from bibliodesk.runtime.rpc_errors import describe_rpc_error
from bibliodesk.runtime.settings import Settings

T = TypeVar("T")


class CliError(Exception):
    """An expected failure: printed without a stack trace, exit code 1."""


class CliContext:
    def __init__(self, settings: Settings, console: Console | None = None, user: str | None = None) -> None:
        self.settings = settings
        self.console = console or Console()
        self.user = user
        self._token: str | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(self._run(coro))

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        finally:
            for channel in self._channels.values():
                await channel.close(None)
            self._channels.clear()

    def address(self, service: str) -> str:
        return self.settings.service(service).address

    def channel(self, service: str, *, authenticated: bool = True) -> grpc.aio.Channel:
        """A channel to ``service`` carrying the operator's token (call inside ``ctx.run``)."""
        key = f"{service}:{authenticated}"
        if key not in self._channels:
            token = self.token if authenticated else None
            self._channels[key] = open_channel(
                self.address(service), self.settings, client_interceptors(token)
            )
        return self._channels[key]

    async def token(self) -> str:
        if self._token is None:
            self._token = await self._log_in()
        return self._token

    async def _log_in(self) -> str:
        if os.environ.get("BIBLIODESK_TOKEN"):
            return os.environ["BIBLIODESK_TOKEN"]
        from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc

        if self.user:
            username, password = self.user, getpass.getpass(f"password for {self.user}: ")
        else:
            path = self.settings.home / "admin-credentials.json"
            try:
                stored = json.loads(path.read_text())
            except OSError:
                raise CliError(
                    f"no credentials: use --user NAME, set BIBLIODESK_TOKEN, or run on the machine "
                    f"whose data folder holds {path}"
                ) from None
            username, password = stored["username"], stored["password"]
        stub = identity_pb2_grpc.IdentityServiceStub(self.channel("patrons", authenticated=False))
        try:
            reply = await stub.LogIn(
                identity_pb2.LogInRequest(username=username, password=password), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            raise CliError(f"log-in failed: {exc.details()}") from None
        return reply.access_token

    def fail_from_rpc(self, exc: grpc.aio.AioRpcError) -> int:
        """Prints a service's refusal readably (code, reason, fields) and returns exit code 1."""
        self.console.print(f"[red]{describe_rpc_error(exc)}[/red]")
        return 1
