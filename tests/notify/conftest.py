"""Fixtures for the notify tests: a real SMTP server (aiosmtpd), the notify service in-process, and
small real gRPC peers (patrons' contact lookup, reservations' RecordPatronNotified) served from
the test while those services are not usable in the stack yet."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller

from bibliodesk.notify.v1 import notify_pb2 as pb
from bibliodesk.notify.v1 import notify_pb2_grpc as pb_grpc
from bibliodesk.runtime.clock import ManualClock
from bibliodesk.runtime.testing import Stack

MARIA = "7d3f7a52-1c1e-4a55-9a0e-000000000001"
JOHN = "7d3f7a52-1c1e-4a55-9a0e-000000000002"
NOMAIL = "7d3f7a52-1c1e-4a55-9a0e-000000000003"
BOUNCE = "7d3f7a52-1c1e-4a55-9a0e-000000000004"


@dataclass
class Contact:
    display_name: str
    email: str
    language: str
    card_barcode: str = ""
    given_name: str = ""
    surname: str = ""


CONTACTS = {
    MARIA: Contact("Rossi Maria", "maria.rossi@example.org", "it", "0012345678", "Maria", "Rossi"),
    JOHN: Contact("Smith John", "john.smith@example.org", "en", "0012345679", "John", "Smith"),
    NOMAIL: Contact("Bianchi Luca", "", "it", "0012345680", "Luca", "Bianchi"),
    BOUNCE: Contact("Verdi Anna", "nobody@example.org", "it", "0012345681", "Anna", "Verdi"),
}


# --- SMTP -----------------------------------------------------------------------------------------


class SmtpSink:
    """A real SMTP server on a free port that keeps what it accepted; can be stopped and started."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: dict[str, str] = {}  # recipient -> SMTP reply
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._controller: Controller | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self) -> dict[str, str]:
        return {
            "BIBLIODESK_SMTP_HOST": "127.0.0.1",
            "BIBLIODESK_SMTP_PORT": str(self.port),
            "BIBLIODESK_SMTP_SECURITY": "none",
            "BIBLIODESK_SMTP_TIMEOUT_SECONDS": "5",
        }


@pytest.fixture
def smtp() -> Any:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


# --- peers served by the test ---------------------------------------------------------------------


class FakePatrons:
    """PatronService.GetPatronContact with fixed contacts, and IdentityService's service tokens
    (minted with the stack's signing key, as patrons does)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.lookups = 0

    async def GetPatronContact(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from bibliodesk.patrons.v1 import patrons_pb2

        self.lookups += 1
        found = CONTACTS.get(request.patron_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such patron")
        assert found is not None
        return patrons_pb2.GetPatronContactResponse(
            patron_id=request.patron_id,
            display_name=found.display_name,
            email=found.email,
            language=found.language,
            card_barcode=found.card_barcode,
            given_name=found.given_name,
            surname=found.surname,
        )

    async def IssueServiceToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from bibliodesk.patrons.v1 import identity_pb2

        if request.secret != self.stack.service_secret:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad secret")
        token, expires = self.stack.signer.mint(
            subject=request.service_name, kind="service", now=self.stack.clock.now(), ttl=timedelta(hours=1)
        )
        reply = identity_pb2.IssueServiceTokenResponse(access_token=token)
        reply.expires_at.FromDatetime(expires)
        return reply


class FakeReservations:
    """ReservationService.RecordPatronNotified, remembering each call (idempotent by request_id)."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[str, datetime]] = {}
        self.raw_calls = 0

    async def RecordPatronNotified(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from bibliodesk.reservations.v1 import reservations_pb2

        self.raw_calls += 1
        self.calls.setdefault(
            request.request_id, (request.reservation_id, request.notified_at.ToDatetime(tzinfo=UTC))
        )
        return reservations_pb2.RecordPatronNotifiedResponse()


def _generic(service: str, methods: dict[str, tuple[Callable[..., Awaitable[Any]], Any, Any]]) -> Any:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
        )
        for name, (fn, req, resp) in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)


