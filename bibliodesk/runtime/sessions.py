"""Ended sessions stop working everywhere, not only in patrons.

A token is verified locally (signature, expiry); its session (claim ``sid``) may have been ended
since by a log-out or a P7 password regeneration. Services other than patrons ask patrons
(IdentityService.CheckSession) and cache the answer briefly: an ended session is refused
everywhere within ``ttl`` seconds. When patrons cannot be reached the cached answer stands, and a
session never seen is let through on its valid signature (availability over a second-long window);
that is logged. Patrons uses the same cache over its own sessions table, and clears it whenever a
commit of its own ends sessions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from . import auth
from .errors import Unauthenticated
from .peers import Peers
from .settings import Settings

log = logging.getLogger(__name__)


class CachedSessions:
    """ "Is session S of subject X still open?", answered by ``ask`` and remembered for ``ttl``
    seconds. ``forget_all()`` drops every answer at once (patrons calls it when a commit ends
    sessions); an answer read while that happened is not kept."""

    def __init__(
        self,
        ask: Callable[[str, str, bool | None], Awaitable[bool]],
        *,
        ttl: float = 15.0,
        max_entries: int = 50_000,
    ) -> None:
        #: ``ask(session_id, subject, cached answer or None)``
        self.ask = ask
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[bool, float]] = {}
        self._generation = 0

    async def check(self, principal: auth.Principal) -> None:
        """Raises UNAUTHENTICATED (SESSION_ENDED) for a token whose session has ended. Tokens minted
        without a session (service tokens) are checked by signature and expiry only."""
        if not principal.session_id or principal.kind == auth.SERVICE:
            return
        if not await self.is_open(principal.session_id, principal.subject):
            raise Unauthenticated("SESSION_ENDED", "this session has ended: log in again")

    async def is_open(self, session_id: str, subject: str) -> bool:
        key = f"{subject}:{session_id}"
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[1] <= self.ttl:
            return cached[0]
        generation = self._generation
        is_open = await self.ask(session_id, subject, None if cached is None else cached[0])
        if generation == self._generation:  # no session ended while we asked
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (is_open, now)
        return is_open

    def forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()


def session_check_ttl(settings: Settings) -> float:
    return float(settings.get("SESSION_CHECK_SECONDS", "15"))


class RemoteSessions(CachedSessions):
    """The services other than patrons: ask patrons (IdentityService.CheckSession)."""

    def __init__(self, peers: Peers, *, ttl: float = 15.0, max_entries: int = 50_000) -> None:
        super().__init__(self._ask_patrons, ttl=ttl, max_entries=max_entries)
        self.peers = peers

    async def _ask_patrons(self, session_id: str, subject: str, cached: bool | None) -> bool:
        from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc

        stub = identity_pb2_grpc.IdentityServiceStub(self.peers.channel("patrons"))
        try:
            reply = await stub.CheckSession(
                identity_pb2.CheckSessionRequest(session_id=session_id, subject=subject), timeout=3
            )
            return bool(reply.open)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "cannot check session with patrons (%s); using %s",
                exc.code().name,
                "the cached answer" if cached is not None else "the token's signature alone",
            )
            return cached if cached is not None else True
