"""Templates ("messages configured in advance"): admin CRUD, save-time checks, preview, HTML mail."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from bibliodesk.notify.v1 import notify_pb2 as pb
from tests.helpers import error_fields, error_reason

from .conftest import MARIA, NotifyEnv

BUILT_IN = {
    "credentials",
    "request_notice",
    "request_cut",
    "reservation_ready",
    "item_back_from_loan",
    "pickup_reminder",
    "reservation_expired",
    "free_message",
}


async def test_shipped_templates_cover_every_event_in_both_languages(notify_env: NotifyEnv) -> None:
    stub = notify_env.stub(notify_env.staff())
    page = await stub.ListTemplates(pb.ListTemplatesRequest(page_size=10))
    templates = list(page.templates)
    while page.next_page_token:
        page = await stub.ListTemplates(
            pb.ListTemplatesRequest(page_size=10, page_token=page.next_page_token)
        )
        templates += page.templates
    assert {(t.event_key, t.language) for t in templates} == {
        (k, lang) for k in BUILT_IN for lang in ("it", "en")
    }
    assert all(t.built_in and t.etag for t in templates)

    events = await stub.ListEvents(pb.ListEventsRequest())
    by_key = {e.key: e for e in events.events}
    assert set(by_key) == BUILT_IN
    password = next(v for v in by_key["credentials"].variables if v.name == "password")
    assert password.secret and password.always_present
    assert {"patron_name", "library_name", "title", "pickup_branch"} <= {
        v.name for v in by_key["reservation_ready"].variables
    }


async def test_preview_renders_with_sample_data_or_given_variables(notify_env: NotifyEnv) -> None:
    stub = notify_env.stub(notify_env.staff())
    preview = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(event_key="item_back_from_loan", language="it")
    )
    assert "è rientrato ed è già disponibile" in preview.subject
    assert "Gentile Maria Rossi" in preview.body_text
    custom = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(
            event_key="reservation_ready", language="en", variables={"title": "Dune", "pickup_deadline": ""}
        )
    )
    assert custom.subject == 'Biblioteca civica: "Dune" is ready for pickup'
    draft = await stub.PreviewTemplate(
        pb.PreviewTemplateRequest(
            event_key="reservation_ready",
            draft=pb.Template(
                language="en", subject="{{ title|upper }}", body_text="x", body_html="<b>{{ title }}</b>"
            ),
        )
    )
    assert draft.subject == "IL NOME DELLA ROSA" and draft.body_html == "<b>Il nome della rosa</b>"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.PreviewTemplate(
            pb.PreviewTemplateRequest(
                event_key="reservation_ready",
                draft=pb.Template(language="en", subject="{{ nope }}", body_text="x"),
            )
        )
    assert error_fields(err.value) == ["draft.subject"]


async def test_admin_creates_a_custom_template_with_html_and_operators_send_it(notify_env: NotifyEnv) -> None:
    admin = notify_env.stub(notify_env.admin())
    template = pb.Template(
        event_key="summer_closure",
        language="it",
        subject="{{ library_name }}: chiusura estiva",
        body_text="Gentile {{ patron_name }},\nla biblioteca chiude ad agosto. {{ message }}",
        body_html="<p>Gentile {{ patron_name }},</p><p>la biblioteca chiude ad agosto. {{ message }}</p>",
        description="Avviso chiusura estiva",
    )
    created = await admin.CreateTemplate(pb.CreateTemplateRequest(request_id="t1", template=template))
    assert not created.template.built_in and created.template.etag
    again = await admin.CreateTemplate(pb.CreateTemplateRequest(request_id="t1", template=template))
    assert again.template.etag == created.template.etag  # retried create: the first answer
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.CreateTemplate(pb.CreateTemplateRequest(request_id="t2", template=template))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

    events = await admin.ListEvents(pb.ListEventsRequest())
    custom = next(e for e in events.events if e.key == "summer_closure")
    assert not custom.built_in and "message" in {v.name for v in custom.variables}
    message = await notify_env.send(
        notify_env.staff(),
        request_id="summer:1",
        patron_id=MARIA,
        template_key="summer_closure",
        body="Buone vacanze & <arrivederci>!",
    )
    await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    [mail] = notify_env.smtp.received
    assert mail.get_content_type() == "multipart/alternative"
    assert "Buone vacanze & <arrivederci>!" in mail.get_body(("plain",)).get_content()
    assert "Buone vacanze &amp; &lt;arrivederci&gt;!" in mail.get_body(("html",)).get_content()


async def test_a_template_that_cannot_render_is_refused_at_save_time(notify_env: NotifyEnv) -> None:
    admin = notify_env.stub(notify_env.admin())
    cases = [
        (
            pb.Template(
                event_key="reservation_ready", language="it", subject="ok", body_text="{% if title %}x"
            ),
            "template.body_text",
        ),
        (
            pb.Template(event_key="custom_one", language="it", subject="{{ title }}", body_text="x"),
            "template.subject",
        ),  # a custom event documents only the common variables
        (pb.Template(event_key="custom_two", language="it", subject="", body_text="x"), "template.subject"),
        (pb.Template(event_key="custom_two", language="fr", subject="s", body_text="x"), "template.language"),
        (pb.Template(event_key="x", language="it", subject="s", body_text="x"), "template.event_key"),
    ]
    for n, (template, field) in enumerate(cases):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.CreateTemplate(pb.CreateTemplateRequest(request_id=f"bad{n}", template=template))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_fields(err.value) == [field]


async def test_update_with_etag_restore_delete_and_only_admins_change_templates(
    notify_env: NotifyEnv,
) -> None:
    admin = notify_env.stub(notify_env.admin())
    current = (
        await admin.GetTemplate(pb.GetTemplateRequest(event_key="reservation_ready", language="it"))
    ).template
    change = pb.Template(event_key="reservation_ready", language="it", subject="Pronto: {{ title }}")
    updated = await admin.UpdateTemplate(
        pb.UpdateTemplateRequest(
            request_id="u1", template=change, update_mask=FieldMask(paths=["subject"]), etag=current.etag
        )
    )
    assert updated.template.subject == "Pronto: {{ title }}"
    assert updated.template.body_text == current.body_text and updated.template.etag != current.etag

    with pytest.raises(grpc.aio.AioRpcError) as err:  # a second operator still holding the old etag
        await admin.UpdateTemplate(
            pb.UpdateTemplateRequest(
                request_id="u2", template=change, update_mask=FieldMask(paths=["subject"]), etag=current.etag
            )
        )
    assert err.value.code() == grpc.StatusCode.ABORTED and error_reason(err.value) == "ETAG_MISMATCH"

    with pytest.raises(grpc.aio.AioRpcError) as err:  # a broken edit is refused and changes nothing
        await admin.UpdateTemplate(
            pb.UpdateTemplateRequest(
                request_id="u3",
                template=pb.Template(event_key="reservation_ready", language="it", body_text="{{ title"),
                update_mask=FieldMask(paths=["body_text"]),
                etag=updated.template.etag,
            )
        )
    assert error_fields(err.value) == ["template.body_text"]

    message = await notify_env.send(
        request_id="after-edit",
        patron_id=MARIA,
        template_key="reservation_ready",
        variables={"title": "Gomorra"},
    )
    assert message.subject == "Pronto: Gomorra"

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.DeleteTemplate(
            pb.DeleteTemplateRequest(
                request_id="d1", event_key="reservation_ready", language="it", etag=updated.template.etag
            )
        )
    assert error_reason(err.value) == "TEMPLATE_BUILT_IN"
    restored = await admin.RestoreDefaultTemplate(
        pb.RestoreDefaultTemplateRequest(request_id="r1", event_key="reservation_ready", language="it")
    )
    assert restored.template.subject == current.subject

    created = await admin.CreateTemplate(
        pb.CreateTemplateRequest(
            request_id="c1",
            template=pb.Template(
                event_key="custom_note", language="en", subject="Note", body_text="{{ message }}"
            ),
        )
    )
    await admin.DeleteTemplate(
        pb.DeleteTemplateRequest(
            request_id="d2", event_key="custom_note", language="en", etag=created.template.etag
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.GetTemplate(pb.GetTemplateRequest(event_key="custom_note", language="en"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    operator = notify_env.stub(notify_env.staff("operator"))
    await operator.GetTemplate(pb.GetTemplateRequest(event_key="free_message", language="it"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await operator.CreateTemplate(
            pb.CreateTemplateRequest(
                request_id="x",
                template=pb.Template(event_key="custom_x", language="it", subject="s", body_text="b"),
            )
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    patron = notify_env.stub(notify_env.patron(MARIA))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await patron.ListTemplates(pb.ListTemplatesRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_concurrent_retries_of_a_template_creation_get_one_answer(notify_env: NotifyEnv) -> None:
    import asyncio

    admin = notify_env.stub(notify_env.admin())
    request = pb.CreateTemplateRequest(
        request_id="same",
        template=pb.Template(
            event_key="custom_race", language="it", subject="Avviso", body_text="{{ message }}"
        ),
    )
    replies = await asyncio.gather(*(admin.CreateTemplate(request) for _ in range(10)))
    assert len({r.template.etag for r in replies}) == 1
    listed = await admin.ListTemplates(pb.ListTemplatesRequest(event_key="custom_race"))
    assert len(listed.templates) == 1
