"""Test support: real services in-process on port 0, on SQLite and on PostgreSQL.

Loaded as a pytest plugin by ``tests/conftest.py``. The fixture ``db_backend`` is parametrized over
``sqlite`` and ``postgresql`` (the latter when ``BIBLIODESK_TEST_PG_URL`` is set, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; each stack gets its own schemas there).

    async def test_something(stack_factory):
        stack = await stack_factory("patrons", "reservations")        # started, migrated, SERVING
        staff = stack.token(kind="staff", roles=("operator",))          # or log in for real
        stub = reservations_pb2_grpc.ReservationServiceStub(stack.channel("reservations", staff))
        ...
        stack.runtime("reservations").clock  # a ManualClock you can move
        await stack.runtime("reservations").relay.drain()   # deliver the outbox now
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text

from .auth import TokenSigner, load_or_create_private_key, public_key_pem
from .clock import Clock, ManualClock
from .interceptors import client_interceptors
from .peers import CHANNEL_OPTIONS
from .service import Host, ServiceModule, ServiceRuntime, load_module
from .settings import SERVICES, Settings, load_settings

PG_ENV = "BIBLIODESK_TEST_PG_URL"


def pg_url() -> str:
    return os.environ.get(PG_ENV, "")


def backends() -> list[Any]:
    marks = [] if pg_url() else [pytest.mark.skip(reason=f"{PG_ENV} not set")]
    return ["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, *marks])]


def bearer(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that send ``token`` on every call."""

    async def static() -> str:
        return token

    return client_interceptors(static)


class Stack:
    """Services of this repository running in-process, each on its own port and database."""

    def __init__(
        self,
        home: Path,
        backend: str,
        services: Iterable[str],
        *,
        clock: Clock | None = None,
        env: dict[str, str] | None = None,
        demo: bool = False,
        modules: dict[str, ServiceModule] | None = None,
        background: bool = True,
    ) -> None:
        self.background = background
        self.modules = modules or {}
        self.home = home
        self.backend = backend
        self.names = list(services)
        self.clock = clock or ManualClock()
        self.demo = demo
        self.extra_env = env or {}
        self.signing_key: Ed25519PrivateKey = load_or_create_private_key(home / "keys" / "token-signing.pem")
        self.signer = TokenSigner(self.signing_key)
        self.service_secret = secrets.token_urlsafe(24)
        self.schemas: dict[str, str] = {}
        self.host: Host | None = None
        self._channels: list[grpc.aio.Channel] = []
        self.settings = self._settings()

    def _settings(self) -> Settings:
        public = self.home / "keys" / "token-signing.pub.pem"
        public.write_text(public_key_pem(self.signer.public_key))
        env = {
            "BIBLIODESK_HOME": str(self.home),
            "BIBLIODESK_TOKEN_PRIVATE_KEY_FILE": str(self.home / "keys" / "token-signing.pem"),
            "BIBLIODESK_TOKEN_PUBLIC_KEY_FILE": str(public),
            "BIBLIODESK_SERVICE_SECRET": self.service_secret,
            "BIBLIODESK_SHUTDOWN_GRACE_SECONDS": "2",
        }
        for name in SERVICES:
            key = name.upper()
            env[f"BIBLIODESK_{key}_LISTEN"] = "127.0.0.1:0"
            if self.backend == "postgresql":
                schema = self.schemas.setdefault(name, f"t_{uuid.uuid4().hex[:12]}_{name}")
                env[f"BIBLIODESK_{key}_DATABASE_URL"] = pg_url()
                env[f"BIBLIODESK_{key}_DB_SCHEMA"] = schema
        env.update(self.extra_env)
        return load_settings(env)

    def _create_schemas(self) -> None:
        if self.backend != "postgresql":
            return
        engine = create_engine(pg_url())
        with engine.begin() as conn:
            for name in self.names:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schemas[name]}"'))
        engine.dispose()

    def drop_schemas(self) -> None:
        if self.backend != "postgresql":
            return
        engine = create_engine(pg_url())
        with engine.begin() as conn:
            for name in self.names:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schemas[name]}" CASCADE'))
        engine.dispose()

    async def start(self) -> Stack:
        self._create_schemas()
        modules = [self.modules.get(n) or load_module(n) for n in self.names]
        self.host = Host(
            self.settings, modules, clock=self.clock, demo=self.demo, run_background=self.background
        )
        await self.host.start()
        return self

    async def stop(self, grace: float = 1.0) -> None:
        for channel in self._channels:
            await channel.close(None)
        self._channels.clear()
        if self.host is not None:
            await self.host.stop(grace)
            self.host = None

    async def restart(self) -> None:
        """Stops and starts again on the same data (ports change)."""
        await self.stop()
        await self.start()

    def runtime(self, name: str) -> ServiceRuntime:
        assert self.host is not None, "stack not started"
        return self.host.runtimes[name]

    def address(self, name: str) -> str:
        assert self.host is not None, "stack not started"
        return self.host.addresses[name]

    def channel(self, name: str, token: str | None = None) -> grpc.aio.Channel:
        """A client channel to a service, optionally carrying a bearer token."""
        interceptors = bearer(token) if token else None
        channel = grpc.aio.insecure_channel(
            self.address(name), options=CHANNEL_OPTIONS, interceptors=interceptors
        )
        self._channels.append(channel)
        return channel

    def token(
        self,
        *,
        kind: str = "staff",
        subject: str | None = None,
        roles: Iterable[str] = ("operator",),
        branch: str = "CEN",
        name: str = "Test Operator",
        must_change_credentials: bool = False,
        ttl: timedelta = timedelta(hours=1),
    ) -> str:
        """A token signed with the stack's key, as patrons would mint it (for tests that are not
        about log-in). Prefer a real log-in through IdentityService where the flow matters."""
        token, _ = self.signer.mint(
            subject=subject or (kind + "-" + uuid.uuid4().hex[:8]),
            kind=kind,
            now=self.clock.now(),
            ttl=ttl,
            roles=roles if kind == "staff" else (),
            branch=branch if kind == "staff" else "",
            name=name,
            must_change_credentials=must_change_credentials,
        )
        return token


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(params=backends())
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def stack_factory(tmp_path: Path, db_backend: str) -> AsyncIterator[StackFactory]:
    """``await stack_factory("patrons", "notify", clock=ManualClock(), env={...})``.

    ``background=False`` keeps the outbox relays and background tasks stopped, so a test drives
    them by hand (``await stack.runtime("x").relay.run_once()``) deterministically."""
    stacks: list[Stack] = []

    async def make(
        *services: str,
        clock: Clock | None = None,
        env: dict[str, str] | None = None,
        demo: bool = False,
        modules: dict[str, ServiceModule] | None = None,
        background: bool = True,
    ) -> Stack:
        home = tmp_path / f"stack{len(stacks)}"
        home.mkdir()
        stack = Stack(
            home,
            db_backend,
            services,
            clock=clock,
            env=env,
            demo=demo,
            modules=modules,
            background=background,
        )
        stacks.append(stack)
        return await stack.start()

    yield make
    for stack in stacks:
        await stack.stop(grace=0.5)
        stack.drop_schemas()
