"""The seed story, driven through the public contracts against running services.

Used twice: by ``tests/e2e`` against five ``bibliodesk serve`` processes, and by ``deploy/ci-stack``
against the compose stack (``python -m tests.stack.scenario``). Addresses come from the program's
own variables (BIBLIODESK_<SVC>_ADDRESS); the admin password and the folder where the SMTP catcher
drops mails from BIBLIODESK_STACK_ADMIN_PASSWORD(_FILE) and BIBLIODESK_STACK_MAIL_DIR.

Story: staff log-in → category and holdings → P1 pre-registration from home → P2 search → P3
complete → P4 enroll → P5 temporary credentials by e-mail → P6 first log-in, own credentials →
R1 web request → R2 today's inbox → R7 notice (e-mail) → R5 advance → V1 set aside, "ready" e-mail
→ V6 schedule and check-out (fulfilled) → check-in → V4 a request on a loaned item waits, and the
check-in makes it ready.
"""

from __future__ import annotations

import asyncio
import email
import os
import sys
import time
import uuid
from dataclasses import dataclass
from email import policy
from pathlib import Path

import grpc

from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc, patrons_pb2, patrons_pb2_grpc
from bibliodesk.requests.v1 import requests_pb2, requests_pb2_grpc
from bibliodesk.reservations.v1 import reservations_pb2, reservations_pb2_grpc
from bibliodesk.runtime.interceptors import client_interceptors
from bibliodesk.runtime.settings import Settings, load_settings


@dataclass
class Mailbox:
    folder: Path

    def messages(self) -> list[email.message.EmailMessage]:
        found = []
        for path in sorted(self.folder.glob("*.eml")):
            found.append(email.message_from_bytes(path.read_bytes(), policy=policy.default))
        return found

    async def wait_for(self, to: str, needle: str, timeout: float = 60.0) -> email.message.EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                recipients = str(message.get("To", ""))
                body = message.get_body(preferencelist=("plain",))
                text = body.get_content() if body is not None else ""
                if to in recipients and (needle in text or needle in str(message.get("Subject", ""))):
                    return message
            await asyncio.sleep(0.25)
        raise AssertionError(f"no mail to {to} containing {needle!r} within {timeout}s in {self.folder}")


def _channel(settings: Settings, service: str, token: str | None) -> grpc.aio.Channel:
    async def bearer() -> str:
        assert token is not None
        return token

    return grpc.aio.insecure_channel(
        settings.service(service).address, interceptors=client_interceptors(bearer if token else None)
    )


_last = [time.monotonic()]


def _step(text: str) -> None:
    now = time.monotonic()
    print(f"  ✓ {text} ({now - _last[0]:.2f}s)", flush=True)
    _last[0] = now


