"""P5–P7 and log-in security, lived by the operator and by the patron with their own clients."""

from __future__ import annotations

import grpc
import pytest

from bibliodesk.patrons.v1 import identity_pb2 as ipb
from bibliodesk.patrons.v1 import patrons_pb2 as pb
from tests.helpers import error_fields, error_reason
from tests.patrons.support import (
    ADMIN_PASSWORD,
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


async def enrolled_patron(stack):  # type: ignore[no-untyped-def]
    desk = await operator(stack)
    await adult_category(await admin(stack))
    patron_id = await pre_register(stack)
    await complete_and_enroll(desk, patron_id)
    return desk, patron_id


async def test_p5_temporary_credentials_shown_once_with_the_printed_sheet(stack_factory, tmp_path) -> None:
    stack = await start(stack_factory)
    desk, patron_id = await enrolled_patron(stack)
    request = pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id, print_sheet=True)
    issued = await desk.patrons.IssueTemporaryCredentials(request)
    creds = issued.credentials
    assert creds.username.startswith("web-") and len(creds.temporary_password) == 19
    assert issued.patron.credentials.state == pb.CREDENTIALS_STATE_TEMPORARY
    assert issued.sheet_pdf.startswith(b"%PDF") and not issued.email_queued
    (tmp_path / "sheet.pdf").write_bytes(issued.sheet_pdf)
    # A retry (network hiccup) returns the same credentials and changes nothing.
    again = await desk.patrons.IssueTemporaryCredentials(request)
    assert (again.credentials.username, again.credentials.temporary_password) == (
        creds.username,
        creds.temporary_password,
    )
    # Issuing again with a new request is refused: that is regeneration (P7).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.IssueTemporaryCredentials(
            pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id)
        )
    assert error_reason(err.value) == "CREDENTIALS_ALREADY_ISSUED"
    # The printable sheet without credentials never carries a password.
    sheet = await desk.patrons.GetPatronSheet(pb.GetPatronSheetRequest(patron_id=patron_id))
    assert sheet.pdf.startswith(b"%PDF") and creds.temporary_password.encode() not in sheet.pdf


async def test_p5_credentials_need_an_enrolled_patron_and_email_needs_an_address(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    patron_id = await pre_register(stack)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.IssueTemporaryCredentials(
            pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id)
        )
    assert error_reason(err.value) == "NOT_ENROLLED"


