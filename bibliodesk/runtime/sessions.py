"""Ended sessions stop working everywhere, not only in patrons.

A token is verified locally (signature, expiry); its session (claim ``sid``) may have been ended
since by a log-out or a P7 password regeneration. Services other than patrons ask patrons
(IdentityService.CheckSession) and cache the answer briefly: an ended session is refused
everywhere within ``ttl`` seconds. When patrons cannot be reached the cached answer stands, and a
session never seen is let through on its valid signature (availability over a second-long window);
that is logged.
"""

from __future__ import annotations

import logging
import time

import grpc

from . import auth
from .errors import Unauthenticated
from .peers import Peers

log = logging.getLogger(__name__)


class RemoteSessions:
    def __init__(self, peers: Peers, *, ttl: float = 15.0, max_entries: int = 50_000) -> None:
        self.peers = peers
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[bool, float]] = {}

    async def check(self, principal: auth.Principal) -> None:
        if not principal.session_id or principal.kind == auth.SERVICE:
            return
        key = f"{principal.subject}:{principal.session_id}"
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is None or now - cached[1] > self.ttl:
            is_open = await self._ask(principal, cached)
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (is_open, now)
        elif not cached[0]:
            is_open = False
        else:
            is_open = True
        if not is_open:
            raise Unauthenticated("SESSION_ENDED", "this session has ended: log in again")

    async def _ask(self, principal: auth.Principal, cached: tuple[bool, float] | None) -> bool:
        from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc

        stub = identity_pb2_grpc.IdentityServiceStub(self.peers.channel("patrons"))
        try:
            reply = await stub.CheckSession(
                identity_pb2.CheckSessionRequest(session_id=principal.session_id, subject=principal.subject),
                timeout=3,
            )
            return bool(reply.open)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "cannot check session with patrons (%s); using %s",
                exc.code().name,
                "the cached answer" if cached else "the token's signature alone",
            )
            return cached[0] if cached else True