@dataclass
class NotifyEnv:
    stack: Stack
    smtp: SmtpSink
    patrons: FakePatrons
    reservations: FakeReservations
    servers: list[grpc.aio.Server] = field(default_factory=list)

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.stack.clock, ManualClock)
        return self.stack.clock

    def stub(self, token: str | None = None) -> pb_grpc.NotifyServiceStub:
        return pb_grpc.NotifyServiceStub(self.stack.channel("notify", token or self.staff()))

    def staff(self, *roles: str) -> str:
        return self.stack.token(kind="staff", roles=roles or ("operator",), name="Operatore Uno")

    def admin(self) -> str:
        return self.stack.token(kind="staff", roles=("admin",), name="Admin")

    def service(self, name: str = "reservations") -> str:
        return self.stack.token(kind="service", subject=name)

    def patron(self, patron_id: str) -> str:
        return self.stack.token(kind="patron", subject=patron_id)

    @property
    def worker(self) -> Any:
        return self.stack.runtime("notify").state["worker"]

    async def serve_peers(self) -> None:
        from bibliodesk.patrons.v1 import identity_pb2, patrons_pb2
        from bibliodesk.reservations.v1 import reservations_pb2

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                _generic(
                    "bibliodesk.patrons.v1.PatronService",
                    {
                        "GetPatronContact": (
                            self.patrons.GetPatronContact,
                            patrons_pb2.GetPatronContactRequest,
                            patrons_pb2.GetPatronContactResponse,
                        )
                    },
                ),
                _generic(
                    "bibliodesk.patrons.v1.IdentityService",
                    {
                        "IssueServiceToken": (
                            self.patrons.IssueServiceToken,
                            identity_pb2.IssueServiceTokenRequest,
                            identity_pb2.IssueServiceTokenResponse,
                        )
                    },
                ),
            ]
        )
        patrons_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        other = grpc.aio.server()
        other.add_generic_rpc_handlers(
            [
                _generic(
                    "bibliodesk.reservations.v1.ReservationService",
                    {
                        "RecordPatronNotified": (
                            self.reservations.RecordPatronNotified,
                            reservations_pb2.RecordPatronNotifiedRequest,
                            reservations_pb2.RecordPatronNotifiedResponse,
                        )
                    },
                ),
            ]
        )
        reservations_port = other.add_insecure_port("127.0.0.1:0")
        await other.start()
        self.servers += [server, other]
        self._ports = (patrons_port, reservations_port)
        self.point_peers()

    def point_peers(self) -> None:
        """Points notify's peer addresses at the test's servers (again after a restart)."""
        assert self.stack.host is not None
        self.stack.host.addresses["patrons"] = f"127.0.0.1:{self._ports[0]}"
        self.stack.host.addresses["reservations"] = f"127.0.0.1:{self._ports[1]}"

    async def restart(self) -> None:
        await self.stack.restart()
        self.point_peers()

    async def send(self, token: str | None = None, **fields: Any) -> pb.Message:
        reply = await self.stub(token or self.service()).SendMessage(pb.SendMessageRequest(**fields))
        return reply.message

    async def get(self, message_id: str) -> pb.Message:
        return (await self.stub(self.staff()).GetMessage(pb.GetMessageRequest(id=message_id))).message

    async def until(self, message_id: str, *statuses: int, timeout: float = 15.0) -> pb.Message:
        """Waits (without asserting on timing) until the message reaches one of ``statuses``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            message = await self.get(message_id)
            if message.status in statuses:
                return message
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"message stayed {pb.MessageStatus.Name(message.status)}: {message}")
            self.worker.wake()
            await asyncio.sleep(0.02)

    async def until_attempts(self, message_id: str, attempts: int, timeout: float = 15.0) -> pb.Message:
        """Waits until the message has recorded ``attempts`` delivery attempts."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            message = await self.get(message_id)
            if message.attempts >= attempts:
                return message
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"message has {message.attempts} attempts, not {attempts}: {message}")
            self.worker.wake()
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for server in self.servers:
            await server.stop(0)


NOTIFY_ENV = {
    "BIBLIODESK_MAIL_FROM": "Biblioteca civica <prestiti@biblioteca.example.org>",
    "BIBLIODESK_MAIL_REPLY_TO": "info@biblioteca.example.org",
    "BIBLIODESK_LIBRARY_NAME": "Biblioteca civica",
    "BIBLIODESK_NOTIFY_MAX_ATTEMPTS": "4",
    "BIBLIODESK_NOTIFY_RETRY_BASE_SECONDS": "60",
    "BIBLIODESK_NOTIFY_RETRY_MAX_SECONDS": "600",
    "BIBLIODESK_NOTIFY_LEASE_SECONDS": "120",
    "BIBLIODESK_NOTIFY_POLL_SECONDS": "0.05",
}


@pytest.fixture
async def notify_env(stack_factory: Any, smtp: SmtpSink) -> AsyncIterator[NotifyEnv]:
    stack = await stack_factory("notify", clock=ManualClock(), env={**NOTIFY_ENV, **smtp.env()})
    env = NotifyEnv(stack, smtp, FakePatrons(stack), FakeReservations())
    await env.serve_peers()
    yield env
    await env.close()
