"""Desk commands of the reservations service.

bibliodesk reservations list [--web] [--status S] [--branch B] [--patron P] [--item X] [--all]
bibliodesk reservations show ID | call ID [--no-auto-expire] | cancel ID [--reason R]
bibliodesk reservations create PATRON ITEM --branch B [--deliver-now]
bibliodesk reservations to-fetch [--branch B] | fetched ID | schedule PATRON | expire
bibliodesk desk checkout ITEM (--patron ID | --card BARCODE) | checkin ITEM
bibliodesk items import FILE.csv [--branch B] [--dry-run] [--chunk N] | list | show BARCODE
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc

ORIGIN_MARK = {
    pb.RESERVATION_ORIGIN_WEB: "🖱 web",
    pb.RESERVATION_ORIGIN_DESK: "desk",
    pb.RESERVATION_ORIGIN_SELF_CHECK: "self-check",
}
STATUS_NAMES = {
    "waiting": pb.RESERVATION_STATUS_WAITING_FOR_RETURN,
    "ready": pb.RESERVATION_STATUS_READY_FOR_PICKUP,
    "fulfilled": pb.RESERVATION_STATUS_FULFILLED,
    "expired": pb.RESERVATION_STATUS_EXPIRED,
    "cancelled": pb.RESERVATION_STATUS_CANCELLED,
}
STATE_NAMES = {
    "on-shelf": pb.ITEM_STATE_ON_SHELF,
    "on-loan": pb.ITEM_STATE_ON_LOAN,
    "set-aside": pb.ITEM_STATE_SET_ASIDE,
}


SHORT_STATUS = {
    pb.RESERVATION_STATUS_WAITING_FOR_RETURN: "waiting",
    pb.RESERVATION_STATUS_READY_FOR_PICKUP: "ready",
    pb.RESERVATION_STATUS_FULFILLED: "fulfilled",
    pb.RESERVATION_STATUS_EXPIRED: "expired",
    pb.RESERVATION_STATUS_CANCELLED: "cancelled",
}


def _status(value: int) -> str:
    return SHORT_STATUS.get(value, "")  # type: ignore[call-overload]


def _state(value: int) -> str:
    return pb.ItemState.Name(value).removeprefix("ITEM_STATE_").replace("_", " ").lower()  # type: ignore[arg-type]


def _when(stamp: Timestamp, ctx: Any) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).astimezone(ctx.settings.tz).strftime("%Y-%m-%d %H:%M")


def register(subparsers: Any, ctx: Any) -> None:
    def action(
        parser: argparse.ArgumentParser, fn: Callable[[Any, argparse.Namespace], Awaitable[int]]
    ) -> None:
        parser.set_defaults(func=lambda args: ctx.run(_guard(ctx, fn(ctx, args))))

    res = subparsers.add_parser("reservations", help="reservations, their queue and the hold shelf")
    sub = res.add_subparsers(dest="reservations_command", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="reservations (active by default), oldest first")
    p.add_argument("--web", action="store_true", help="only those that came from the web (V3/V5)")
    p.add_argument("--status", choices=sorted(STATUS_NAMES), action="append", default=[])
    p.add_argument("--branch", default="", help="pickup branch")
    p.add_argument("--patron", default="")
    p.add_argument("--item", default="")
    p.add_argument("--all", action="store_true", help="include closed reservations")
    p.add_argument("--limit", type=int, default=200)
    action(p, _list)
    p = sub.add_parser("show", help="one reservation with its history")
    p.add_argument("reservation_id")
    action(p, _show)
    p = sub.add_parser("create", help="reserve an item for a patron at the desk")
    p.add_argument("patron_id")
    p.add_argument("item_barcode")
    p.add_argument("--branch", required=True, help="pickup branch")
    p.add_argument("--deliver-now", action="store_true", help="reserve and check out at once")
    p.add_argument("--request-id", default="")
    action(p, _create)
    p = sub.add_parser("call", help="record that the patron was called (phone action, V2)")
    p.add_argument("reservation_id")
    p.add_argument("--no-auto-expire", action="store_true", help="do not expire automatically")
    p.add_argument("--note", default="")
    action(p, _call)
    p = sub.add_parser("cancel", help="cancel a reservation; the item passes on")
    p.add_argument("reservation_id")
    p.add_argument("--reason", default="")
    action(p, _cancel)
    p = sub.add_parser("to-fetch", help="items to take off the shelf and set aside (V1)")
    p.add_argument("--branch", default="")
    action(p, _to_fetch)
    p = sub.add_parser("fetched", help="confirm an item was set aside on the hold shelf")
    p.add_argument("reservation_id")
    action(p, _fetched)
    p = sub.add_parser("schedule", help="a patron's loans and materials to deliver (V6)")
    p.add_argument("patron_id")
    action(p, _schedule)
    p = sub.add_parser("expire", help="expire reservations past their pickup deadline now (admin)")
    action(p, _expire)

    desk = subparsers.add_parser("desk", help="check-out and check-in at the circulation desk")
    dsub = desk.add_subparsers(dest="desk_command", required=True, metavar="ACTION")
    p = dsub.add_parser("checkout", help="lend an item (delivery)")
    p.add_argument("item_barcode")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--patron", default="", help="patron id")
    who.add_argument("--card", default="", help="patron card barcode")
    p.add_argument("--branch", default="")
    action(p, _checkout)
    p = dsub.add_parser("checkin", help="return an item")
    p.add_argument("item_barcode")
    p.add_argument("--branch", default="")
    action(p, _checkin)

    items = subparsers.add_parser("items", help="item copies: holdings import and situation")
    isub = items.add_subparsers(dest="items_command", required=True, metavar="ACTION")
    p = isub.add_parser("import", help="load holdings from CSV (barcode,title,author,branch[,call_number])")
    p.add_argument("file", type=Path)
    p.add_argument("--branch", default="", help="branch for rows without one")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--chunk", type=int, default=500, help="rows per request")
    action(p, _import)
    p = isub.add_parser("list", help="item copies")
    p.add_argument("--branch", default="")
    p.add_argument("--state", choices=sorted(STATE_NAMES))
    p.add_argument("--limit", type=int, default=200)
    action(p, _items)
    p = isub.add_parser("show", help="an item's situation: state, borrower card, due date, queue (V5)")
    p.add_argument("item_barcode")
    action(p, _situation)


async def _guard(ctx: Any, work: Awaitable[int]) -> int:
    try:
        return await work
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))


def _res(ctx: Any) -> pb_grpc.ReservationServiceAsyncStub:
    return pb_grpc.ReservationServiceStub(ctx.channel("reservations"))  # type: ignore[return-value]


def _circ(ctx: Any) -> pb_grpc.CirculationServiceAsyncStub:
    return pb_grpc.CirculationServiceStub(ctx.channel("reservations"))  # type: ignore[return-value]


def _reservation_table(ctx: Any, rows: list[pb.Reservation], title: str) -> Table:
    """Compact enough for an 80-column desk terminal: the card number stands for the patron."""
    table = Table(title=title)
    for column in ("id", "from", "status", "#", "patron card", "item", "title", "pickup", "when"):
        table.add_column(column, no_wrap=column in ("id", "item", "status"))
    for r in rows:
        if r.status == pb.RESERVATION_STATUS_WAITING_FOR_RETURN:
            when = f"expected {r.expected_available_date}"
        elif r.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP:
            told = "📞 " if r.HasField("called_at") else "✉ " if r.HasField("notified_at") else "not told yet"
            deadline = _when(r.pickup_deadline, ctx)
            when = told + (f"until {deadline}" + (" (auto)" if r.auto_expire else "") if deadline else "")
        else:
            when = _when(r.closed_at, ctx)
        table.add_row(
            r.id[:8],
            ORIGIN_MARK.get(r.origin, ""),
            _status(r.status),
            str(r.queue_position or ""),
            r.patron_card_barcode or r.patron_id[:12],
            r.item_barcode,
            r.item_title[:30],
            r.pickup_branch,
            when,
        )
    return table


async def _list(ctx: Any, args: argparse.Namespace) -> int:
    request = pb.ListReservationsRequest(
        origin=pb.RESERVATION_ORIGIN_WEB if args.web else pb.RESERVATION_ORIGIN_UNSPECIFIED,
        statuses=[STATUS_NAMES[s] for s in args.status],
        pickup_branch=args.branch,
        patron_id=args.patron,
        item_barcode=args.item,
        active_only=not args.all and not args.status,
        page_size=min(args.limit, 200),
    )
    rows: list[pb.Reservation] = []
    while True:
        reply = await _res(ctx).ListReservations(request, timeout=30)
        rows.extend(reply.reservations)
        if not reply.next_page_token or len(rows) >= args.limit:
            break
        request.page_token = reply.next_page_token
    ctx.console.print(
        _reservation_table(ctx, rows[: args.limit], "Reservations" + (" — web only" if args.web else ""))
    )
    return 0


async def _full_id(ctx: Any, given: str) -> str:
    """Lets the operator type the 8-character prefix the tables show."""
    if len(given) >= 32:
        return given
    reply = await _res(ctx).ListReservations(
        pb.ListReservationsRequest(active_only=True, page_size=200), timeout=30
    )
    matches = [r.id for r in reply.reservations if r.id.startswith(given)]
    return matches[0] if len(matches) == 1 else given


async def _show(ctx: Any, args: argparse.Namespace) -> int:
    r = (
        await _res(ctx).GetReservation(
            pb.GetReservationRequest(reservation_id=await _full_id(ctx, args.reservation_id)), timeout=10
        )
    ).reservation
    ctx.console.print(_reservation_table(ctx, [r], f"Reservation {r.id}"))
    history = Table(title="History")
    for column in ("when", "from", "to", "reason", "by"):
        history.add_column(column)
    for h in r.history:
        history.add_row(
            _when(h.at, ctx),
            _status(h.from_status) if h.from_status else "—",
            _status(h.to_status),
            h.reason,
            h.actor,
        )
    ctx.console.print(history)
    return 0


async def _create(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).CreateReservation(
        pb.CreateReservationRequest(
            request_id=args.request_id or f"cli:{uuid.uuid4()}",
            patron_id=args.patron_id,
            item_barcode=args.item_barcode,
            pickup_branch=args.branch,
            origin=pb.RESERVATION_ORIGIN_DESK,
            deliver_now=args.deliver_now,
        ),
        timeout=30,
    )
    ctx.console.print(_reservation_table(ctx, [reply.reservation], "Reservation created"))
    if reply.HasField("loan"):
        ctx.console.print(f"Checked out, due [bold]{reply.loan.due_date}[/bold].")
    return 0


async def _call(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).RecordPatronCalled(
        pb.RecordPatronCalledRequest(
            request_id=f"cli:{uuid.uuid4()}",
            reservation_id=await _full_id(ctx, args.reservation_id),
            auto_expire=not args.no_auto_expire,
            note=args.note,
        ),
        timeout=30,
    )
    r = reply.reservation
    ctx.console.print(
        f"📞 recorded. Collect by [bold]{_when(r.pickup_deadline, ctx)}[/bold]"
        + (" — expires automatically." if r.auto_expire else " — no automatic expiry.")
    )
    return 0


async def _cancel(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).CancelReservation(
        pb.CancelReservationRequest(
            request_id=f"cli:{uuid.uuid4()}",
            reservation_id=await _full_id(ctx, args.reservation_id),
            reason=args.reason,
        ),
        timeout=30,
    )
    ctx.console.print(f"Cancelled {reply.reservation.id[:8]}.")
    if reply.HasField("passed_to"):
        ctx.console.print(
            f"The item now waits for patron {reply.passed_to.patron_id} ({reply.passed_to.id[:8]})."
        )
    return 0


async def _to_fetch(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).ListItemsToSetAside(
        pb.ListItemsToSetAsideRequest(branch=args.branch, page_size=200), timeout=30
    )
    table = Table(title="To take off the shelf and set aside")
    for column in ("item", "call number", "title", "branch", "for patron", "card", "reservation"):
        table.add_column(column)
    for e in reply.items:
        table.add_row(
            e.item.barcode,
            e.item.call_number,
            e.item.title[:40],
            e.item.branch,
            e.reservation.patron_id[:12],
            e.reservation.patron_card_barcode,
            e.reservation.id[:8],
        )
    ctx.console.print(table)
    return 0


async def _fetched(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).ConfirmItemSetAside(
        pb.ConfirmItemSetAsideRequest(
            request_id=f"cli:{uuid.uuid4()}", reservation_id=await _full_id(ctx, args.reservation_id)
        ),
        timeout=30,
    )
    ctx.console.print(f"{reply.reservation.item_barcode} is on the hold shelf; the patron will be told.")
    return 0


async def _schedule(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).GetPatronSchedule(
        pb.GetPatronScheduleRequest(patron_id=args.patron_id), timeout=30
    )
    loans = Table(title=f"Loans of {reply.patron_id}")
    for column in ("item", "title", "due", ""):
        loans.add_column(column)
    for ln in reply.loans:
        loans.add_row(
            ln.loan.item_barcode,
            ln.loan.item_title[:40],
            ln.loan.due_date,
            "[red]overdue[/red]" if ln.overdue else "",
        )
    ctx.console.print(loans)
    materials = Table(title="Materials to deliver")
    for column in ("item", "title", "where", "expected", "wait", "origin"):
        materials.add_column(column)
    for m in reply.materials_to_deliver:
        on_shelf = m.location == pb.DELIVERY_LOCATION_ON_THE_SHELF
        materials.add_row(
            m.reservation.item_barcode,
            m.reservation.item_title[:40],
            "on the shelf" if on_shelf else "with a library user",
            m.expected_available_date,
            f"{m.expected_wait_days} days" if not on_shelf else "",
            ORIGIN_MARK.get(m.reservation.origin, ""),
        )
    ctx.console.print(materials)
    return 0


async def _expire(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _res(ctx).ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest(), timeout=120)
    ctx.console.print(f"Expired {len(reply.expired)}; passed on to the next patron: {len(reply.passed_to)}.")
    return 0


async def _checkout(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _circ(ctx).CheckOut(
        pb.CheckOutRequest(
            request_id=f"cli:{uuid.uuid4()}",
            item_barcode=args.item_barcode,
            patron_id=args.patron,
            patron_card_barcode=args.card,
            branch=args.branch,
        ),
        timeout=30,
    )
    ctx.console.print(
        f"{reply.item.barcode} «{reply.item.title}» lent, due [bold]{reply.loan.due_date}[/bold]."
    )
    if reply.HasField("fulfilled_reservation"):
        ctx.console.print(f"Reservation {reply.fulfilled_reservation.id[:8]} fulfilled.")
    return 0


async def _checkin(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _circ(ctx).CheckIn(
        pb.CheckInRequest(
            request_id=f"cli:{uuid.uuid4()}", item_barcode=args.item_barcode, branch=args.branch
        ),
        timeout=30,
    )
    if reply.HasField("ready_reservation") and not reply.ready_reservation.HasField("fetched_at"):
        r = reply.ready_reservation
        ctx.console.print(
            f"[bold yellow]Reserved![/bold yellow] Send {reply.item.barcode} "
            f"to branch [bold]{r.pickup_branch}[/bold] "
            f"for patron card {r.patron_card_barcode or r.patron_id}; its desk confirms arrival "
            f"(reservations fetched {r.id[:8]}), then the patron is told."
        )
    elif reply.HasField("ready_reservation"):
        r = reply.ready_reservation
        ctx.console.print(
            f"[bold yellow]Reserved![/bold yellow] Put {reply.item.barcode} on the hold shelf for patron "
            f"{r.patron_id} (card {r.patron_card_barcode or '—'}), pickup at {r.pickup_branch}. "
            "They will be told."
        )
    else:
        ctx.console.print(f"{reply.item.barcode} returned: back on the shelf.")
    return 0


def split_csv(text: str, chunk_rows: int) -> tuple[str, list[tuple[int, str, int]]]:
    """Splits a holdings file into chunks of whole records (quoted multi-line cells included),
    each with the header, keeping the original line numbers: (first line, text, records)."""
    lines = io.StringIO(text).readlines()
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    header_end = reader.line_num
    header = "".join(lines[:header_end])
    records: list[tuple[int, int]] = []
    previous = header_end
    for _ in reader:
        records.append((previous + 1, reader.line_num))
        previous = reader.line_num
    chunks = []
    for start in range(0, len(records), max(1, chunk_rows)):
        part = records[start : start + chunk_rows]
        body = "".join("".join(lines[s - 1 : e]) for s, e in part)
        chunks.append((part[0][0], header + body, len(part)))
    return header, chunks


async def _import(ctx: Any, args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.console.print(f"[red]cannot read {args.file}: {exc}[/red]")
        return 1
    _, chunks = split_csv(text, args.chunk)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    totals = {"read": 0, "created": 0, "updated": 0, "unchanged": 0}
    rejected: list[pb.RejectedRow] = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=ctx.console,
    ) as progress:
        task = progress.add_task(f"importing {args.file.name}", total=sum(n for _, _, n in chunks))
        for index, (first_line, body, count) in enumerate(chunks):
            reply = await _circ(ctx).ImportItems(
                pb.ImportItemsRequest(
                    request_id="" if args.dry_run else f"items-import:{digest}:{index}",
                    csv_content=body,
                    first_line_number=first_line,
                    default_branch=args.branch,
                    dry_run=args.dry_run,
                ),
                timeout=120,
            )
            totals["read"] += reply.rows_read
            totals["created"] += reply.created
            totals["updated"] += reply.updated
            totals["unchanged"] += reply.unchanged
            rejected.extend(reply.rejected)
            progress.advance(task, count)
    verb = "would be" if args.dry_run else "were"
    ctx.console.print(
        f"{totals['read']} rows read: {totals['created']} {verb} created, {totals['updated']} updated, "
        f"{totals['unchanged']} unchanged, [{'red' if rejected else 'green'}]{len(rejected)} rejected[/]."
    )
    if rejected:
        table = Table(title="Rejected rows")
        for column in ("line", "barcode", "field", "reason"):
            table.add_column(column)
        for r in rejected:
            table.add_row(str(r.line_number), r.item_barcode, r.field, r.reason)
        ctx.console.print(table)
    return 1 if rejected else 0


async def _items(ctx: Any, args: argparse.Namespace) -> int:
    request = pb.ListItemsRequest(
        branch=args.branch,
        state=STATE_NAMES.get(args.state or "", pb.ITEM_STATE_UNSPECIFIED),
        page_size=min(args.limit, 200),
    )
    reply = await _circ(ctx).ListItems(request, timeout=30)
    table = Table(title="Items")
    for column in ("barcode", "title", "author", "branch", "state", "due", "card", "queue"):
        table.add_column(column)
    for i in reply.items:
        table.add_row(
            i.barcode,
            i.title[:40],
            i.author[:25],
            i.branch,
            _state(i.state),
            i.due_date,
            i.borrower_card_barcode,
            str(i.queue_length or ""),
        )
    ctx.console.print(table)
    return 0


async def _situation(ctx: Any, args: argparse.Namespace) -> int:
    reply = await _circ(ctx).GetItemSituation(
        pb.GetItemSituationRequest(item_barcode=args.item_barcode), timeout=30
    )
    i = reply.item
    ctx.console.print(f"[bold]{i.barcode}[/bold] «{i.title}» {i.author} — {i.branch} — {_state(i.state)}")
    if i.state == pb.ITEM_STATE_ON_LOAN:
        ctx.console.print(
            f"On loan to card {i.borrower_card_barcode or '(unknown card)'}, due {i.due_date}"
            + (" [red]overdue[/red]" if reply.overdue else "")
        )
    ctx.console.print(_reservation_table(ctx, list(reply.queue), "Queue"))
    return 0
