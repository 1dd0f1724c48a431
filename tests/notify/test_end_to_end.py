"""The real services together: patrons gives the contact, reservations asks for the "ready" notice
through its outbox, notify mails it over SMTP and, once delivered, starts the pickup clock back in
reservations (RecordPatronNotified)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from bibliodesk.notify.v1 import notify_pb2 as npb
from bibliodesk.notify.v1 import notify_pb2_grpc as npb_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as ppb
from bibliodesk.patrons.v1 import patrons_pb2_grpc as ppb_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as rpb_grpc
from bibliodesk.runtime.clock import ManualClock

from .conftest import NOTIFY_ENV, SmtpSink

ENV = {
    **NOTIFY_ENV,
    "BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD": "lanterna-sul-molo-42",
    "BIBLIODESK_PATRONS_ARGON2_MEMORY_KIB": "1024",
    "BIBLIODESK_PATRONS_ARGON2_TIME_COST": "1",
    "BIBLIODESK_RESERVATIONS_PICKUP_PERIOD_DAYS": "7",
}
HOLDINGS = "barcode,title,author,branch,call_number\nB001,Il nome della rosa,Umberto Eco,CEN,853 ECO\n"
TTL = timedelta(days=30)


def rid() -> str:
    return uuid.uuid4().hex


async def _enrolled_patron(stack: Any, admin: str) -> str:
    patrons = ppb_grpc.PatronServiceStub(stack.channel("patrons", admin))
    await patrons.CreatePatronCategory(
        ppb.CreatePatronCategoryRequest(
            request_id=rid(),
            category=ppb.PatronCategory(
                code="ADULT",
                name="Adulti",
                loan_limit=10,
                reservation_limit=5,
                enrollment_period_months=12,
                pickup_period_days=7,
                active=True,
            ),
        )
    )
    details = ppb.PatronDetails(
        given_name="Maria",
        surname="Rossi",
        birth_date="1980-02-03",
        birth_place="Roma",
        address=ppb.Address(street="Via Roma 1", postal_code="00100", city="Roma", province="RM"),
        email="maria.rossi@example.org",
        phone="+39 06 1234567",
        home_branch="CEN",
        language="it",
    )
    created = (
        await patrons.CreatePatron(
            ppb.CreatePatronRequest(request_id=rid(), privacy_consent=True, details=details)
        )
    ).patron
    updated = (
        await patrons.UpdatePatron(
            ppb.UpdatePatronRequest(
                request_id=rid(),
                etag=created.etag,
                patron=ppb.Patron(
                    id=created.id,
                    document_type=ppb.DOCUMENT_TYPE_IDENTITY_CARD,
                    document_number="CA12345AB",
                    zone="Centro",
                    nationality="IT",
                ),
                update_mask={"paths": ["document_type", "document_number", "zone", "nationality"]},
            )
        )
    ).patron
    await patrons.EnrollPatron(
        ppb.EnrollPatronRequest(
            request_id=rid(), patron_id=created.id, etag=updated.etag, category_code="ADULT"
        )
    )
    return created.id


async def test_ready_notice_is_mailed_and_its_delivery_starts_the_pickup_clock(
    stack_factory: Any, smtp: SmtpSink
) -> None:
    clock = ManualClock()
    stack = await stack_factory("patrons", "reservations", "notify", clock=clock, env={**ENV, **smtp.env()})
    admin = stack.token(kind="staff", roles=("admin",), ttl=TTL)
    patron_id = await _enrolled_patron(stack, admin)
    circulation = rpb_grpc.CirculationServiceStub(stack.channel("reservations", admin))
    await circulation.ImportItems(rpb.ImportItemsRequest(request_id=rid(), csv_content=HOLDINGS))
    reservations = rpb_grpc.ReservationServiceStub(stack.channel("reservations", admin))
    created = (
        await reservations.CreateReservation(
            rpb.CreateReservationRequest(
                request_id=rid(),
                patron_id=patron_id,
                item_barcode="B001",
                pickup_branch="CEN",
                origin=rpb.RESERVATION_ORIGIN_WEB,
            )
        )
    ).reservation
    assert created.status == rpb.RESERVATION_STATUS_READY_FOR_PICKUP
    assert not created.HasField("pickup_deadline")  # nobody told the patron yet
    # The notice goes once the operator has actually put the copy on the hold shelf (V1).
    await reservations.ConfirmItemSetAside(
        rpb.ConfirmItemSetAsideRequest(request_id=rid(), reservation_id=created.id)
    )

    notify = npb_grpc.NotifyServiceStub(stack.channel("notify", admin))
    reference = f"reservation:{created.id}"
    message = None
    for _ in range(500):  # relays and the delivery worker run in the background; no timing asserted
        await stack.runtime("reservations").relay.drain()
        listed = await notify.ListMessages(npb.ListMessagesRequest(reference=reference))
        if listed.messages and listed.messages[0].status == npb.MESSAGE_STATUS_SENT:
            message = listed.messages[0]
            break
        stack.runtime("notify").state["worker"].wake()
        await asyncio.sleep(0.02)
    assert message is not None, "the ready notice was never delivered"
    assert message.template_key == "reservation_ready" and message.recipient == "maria.rossi@example.org"
    [mail] = smtp.received
    assert mail["Subject"] == "Biblioteca civica: «Il nome della rosa» è già disponibile"
    assert "Gentile Maria Rossi" in mail.get_body(("plain",)).get_content()

    told = None
    for _ in range(500):
        await stack.runtime("notify").relay.drain()
        got = (
            await reservations.GetReservation(rpb.GetReservationRequest(reservation_id=created.id))
        ).reservation
        if got.HasField("pickup_deadline"):
            told = got
            break
        await asyncio.sleep(0.02)
    assert told is not None, "delivery did not start the pickup clock"
    assert told.notified_at.ToDatetime() == message.sent_at.ToDatetime()
    assert told.pickup_deadline.ToDatetime() > told.notified_at.ToDatetime()


async def test_real_patrons_contact_drives_language_and_the_no_email_refusal(
    stack_factory: Any, smtp: SmtpSink
) -> None:
    stack = await stack_factory("patrons", "notify", clock=ManualClock(), env={**ENV, **smtp.env()})
    admin = stack.token(kind="staff", roles=("admin",), ttl=TTL)
    patrons = ppb_grpc.PatronServiceStub(stack.channel("patrons", admin))
    details = ppb.PatronDetails(
        given_name="John",
        surname="Smith",
        birth_date="1975-05-06",
        birth_place="London",
        address=ppb.Address(street="Via Po 2", postal_code="10100", city="Torino", province="TO"),
        phone="+39 011 1234567",
        home_branch="CEN",
        language="en",
    )
    no_mail = (
        await patrons.CreatePatron(
            ppb.CreatePatronRequest(request_id=rid(), privacy_consent=True, details=details)
        )
    ).patron
    details.email = "john.smith@example.org"
    details.given_name = "Johnny"
    with_mail = (
        await patrons.CreatePatron(
            ppb.CreatePatronRequest(request_id=rid(), privacy_consent=True, details=details)
        )
    ).patron

    notify = npb_grpc.NotifyServiceStub(stack.channel("notify", admin))
    import grpc
    import pytest

    from tests.helpers import error_reason

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify.SendMessage(
            npb.SendMessageRequest(
                request_id=rid(), patron_id=no_mail.id, template_key="free_message", body="Hello"
            )
        )
    assert (
        err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        and error_reason(err.value) == "NO_EMAIL_ADDRESS"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify.SendMessage(
            npb.SendMessageRequest(
                request_id=rid(), patron_id=str(uuid.uuid4()), template_key="free_message", body="Hello"
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(err.value) == "PATRON_NOT_FOUND"

    sent = (
        await notify.SendMessage(
            npb.SendMessageRequest(
                request_id=rid(),
                patron_id=with_mail.id,
                template_key="free_message",
                body="Your card is ready.",
            )
        )
    ).message
    assert sent.language == "en" and sent.recipient == "john.smith@example.org"
    assert sent.subject == "A message from Biblioteca civica"
    assert sent.body_text.startswith("Dear Johnny Smith,")
