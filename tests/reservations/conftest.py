"""A reservations server on port 0 (SQLite and PostgreSQL) and the desk's clients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc
from bibliodesk.runtime.testing import Stack

# Tests move the clock by weeks: tokens must outlive that.
TTL = timedelta(days=90)

# Peers this folder does not start: refused connections, so the service uses its defaults.
UNREACHABLE = "127.0.0.1:9"
ENV = {
    "BIBLIODESK_PATRONS_ADDRESS": UNREACHABLE,
    "BIBLIODESK_NOTIFY_ADDRESS": UNREACHABLE,
    "BIBLIODESK_RESERVATIONS_LOAN_PERIOD_DAYS": "30",
    "BIBLIODESK_RESERVATIONS_PICKUP_PERIOD_DAYS": "7",
}

# With a real patrons service: a loaded test machine must not turn "slow" into "unreachable".
PATIENT = {"BIBLIODESK_RESERVATIONS_PEER_TIMEOUT_SECONDS": "60"}

HOLDINGS = (
    "barcode,title,author,branch,call_number\n"
    "B001,Il nome della rosa,Umberto Eco,CEN,853 ECO\n"
    "B002,Se questo è un uomo,Primo Levi,CEN,853 LEV\n"
    "B003,La coscienza di Zeno,Italo Svevo,CEN,853 SVE\n"
    "B004,Il Gattopardo,Giuseppe Tomasi di Lampedusa,NORD,853 TOM\n"
)


def reservation_stub(channel: Any) -> pb_grpc.ReservationServiceAsyncStub:
    return pb_grpc.ReservationServiceStub(channel)  # type: ignore[return-value]


def circulation_stub(channel: Any) -> pb_grpc.CirculationServiceAsyncStub:
    return pb_grpc.CirculationServiceStub(channel)  # type: ignore[return-value]


def rid() -> str:
    return uuid.uuid4().hex


@dataclass
class Desk:
    """The clients a desk, an admin, a peer service and a patron would hold."""

    stack: Stack
    reservations: pb_grpc.ReservationServiceAsyncStub
    circulation: pb_grpc.CirculationServiceAsyncStub
    admin_reservations: pb_grpc.ReservationServiceAsyncStub
    admin_circulation: pb_grpc.CirculationServiceAsyncStub
    service_reservations: pb_grpc.ReservationServiceAsyncStub

    def as_patron(
        self, patron_id: str
    ) -> tuple[pb_grpc.ReservationServiceAsyncStub, pb_grpc.CirculationServiceAsyncStub]:
        channel = self.stack.channel(
            "reservations", self.stack.token(kind="patron", subject=patron_id, ttl=TTL)
        )
        return reservation_stub(channel), circulation_stub(channel)

    async def reserve(self, patron_id: str, barcode: str = "B001", **kw: Any) -> pb.Reservation:
        kw.setdefault("origin", pb.RESERVATION_ORIGIN_DESK)
        kw.setdefault("pickup_branch", "CEN")
        reply = await self.reservations.CreateReservation(
            pb.CreateReservationRequest(request_id=rid(), patron_id=patron_id, item_barcode=barcode, **kw)
        )
        return reply.reservation

    async def check_out(self, patron_id: str, barcode: str) -> pb.CheckOutResponse:
        return await self.circulation.CheckOut(
            pb.CheckOutRequest(request_id=rid(), item_barcode=barcode, patron_id=patron_id, branch="CEN")
        )

    async def check_in(self, barcode: str) -> pb.CheckInResponse:
        return await self.circulation.CheckIn(
            pb.CheckInRequest(request_id=rid(), item_barcode=barcode, branch="CEN")
        )

    async def item(self, barcode: str) -> pb.Item:
        return (await self.circulation.GetItem(pb.GetItemRequest(item_barcode=barcode))).item

    def outbox(self) -> list[dict[str, Any]]:
        """The side effects the service committed to (notices waiting for notify)."""
        import json

        from sqlalchemy import select

        rt = self.stack.runtime("reservations")
        rows = rt.db.read_sync(lambda s: s.execute(select(rt.outbox).order_by(rt.outbox.c.id)).all())
        return [{"key": r.key, "topic": r.topic, **json.loads(r.payload)} for r in rows]

    async def get(self, reservation_id: str) -> pb.Reservation:
        return (
            await self.reservations.GetReservation(pb.GetReservationRequest(reservation_id=reservation_id))
        ).reservation


@pytest.fixture
async def desk(stack_factory: Any) -> Desk:
    stack = await stack_factory("reservations", env=ENV)
    staff = stack.channel("reservations", stack.token(kind="staff", roles=("operator",), ttl=TTL))
    admin = stack.channel("reservations", stack.token(kind="staff", roles=("admin",), ttl=TTL))
    service = stack.channel("reservations", stack.token(kind="service", subject="requests", ttl=TTL))
    d = Desk(
        stack,
        reservation_stub(staff),
        circulation_stub(staff),
        reservation_stub(admin),
        circulation_stub(admin),
        reservation_stub(service),
    )
    report = await d.admin_circulation.ImportItems(
        pb.ImportItemsRequest(request_id=rid(), csv_content=HOLDINGS)
    )
    assert report.created == 4 and not report.rejected
    return d
