"""How a service plugs into the runtime, and the host that runs one or many of them.

A service folder exposes ``MODULE = ServiceModule(...)`` in ``services/<svc>/module.py``:

    MODULE = ServiceModule(
        name="reservations",
        metadata=tables.metadata,                  # its SQLAlchemy MetaData (incl. runtime tables)
        migrations=Path(__file__).parent / "store" / "migrations",
        setup=setup,                               # async def setup(rt: ServiceRuntime) -> None
        public_methods={...},                      # full method names callable without a token
        load_demo=load_demo,                       # optional: first-start demo data
    )

``setup`` registers servicers (``rt.add_service``), outbox handlers (``rt.relay.register``) and
background tasks (``rt.background``). The ``Host`` opens each service's database (retrying until it
is reachable), applies migrations, binds the port, calls ``setup``, starts the server, marks health
SERVING and starts the relay and background tasks; ``stop`` reverses it gracefully.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import MetaData, Table

from . import auth
from .clock import Clock
from .db import Database
from .interceptors import ServerInterceptor
from .metrics import Metrics
from .migrate import upgrade
from .outbox import OutboxRelay
from .peers import Peers
from .sessions import RemoteSessions, session_check_ttl
from .settings import SERVICES, Settings

log = logging.getLogger(__name__)

SetupFn = Callable[["ServiceRuntime"], Awaitable[None]]


@dataclass(frozen=True)
class ServiceModule:
    name: str
    metadata: MetaData
    migrations: Path
    setup: SetupFn
    public_methods: frozenset[str] | set[str] = frozenset()
    # Methods a patron holding temporary credentials may call (IdentityService.ChangeCredentials…).
    temporary_credentials_methods: frozenset[str] | set[str] = frozenset()
    load_demo: SetupFn | None = None


def load_module(name: str) -> ServiceModule:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{name}.module")
    spec: ServiceModule = module.MODULE
    return spec


@dataclass
class ServiceRuntime:
    """Everything a service's setup needs, built by the host (no globals, nothing at import time)."""

    module: ServiceModule
    settings: Settings
    clock: Clock
    db: Database
    server: grpc.aio.Server
    peers: Peers
    verifier: auth.TokenVerifier
    relay: OutboxRelay
    metrics: Metrics
    demo: bool = False
    # A service may check sessions beyond the signature (patrons: revoked sessions).
    session_check: Callable[[auth.Principal], Awaitable[None]] | None = None
    # The service's own objects (application services, drivers...), for tests and the CLI.
    state: dict[str, Any] = field(default_factory=dict)
    service_names: list[str] = field(default_factory=list)
    _tasks: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    _on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.module.name

    @property
    def outbox(self) -> Table:
        return self.module.metadata.tables["outbox"]

    @property
    def idempotency(self) -> Table:
        return self.module.metadata.tables["idempotency_keys"]

    def add_service(
        self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Registers a servicer, e.g. ``rt.add_service(pb_grpc.add_XServiceServicer_to_server, s,
        pb.DESCRIPTOR.services_by_name["XService"].full_name)``."""
        add_to_server(servicer, self.server)
        self.service_names.append(full_name)

    def background(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A long-running task started with the server and cancelled at shutdown."""
        self._tasks.append(task)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(callback)


async def _optimize_hourly(db: Database) -> None:
    while True:
        await asyncio.sleep(3600)
        try:  # on the writer thread, in its turn: no contention with the service's own writes
            await db.write(lambda session: session.connection().exec_driver_sql("PRAGMA optimize"))
        except Exception:
            log.exception("%s: PRAGMA optimize failed", db.name)


class Host:
    """Runs one or more services in this process."""

    def __init__(
        self,
        settings: Settings,
        modules: Iterable[ServiceModule],
        *,
        clock: Clock | None = None,
        demo: bool = False,
        run_background: bool = True,
    ) -> None:
        self.settings = settings
        self.modules = list(modules)
        self.clock = clock or Clock(settings.tz)
        self.demo = demo
        self.run_background = run_background
        self.metrics = Metrics()
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.addresses: dict[str, str] = {n: s.address for n, s in settings.services.items()}
        self._health: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._remote_sessions: dict[str, RemoteSessions] = {}
        self._metrics_server: asyncio.AbstractServer | None = None

    async def start(self) -> dict[str, str]:
        for module in self.modules:
            await self._prepare(module)
        for rt in self.runtimes.values():
            await rt.module.setup(rt)
            self._finish_registration(rt)
            await rt.server.start()
            for name in ["", *rt.service_names]:
                await self._health[rt.name].set(name, health_pb2.HealthCheckResponse.SERVING)
            log.info("%s serving on %s", rt.name, self.addresses[rt.name])
        if self.settings.metrics_listen:
            from .metrics import serve_metrics

            self._metrics_server = await serve_metrics(self.metrics, self.settings.metrics_listen)
        if self.run_background:
            for rt in self.runtimes.values():
                self._tasks.append(asyncio.create_task(rt.relay.run(), name=f"{rt.name}-outbox"))
                if rt.db.is_sqlite:
                    self._tasks.append(
                        asyncio.create_task(_optimize_hourly(rt.db), name=f"{rt.name}-optimize")
                    )
                for factory in rt._tasks:
                    self._tasks.append(asyncio.create_task(factory(), name=f"{rt.name}-task"))
        return {rt.name: self.addresses[rt.name] for rt in self.runtimes.values()}

    async def _prepare(self, module: ServiceModule) -> None:
        own = self.settings.service(module.name)
        db = Database(
            own.database_url, name=module.name, schema=self.settings.get(f"{module.name.upper()}_DB_SCHEMA")
        )
        await db.wait_until_reachable()

        def migrate_and_analyze() -> None:
            upgrade(db, module.migrations, module.metadata, service=module.name)
            db.optimize(full=True)

        await asyncio.get_running_loop().run_in_executor(None, migrate_and_analyze)
        peers = Peers(module.name, self.settings, self.clock, addresses=lambda: self.addresses)
        verifier = auth.TokenVerifier(fetch_keys=peers.fetch_token_keys, now=self.clock.now)
        if self.settings.token_public_key_file:  # keys by configuration: never fetched
            verifier.fetch_keys = None
            verifier.keys.update(
                auth.load_public_keys_pem(Path(self.settings.token_public_key_file).read_text())
            )
        rt: ServiceRuntime
        interceptor = ServerInterceptor(
            module.name,
            verifier,
            public_methods=set(module.public_methods),
            temporary_credentials_methods=set(module.temporary_credentials_methods),
            metrics=self.metrics,
            session_check=lambda principal: self._session_check(module.name, principal),
        )
        server = grpc.aio.server(
            interceptors=[interceptor],
            options=[
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ],
        )
        port = self._bind(server, own.listen)
        if own.listen.rsplit(":", 1)[1] == "0":  # tests: the kernel picked the port
            self.addresses[module.name] = f"127.0.0.1:{port}"
        relay = OutboxRelay(db, module.metadata.tables["outbox"], self.clock)
        rt = ServiceRuntime(
            module=module,
            settings=self.settings,
            clock=self.clock,
            db=db,
            server=server,
            peers=peers,
            verifier=verifier,
            relay=relay,
            metrics=self.metrics,
            demo=self.demo,
        )
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        self._health[module.name] = health_servicer
        self.metrics.gauge(
            f'bibliodesk_outbox_pending{{service="{module.name}"}}',
            lambda: float(db.read_sync(relay.pending_count)),
        )
        self.runtimes[module.name] = rt
        self._remote_sessions[module.name] = RemoteSessions(peers, ttl=session_check_ttl(self.settings))

    async def _session_check(self, service: str, principal: auth.Principal) -> None:
        rt = self.runtimes[service]
        if rt.session_check is not None:  # patrons checks its own sessions table
            await rt.session_check(principal)
        else:
            await self._remote_sessions[service].check(principal)

    def _bind(self, server: grpc.aio.Server, listen: str) -> int:
        s = self.settings
        if s.tls_cert_file and s.tls_key_file:
            cert = Path(s.tls_cert_file).read_bytes()
            key = Path(s.tls_key_file).read_bytes()
            ca = Path(s.tls_ca_file).read_bytes() if s.tls_ca_file else None
            creds = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
            )
            return server.add_secure_port(listen, creds)
        return server.add_insecure_port(listen)

    def _finish_registration(self, rt: ServiceRuntime) -> None:
        names = [
            *rt.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, rt.server)

    async def load_demo(self) -> None:
        for rt in self.runtimes.values():
            if rt.module.load_demo is not None:
                await rt.module.load_demo(rt)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: health NOT_SERVING, refuse new calls, let in-flight calls finish, then close."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        for health_servicer in self._health.values():
            await health_servicer.enter_graceful_shutdown()
        for rt in self.runtimes.values():
            rt.relay.stop()
        await asyncio.gather(*(rt.server.stop(grace) for rt in self.runtimes.values()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for rt in self.runtimes.values():
            for callback in rt._on_stop:
                try:
                    await callback()
                except Exception:
                    log.exception("%s: stop callback failed", rt.name)
            await rt.peers.close()
            await asyncio.get_running_loop().run_in_executor(None, rt.db.dispose)
        if self._metrics_server is not None:
            self._metrics_server.close()
