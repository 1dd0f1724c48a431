"""Desk commands of the request inbox.

bibliodesk requests list [--today] [--active] [--status S] [--branch B] [--patron P] [--oldest-first]
bibliodesk requests show ID
bibliodesk requests advance ID [--deliver]
bibliodesk requests cut ID --reason R [--explanation TEXT] [--notice [--message TEXT]] [--without-notice]
bibliodesk requests notice ID [--message TEXT] [--template KEY | --subject S]
bibliodesk requests watch [--branch B] [--today]
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.requests.v1 import requests_pb2_grpc as pb_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as rpb

STATUS_NAMES = {
    "pending": pb.RESERVATION_REQUEST_STATUS_PENDING,
    "advancing": pb.RESERVATION_REQUEST_STATUS_ADVANCING,
    "advanced": pb.RESERVATION_REQUEST_STATUS_ADVANCED,
    "cut": pb.RESERVATION_REQUEST_STATUS_CUT,
    "withdrawn": pb.RESERVATION_REQUEST_STATUS_WITHDRAWN,
}
SHORT_STATUS = {v: k for k, v in STATUS_NAMES.items()}
CUT_REASONS = {
    "not-lendable": pb.CUT_REASON_ITEM_NOT_LENDABLE,
    "missing": pb.CUT_REASON_ITEM_MISSING,
    "not-eligible": pb.CUT_REASON_PATRON_NOT_ELIGIBLE,
    "duplicate": pb.CUT_REASON_DUPLICATE_REQUEST,
    "patron-cancelled": pb.CUT_REASON_PATRON_CANCELLED,
    "other": pb.CUT_REASON_OTHER,
}


def _stub(ctx: Any) -> pb_grpc.RequestInboxServiceAsyncStub:
    return pb_grpc.RequestInboxServiceStub(ctx.channel("requests"))  # type: ignore[return-value]


def _when(stamp: Timestamp, ctx: Any) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).astimezone(ctx.settings.tz).strftime("%Y-%m-%d %H:%M")


def _where(row: pb.ReservationRequest) -> str:
    """ "on the shelf" / "on loan until ..." as the desk says it (V6)."""
    if not row.HasField("item_availability"):
        return "?"
    a = row.item_availability
    if a.state == rpb.ITEM_STATE_ON_SHELF:
        return "on the shelf"
    if a.state == rpb.ITEM_STATE_ON_LOAN:
        return f"on loan until {a.due_date}" if a.due_date else "on loan"
    if a.state == rpb.ITEM_STATE_SET_ASIDE:
        return "set aside"
    return "?"


def _table(ctx: Any, rows: list[pb.ReservationRequest], title: str) -> Table:
    table = Table(title=title)
    for column in ("made", "id", "patron", "card", "item", "title", "pickup", "status", "where", "notice"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            _when(r.created_at, ctx),
            r.id[:8],
            r.patron_display_name,
            r.patron_card_barcode,
            r.item_barcode,
            r.item_title,
            r.pickup_branch,
            SHORT_STATUS.get(r.status, ""),
            _where(r),
            "sent " + _when(r.notice_sent_at, ctx) if r.HasField("notice_sent_at") else "—",
        )
    return table


async def _resolve(ctx: Any, short_id: str) -> str:
    """Accepts the 8-character id the list shows, as well as the full id."""
    if len(short_id) >= 36:
        return short_id
    token = ""
    while True:
        page = await _stub(ctx).ListReservationRequests(
            pb.ListReservationRequestsRequest(page_size=200, page_token=token), timeout=15
        )
        found = [r.id for r in page.reservation_requests if r.id.startswith(short_id)]
        if found:
            return found[0]
        token = page.next_page_token
        if not token:
            return short_id


async def _list(ctx: Any, args: argparse.Namespace) -> int:
    statuses = [STATUS_NAMES[s] for s in args.status or ()]
    request = pb.ListReservationRequestsRequest(
        made_today=args.today,
        active_only=args.active,
        statuses=statuses,
        pickup_branch=args.branch or "",
        patron_id=args.patron or "",
        page_size=min(args.limit, 200),
        order=pb.LIST_ORDER_OLDEST_FIRST if args.oldest_first else pb.LIST_ORDER_NEWEST_FIRST,
    )
    reply = await _stub(ctx).ListReservationRequests(request, timeout=15)
    title = "Today's web requests" if args.today else "Web reservation requests"
    ctx.console.print(
        _table(ctx, list(reply.reservation_requests), title + (" (active)" if args.active else ""))
    )
    if reply.availability_unknown:
        ctx.console.print(
            "[yellow]the reservations service did not answer: item availability unknown[/yellow]"
        )
    if reply.next_page_token:
        ctx.console.print(f"[dim]more rows: raise --limit (shown {len(reply.reservation_requests)})[/dim]")
    return 0


async def _show(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _stub(ctx).GetReservationRequest(
        pb.GetReservationRequestRequest(reservation_request_id=await _resolve(ctx, args.id)), timeout=15
    )
    r = reply.reservation_request
    ctx.console.print(_table(ctx, [r], f"Request {r.id}"))
    if r.note:
        ctx.console.print(f"note from the patron: {r.note}")
    if r.reservation_id:
        ctx.console.print(f"reservation: {r.reservation_id}")
    if r.last_refusal:
        ctx.console.print(f"[yellow]last advance refused: {r.last_refusal}[/yellow]")
    history = Table(title="History")
    for column in ("when", "what", "who", "why", "detail"):
        history.add_column(column)
    for h in r.history:
        history.add_row(
            _when(h.at, ctx),
            pb.InboxEventKind.Name(h.kind).removeprefix("INBOX_EVENT_KIND_").lower(),
            h.actor,
            h.reason,
            h.detail,
        )
    ctx.console.print(history)
    return 0


async def _advance(ctx: Any, args: argparse.Namespace) -> int:
    mode = pb.ADVANCE_MODE_RESERVE_AND_DELIVER if args.deliver else pb.ADVANCE_MODE_RESERVE
    reply = await _stub(ctx).AdvanceReservationRequest(
        pb.AdvanceReservationRequestRequest(
            request_id=str(uuid.uuid4()), reservation_request_id=await _resolve(ctx, args.id), mode=mode
        ),
        timeout=30,
    )
    status = rpb.ReservationStatus.Name(reply.reservation.status).removeprefix("RESERVATION_STATUS_")
    ctx.console.print(
        f"[green]advanced[/green]: reservation {reply.reservation.id} is {status.lower().replace('_', ' ')}"
    )
    return 0


async def _cut(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _stub(ctx).CutReservationRequest(
        pb.CutReservationRequestRequest(
            request_id=str(uuid.uuid4()),
            reservation_request_id=await _resolve(ctx, args.id),
            reason=CUT_REASONS[args.reason],
            explanation=args.explanation or "",
            send_notice=args.notice,
            notice_message=args.message or "",
            confirm_without_notice=args.without_notice,
        ),
        timeout=30,
    )
    told = " (the patron is told by e-mail)" if args.notice else ""
    ctx.console.print(f"[green]cut[/green]: request {reply.reservation_request.id}{told}")
    return 0


async def _notice(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _stub(ctx).SendRequestNotice(
        pb.SendRequestNoticeRequest(
            request_id=str(uuid.uuid4()),
            reservation_request_id=await _resolve(ctx, args.id),
            template_key=args.template or "",
            subject=args.subject or "",
            body=args.message or "",
        ),
        timeout=30,
    )
    ctx.console.print(f"[green]notice queued[/green] ({reply.reservation_request.notice_reference})")
    return 0


async def _watch(ctx: Any, args: argparse.Namespace) -> int:
    ctx.console.print("[dim]watching the inbox (Ctrl-C to stop)[/dim]")
    stream = _stub(ctx).WatchInbox(
        pb.WatchInboxRequest(made_today=args.today, pickup_branch=args.branch or "")
    )
    async for event in stream:
        r = event.reservation_request
        kind = pb.InboxEventKind.Name(event.kind).removeprefix("INBOX_EVENT_KIND_").lower().replace("_", " ")
        ctx.console.print(
            f"{_when(event.at, ctx)}  {kind:<20} {r.id[:8]}  {r.patron_display_name}  "
            f"{r.item_barcode} «{r.item_title}»  {_where(r)}"
        )
    return 0


async def _guard(ctx: Any, work: Awaitable[int]) -> int:
    try:
        return await work
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))


def register(subparsers: Any, ctx: Any) -> None:
    def action(
        parser: argparse.ArgumentParser, fn: Callable[[Any, argparse.Namespace], Awaitable[int]]
    ) -> None:
        parser.set_defaults(func=lambda args: ctx.run(_guard(ctx, fn(ctx, args))))

    top = subparsers.add_parser("requests", help="the inbox of web reservation requests (R1–R7)")
    sub = top.add_subparsers(dest="requests_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", help="the inbox: today's requests, only active ones, by branch or patron")
    p.add_argument("--today", action="store_true", help="only requests made today (R2)")
    p.add_argument("--active", action="store_true", help="only requests still to handle (R3)")
    p.add_argument("--status", action="append", choices=sorted(STATUS_NAMES))
    p.add_argument("--branch", help="pickup branch")
    p.add_argument("--patron", help="patron id")
    p.add_argument("--oldest-first", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    action(p, _list)

    p = sub.add_parser("show", help="one request with its history")
    p.add_argument("id")
    action(p, _show)

    p = sub.add_parser("advance", help="turn a request into a real reservation (R5)")
    p.add_argument("id")
    p.add_argument(
        "--deliver", action="store_true", help="reserve AND check out now: the patron is at the desk"
    )
    action(p, _advance)

    p = sub.add_parser("cut", help="reject a request (R6): send the notice first, or with --notice")
    p.add_argument("id")
    p.add_argument("--reason", required=True, choices=sorted(CUT_REASONS))
    p.add_argument("--explanation", help="in words (required with --reason other)")
    p.add_argument("--notice", action="store_true", help="e-mail the patron the 'request declined' notice")
    p.add_argument("--message", help="your text inside that notice")
    p.add_argument("--without-notice", action="store_true", help="cut although the patron was never told")
    action(p, _cut)

    p = sub.add_parser("notice", help="e-mail the patron about a request, once (R7)")
    p.add_argument("id")
    p.add_argument("--message", help="your text (inside the template, or the whole body with --subject)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--template", help="a configured message (default: request_notice)")
    group.add_argument("--subject", help="compose freely with this subject")
    action(p, _notice)

    p = sub.add_parser("watch", help="live view of the inbox")
    p.add_argument("--branch")
    p.add_argument("--today", action="store_true")
    action(p, _watch)
