"""N1/N2 through the real gRPC server and a real SMTP server: what the patron receives."""

from __future__ import annotations

import asyncio
from email.utils import parseaddr, parsedate_to_datetime

import grpc
import pytest

from bibliodesk.notify.v1 import notify_pb2 as pb
from tests.helpers import error_fields, error_reason

from .conftest import JOHN, MARIA, NOMAIL, NotifyEnv

READY_VARS = {
    "title": "Il nome della rosa",
    "author": "Umberto Eco",
    "pickup_branch": "Sede centrale",
    "pickup_period_days": "7",
}


async def test_ready_notice_reaches_the_patron_in_italian_with_proper_headers(notify_env: NotifyEnv) -> None:
    message = await notify_env.send(
        request_id="reservation-ready:r1",
        patron_id=MARIA,
        template_key="reservation_ready",
        variables=READY_VARS,
        reference="reservation:r1",
    )
    assert message.status == pb.MESSAGE_STATUS_QUEUED
    assert message.recipient == "maria.rossi@example.org" and message.language == "it"

    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.attempts == 1 and sent.HasField("sent_at") and sent.last_error == ""

    [mail] = notify_env.smtp.received
    assert mail["Subject"] == "Biblioteca civica: «Il nome della rosa» è già disponibile"
    assert parseaddr(mail["From"]) == ("Biblioteca civica", "prestiti@biblioteca.example.org")
    assert parseaddr(mail["To"]) == ("Maria Rossi", "maria.rossi@example.org")
    assert mail["Reply-To"] == "info@biblioteca.example.org"
    assert mail["Message-ID"].strip() == sent.message_id_header
    assert mail["Message-ID"].endswith("@biblioteca.example.org>")
    assert parsedate_to_datetime(mail["Date"]) == sent.created_at.ToDatetime().replace(
        tzinfo=parsedate_to_datetime(mail["Date"]).tzinfo
    )
    assert mail["Auto-Submitted"] == "auto-generated"
    body = mail.get_body(("plain",)).get_content()
    assert "Gentile Maria Rossi" in body
    assert "«Il nome della rosa» di Umberto Eco, è già disponibile e ti aspetta presso Sede centrale." in body
    assert "Lo terremo da parte per 7 giorni." in body
    assert notify_env.smtp.envelopes == [("prestiti@biblioteca.example.org", ["maria.rossi@example.org"])]


async def test_english_patron_gets_the_english_template_and_language_can_be_overridden(
    notify_env: NotifyEnv,
) -> None:
    english = await notify_env.send(
        request_id="k-en", patron_id=JOHN, template_key="reservation_ready", variables=READY_VARS
    )
    italian = await notify_env.send(
        request_id="k-it",
        patron_id=JOHN,
        template_key="reservation_ready",
        variables=READY_VARS,
        language="it",
    )
    await notify_env.until(english.id, pb.MESSAGE_STATUS_SENT)
    await notify_env.until(italian.id, pb.MESSAGE_STATUS_SENT)
    subjects = sorted(str(m["Subject"]) for m in notify_env.smtp.received)
    assert subjects == [
        'Biblioteca civica: "Il nome della rosa" is ready for pickup',
        "Biblioteca civica: «Il nome della rosa» è già disponibile",
    ]
    english_mail = next(m for m in notify_env.smtp.received if m["Content-Language"] == "en")
    assert "Dear John Smith" in english_mail.get_body(("plain",)).get_content()


async def test_free_composition_is_sent_verbatim(notify_env: NotifyEnv) -> None:
    message = await notify_env.send(
        notify_env.staff(),
        request_id="free-1",
        patron_id=MARIA,
        subject="Chiusura straordinaria",
        body="La biblioteca resterà chiusa lunedì {{ non un template }}.",
        reference=f"patron:{MARIA}",
    )
    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.requested_by == "staff:Operatore Uno"
    [mail] = notify_env.smtp.received
    assert mail["Subject"] == "Chiusura straordinaria"
    assert mail["Auto-Submitted"] is None  # written by a person
    assert mail.get_body(("plain",)).get_content().strip() == (
        "La biblioteca resterà chiusa lunedì {{ non un template }}."
    )


async def test_patron_without_email_gets_a_clear_refusal_and_nothing_is_queued(notify_env: NotifyEnv) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify_env.send(request_id="nm-1", patron_id=NOMAIL, template_key="free_message", body="Ciao")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "NO_EMAIL_ADDRESS"
    history = await notify_env.stub().ListMessages(pb.ListMessagesRequest(patron_id=NOMAIL))
    assert list(history.messages) == []