async def run(settings: Settings, admin_user: str, admin_password: str, mailbox: Mailbox) -> list[str]:
    """Runs the story; returns the passwords it used (callers check no log ever shows them)."""
    run_id = uuid.uuid4().hex[:8]
    tag = "".join(chr(ord("a") + int(c, 16)) for c in run_id).capitalize()  # letters only, for names
    anon = _channel(settings, "patrons", None)
    identity = identity_pb2_grpc.IdentityServiceStub(anon)
    login = await identity.LogIn(
        identity_pb2.LogInRequest(username=admin_user, password=admin_password), timeout=15
    )
    staff = login.access_token
    _step("staff log-in")

    patrons = patrons_pb2_grpc.PatronServiceStub(_channel(settings, "patrons", staff))
    circulation = reservations_pb2_grpc.CirculationServiceStub(_channel(settings, "reservations", staff))
    reservations = reservations_pb2_grpc.ReservationServiceStub(_channel(settings, "reservations", staff))
    inbox = requests_pb2_grpc.RequestInboxServiceStub(_channel(settings, "requests", staff))

    category = f"AD{run_id[:4].upper()}"
    await patrons.CreatePatronCategory(
        patrons_pb2.CreatePatronCategoryRequest(
            request_id=f"cat-{run_id}",
            category=patrons_pb2.PatronCategory(
                code=category,
                name="Adulti",
                loan_limit=10,
                reservation_limit=5,
                enrollment_period_months=12,
                pickup_period_days=3,
                active=True,
            ),
        ),
        timeout=15,
    )
    shelf, loaned = f"SC{run_id}A", f"SC{run_id}B"
    csv = (
        "barcode,title,author,branch\n"
        f"{shelf},Il nome della rosa,Umberto Eco,CEN\n"
        f"{loaned},Le città invisibili,Italo Calvino,CEN\n"
    )
    imported = await circulation.ImportItems(
        reservations_pb2.ImportItemsRequest(request_id=f"items-{run_id}", csv_content=csv), timeout=30
    )
    assert imported.created == 2 and not imported.rejected, imported
    _step("category and holdings loaded")

    mail = f"giulia.{run_id}@example.org"
    public = patrons_pb2_grpc.PatronServiceStub(anon)
    pre = await public.PreRegisterPatron(
        patrons_pb2.PreRegisterPatronRequest(
            request_id=f"pre-{run_id}",
            privacy_consent=True,
            details=patrons_pb2.PatronDetails(
                given_name="Giulia",
                surname=f"D'Angelò{tag}",
                birth_date="1990-04-12",
                birth_place="Bologna",
                email=mail,
                phone="+39 051 123456",
                home_branch="CEN",
                language="it",
                address=patrons_pb2.Address(
                    street="Via Zamboni 33",
                    postal_code="40126",
                    city="Bologna",
                    province="BO",
                    country_code="IT",
                ),
            ),
        ),
        timeout=15,
    )
    patron_id = pre.patron_id
    assert pre.status == patrons_pb2.PATRON_STATUS_PRE_REGISTERED
    _step("P1 pre-registration from home (origin WEB)")

    found = await patrons.SearchPatrons(
        patrons_pb2.SearchPatronsRequest(surname=f"d'angelo{tag.lower()}"), timeout=15
    )
    hits = [h for h in found.hits if h.patron_id == patron_id]
    assert hits and hits[0].origin == patrons_pb2.PATRON_ORIGIN_WEB, (
        f"search did not find the web patron: {found}"
    )
    _step("P2 found at the desk by surname (accent- and case-insensitive)")

    current = (await patrons.GetPatron(patrons_pb2.GetPatronRequest(patron_id=patron_id), timeout=15)).patron
    from google.protobuf import field_mask_pb2

    update = patrons_pb2.Patron(
        id=patron_id,
        document_type=patrons_pb2.DOCUMENT_TYPE_IDENTITY_CARD,
        document_number="CA12345AB",
        zone="Centro",
        nationality="IT",
    )
    updated = await patrons.UpdatePatron(
        patrons_pb2.UpdatePatronRequest(
            request_id=f"upd-{run_id}",
            patron=update,
            etag=current.etag,
            update_mask=field_mask_pb2.FieldMask(
                paths=["document_type", "document_number", "zone", "nationality"]
            ),
        ),
        timeout=15,
    )
    _step("P3 record completed (document, zone, nationality)")

    enrolled = await patrons.EnrollPatron(
        patrons_pb2.EnrollPatronRequest(
            request_id=f"enr-{run_id}",
            patron_id=patron_id,
            etag=updated.patron.etag,
            category_code=category,
        ),
        timeout=15,
    )
    assert enrolled.patron.status == patrons_pb2.PATRON_STATUS_ENROLLED and enrolled.patron.card_barcode
    _step(f"P4 enrolled, card {enrolled.patron.card_barcode}")

    creds = await patrons.IssueTemporaryCredentials(
        patrons_pb2.IssueTemporaryCredentialsRequest(
            request_id=f"cred-{run_id}", patron_id=patron_id, send_by_email=True
        ),
        timeout=15,
    )
    username = creds.credentials.username
    await mailbox.wait_for(mail, username)
    _step("P5 temporary credentials e-mailed")

    temp = await identity.LogIn(
        identity_pb2.LogInRequest(username=username, password=creds.credentials.temporary_password),
        timeout=15,
    )
    assert temp.must_change_credentials
    own_user = f"giulia{run_id}"
    restricted = identity_pb2_grpc.IdentityServiceStub(_channel(settings, "patrons", temp.access_token))
    changed = await restricted.ChangeCredentials(
        identity_pb2.ChangeCredentialsRequest(
            new_username=own_user,
            new_password=f"Lettura-{run_id}-Rosa",
            current_password=creds.credentials.temporary_password,
        ),
        timeout=15,
    )
    patron_token = changed.access_token
    view = (await patrons.GetPatron(patrons_pb2.GetPatronRequest(patron_id=patron_id), timeout=15)).patron
    assert view.credentials.username == own_user
    assert "Lettura" not in str(view)
    _step("P6 own username and password; staff see the username only")

    patron_inbox = requests_pb2_grpc.RequestInboxServiceStub(_channel(settings, "requests", patron_token))
    submitted = await patron_inbox.SubmitReservationRequest(
        requests_pb2.SubmitReservationRequestRequest(
            request_id=f"req-{run_id}", item_barcode=shelf, pickup_branch="CEN", note="Grazie"
        ),
        timeout=15,
    )
    request = submitted.reservation_request
    _step("R1 web request submitted")

    today = await inbox.ListReservationRequests(
        requests_pb2.ListReservationRequestsRequest(made_today=True, active_only=True, page_size=100),
        timeout=15,
    )
    assert any(r.id == request.id for r in today.reservation_requests), today
    _step("R2 in today's inbox")

    await inbox.SendRequestNotice(
        requests_pb2.SendRequestNoticeRequest(
            request_id=f"notice-{run_id}",
            reservation_request_id=request.id,
            template_key="request_notice",
            body="Abbiamo ricevuto la sua richiesta.",
        ),
        timeout=15,
    )
    await mailbox.wait_for(mail, "Abbiamo ricevuto la sua richiesta")
    _step("R7 notice e-mailed")

    advanced = await inbox.AdvanceReservationRequest(
        requests_pb2.AdvanceReservationRequestRequest(
            request_id=f"adv-{run_id}",
            reservation_request_id=request.id,
            mode=requests_pb2.ADVANCE_MODE_RESERVE,
        ),
        timeout=30,
    )
    reservation = advanced.reservation
    assert reservation.status == reservations_pb2.RESERVATION_STATUS_READY_FOR_PICKUP, reservation
    assert reservation.origin == reservations_pb2.RESERVATION_ORIGIN_WEB
    _step("R5 advanced → V1 reservation ready, item set aside")

    patron_res = reservations_pb2_grpc.ReservationServiceStub(
        _channel(settings, "reservations", patron_token)
    )
    schedule = await patron_res.GetPatronSchedule(
        reservations_pb2.GetPatronScheduleRequest(patron_id=patron_id), timeout=15
    )
    assert any(m.reservation.item_barcode == shelf for m in schedule.materials_to_deliver), schedule
    _step("V3/V6 the patron sees it in the web schedule")

    await mailbox.wait_for(mail, "Il nome della rosa")
    _step("V1 'ready for pickup' e-mail delivered")

    out = await circulation.CheckOut(
        reservations_pb2.CheckOutRequest(
            request_id=f"out-{run_id}", item_barcode=shelf, patron_id=patron_id, branch="CEN"
        ),
        timeout=15,
    )
    assert out.fulfilled_reservation.status == reservations_pb2.RESERVATION_STATUS_FULFILLED
    _step("V6 delivered at the desk: check-out fulfils the reservation")
    back = await circulation.CheckIn(
        reservations_pb2.CheckInRequest(request_id=f"in-{run_id}", item_barcode=shelf, branch="CEN"),
        timeout=15,
    )
    assert back.item.state == reservations_pb2.ITEM_STATE_ON_SHELF
    _step("check-in: back on the shelf")

    # V4: another patron (enrolled at the desk) has the second copy on loan; Giulia's request waits.
    desk = await patrons.CreatePatron(
        patrons_pb2.CreatePatronRequest(
            request_id=f"desk-{run_id}",
            details=patrons_pb2.PatronDetails(
                given_name="Marco",
                surname=f"Rossi{tag}",
                birth_date="1985-01-02",
                birth_place="Roma",
                email=f"marco.{run_id}@example.org",
                home_branch="CEN",
                language="it",
                address=patrons_pb2.Address(
                    street="Via Roma 1", postal_code="00100", city="Roma", country_code="IT"
                ),
            ),
        ),
        timeout=15,
    )
    marco = desk.patron
    marco = (
        await patrons.UpdatePatron(
            patrons_pb2.UpdatePatronRequest(
                request_id=f"upd2-{run_id}",
                etag=marco.etag,
                patron=patrons_pb2.Patron(
                    id=marco.id,
                    document_type=patrons_pb2.DOCUMENT_TYPE_PASSPORT,
                    document_number="YA0000001",
                    zone="Centro",
                    nationality="IT",
                ),
                update_mask=field_mask_pb2.FieldMask(
                    paths=["document_type", "document_number", "zone", "nationality"]
                ),
            ),
            timeout=15,
        )
    ).patron
    marco = (
        await patrons.EnrollPatron(
            patrons_pb2.EnrollPatronRequest(
                request_id=f"enr2-{run_id}", patron_id=marco.id, etag=marco.etag, category_code=category
            ),
            timeout=15,
        )
    ).patron
    await circulation.CheckOut(
        reservations_pb2.CheckOutRequest(
            request_id=f"out2-{run_id}", item_barcode=loaned, patron_id=marco.id, branch="CEN"
        ),
        timeout=15,
    )
    second = (
        await patron_inbox.SubmitReservationRequest(
            requests_pb2.SubmitReservationRequestRequest(
                request_id=f"req2-{run_id}", item_barcode=loaned, pickup_branch="CEN"
            ),
            timeout=15,
        )
    ).reservation_request
    waiting = (
        await inbox.AdvanceReservationRequest(
            requests_pb2.AdvanceReservationRequestRequest(
                request_id=f"adv2-{run_id}",
                reservation_request_id=second.id,
                mode=requests_pb2.ADVANCE_MODE_RESERVE,
            ),
            timeout=30,
        )
    ).reservation
    assert waiting.status == reservations_pb2.RESERVATION_STATUS_WAITING_FOR_RETURN, waiting
    assert waiting.queue_position == 1
    _step("V4 request on a loaned item → waiting for return, first in the queue")
    returned = await circulation.CheckIn(
        reservations_pb2.CheckInRequest(request_id=f"in2-{run_id}", item_barcode=loaned, branch="CEN"),
        timeout=15,
    )
    assert returned.ready_reservation.id == waiting.id
    assert returned.item.state == reservations_pb2.ITEM_STATE_SET_ASIDE
    ready = await reservations.GetReservation(
        reservations_pb2.GetReservationRequest(reservation_id=waiting.id), timeout=15
    )
    assert ready.reservation.status == reservations_pb2.RESERVATION_STATUS_READY_FOR_PICKUP
    await mailbox.wait_for(mail, "Le città invisibili")
    _step("V4 check-in signals the reservation: set aside, patron e-mailed")
    return [admin_password, creds.credentials.temporary_password, f"Lettura-{run_id}-Rosa"]


def _admin_password() -> str:
    if os.environ.get("BIBLIODESK_STACK_ADMIN_PASSWORD"):
        return os.environ["BIBLIODESK_STACK_ADMIN_PASSWORD"]
    file = os.environ.get("BIBLIODESK_STACK_ADMIN_PASSWORD_FILE")
    if file:
        return Path(file).read_text().strip()
    raise SystemExit("set BIBLIODESK_STACK_ADMIN_PASSWORD(_FILE)")


def main() -> int:
    settings = load_settings()
    mail_dir = Path(os.environ.get("BIBLIODESK_STACK_MAIL_DIR", ""))
    if not mail_dir.is_dir():
        raise SystemExit("set BIBLIODESK_STACK_MAIL_DIR to the SMTP catcher's folder")
    print("scenario: the seed story against the running stack")
    started = time.monotonic()
    asyncio.run(
        run(
            settings,
            os.environ.get("BIBLIODESK_STACK_ADMIN_USER", "admin"),
            _admin_password(),
            Mailbox(mail_dir),
        )
    )
    print(f"scenario passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
