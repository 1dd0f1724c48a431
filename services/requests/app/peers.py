"""What the inbox asks other services, with deadlines and their failures mapped once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from bibliodesk.patrons.v1 import patrons_pb2 as ppb
from bibliodesk.patrons.v1 import patrons_pb2_grpc as ppb_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as rpb_grpc
from bibliodesk.runtime.errors import NotFound, Unavailable
from bibliodesk.runtime.peers import Peers
from bibliodesk.runtime.rpc_errors import error_details

from ..domain.model import PatronStanding

_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    # Our own service token refused (keys being rotated or fetched): a retry succeeds.
    grpc.StatusCode.UNAUTHENTICATED,
}


def is_transient(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() in _TRANSIENT


def peer_reason(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason a bibliodesk peer put on its error (empty if none)."""
    return error_details(exc)[0]


def unavailable(peer: str, exc: grpc.aio.AioRpcError) -> Unavailable:
    return Unavailable(
        f"{peer.upper()}_UNAVAILABLE",
        f"the {peer} service cannot be reached; try again",
        metadata={"peer_code": exc.code().name},
    )


@dataclass(frozen=True)
class Contact:
    patron_id: str
    display_name: str
    email: str
    language: str


@dataclass(frozen=True)
class Standing:
    facts: PatronStanding
    display_name: str
    card_barcode: str


class PeerClients:
    """Stubs are built per call from the runtime's cached channels (cheap), so a test may point a
    peer's address elsewhere before the first call."""

    def __init__(self, peers: Peers, timeout: float) -> None:
        self._peers = peers
        self.timeout = timeout  # the deadline of every call to a peer

    def _patrons(self) -> ppb_grpc.PatronServiceAsyncStub:
        return ppb_grpc.PatronServiceStub(self._peers.channel("patrons"))  # type: ignore[return-value]

    def reservations(self) -> rpb_grpc.ReservationServiceAsyncStub:
        return rpb_grpc.ReservationServiceStub(self._peers.channel("reservations"))  # type: ignore[return-value]

    def _circulation(self) -> rpb_grpc.CirculationServiceAsyncStub:
        return rpb_grpc.CirculationServiceStub(self._peers.channel("reservations"))  # type: ignore[return-value]

    async def standing(self, patron_id: str) -> Standing:
        try:
            s = await self._patrons().GetPatronStanding(
                ppb.GetPatronStandingRequest(patron_id=patron_id), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise self._patron_error(exc, patron_id) from exc
        facts = PatronStanding(
            patron_id=s.patron_id,
            enrolled=s.enrolled,
            blocked=s.blocked,
            status=ppb.PatronStatus.Name(s.status),
            reservation_limit=s.reservation_limit,
            home_branch=s.home_branch,
        )
        return Standing(facts, s.display_name, s.card_barcode)

    async def contact(self, patron_id: str) -> Contact:
        try:
            c = await self._patrons().GetPatronContact(
                ppb.GetPatronContactRequest(patron_id=patron_id), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise self._patron_error(exc, patron_id) from exc
        return Contact(c.patron_id, c.display_name, c.email, c.language or "it")

    @staticmethod
    def _patron_error(exc: grpc.aio.AioRpcError, patron_id: str) -> Exception:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return NotFound("PATRON_NOT_FOUND", f"no patron {patron_id!r}", metadata={"field": "patron_id"})
        if is_transient(exc):
            return unavailable("patrons", exc)
        return exc

    async def availability(self, barcodes: Sequence[str]) -> dict[str, rpb.ItemAvailability]:
        """One call for a whole page of rows (never one per row)."""
        wanted = list(dict.fromkeys(b for b in barcodes if b))
        if not wanted:
            return {}
        try:
            reply = await self._circulation().GetItemAvailability(
                rpb.GetItemAvailabilityRequest(item_barcodes=wanted), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            if is_transient(exc):
                raise unavailable("reservations", exc) from exc
            raise
        return {a.item_barcode: a for a in reply.items}

    async def active_reservations(self, patron_id: str) -> list[rpb.Reservation]:
        """The patron's active reservations (WAITING_FOR_RETURN and READY_FOR_PICKUP), all pages."""
        found: list[rpb.Reservation] = []
        token = ""
        try:
            while True:
                page = await self.reservations().ListReservations(
                    rpb.ListReservationsRequest(
                        patron_id=patron_id, active_only=True, page_size=200, page_token=token
                    ),
                    timeout=self.timeout,
                )
                found.extend(page.reservations)
                token = page.next_page_token
                if not token:
                    return found
        except grpc.aio.AioRpcError as exc:
            if is_transient(exc):
                raise unavailable("reservations", exc) from exc
            raise
