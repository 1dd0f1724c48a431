"""Helpers for the patrons tests: a started stack, staff and patron clients, a patron on the way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from bibliodesk.patrons.v1 import identity_pb2 as ipb
from bibliodesk.patrons.v1 import identity_pb2_grpc, patrons_pb2_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as pb

ADMIN_PASSWORD = "lanterna-sul-molo-42"
FAST_ENV = {
    "BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    # Cheap argon2id for tests; production keeps the RFC 9106 defaults.
    "BIBLIODESK_PATRONS_ARGON2_MEMORY_KIB": "1024",
    "BIBLIODESK_PATRONS_ARGON2_TIME_COST": "1",
    "BIBLIODESK_PATRONS_LOCKOUT_FAILURES": "3",
}


async def start(stack_factory: Any, *services: str, env: dict[str, str] | None = None) -> Any:
    return await stack_factory("patrons", *services, env={**FAST_ENV, **(env or {})})


def rid() -> str:
    return uuid.uuid4().hex


@dataclass
class Desk:
    """An operator at the desk, logged in for real."""

    patrons: patrons_pb2_grpc.PatronServiceStub
    identity: identity_pb2_grpc.IdentityServiceStub
    token: str


async def log_in(stack: Any, username: str, password: str) -> ipb.LogInResponse:
    ident = identity_pb2_grpc.IdentityServiceStub(stack.channel("patrons"))
    return await ident.LogIn(ipb.LogInRequest(username=username, password=password))


def client(stack: Any, token: str) -> Desk:
    channel = stack.channel("patrons", token)
    return Desk(
        patrons_pb2_grpc.PatronServiceStub(channel), identity_pb2_grpc.IdentityServiceStub(channel), token
    )


async def admin(stack: Any) -> Desk:
    return client(stack, (await log_in(stack, "admin", ADMIN_PASSWORD)).access_token)


async def operator(stack: Any, username: str = "operatore1", branch: str = "CEN") -> Desk:
    """An admin creates an operator account; the operator sets a password at first log-in."""
    boss = await admin(stack)
    created = await boss.identity.CreateStaffAccount(
        ipb.CreateStaffAccountRequest(
            request_id=rid(),
            username=username,
            display_name="Laura Operatrice",
            roles=[ipb.STAFF_ROLE_OPERATOR],
            branch=branch,
        )
    )
    first = await log_in(stack, username, created.one_time_password)
    assert first.must_change_credentials
    changed = await client(stack, first.access_token).identity.ChangeCredentials(
        ipb.ChangeCredentialsRequest(
            new_password="banco-prestiti-2026", current_password=created.one_time_password
        )
    )
    return client(stack, changed.access_token)


def form(
    given: str = "Nicolò",
    surname: str = "D'Angelo",
    born: str = "1990-04-12",
    place: str = "Bari",
    email: str = "nicolo.dangelo@example.org",
    **changes: Any,
) -> pb.PatronDetails:
    details = pb.PatronDetails(
        given_name=given,
        surname=surname,
        birth_date=born,
        birth_place=place,
        address=pb.Address(street="Via Sparano 3", postal_code="70121", city="Bari", province="BA"),
        email=email,
        phone="+39 080 1234567",
        home_branch="CEN",
        language="it",
    )
    for key, value in changes.items():
        if key.startswith("address_"):
            setattr(details.address, key[len("address_") :], value)
        else:
            setattr(details, key, value)
    return details


async def pre_register(stack: Any, **kw: Any) -> str:
    public = patrons_pb2_grpc.PatronServiceStub(stack.channel("patrons"))
    reply = await public.PreRegisterPatron(
        pb.PreRegisterPatronRequest(request_id=rid(), details=form(**kw), privacy_consent=True)
    )
    return reply.patron_id


async def adult_category(desk: Desk, **limits: int) -> pb.PatronCategory:
    """The "ADULT" category (10 loans, 5 reservations, 7 pickup days unless ``limits`` say otherwise)."""
    values = {"loan_limit": 10, "reservation_limit": 5, "pickup_period_days": 7, **limits}
    reply = await desk.patrons.CreatePatronCategory(
        pb.CreatePatronCategoryRequest(
            request_id=rid(),
            category=pb.PatronCategory(
                code="ADULT", name="Adulti", enrollment_period_months=12, active=True, **values
            ),
        )
    )
    return reply.category


async def complete_and_enroll(desk: Desk, patron_id: str, *, card: str = "") -> pb.Patron:
    got = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    updated = (
        await desk.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=got.etag,
                patron=pb.Patron(
                    id=patron_id,
                    document_type=pb.DOCUMENT_TYPE_IDENTITY_CARD,
                    document_number="CA12345AB",
                    zone="Centro",
                    nationality="IT",
                ),
                update_mask={"paths": ["document_type", "document_number", "zone", "nationality"]},
            )
        )
    ).patron
    enrolled = await desk.patrons.EnrollPatron(
        pb.EnrollPatronRequest(
            request_id=rid(), patron_id=patron_id, etag=updated.etag, category_code="ADULT", card_barcode=card
        )
    )
    return enrolled.patron
