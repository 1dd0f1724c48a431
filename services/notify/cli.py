"""``bibliodesk notify ...``: messages to patrons and their templates from the command line.

bibliodesk notify send PATRON_ID --template KEY [--var k=v ...] [--body TEXT] [--wait]
bibliodesk notify send PATRON_ID --subject S --body TEXT            a free composition (N1)
bibliodesk notify history [--patron ID] [--reference R] [--status sent|failed|...] [--limit N]
bibliodesk notify show MESSAGE_ID                                   one message, its text and attempts
bibliodesk notify retry MESSAGE_ID | cancel MESSAGE_ID --reason R
bibliodesk notify templates [list] [--event KEY] [--language it]
bibliodesk notify templates show|preview KEY LANGUAGE [--var k=v ...]
bibliodesk notify templates edit KEY LANGUAGE [--subject S] [--body-file F] [--html-file F]   (admin)
bibliodesk notify templates restore KEY LANGUAGE                     (admin)
bibliodesk notify templates events                                  events and their variables
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any, cast

from rich.table import Table

_STATUS = {"queued": 1, "sent": 2, "retrying": 3, "failed": 4, "cancelled": 5}


def register(subparsers: Any, ctx: Any) -> None:
    notify = subparsers.add_parser("notify", help="e-mail messages to patrons, history, templates")
    sub = notify.add_subparsers(dest="notify_command", required=True, metavar="ACTION")

    send = sub.add_parser("send", help="send one e-mail to one patron (template or free text)")
    send.add_argument("patron_id")
    send.add_argument("--template", default="", help="event key, e.g. reservation_ready, free_message")
    send.add_argument("--subject", default="", help="subject of a free composition")
    send.add_argument("--body", default="", help="free text (or the operator's note in a template)")
    send.add_argument("--body-file", type=Path, help="read the body from a file")
    send.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="template variable")
    send.add_argument("--language", default="", choices=["", "it", "en"])
    send.add_argument("--reference", default="")
    send.add_argument("--request-id", default="", help="idempotency key (re-run with it to retry safely)")
    send.add_argument("--wait", action="store_true", help="wait until it is delivered or fails")
    send.set_defaults(func=lambda args: ctx.run(_send(ctx, args)))

    history = sub.add_parser("history", help="messages sent, newest first")
    history.add_argument("--patron", default="")
    history.add_argument("--reference", default="")
    history.add_argument("--template", default="")
    history.add_argument("--status", default="", choices=["", *_STATUS])
    history.add_argument("--limit", type=int, default=30)
    history.set_defaults(func=lambda args: ctx.run(_history(ctx, args)))

    show = sub.add_parser("show", help="one message with its (redacted) text")
    show.add_argument("message_id")
    show.set_defaults(func=lambda args: ctx.run(_show(ctx, args.message_id)))

    retry = sub.add_parser("retry", help="queue a FAILED message again")
    retry.add_argument("message_id")
    retry.set_defaults(func=lambda args: ctx.run(_retry(ctx, args.message_id)))

    cancel = sub.add_parser("cancel", help="cancel a message not delivered yet")
    cancel.add_argument("message_id")
    cancel.add_argument("--reason", default="")
    cancel.set_defaults(func=lambda args: ctx.run(_cancel(ctx, args.message_id, args.reason)))

    templates = sub.add_parser("templates", help="messages configured in advance")
    tsub = templates.add_subparsers(dest="templates_command", metavar="ACTION")
    templates.add_argument("--event", default="")
    templates.add_argument("--language", default="")
    templates.set_defaults(func=lambda args: ctx.run(_templates(ctx, args.event, args.language)))
    tlist = tsub.add_parser("list", help="list templates")
    tlist.add_argument("--event", default="")
    tlist.add_argument("--language", default="")
    tlist.set_defaults(func=lambda args: ctx.run(_templates(ctx, args.event, args.language)))
    tshow = tsub.add_parser("show", help="a template's source")
    tshow.add_argument("event_key")
    tshow.add_argument("language")
    tshow.set_defaults(func=lambda args: ctx.run(_template_show(ctx, args.event_key, args.language)))
    preview = tsub.add_parser("preview", help="render a template with sample data")
    preview.add_argument("event_key")
    preview.add_argument("language")
    preview.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    preview.set_defaults(func=lambda args: ctx.run(_preview(ctx, args)))
    edit = tsub.add_parser("edit", help="change a template (admin)")
    edit.add_argument("event_key")
    edit.add_argument("language")
    edit.add_argument("--subject")
    edit.add_argument("--body-file", type=Path)
    edit.add_argument("--html-file", type=Path)
    edit.add_argument("--description")
    edit.set_defaults(func=lambda args: ctx.run(_edit(ctx, args)))
    restore = tsub.add_parser("restore", help="put the shipped text back (admin)")
    restore.add_argument("event_key")
    restore.add_argument("language")
    restore.set_defaults(func=lambda args: ctx.run(_restore(ctx, args.event_key, args.language)))
    events = tsub.add_parser("events", help="events and the variables their templates may use")
    events.set_defaults(func=lambda args: ctx.run(_events(ctx)))


def _stub(ctx: Any) -> Any:
    from bibliodesk.notify.v1 import notify_pb2_grpc as pb_grpc

    return pb_grpc.NotifyServiceStub(ctx.channel("notify"))


def _variables(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"--var wants NAME=VALUE, got {pair!r}")
        out[name.strip()] = value
    return out


def _status(value: int) -> str:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    return pb.MessageStatus.Name(cast(Any, value)).removeprefix("MESSAGE_STATUS_")


def _when(ts: Any) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M") if ts.seconds else ""


async def _call(ctx: Any, coro: Any) -> Any:
    import grpc

    try:
        return await coro
    except grpc.aio.AioRpcError as exc:
        ctx.fail_from_rpc(exc)
        return None


async def _send(ctx: Any, args: argparse.Namespace) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    body = args.body_file.read_text(encoding="utf-8") if args.body_file else args.body
    request = pb.SendMessageRequest(
        request_id=args.request_id or f"cli:{uuid.uuid4()}",
        patron_id=args.patron_id,
        template_key=args.template,
        subject=args.subject,
        body=body,
        variables=_variables(args.var),
        language=args.language,
        reference=args.reference,
    )
    stub = _stub(ctx)
    reply = await _call(ctx, stub.SendMessage(request, timeout=15))
    if reply is None:
        return 1
    message = reply.message
    ctx.console.print(f"message [bold]{message.id}[/bold] to {message.recipient}: {_status(message.status)}")
    ctx.console.print(f"  subject: {message.subject}")
    ctx.console.print(f"  request id: {request.request_id}")
    while args.wait and message.status in (pb.MESSAGE_STATUS_QUEUED, pb.MESSAGE_STATUS_RETRYING):
        await asyncio.sleep(1)
        message = (await stub.GetMessage(pb.GetMessageRequest(id=message.id), timeout=10)).message
        if message.status == pb.MESSAGE_STATUS_RETRYING:
            ctx.console.print(f"  retrying (attempt {message.attempts}): {message.last_error}")
    if args.wait:
        ctx.console.print(f"  {_status(message.status)} {message.last_error}")
    return 0 if message.status != pb.MESSAGE_STATUS_FAILED else 1


async def _history(ctx: Any, args: argparse.Namespace) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    request = pb.ListMessagesRequest(
        patron_id=args.patron,
        reference=args.reference,
        template_key=args.template,
        status=cast(Any, _STATUS.get(args.status, 0)),
        page_size=max(1, min(args.limit, 500)),
    )
    reply = await _call(ctx, _stub(ctx).ListMessages(request, timeout=10))
    if reply is None:
        return 1
    table = Table(title="Messages")
    for column in ("created", "patron", "template", "subject", "status", "tries", "sent", "id"):
        table.add_column(column)
    for m in reply.messages:
        status = _status(m.status) + (f" ({m.last_error[:40]})" if m.last_error else "")
        table.add_row(
            _when(m.created_at),
            m.patron_id[:8],
            m.template_key or "free",
            m.subject[:50],
            status,
            str(m.attempts),
            _when(m.sent_at),
            m.id,
        )
    ctx.console.print(table)
    if reply.next_page_token:
        ctx.console.print("[dim]more messages: raise --limit or filter[/dim]")
    return 0


async def _show(ctx: Any, message_id: str) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    reply = await _call(ctx, _stub(ctx).GetMessage(pb.GetMessageRequest(id=message_id), timeout=10))
    if reply is None:
        return 1
    m = reply.message
    for label, value in (
        ("id", m.id),
        ("patron", m.patron_id),
        ("to", m.recipient),
        ("template", m.template_key or "free"),
        ("language", m.language),
        ("reference", m.reference),
        ("status", _status(m.status)),
        ("attempts", str(m.attempts)),
        ("last error", m.last_error),
        ("created", _when(m.created_at)),
        ("sent", _when(m.sent_at)),
        ("Message-ID", m.message_id_header),
        ("requested by", m.requested_by),
    ):
        if value:
            ctx.console.print(f"[bold]{label}:[/bold] {value}")
    if reply.attempts:
        table = Table(title="Delivery attempts", title_justify="left")
        for column in ("#", "started", "outcome", "then", "detail"):
            table.add_column(column)
        for a in reply.attempts:
            then = f"{_status(a.status_after)} ({a.reason})"
            table.add_row(str(a.number), _when(a.started_at), a.outcome, then, a.detail[:80])
        ctx.console.print(table)
    ctx.console.print(f"\n[bold]{m.subject}[/bold]\n")
    ctx.console.print(m.body_text, markup=False, highlight=False)
    return 0


async def _retry(ctx: Any, message_id: str) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    request = pb.RetryMessageRequest(request_id=f"cli:{uuid.uuid4()}", id=message_id)
    reply = await _call(ctx, _stub(ctx).RetryMessage(request, timeout=10))
    if reply is None:
        return 1
    ctx.console.print(f"message {message_id}: {_status(reply.message.status)}")
    return 0


async def _cancel(ctx: Any, message_id: str, reason: str) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    request = pb.CancelMessageRequest(request_id=f"cli:{uuid.uuid4()}", id=message_id, reason=reason)
    reply = await _call(ctx, _stub(ctx).CancelMessage(request, timeout=10))
    if reply is None:
        return 1
    ctx.console.print(f"message {message_id}: {_status(reply.message.status)}")
    return 0


async def _templates(ctx: Any, event_key: str, language: str) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    stub = _stub(ctx)
    table = Table(title="Templates")
    for column in ("event", "language", "subject", "built in", "description"):
        table.add_column(column)
    token = ""
    while True:
        reply = await _call(
            ctx,
            stub.ListTemplates(
                pb.ListTemplatesRequest(event_key=event_key, language=language, page_token=token), timeout=10
            ),
        )
        if reply is None:
            return 1
        for t in reply.templates:
            table.add_row(t.event_key, t.language, t.subject, "yes" if t.built_in else "", t.description)
        token = reply.next_page_token
        if not token:
            break
    ctx.console.print(table)
    return 0


async def _template_show(ctx: Any, event_key: str, language: str) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    reply = await _call(
        ctx, _stub(ctx).GetTemplate(pb.GetTemplateRequest(event_key=event_key, language=language), timeout=10)
    )
    if reply is None:
        return 1
    t = reply.template
    ctx.console.print(f"[bold]{t.event_key} ({t.language})[/bold] {t.description}  etag {t.etag}")
    ctx.console.print(f"[bold]subject:[/bold] {t.subject}", markup=True, highlight=False)
    ctx.console.print(t.body_text, markup=False, highlight=False)
    if t.body_html:
        ctx.console.print("[bold]html:[/bold]")
        ctx.console.print(t.body_html, markup=False, highlight=False)
    return 0


async def _preview(ctx: Any, args: argparse.Namespace) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    reply = await _call(
        ctx,
        _stub(ctx).PreviewTemplate(
            pb.PreviewTemplateRequest(
                event_key=args.event_key, language=args.language, variables=_variables(args.var)
            ),
            timeout=10,
        ),
    )
    if reply is None:
        return 1
    ctx.console.print(f"[bold]{reply.subject}[/bold]\n")
    ctx.console.print(reply.body_text, markup=False, highlight=False)
    return 0


async def _edit(ctx: Any, args: argparse.Namespace) -> int:
    from google.protobuf.field_mask_pb2 import FieldMask

    from bibliodesk.notify.v1 import notify_pb2 as pb

    stub = _stub(ctx)
    current = await _call(
        ctx,
        stub.GetTemplate(pb.GetTemplateRequest(event_key=args.event_key, language=args.language), timeout=10),
    )
    if current is None:
        return 1
    values = {
        "subject": args.subject,
        "body_text": args.body_file.read_text(encoding="utf-8") if args.body_file else None,
        "body_html": args.html_file.read_text(encoding="utf-8") if args.html_file else None,
        "description": args.description,
    }
    paths = [name for name, value in values.items() if value is not None]
    change = pb.Template(
        event_key=args.event_key,
        language=args.language,
        **{name: value for name, value in values.items() if value is not None},
    )
    if not paths:
        ctx.console.print("nothing to change: give --subject, --body-file, --html-file or --description")
        return 1
    reply = await _call(
        ctx,
        stub.UpdateTemplate(
            pb.UpdateTemplateRequest(
                request_id=f"cli:{uuid.uuid4()}",
                template=change,
                update_mask=FieldMask(paths=paths),
                etag=current.template.etag,
            ),
            timeout=10,
        ),
    )
    if reply is None:
        return 1
    ctx.console.print(f"updated {args.event_key} ({args.language}): {', '.join(paths)}")
    return 0


async def _restore(ctx: Any, event_key: str, language: str) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    reply = await _call(
        ctx,
        _stub(ctx).RestoreDefaultTemplate(
            pb.RestoreDefaultTemplateRequest(
                request_id=f"cli:{uuid.uuid4()}", event_key=event_key, language=language
            ),
            timeout=10,
        ),
    )
    if reply is None:
        return 1
    ctx.console.print(f"restored the shipped text of {event_key} ({language})")
    return 0


async def _events(ctx: Any) -> int:
    from bibliodesk.notify.v1 import notify_pb2 as pb

    reply = await _call(ctx, _stub(ctx).ListEvents(pb.ListEventsRequest(), timeout=10))
    if reply is None:
        return 1
    for event in reply.events:
        table = Table(title=f"{event.key}: {event.description}", title_justify="left")
        for column in ("variable", "meaning", "example", "always"):
            table.add_column(column)
        for v in event.variables:
            table.add_row(
                v.name + (" (secret)" if v.secret else ""),
                v.description,
                v.example,
                "yes" if v.always_present else "",
            )
        ctx.console.print(table)
    return 0
