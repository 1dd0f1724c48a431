"""Channels to peer services, authenticated with this service's token and carrying the request id.

A service exchanges the deployment's service secret at patrons (IdentityService.IssueServiceToken)
for a short-lived service token, cached until shortly before it expires. Verification keys are
fetched from patrons (IdentityService.GetTokenKeys) when a token names an unknown key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .auth import load_public_keys_pem
from .clock import Clock
from .interceptors import client_interceptors
from .settings import Settings

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS (and mutual TLS when this side has a certificate) by configuration."""
    if not settings.tls_ca_file:
        return None
    from pathlib import Path

    root = Path(settings.tls_ca_file).read_bytes()
    if settings.tls_cert_file and settings.tls_key_file:
        return grpc.ssl_channel_credentials(
            root, Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes()
        )
    return grpc.ssl_channel_credentials(root)


def open_channel(
    address: str, settings: Settings, interceptors: list[grpc.aio.ClientInterceptor] | None = None
) -> grpc.aio.Channel:
    creds = channel_credentials(settings)
    if creds is not None:
        return grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)


class Peers:
    """Lazily opened channels to the other services, by name."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        clock: Clock,
        addresses: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.clock = clock
        self._addresses = addresses or (lambda: {n: s.address for n, s in settings.services.items()})
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._plain: grpc.aio.Channel | None = None
        self._token: tuple[str, datetime] | None = None
        self._token_lock = asyncio.Lock()

    def address(self, name: str) -> str:
        return self._addresses()[name]

    def channel(self, name: str) -> grpc.aio.Channel:
        """An authenticated channel to peer ``name`` (e.g. "reservations")."""
        if name not in self._channels:
            self._channels[name] = open_channel(
                self.address(name), self.settings, client_interceptors(self.service_token)
            )
        return self._channels[name]

    def _patrons_plain(self) -> grpc.aio.Channel:
        if self._plain is None:
            self._plain = open_channel(self.address("patrons"), self.settings, client_interceptors(None))
        return self._plain

    async def service_token(self) -> str:
        async with self._token_lock:
            if self._token is not None and self._token[1] - timedelta(seconds=60) > self.clock.now():
                return self._token[0]
            from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc

            stub = identity_pb2_grpc.IdentityServiceStub(self._patrons_plain())
            reply = await stub.IssueServiceToken(
                identity_pb2.IssueServiceTokenRequest(
                    service_name=self.service, secret=self.settings.service_secret
                ),
                timeout=10,
            )
            self._token = (reply.access_token, reply.expires_at.ToDatetime(tzinfo=self.clock.now().tzinfo))
            return self._token[0]

    async def fetch_token_keys(self) -> Mapping[str, Ed25519PublicKey]:
        from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc

        stub = identity_pb2_grpc.IdentityServiceStub(self._patrons_plain())
        reply = await stub.GetTokenKeys(identity_pb2.GetTokenKeysRequest(), timeout=10)
        return load_public_keys_pem("\n".join(k.public_key_pem for k in reply.keys))

    async def close(self) -> None:
        for channel in [*self._channels.values(), *([self._plain] if self._plain else [])]:
            await channel.close(None)
        self._channels.clear()
        self._plain = None
