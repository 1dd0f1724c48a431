"""Categories, suspension, card replacement, expiry, staff accounts and the first-start admin."""

from __future__ import annotations

import json
import stat

import grpc
import pytest

from bibliodesk.patrons.v1 import identity_pb2 as ipb
from bibliodesk.patrons.v1 import patrons_pb2 as pb
from bibliodesk.patrons.v1 import patrons_pb2_grpc
from tests.helpers import error_fields, error_reason
from tests.patrons.support import (
    FAST_ENV,
    admin,
    adult_category,
    client,
    complete_and_enroll,
    log_in,
    operator,
    pre_register,
    rid,
    start,
)


async def test_categories_are_managed_by_an_admin(stack_factory) -> None:
    stack = await start(stack_factory)
    boss = await admin(stack)
    desk = await operator(stack)
    category = await adult_category(boss)
    assert (category.code, category.enrollment_period_months, category.etag) == ("ADULT", 12, "1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.CreatePatronCategory(
            pb.CreatePatronCategoryRequest(
                request_id=rid(),
                category=pb.PatronCategory(
                    code="KIDS",
                    name="Ragazzi",
                    loan_limit=3,
                    reservation_limit=1,
                    enrollment_period_months=12,
                    pickup_period_days=7,
                    active=True,
                ),
            )
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss.patrons.CreatePatronCategory(
            pb.CreatePatronCategoryRequest(
                request_id=rid(),
                category=pb.PatronCategory(
                    code="bad code!",
                    name="",
                    loan_limit=-1,
                    reservation_limit=5000,
                    enrollment_period_months=0,
                    pickup_period_days=90,
                ),
            )
        )
    assert set(error_fields(err.value)) == {
        "category.code",
        "category.name",
        "category.loan_limit",
        "category.reservation_limit",
        "category.enrollment_period_months",
        "category.pickup_period_days",
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await adult_category(boss)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = (
        await boss.patrons.UpdatePatronCategory(
            pb.UpdatePatronCategoryRequest(
                request_id=rid(),
                category=pb.PatronCategory(code="ADULT", reservation_limit=8),
                etag=category.etag,
                update_mask={"paths": ["reservation_limit"]},
            )
        )
    ).category
    assert (updated.reservation_limit, updated.loan_limit, updated.etag) == (8, 10, "2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss.patrons.UpdatePatronCategory(
            pb.UpdatePatronCategoryRequest(
                request_id=rid(),
                category=pb.PatronCategory(code="ADULT", active=False),
                etag=category.etag,
                update_mask={"paths": ["active"]},
            )
        )
    assert err.value.code() == grpc.StatusCode.ABORTED
    await boss.patrons.UpdatePatronCategory(
        pb.UpdatePatronCategoryRequest(
            request_id=rid(),
            category=pb.PatronCategory(code="ADULT", active=False),
            etag=updated.etag,
            update_mask={"paths": ["active"]},
        )
    )
    listed = await desk.patrons.ListPatronCategories(pb.ListPatronCategoriesRequest())
    assert list(listed.categories) == []
    patron_id = await pre_register(stack)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete_and_enroll(desk, patron_id)
    assert error_reason(err.value) == "CATEGORY_INACTIVE"


async def test_suspension_expiry_and_card_replacement_show_in_standing(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    await adult_category(await admin(stack))
    patron_id = await pre_register(stack)
    enrolled = await complete_and_enroll(desk, patron_id)
    service = patrons_pb2_grpc.PatronServiceStub(
        stack.channel("patrons", stack.token(kind="service", subject="requests"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.SuspendPatron(pb.SuspendPatronRequest(request_id=rid(), patron_id=patron_id))
    assert error_fields(err.value) == ["reason"]
    await desk.patrons.SuspendPatron(
        pb.SuspendPatronRequest(request_id=rid(), patron_id=patron_id, reason="damaged three books")
    )
    standing = await service.GetPatronStanding(pb.GetPatronStandingRequest(patron_id=patron_id))
    assert (standing.enrolled, standing.blocked, standing.status) == (False, True, pb.PATRON_STATUS_SUSPENDED)
    await desk.patrons.ReinstatePatron(
        pb.ReinstatePatronRequest(request_id=rid(), patron_id=patron_id, reason="books paid for")
    )
    # Lost card: the new one works, the old one no longer does.
    current = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    replaced = (
        await desk.patrons.ReplacePatronCard(
            pb.ReplacePatronCardRequest(
                request_id=rid(), patron_id=patron_id, etag=current.etag, reason="lost"
            )
        )
    ).patron
    assert replaced.card_barcode != enrolled.card_barcode
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.LookUpPatronByCard(pb.LookUpPatronByCardRequest(barcode=enrolled.card_barcode))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (
        await service.LookUpPatronByCard(pb.LookUpPatronByCardRequest(barcode=replaced.card_barcode))
    ).patron.id == patron_id
    history = (await desk.patrons.ListPatronHistory(pb.ListPatronHistoryRequest(patron_id=patron_id))).entries
    assert [e.action for e in history] == [
        "replace_card",
        "reinstate",
        "suspend",
        "enroll",
        "update",
        "pre_register",
    ]
    assert "damaged three books" in history[2].reason and history[2].actor == "Laura Operatrice"
    # A year and a day later the enrollment has expired.
    stack.runtime("patrons").clock.advance(days=366)
    service = patrons_pb2_grpc.PatronServiceStub(
        stack.channel("patrons", stack.token(kind="service", subject="requests"))
    )
    standing = await service.GetPatronStanding(pb.GetPatronStandingRequest(patron_id=patron_id))
    assert (standing.enrolled, standing.status) == (False, pb.PATRON_STATUS_EXPIRED)


async def test_a_request_id_reused_for_another_request_is_refused(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    patron_id = await pre_register(stack)
    got = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    first = pb.UpdatePatronRequest(
        request_id="upd-1",
        etag=got.etag,
        patron=pb.Patron(id=patron_id, zone="A"),
        update_mask={"paths": ["zone"]},
    )
    done = await desk.patrons.UpdatePatron(first)
    assert (await desk.patrons.UpdatePatron(first)) == done  # retried: same answer, no second change
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id="upd-1",
                etag=done.patron.etag,
                patron=pb.Patron(id=patron_id, zone="B"),
                update_mask={"paths": ["zone"]},
            )
        )
    assert error_reason(err.value) == "REQUEST_ID_REUSED"
    history = (await desk.patrons.ListPatronHistory(pb.ListPatronHistoryRequest(patron_id=patron_id))).entries
    assert [e.action for e in history] == ["update", "pre_register"]


async def test_staff_accounts_and_log_out(stack_factory) -> None:
    stack = await start(stack_factory)
    boss = await admin(stack)
    request = ipb.CreateStaffAccountRequest(
        request_id=rid(),
        username="Marta.B",
        display_name="Marta Bianchi",
        roles=[ipb.STAFF_ROLE_OPERATOR],
        branch="nord",
    )
    created = await boss.identity.CreateStaffAccount(request)
    assert created.account.username == "marta.b" and created.account.branch == "NORD"
    again = await boss.identity.CreateStaffAccount(request)
    assert again.one_time_password == created.one_time_password and again.account.id == created.account.id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss.identity.CreateStaffAccount(
            ipb.CreateStaffAccountRequest(
                request_id=rid(),
                username="marta.b",
                display_name="Other",
                roles=[ipb.STAFF_ROLE_OPERATOR],
                branch="CEN",
            )
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await boss.identity.CreateStaffAccount(ipb.CreateStaffAccountRequest(request_id=rid(), username="x"))
    assert set(error_fields(err.value)) == {"username", "display_name", "roles", "branch"}
    listed = await boss.identity.ListStaffAccounts(ipb.ListStaffAccountsRequest())
    assert [a.username for a in listed.accounts] == ["admin", "marta.b"]
    first = await log_in(stack, "marta.b", created.one_time_password)
    marta = client(stack, first.access_token)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # must set her own password first
        await marta.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi"))
    assert error_reason(err.value) == "CREDENTIALS_CHANGE_REQUIRED"
    changed = await marta.identity.ChangeCredentials(
        ipb.ChangeCredentialsRequest(
            new_password="scaffale aperto 9", current_password=created.one_time_password
        )
    )
    marta = client(stack, changed.access_token)
    await marta.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi"))
    await marta.identity.LogOut(ipb.LogOutRequest())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await marta.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi"))
    assert error_reason(err.value) == "SESSION_ENDED"


async def test_first_start_admin_password_is_generated_once_when_none_is_configured(
    stack_factory, capsys
) -> None:
    env = {k: v for k, v in FAST_ENV.items() if k != "BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD"}
    stack = await stack_factory("patrons", env=env)
    path = stack.settings.home / "admin-credentials.json"
    stored = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored["password"] in capsys.readouterr().out
    assert (await log_in(stack, "admin", stored["password"])).principal.roles == ["admin"]
    await stack.restart()  # not created again, and the password is not printed again
    assert stored["password"] not in capsys.readouterr().out
    assert (await log_in(stack, "admin", stored["password"])).access_token


async def test_admin_updates_and_resets_staff_accounts(stack_factory) -> None:
    stack = await start(stack_factory)
    boss = await admin(stack)
    desk = await operator(stack, "marco")
    listed = (await boss.identity.ListStaffAccounts(ipb.ListStaffAccountsRequest())).accounts
    me, marco = listed[0], listed[1]
    assert (marco.username, marco.active, marco.must_change_password) == ("marco", True, False)
    # Moved to another branch: his session ends (the token carried the old branch).
    moved = (
        await boss.identity.UpdateStaffAccount(
            ipb.UpdateStaffAccountRequest(
                request_id=rid(),
                account=ipb.StaffAccount(id=marco.id, branch="NORD"),
                etag=marco.etag,
                update_mask={"paths": ["branch"]},
            )
        )
    ).account
    assert moved.branch == "NORD" and moved.etag != marco.etag
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi"))
    assert error_reason(err.value) == "SESSION_ENDED"
    relogged = await log_in(stack, "marco", "banco-prestiti-2026")
    assert relogged.principal.branch == "NORD"
    with pytest.raises(grpc.aio.AioRpcError) as err:  # stale etag
        await boss.identity.UpdateStaffAccount(
            ipb.UpdateStaffAccountRequest(
                request_id=rid(),
                account=ipb.StaffAccount(id=marco.id, active=False),
                etag=marco.etag,
                update_mask={"paths": ["active"]},
            )
        )
    assert err.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as err:  # an admin cannot lock themselves out
        await boss.identity.UpdateStaffAccount(
            ipb.UpdateStaffAccountRequest(
                request_id=rid(),
                account=ipb.StaffAccount(id=me.id, active=False),
                etag=me.etag,
                update_mask={"paths": ["active"]},
            )
        )
    assert error_reason(err.value) == "CANNOT_CHANGE_OWN_ACCESS"
    # A forgotten password: a new one-time password; the old one stops working.
    reset = await boss.identity.ResetStaffPassword(
        ipb.ResetStaffPasswordRequest(request_id=rid(), account_id=marco.id)
    )
    assert reset.account.must_change_password and len(reset.one_time_password) == 19
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await log_in(stack, "marco", "banco-prestiti-2026")
    assert error_reason(err.value) == "INVALID_CREDENTIALS"
    assert (await log_in(stack, "marco", reset.one_time_password)).must_change_credentials
    # Deactivated: cannot log in any more (same answer as a wrong password).
    current = (await boss.identity.ListStaffAccounts(ipb.ListStaffAccountsRequest())).accounts[1]
    await boss.identity.UpdateStaffAccount(
        ipb.UpdateStaffAccountRequest(
            request_id=rid(),
            account=ipb.StaffAccount(id=marco.id, active=False),
            etag=current.etag,
            update_mask={"paths": ["active"]},
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await log_in(stack, "marco", reset.one_time_password)
    assert error_reason(err.value) == "INVALID_CREDENTIALS"


async def test_demo_library_has_the_patrons_the_other_demos_refer_to(stack_factory) -> None:
    stack = await start(stack_factory)
    assert stack.host is not None
    await stack.host.load_demo()
    await stack.host.load_demo()  # a second start loads nothing twice
    desk = await operator(stack)
    hits = (
        await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="rossi", given_name="mario"))
    ).hits
    assert sorted((h.birth_date, h.status) for h in hits) == [  # namesakes, told apart by birth data
        ("1971-03-14", pb.PATRON_STATUS_ENROLLED),
        ("1985-11-02", pb.PATRON_STATUS_PRE_REGISTERED),
    ]
    found = await desk.patrons.LookUpPatronByCard(pb.LookUpPatronByCardRequest(barcode="DEMO-CARD-0104"))
    assert found.patron.id == "demo-reader-4" and found.patron.display_name == "Rossi Mario"
    for patron_id in ("demo-reader-1", "demo-reader-6", "demo-borrower-2"):
        standing = await desk.patrons.GetPatronStanding(pb.GetPatronStandingRequest(patron_id=patron_id))
        assert standing.enrolled and standing.reservation_limit > 0
    pending = await desk.patrons.ListPatrons(pb.ListPatronsRequest(status=pb.PATRON_STATUS_PRE_REGISTERED))
    assert len(pending.hits) == 2