async def test_p6_first_log_in_forces_new_username_and_password(stack_factory) -> None:
    stack = await start(stack_factory)
    desk, patron_id = await enrolled_patron(stack)
    creds = (
        await desk.patrons.IssueTemporaryCredentials(
            pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id)
        )
    ).credentials
    first = await log_in(stack, creds.username, creds.temporary_password)
    assert first.must_change_credentials and first.principal.kind == ipb.PRINCIPAL_KIND_PATRON
    home = client(stack, first.access_token)
    # Nothing else works before the change.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await home.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(err.value) == "CREDENTIALS_CHANGE_REQUIRED"
    # Policy: a new username is required; weak passwords are refused, naming the field.
    for username, password, field in [
        ("", "lampione verde sul lago", "new_username"),
        ("nicolo90", "nicolo90!!xyz", "new_password"),
        ("nicolo90", "password2024", "new_password"),
        ("nicolo90", "short", "new_password"),
        ("ni", "lampione verde sul lago", "new_username"),
        (creds.username, "lampione verde sul lago", "new_username"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await home.identity.ChangeCredentials(
                ipb.ChangeCredentialsRequest(
                    new_username=username, new_password=password, current_password=creds.temporary_password
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_fields(err.value) == [field]
    # A username already taken (here: the operator's) is refused.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await home.identity.ChangeCredentials(
            ipb.ChangeCredentialsRequest(
                new_username="operatore1",
                new_password="lampione verde sul lago",
                current_password=creds.temporary_password,
            )
        )
    assert error_reason(err.value) == "USERNAME_TAKEN"
    changed = await home.identity.ChangeCredentials(
        ipb.ChangeCredentialsRequest(
            new_username="Nicolo.90",
            new_password="lampione verde sul lago",
            current_password=creds.temporary_password,
        )
    )
    mine = client(stack, changed.access_token)
    me = (await mine.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    assert me.display_name == "D'Angelo Nicolò" and list(me.possible_duplicates) == []
    # The temporary password is gone; the patron's own works.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await log_in(stack, creds.username, creds.temporary_password)
    assert error_reason(err.value) == "INVALID_CREDENTIALS"
    again = await log_in(stack, "nicolo.90", "lampione verde sul lago")
    assert not again.must_change_credentials
    # The operator sees "defined by the patron" and the username, never a password.
    view = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron.credentials
    assert view.state == pb.CREDENTIALS_STATE_PATRON_DEFINED and view.username == "nicolo.90"
    assert view.label == "username and password defined by the patron"


async def test_a_patron_cannot_read_or_change_another_patron(stack_factory) -> None:
    stack = await start(stack_factory)
    desk, patron_id = await enrolled_patron(stack)
    other = await pre_register(stack, given="Maria", surname="Verdi", email="mv@example.org")
    patron = client(stack, stack.token(kind="patron", subject=patron_id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await patron.patrons.GetPatron(pb.GetPatronRequest(patron_id=other))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await patron.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag="1",
                patron=pb.Patron(id=other, zone="x"),
                update_mask={"paths": ["zone"]},
            )
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await patron.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="verdi"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await patron.patrons.IssueTemporaryCredentials(
            pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id)
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # An operator is not an admin: categories and staff accounts are refused.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.identity.ListStaffAccounts(ipb.ListStaffAccountsRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_p7_regeneration_revokes_the_old_password_and_open_sessions(stack_factory) -> None:
    stack = await start(stack_factory)
    desk, patron_id = await enrolled_patron(stack)
    creds = (
        await desk.patrons.IssueTemporaryCredentials(
            pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id)
        )
    ).credentials
    first = await log_in(stack, creds.username, creds.temporary_password)
    changed = await client(stack, first.access_token).identity.ChangeCredentials(
        ipb.ChangeCredentialsRequest(
            new_username="nicolo90",
            new_password="lampione verde sul lago",
            current_password=creds.temporary_password,
        )
    )
    session = client(stack, changed.access_token)
    await session.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))  # works now

    regenerated = await desk.patrons.RegenerateTemporaryPassword(
        pb.RegenerateTemporaryPasswordRequest(request_id=rid(), patron_id=patron_id)
    )
    assert regenerated.credentials.username == "nicolo90"  # the patron's username is kept
    assert regenerated.credentials.temporary_password != creds.temporary_password
    assert regenerated.patron.credentials.state == pb.CREDENTIALS_STATE_TEMPORARY
    # The open session stops working at once; the old password too.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await session.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(err.value) == "SESSION_ENDED"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await log_in(stack, "nicolo90", "lampione verde sul lago")
    assert error_reason(err.value) == "INVALID_CREDENTIALS"
    fresh = await log_in(stack, "nicolo90", regenerated.credentials.temporary_password)
    assert fresh.must_change_credentials
    # The temporary password expires.
    stack.runtime("patrons").clock.advance(days=15)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await log_in(stack, "nicolo90", regenerated.credentials.temporary_password)
    assert error_reason(err.value) == "TEMPORARY_PASSWORD_EXPIRED"


async def test_lockout_after_repeated_failures_does_not_reveal_usernames(stack_factory) -> None:
    stack = await start(stack_factory)  # lockout after 3 failures in the test settings
    await operator(stack)
    for username in ("operatore1", "nobody-here"):
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await log_in(stack, username, "wrong password!")
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(err.value) == "INVALID_CREDENTIALS"
        # Existing or not, the answer is the same: locked.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await log_in(stack, username, "banco-prestiti-2026")
        assert (
            err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            and error_reason(err.value) == "ACCOUNT_LOCKED"
        )
    stack.runtime("patrons").clock.advance(minutes=16)
    assert (await log_in(stack, "operatore1", "banco-prestiti-2026")).access_token


async def test_staff_responses_never_carry_a_password_or_hash(stack_factory) -> None:
    stack = await start(stack_factory)
    desk, patron_id = await enrolled_patron(stack)
    issued = await desk.patrons.IssueTemporaryCredentials(
        pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id)
    )
    password = issued.credentials.temporary_password
    first = await log_in(stack, issued.credentials.username, password)
    await client(stack, first.access_token).identity.ChangeCredentials(
        ipb.ChangeCredentialsRequest(
            new_username="nicolo90", new_password="lampione verde sul lago", current_password=password
        )
    )
    card = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron.card_barcode
    boss = await admin(stack)
    current = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    responses = [
        await desk.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=current.etag,
                patron=pb.Patron(id=patron_id, zone="Murat"),
                update_mask={"paths": ["zone"]},
            )
        ),
        await desk.patrons.SuspendPatron(
            pb.SuspendPatronRequest(request_id=rid(), patron_id=patron_id, reason="x")
        ),
        await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id)),
        await desk.patrons.SearchPatrons(pb.SearchPatronsRequest(surname="d'angelo")),
        await desk.patrons.LookUpPatronByCard(pb.LookUpPatronByCardRequest(barcode=card)),
        await desk.patrons.GetPatronContact(pb.GetPatronContactRequest(patron_id=patron_id)),
        await desk.patrons.GetPatronStanding(pb.GetPatronStandingRequest(patron_id=patron_id)),
        await desk.patrons.ListPatronHistory(pb.ListPatronHistoryRequest(patron_id=patron_id)),
        await desk.patrons.GetPatronSheet(pb.GetPatronSheetRequest(patron_id=patron_id)),
        await boss.identity.ListStaffAccounts(ipb.ListStaffAccountsRequest()),
    ]
    for reply in responses:
        raw = reply.SerializeToString()
        for secret in (password, "lampione verde sul lago", "banco-prestiti-2026", ADMIN_PASSWORD):
            assert secret.encode() not in raw
        assert b"$argon2" not in raw
    history = responses[7].entries
    assert [e.action for e in history][:4] == ["suspend", "update", "define_credentials", "issue_credentials"]


