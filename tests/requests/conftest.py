"""The inbox's world: real patrons, reservations and requests servers (notify when a test needs it),
each on its own port and database, with desk operators and enrolled patrons made through the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import field_mask_pb2

from bibliodesk.patrons.v1 import patrons_pb2 as ppb
from bibliodesk.patrons.v1 import patrons_pb2_grpc as ppb_grpc
from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.requests.v1 import requests_pb2_grpc as pb_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as rpb_grpc
from bibliodesk.runtime.clock import ManualClock
from bibliodesk.runtime.testing import Stack
from tests.patrons.support import FAST_ENV

TTL = timedelta(days=30)
UNREACHABLE = "127.0.0.1:9"

HOLDINGS = (
    "barcode,title,author,branch\n"
    "B001,Il nome della rosa,Umberto Eco,CEN\n"
    "B002,Le città invisibili,Italo Calvino,CEN\n"
    "B003,La coscienza di Zeno,Italo Svevo,CEN\n"
    "B004,Il Gattopardo,Giuseppe Tomasi di Lampedusa,NORD\n"
    "B005,Se questo è un uomo,Primo Levi,CEN\n"
)


def rid() -> str:
    return uuid.uuid4().hex


def _letters(n: int) -> str:
    """1 → "a", 27 → "ab": names may not carry digits."""
    out = ""
    while n:
        n, r = divmod(n - 1, 26)
        out += chr(ord("a") + r)
    return out.capitalize()


@dataclass
class World:
    stack: Stack
    clock: ManualClock
    inbox: pb_grpc.RequestInboxServiceStub  # operator 1 at the desk
    inbox2: pb_grpc.RequestInboxServiceStub  # operator 2, at another screen
    patrons: ppb_grpc.PatronServiceStub  # admin
    reservations: rpb_grpc.ReservationServiceStub  # admin
    circulation: rpb_grpc.CirculationServiceStub  # admin
    category: str = "ADULTI"
    _n: list[int] = field(default_factory=lambda: [0])

    def as_patron(self, patron_id: str) -> pb_grpc.RequestInboxServiceStub:
        token = self.stack.token(kind="patron", subject=patron_id, ttl=TTL)
        return pb_grpc.RequestInboxServiceStub(self.stack.channel("requests", token))

    def patron_reservations(self, patron_id: str) -> rpb_grpc.ReservationServiceStub:
        token = self.stack.token(kind="patron", subject=patron_id, ttl=TTL)
        return rpb_grpc.ReservationServiceStub(self.stack.channel("reservations", token))

    async def enrolled_patron(self, surname: str = "Rossi", email: str | None = "patron@example.org") -> str:
        """A patron enrolled at the desk, as P3/P4 do it."""
        self._n[0] += 1
        created = await self.patrons.CreatePatron(
            ppb.CreatePatronRequest(
                request_id=rid(),
                privacy_consent=True,
                details=ppb.PatronDetails(
                    given_name="Anna",
                    surname=f"{surname} {_letters(self._n[0])}",
                    birth_date="1988-05-06",
                    birth_place="Bari",
                    email=email or "",
                    phone="+39 080 123456",
                    home_branch="CEN",
                    language="it",
                    address=ppb.Address(
                        street="Via Sparano 3", postal_code="70121", city="Bari", country_code="IT"
                    ),
                ),
            )
        )
        patron = created.patron
        patron = (
            await self.patrons.UpdatePatron(
                ppb.UpdatePatronRequest(
                    request_id=rid(),
                    etag=patron.etag,
                    patron=ppb.Patron(
                        id=patron.id,
                        document_type=ppb.DOCUMENT_TYPE_IDENTITY_CARD,
                        document_number=f"CA{self._n[0]:05d}AB",
                        zone="Centro",
                        nationality="IT",
                    ),
                    update_mask=field_mask_pb2.FieldMask(
                        paths=["document_type", "document_number", "zone", "nationality"]
                    ),
                )
            )
        ).patron
        enrolled = await self.patrons.EnrollPatron(
            ppb.EnrollPatronRequest(
                request_id=rid(), patron_id=patron.id, etag=patron.etag, category_code=self.category
            )
        )
        return enrolled.patron.id

    async def lend(self, barcode: str, patron_id: str) -> None:
        await self.circulation.CheckOut(
            rpb.CheckOutRequest(request_id=rid(), item_barcode=barcode, patron_id=patron_id, branch="CEN")
        )

    async def submit(self, patron_id: str, barcode: str, **kw: Any) -> pb.ReservationRequest:
        self.clock.advance(seconds=1)  # requests arrive one after the other
        reply = await self.as_patron(patron_id).SubmitReservationRequest(
            pb.SubmitReservationRequestRequest(request_id=rid(), item_barcode=barcode, **kw)
        )
        return reply.reservation_request


async def make_world(
    stack_factory: Any, *, notify: bool = False, reservation_limit: int = 3, env: dict[str, str] | None = None
) -> World:
    services = ["patrons", "reservations", "requests", *(["notify"] if notify else [])]
    settings = {**FAST_ENV, "BIBLIODESK_DEVICE_GATEWAY_ADDRESS": UNREACHABLE, **(env or {})}
    if not notify:
        settings["BIBLIODESK_NOTIFY_ADDRESS"] = UNREACHABLE
    stack = await stack_factory(*services, clock=ManualClock(), env=settings)
    world = await world_on(stack, reservation_limit=reservation_limit)
    imported = await world.circulation.ImportItems(
        rpb.ImportItemsRequest(request_id=rid(), csv_content=HOLDINGS)
    )
    assert imported.created == 5 and not imported.rejected, imported
    return world


async def world_on(stack: Stack, *, reservation_limit: int = 3) -> World:
    """Operators' and admin's clients on a started stack, and the patron category tests enroll in."""
    assert isinstance(stack.clock, ManualClock)
    admin = stack.token(kind="staff", roles=("admin",), ttl=TTL, name="Admin")
    op1 = stack.token(kind="staff", roles=("operator",), ttl=TTL, name="Laura")
    op2 = stack.token(kind="staff", roles=("operator",), ttl=TTL, name="Marco")
    world = World(
        stack=stack,
        clock=stack.clock,
        inbox=pb_grpc.RequestInboxServiceStub(stack.channel("requests", op1)),
        inbox2=pb_grpc.RequestInboxServiceStub(stack.channel("requests", op2)),
        patrons=ppb_grpc.PatronServiceStub(stack.channel("patrons", admin)),
        reservations=rpb_grpc.ReservationServiceStub(stack.channel("reservations", admin)),
        circulation=rpb_grpc.CirculationServiceStub(stack.channel("reservations", admin)),
    )
    await world.patrons.CreatePatronCategory(
        ppb.CreatePatronCategoryRequest(
            request_id=rid(),
            category=ppb.PatronCategory(
                code=world.category,
                name="Adulti",
                loan_limit=10,
                reservation_limit=reservation_limit,
                enrollment_period_months=12,
                pickup_period_days=3,
                active=True,
            ),
        )
    )
    return world


@pytest.fixture
async def world(stack_factory: Any) -> World:
    return await make_world(stack_factory)