BAD_REQUESTS = [
    ({"patron_id": MARIA, "template_key": "free_message", "body": "x"}, "INVALID_ARGUMENT", "request_id"),
    ({"request_id": "a"}, "INVALID_ARGUMENT", "patron_id"),
    ({"request_id": "a", "patron_id": MARIA, "body": "x"}, "INVALID_ARGUMENT", "subject"),
    (
        {"request_id": "a", "patron_id": MARIA, "template_key": "reservation_ready"},
        "INVALID_ARGUMENT",
        "variables[title]",
    ),
    (
        {
            "request_id": "a",
            "patron_id": MARIA,
            "template_key": "credentials",
            "variables": {"username": "u", "password": "p"},
        },
        "INVALID_ARGUMENT",
        "variables[password]",
    ),
    (
        {"request_id": "a", "patron_id": MARIA, "template_key": "Not A Key"},
        "INVALID_ARGUMENT",
        "template_key",
    ),
    (
        {
            "request_id": "a",
            "patron_id": MARIA,
            "template_key": "free_message",
            "body": "x",
            "language": "de",
        },
        "INVALID_ARGUMENT",
        "language",
    ),
    (
        {"request_id": "a", "patron_id": MARIA, "template_key": "no_such_event"},
        "NOT_FOUND",
        "TEMPLATE_NOT_FOUND",
    ),
    (
        {"request_id": "a", "patron_id": "unknown-patron", "template_key": "free_message", "body": "x"},
        "NOT_FOUND",
        "PATRON_NOT_FOUND",
    ),
]


async def test_bad_requests_and_unauthorised_callers_get_a_clear_refusal(notify_env: NotifyEnv) -> None:
    for fields, code, expected in BAD_REQUESTS:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await notify_env.send(**fields)
        assert err.value.code() == getattr(grpc.StatusCode, code), fields
        if code == "INVALID_ARGUMENT":
            assert error_fields(err.value) == [expected]
        else:
            assert error_reason(err.value) == expected
    assert notify_env.smtp.received == []
    request = pb.SendMessageRequest(request_id="p", patron_id=MARIA, template_key="free_message", body="x")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify_env.stub(notify_env.patron(MARIA)).SendMessage(request)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    anonymous = pb.__name__ and notify_env.stack.channel("notify")
    from bibliodesk.notify.v1 import notify_pb2_grpc

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify_pb2_grpc.NotifyServiceStub(anonymous).SendMessage(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_one_key_one_mail_even_for_100_concurrent_sends_and_a_reused_key_is_refused(
    notify_env: NotifyEnv,
) -> None:
    stub = notify_env.stub(notify_env.service("requests"))
    request = pb.SendMessageRequest(
        request_id="inbox-request:42",
        patron_id=MARIA,
        template_key="request_notice",
        body="Il documento arriverà la prossima settimana.",
        variables={"title": "Gomorra"},
        reference="inbox-request:42",
    )
    replies = await asyncio.gather(*(stub.SendMessage(request) for _ in range(100)))
    ids = {r.message.id for r in replies}
    assert len(ids) == 1
    await notify_env.until(ids.pop(), pb.MESSAGE_STATUS_SENT)
    # A retry long after delivery returns the same (now SENT) message and sends nothing.
    again = await stub.SendMessage(request)
    assert again.message.status == pb.MESSAGE_STATUS_SENT
    await notify_env.worker.drain()
    assert len(notify_env.smtp.received) == 1
    history = await notify_env.stub().ListMessages(pb.ListMessagesRequest(reference="inbox-request:42"))
    assert len(history.messages) == 1
    await notify_env.send(request_id="k", patron_id=MARIA, template_key="free_message", body="uno")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify_env.send(request_id="k", patron_id=MARIA, template_key="free_message", body="due")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(err.value) == "REQUEST_ID_REUSED"


async def test_patrons_down_is_unavailable_but_a_known_key_still_answers(notify_env: NotifyEnv) -> None:
    first = await notify_env.send(request_id="pd:1", patron_id=MARIA, template_key="free_message", body="x")
    assert notify_env.stack.host is not None
    notify_env.stack.host.addresses["patrons"] = "127.0.0.1:9"  # nobody listens there
    await notify_env.stack.runtime("notify").peers.close()  # drop the open channel to the old address
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify_env.send(request_id="pd:2", patron_id=MARIA, template_key="free_message", body="y")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(err.value) == "PATRONS_UNAVAILABLE"
    # The caller's relay retrying the first request gets its answer without needing patrons.
    again = await notify_env.send(request_id="pd:1", patron_id=MARIA, template_key="free_message", body="x")
    assert again.id == first.id
    history = await notify_env.stub().ListMessages(pb.ListMessagesRequest(patron_id=MARIA))
    assert [m.id for m in history.messages] == [first.id]