async def test_service_tokens_and_token_keys(stack_factory) -> None:
    stack = await start(stack_factory)
    public = client(stack, "")
    from bibliodesk.patrons.v1 import identity_pb2_grpc

    ident = identity_pb2_grpc.IdentityServiceStub(stack.channel("patrons"))
    keys = await ident.GetTokenKeys(ipb.GetTokenKeysRequest())
    assert keys.keys and keys.keys[0].public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ident.IssueServiceToken(ipb.IssueServiceTokenRequest(service_name="requests", secret="guess"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    token = await ident.IssueServiceToken(
        ipb.IssueServiceTokenRequest(service_name="requests", secret=stack.service_secret)
    )
    service = client(stack, token.access_token)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service.patrons.GetPatronContact(pb.GetPatronContactRequest(patron_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    del public


async def test_password_spraying_from_one_address_is_slowed_down(stack_factory) -> None:
    stack = await start(stack_factory, env={"BIBLIODESK_PATRONS_LOGIN_FAILURES_PER_ADDRESS": "4"})
    await operator(stack)
    for username in ("anna", "bruno", "carla", "dario"):  # one try each: no username gets locked
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await log_in(stack, username, "Primavera2026")
        assert error_reason(err.value) == "INVALID_CREDENTIALS"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await log_in(stack, "operatore1", "banco-prestiti-2026")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(err.value) == "TOO_MANY_LOGIN_ATTEMPTS"
    stack.runtime("patrons").clock.advance(minutes=16)
    assert (await log_in(stack, "operatore1", "banco-prestiti-2026")).access_token
