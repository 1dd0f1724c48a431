"""The patron walkthrough (P1–P7) as the operator and the patron live it, each with their own client."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from bibliodesk.patrons.v1 import patrons_pb2 as pb
from bibliodesk.patrons.v1 import patrons_pb2_grpc
from tests.helpers import error_fields, error_reason
from tests.patrons.support import (
    adult_category,
    client,
    complete_and_enroll,
    form,
    log_in,
    operator,
    pre_register,
    rid,
    start,
)


async def test_p1_pre_registration_creates_an_incomplete_web_record(stack_factory) -> None:
    stack = await start(stack_factory)
    public = patrons_pb2_grpc.PatronServiceStub(stack.channel("patrons"))  # no token: from home
    request = pb.PreRegisterPatronRequest(request_id=rid(), details=form(), privacy_consent=True)
    reply = await public.PreRegisterPatron(request)
    assert reply.status == pb.PATRON_STATUS_PRE_REGISTERED and "identity document" in reply.next_step
    # A double submission of the same form creates one record.
    again = await public.PreRegisterPatron(request)
    assert again.patron_id == reply.patron_id

    desk = await operator(stack)
    patron = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=reply.patron_id))).patron
    assert patron.origin == pb.PATRON_ORIGIN_WEB and patron.status == pb.PATRON_STATUS_PRE_REGISTERED
    assert patron.privacy_consent and patron.email == "nicolo.dangelo@example.org"
    assert list(patron.missing_for_enrollment) == ["document_type", "document_number", "nationality"]
    found = await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="d'angelo"))
    assert [h.patron_id for h in found.hits] == [reply.patron_id]


async def test_p1_bad_input_names_every_field_and_consent_is_required(stack_factory) -> None:
    stack = await start(stack_factory)
    public = patrons_pb2_grpc.PatronServiceStub(stack.channel("patrons"))
    bad = form(given="", born="1990-13-01", email="nicolo@", address_postal_code="7012", phone="call me")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await public.PreRegisterPatron(
            pb.PreRegisterPatronRequest(request_id=rid(), details=bad, privacy_consent=True)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_fields(err.value)) == {
        "details.given_name",
        "details.birth_date",
        "details.email",
        "details.address.postal_code",
        "details.phone",
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await public.PreRegisterPatron(pb.PreRegisterPatronRequest(request_id=rid(), details=form()))
    assert error_fields(err.value) == ["privacy_consent"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await public.PreRegisterPatron(
            pb.PreRegisterPatronRequest(
                request_id=rid(), details=form(surname="x" * 5000), privacy_consent=True
            )
        )
    assert error_fields(err.value) == ["details.surname"]


async def test_p1_probable_duplicates_are_flagged_to_the_operator_not_merged(stack_factory) -> None:
    stack = await start(stack_factory)
    first = await pre_register(stack)
    # Same person typed differently (no accent, curly apostrophe), other e-mail: same name and birth date.
    second = await pre_register(stack, given="Nicolo", surname="D’Angelo", email="nd@example.org")
    # Different person, same e-mail (a shared family address).
    third = await pre_register(
        stack, given="Maria", surname="Verdi", born="1960-01-01", email="NICOLO.DANGELO@example.org"
    )
    desk = await operator(stack)
    p2 = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=second))).patron
    assert [(f.other_patron_id, f.reason) for f in p2.possible_duplicates] == [
        (first, pb.DUPLICATE_REASON_SAME_NAME_AND_BIRTH_DATE)
    ]
    p1 = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=first))).patron
    assert {(f.other_patron_id, f.reason) for f in p1.possible_duplicates} == {
        (second, pb.DUPLICATE_REASON_SAME_NAME_AND_BIRTH_DATE),
        (third, pb.DUPLICATE_REASON_SAME_EMAIL),
    }
    # Three separate records exist: nothing was merged.
    hits = (await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="dangelo"))).hits
    assert len(hits) == 2 and all(h.possible_duplicate for h in hits)
    # The operator checks them and dismisses the flag.
    after = await desk.patrons.DismissDuplicateFlag(
        pb.DismissDuplicateFlagRequest(request_id=rid(), patron_id=second, other_patron_id=first)
    )
    assert list(after.patron.possible_duplicates) == []


async def test_p1_pre_registration_is_rate_limited_per_client_address(stack_factory) -> None:
    stack = await start(stack_factory, env={"BIBLIODESK_PATRONS_PRE_REGISTRATIONS_PER_HOUR": "2"})
    await pre_register(stack, given="Anna", email="a1@example.org")
    await pre_register(stack, given="Bruna", email="a2@example.org")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pre_register(stack, given="Carla", email="a3@example.org")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(err.value) == "TOO_MANY_PRE_REGISTRATIONS"
    stack.runtime("patrons").clock.advance(hours=1, minutes=1)
    await pre_register(stack, given="Carla", email="a3@example.org")


async def test_p2_namesakes_are_told_apart_by_birth_data_and_origin(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    web = await pre_register(
        stack, given="Mario", surname="Rossi", born="1971-03-14", place="Milano", email="mario71@example.org"
    )
    desk_made = (
        await desk.patrons.CreatePatron(
            pb.CreatePatronRequest(
                request_id=rid(),
                privacy_consent=True,
                details=form(
                    given="Mario",
                    surname="Rossi",
                    born="1985-11-02",
                    place="Napoli",
                    email="",
                    address_street="Corso Garibaldi 8",
                    address_postal_code="80142",
                    address_city="Napoli",
                    address_province="NA",
                ),
            )
        )
    ).patron
    await pre_register(stack, given="Anna", surname="Rossini", born="1990-01-01", email="ar@example.org")
    hits = (await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="ROSSI", given_name="mar"))).hits
    assert [h.display_name for h in hits] == ["Rossi Mario", "Rossi Mario"]
    by_id = {h.patron_id: h for h in hits}
    assert by_id[web].origin == pb.PATRON_ORIGIN_WEB and by_id[web].birth_place == "Milano"
    assert by_id[web].birth_date == "1971-03-14"
    assert by_id[desk_made.id].origin == pb.PATRON_ORIGIN_DESK
    assert by_id[desk_made.id].address == "Corso Garibaldi 8, 80142 Napoli (NA)"
    # Only the web one, or by birth date.
    only_web = await desk.patrons.SearchPatrons(
        pb.SearchPatronsRequest(surname="rossi", given_name="m", origin=pb.PATRON_ORIGIN_WEB)
    )
    assert [h.patron_id for h in only_web.hits] == [web]
    born = await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi", birth_date="1985-11-02"))
    assert [h.patron_id for h in born.hits] == [desk_made.id]
    # Prefix: "ross" finds Rossi and Rossini, surname first.
    prefix = await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="ross"))
    assert [h.display_name for h in prefix.hits] == ["Rossi Mario", "Rossi Mario", "Rossini Anna"]


async def test_p2_search_is_accent_and_case_insensitive_and_paged(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    await pre_register(stack, given="Nicolò", surname="De Luca", email="n1@example.org")
    for i, given in enumerate(["Anna", "Bea", "Carla", "Dora", "Elsa"]):
        await desk.patrons.CreatePatron(
            pb.CreatePatronRequest(
                request_id=rid(),
                details=form(given=given, surname="Deluca", born=f"198{i}-01-01", email=f"d{i}@example.org"),
            )
        )
    hits = (
        await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="de luca", given_name="NICOLO"))
    ).hits
    assert [h.display_name for h in hits] == ["De Luca Nicolò"]
    seen: list[str] = []
    token = ""
    while True:
        page = await desk.patrons.SearchPatrons(
            pb.SearchPatronsRequest(surname="deluca", page_size=2, page_token=token)
        )
        assert len(page.hits) <= 2
        seen += [h.display_name for h in page.hits]
        token = page.next_page_token
        if not token:
            break
    # "De Luca" and "Deluca" are the same key: ordered by given name across both spellings.
    assert seen == [
        "Deluca Anna",
        "Deluca Bea",
        "Deluca Carla",
        "Deluca Dora",
        "Deluca Elsa",
        "De Luca Nicolò",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="  "))
    assert error_fields(err.value) == ["surname"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi", page_token="garbage"))
    assert error_fields(err.value) == ["page_token"]


async def test_p3_complete_the_record_and_a_concurrent_edit_is_refused(stack_factory) -> None:
    stack = await start(stack_factory)
    patron_id = await pre_register(stack)
    laura = await operator(stack, "laura")
    marco = await operator(stack, "marco")
    read_by_laura = (await laura.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    read_by_marco = (await marco.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    updated = (
        await laura.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=read_by_laura.etag,
                patron=pb.Patron(
                    id=patron_id,
                    document_type=pb.DOCUMENT_TYPE_PASSPORT,
                    document_number="ya1234567",
                    zone="Murat",
                    nationality="it",
                    address=pb.Address(street="Via Sparano 5"),
                ),
                update_mask={
                    "paths": ["document_type", "document_number", "zone", "nationality", "address.street"]
                },
            )
        )
    ).patron
    assert updated.document_number == "YA1234567" and updated.nationality == "IT"
    assert updated.address.street == "Via Sparano 5" and updated.address.city == "Bari"
    assert list(updated.missing_for_enrollment) == [] and updated.etag != read_by_laura.etag
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await marco.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=read_by_marco.etag,
                patron=pb.Patron(id=patron_id, zone="Libertà"),
                update_mask={"paths": ["zone"]},
            )
        )
    assert err.value.code() == grpc.StatusCode.ABORTED and error_reason(err.value) == "ETAG_MISMATCH"
    now = (await marco.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    assert now.zone == "Murat"  # nothing overwritten
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await marco.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=now.etag,
                patron=pb.Patron(id=patron_id, nationality="Italia", birth_date="2990-01-01", email="x@"),
                update_mask={"paths": ["nationality", "birth_date", "email"]},
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_fields(err.value)) == {"patron.nationality", "patron.birth_date", "patron.email"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await marco.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=now.etag,
                patron=pb.Patron(id=patron_id),
                update_mask={"paths": ["status"]},
            )
        )
    assert error_fields(err.value) == ["update_mask"]


async def test_p4_enrollment_is_refused_until_complete_then_assigns_category_and_card(stack_factory) -> None:
    stack = await start(stack_factory)
    boss_desk = await operator(stack, "capo")
    admin_desk = client(stack, (await log_in(stack, "admin", "lanterna-sul-molo-42")).access_token)
    await adult_category(admin_desk)
    patron_id = await pre_register(stack)
    got = (await boss_desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss_desk.patrons.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=rid(), patron_id=patron_id, etag=got.etag, category_code="ADULT"
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "ENROLLMENT_INCOMPLETE"
    assert error_fields(err.value) == ["document_type", "document_number", "nationality"]
    # A mistyped card number is caught by the check digit.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss_desk.patrons.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=rid(),
                patron_id=patron_id,
                etag=got.etag,
                category_code="ADULT",
                card_barcode="2000000000001",
            )
        )
    assert error_fields(err.value) == ["card_barcode"]
    enrolled = await complete_and_enroll(boss_desk, patron_id)
    assert enrolled.status == pb.PATRON_STATUS_ENROLLED and enrolled.category_code == "ADULT"
    assert len(enrolled.card_barcode) == 13 and enrolled.card_barcode.startswith("2")
    assert enrolled.enrollment_date == "2026-12-03" and enrolled.enrollment_expiry_date == "2027-12-03"
    # The card works at the desk and for the other services.
    found = await boss_desk.patrons.LookUpPatronByCard(
        pb.LookUpPatronByCardRequest(barcode=enrolled.card_barcode)
    )
    assert found.patron.id == patron_id
    service = patrons_pb2_grpc.PatronServiceStub(
        stack.channel("patrons", stack.token(kind="service", subject="reservations"))
    )
    standing = await service.GetPatronStanding(pb.GetPatronStandingRequest(patron_id=patron_id))
    assert (
        standing.enrolled,
        standing.blocked,
        standing.reservation_limit,
        standing.loan_limit,
        standing.pickup_period_days,
        standing.card_barcode,
    ) == (True, False, 5, 10, 7, enrolled.card_barcode)
    contact = await service.GetPatronContact(pb.GetPatronContactRequest(patron_id=patron_id))
    assert (contact.display_name, contact.email, contact.language) == (
        "D'Angelo Nicolò",
        "nicolo.dangelo@example.org",
        "it",
    )
    # Enrolling twice is refused; a second patron cannot take the same card.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss_desk.patrons.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=rid(), patron_id=patron_id, etag=enrolled.etag, category_code="ADULT"
            )
        )
    assert error_reason(err.value) == "ALREADY_ENROLLED"
    other = await pre_register(stack, given="Maria", surname="Verdi", email="mv@example.org")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete_and_enroll(boss_desk, other, card=enrolled.card_barcode)
    assert (
        err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        and error_reason(err.value) == "CARD_BARCODE_IN_USE"
    )


async def test_p4_rfid_uid_lookup_and_unknown_card(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    await adult_category(client(stack, (await log_in(stack, "admin", "lanterna-sul-molo-42")).access_token))
    patron_id = await pre_register(stack)
    got = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    got = (
        await desk.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=got.etag,
                patron=pb.Patron(
                    id=patron_id,
                    document_type=pb.DOCUMENT_TYPE_IDENTITY_CARD,
                    document_number="CA1",
                    nationality="IT",
                ),
                update_mask={"paths": ["document_type", "document_number", "nationality"]},
            )
        )
    ).patron
    enrolled = (
        await desk.patrons.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=rid(),
                patron_id=patron_id,
                etag=got.etag,
                category_code="ADULT",
                rfid_uid="e0:04:01:50:12:34:56:78",
            )
        )
    ).patron
    assert enrolled.rfid_uid == "E004015012345678"
    found = await desk.patrons.LookUpPatronByCard(pb.LookUpPatronByCardRequest(rfid_uid="e004015012345678"))
    assert found.patron.id == patron_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.LookUpPatronByCard(pb.LookUpPatronByCardRequest(barcode="2999999999999"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(err.value) == "CARD_NOT_FOUND"


async def test_p2_given_name_search_pages_across_exact_and_longer_surnames(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    people = [
        ("Marta", "Ross"),
        ("Mario", "Rossi"),
        ("Maria", "Rossi"),
        ("Anna", "Rossini"),
        ("Marco", "Rossini"),
        ("Marco", "Russo"),
    ]
    for i, (given, surname) in enumerate(people):
        await desk.patrons.CreatePatron(
            pb.CreatePatronRequest(
                request_id=rid(),
                details=form(given=given, surname=surname, born=f"197{i}-05-05", email=f"r{i}@example.org"),
            )
        )
    seen, token = [], ""
    while True:
        page = await desk.patrons.SearchPatrons(
            pb.SearchPatronsRequest(surname="ross", given_name="mar", page_size=2, page_token=token)
        )
        seen += [h.display_name for h in page.hits]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["Ross Marta", "Rossi Maria", "Rossi Mario", "Rossini Marco"]


ZONE = FieldMask(paths=["zone"])
BAD_INPUTS = [
    ("GetPatron", pb.GetPatronRequest(), "patron_id"),
    ("SearchPatrons", pb.SearchPatronsRequest(surname="rossi", birth_date="14/03/1971"), "birth_date"),
    ("SearchPatrons", pb.SearchPatronsRequest(surname="rossi", page_size=1000), "page_size"),
    (
        "EnrollPatron",
        pb.EnrollPatronRequest(patron_id="p", etag="1", category_code="bad code!"),
        "category_code",
    ),
    ("EnrollPatron", pb.EnrollPatronRequest(patron_id="p", category_code="ADULT"), "etag"),
    (
        "EnrollPatron",
        pb.EnrollPatronRequest(patron_id="p", etag="1", category_code="ADULT", rfid_uid="not-hex"),
        "rfid_uid",
    ),
    (
        "EnrollPatron",
        pb.EnrollPatronRequest(patron_id="p", etag="1", category_code="ADULT", enrollment_date="2026-02-30"),
        "enrollment_date",
    ),
    ("LookUpPatronByCard", pb.LookUpPatronByCardRequest(), "card"),
    ("LookUpPatronByCard", pb.LookUpPatronByCardRequest(rfid_uid="zz"), "rfid_uid"),
    ("IssueTemporaryCredentials", pb.IssueTemporaryCredentialsRequest(), "patron_id"),
    ("ListPatronHistory", pb.ListPatronHistoryRequest(patron_id="p", page_token="??"), "page_token"),
    ("SuspendPatron", pb.SuspendPatronRequest(patron_id="p", reason=" "), "reason"),
    ("CreatePatron", pb.CreatePatronRequest(details=form(email="", phone="")), "details.email"),
    (
        "UpdatePatron",
        pb.UpdatePatronRequest(patron=pb.Patron(), update_mask={"paths": ["zone"]}),
        "patron.id",
    ),
    (
        "UpdatePatron",
        pb.UpdatePatronRequest(patron=pb.Patron(id="p"), update_mask={"paths": ["zone"]}),
        "etag",
    ),
    ("ReplacePatronCard", pb.ReplacePatronCardRequest(patron_id="p", etag="1"), "reason"),
    ("DismissDuplicateFlag", pb.DismissDuplicateFlagRequest(patron_id="p"), "other_patron_id"),
]


async def test_bad_input_names_the_field(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = patrons_pb2_grpc.PatronServiceStub(stack.channel("patrons", stack.token(kind="staff")))
    for call, message, field in BAD_INPUTS:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(desk, call)(message)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (call, field, err.value.details())
        assert field in error_fields(err.value), (call, field, error_fields(err.value))


async def test_two_desks_enrolling_with_the_same_card_at_once(stack_factory) -> None:
    """A race the uniqueness check cannot see (PostgreSQL, concurrent transactions): one enrollment
    wins, the other gets the same clear ALREADY_EXISTS, never an internal error."""
    stack = await start(stack_factory)
    desk = await operator(stack)
    await adult_category(client(stack, (await log_in(stack, "admin", "lanterna-sul-molo-42")).access_token))
    ids = [await pre_register(stack, given=g, email=f"{g}@example.org") for g in ("Anna", "Bruna", "Carla")]
    etags = []
    for patron_id in ids:
        got = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
        updated = await desk.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=got.etag,
                patron=pb.Patron(
                    id=patron_id,
                    document_type=pb.DOCUMENT_TYPE_PASSPORT,
                    document_number="YA1",
                    nationality="IT",
                ),
                update_mask={"paths": ["document_type", "document_number", "nationality"]},
            )
        )
        etags.append(updated.patron.etag)
    card = "2000000000008"
    results = await asyncio.gather(
        *(
            desk.patrons.EnrollPatron(
                pb.EnrollPatronRequest(
                    request_id=rid(), patron_id=patron_id, etag=etag, category_code="ADULT", card_barcode=card
                )
            )
            for patron_id, etag in zip(ids, etags, strict=True)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and won[0].patron.card_barcode == card
    assert len(lost) == 2 and all(e.code() == grpc.StatusCode.ALREADY_EXISTS for e in lost)
    assert {error_reason(e) for e in lost} == {"CARD_BARCODE_IN_USE"}


async def test_p2_the_desk_worklist_lists_web_pre_registrations_newest_first(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    clock = stack.runtime("patrons").clock
    ids = []
    for given in ("Anna", "Bruna", "Carla"):
        ids.append(await pre_register(stack, given=given, email=f"{given}@example.org"))
        clock.advance(minutes=5)
    await desk.patrons.CreatePatron(
        pb.CreatePatronRequest(request_id=rid(), details=form(given="Dora", email=""))
    )
    seen, token = [], ""
    while True:
        page = await desk.patrons.ListPatrons(
            pb.ListPatronsRequest(
                status=pb.PATRON_STATUS_PRE_REGISTERED,
                origin=pb.PATRON_ORIGIN_WEB,
                page_size=2,
                page_token=token,
            )
        )
        seen += [h.patron_id for h in page.hits]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.ListPatrons(pb.ListPatronsRequest(status=pb.PATRON_STATUS_EXPIRED))
    assert error_fields(err.value) == ["status"]
