"""``bibliodesk patrons ...``: the desk's patron commands.

bibliodesk patrons pending                                   web pre-registrations to complete
bibliodesk patrons search SURNAME [--name GIVEN] [--born YYYY-MM-DD] [--web|--desk] [--limit N]
bibliodesk patrons show PATRON_ID | --card BARCODE | --rfid UID
bibliodesk patrons complete PATRON_ID [--document-type identity_card|passport|...] [--document-number N]
                                      [--zone Z] [--nationality IT] [--email E] [--phone P] ...
bibliodesk patrons enroll PATRON_ID --category ADULT [--card BARCODE] [--rfid UID] [--station ID]
bibliodesk patrons credentials PATRON_ID [--regenerate] [--email] [--sheet FILE.pdf]
bibliodesk patrons sheet PATRON_ID FILE.pdf
bibliodesk patrons categories [list|add CODE NAME --loans N --reservations N --months N --pickup-days N]
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from rich.table import Table

from bibliodesk.patrons.v1 import patrons_pb2 as pb
from bibliodesk.patrons.v1 import patrons_pb2_grpc

_ORIGIN = {pb.PATRON_ORIGIN_WEB: "web", pb.PATRON_ORIGIN_DESK: "desk"}
_STATUS = {
    pb.PATRON_STATUS_PRE_REGISTERED: "pre-registered",
    pb.PATRON_STATUS_ENROLLED: "enrolled",
    pb.PATRON_STATUS_EXPIRED: "expired",
    pb.PATRON_STATUS_SUSPENDED: "suspended",
}
_DOCS = {
    "identity_card": pb.DOCUMENT_TYPE_IDENTITY_CARD,
    "passport": pb.DOCUMENT_TYPE_PASSPORT,
    "driving_licence": pb.DOCUMENT_TYPE_DRIVING_LICENCE,
    "residence_permit": pb.DOCUMENT_TYPE_RESIDENCE_PERMIT,
    "other": pb.DOCUMENT_TYPE_OTHER,
}
_FIELDS = {  # option -> (mask path, setter)
    "given_name": "given_name",
    "surname": "surname",
    "birth_date": "birth_date",
    "birth_place": "birth_place",
    "street": "address.street",
    "postal_code": "address.postal_code",
    "city": "address.city",
    "province": "address.province",
    "email": "email",
    "phone": "phone",
    "home_branch": "home_branch",
    "document_number": "document_number",
    "zone": "zone",
    "nationality": "nationality",
}


def register(subparsers: Any, ctx: Any) -> None:
    patrons = subparsers.add_parser("patrons", help="patrons: search, record, enrollment, credentials")
    sub = patrons.add_subparsers(dest="patrons_command", required=True, metavar="ACTION")

    search = sub.add_parser("search", help="find patrons by surname (and given name), accents ignored")
    search.add_argument("surname")
    search.add_argument("--name", default="", help="given-name prefix")
    search.add_argument("--born", default="", help="date of birth YYYY-MM-DD")
    origin = search.add_mutually_exclusive_group()
    origin.add_argument("--web", action="store_true", help="only pre-registered from home")
    origin.add_argument("--desk", action="store_true", help="only recorded at the desk")
    search.add_argument("--limit", type=int, default=20)
    search.set_defaults(func=lambda args: ctx.run(_search(ctx, args)))

    pending = sub.add_parser(
        "pending", help="web pre-registrations still to complete at the desk (newest first)"
    )
    pending.add_argument("--limit", type=int, default=30)
    pending.set_defaults(func=lambda args: ctx.run(_pending(ctx, args)))

    show = sub.add_parser("show", help="one patron (by id, card barcode or RFID UID)")
    show.add_argument("patron_id", nargs="?", default="")
    show.add_argument("--card", default="")
    show.add_argument("--rfid", default="")
    show.set_defaults(func=lambda args: ctx.run(_show(ctx, args)))

    complete = sub.add_parser("complete", help="complete or correct a record (P3)")
    complete.add_argument("patron_id")
    for option in _FIELDS:
        complete.add_argument("--" + option.replace("_", "-"), dest=option, default=None)
    complete.add_argument("--document-type", dest="document_type", choices=sorted(_DOCS), default=None)
    complete.set_defaults(func=lambda args: ctx.run(_complete(ctx, args)))

    enroll = sub.add_parser("enroll", help="enroll with a category and a card (P4)")
    enroll.add_argument("patron_id")
    enroll.add_argument("--category", required=True)
    enroll.add_argument("--card", default="", help="barcode printed on the card (default: generate)")
    enroll.add_argument("--rfid", default="", help="RFID card UID, if already read")
    enroll.add_argument("--station", default="", help="encode the RFID card at this desk station")
    enroll.set_defaults(func=lambda args: ctx.run(_enroll(ctx, args)))

    creds = sub.add_parser("credentials", help="issue (P5) or regenerate (P7) temporary credentials")
    creds.add_argument("patron_id")
    creds.add_argument("--regenerate", action="store_true", help="new temporary password (P7)")
    creds.add_argument("--email", action="store_true", help="also e-mail them to the patron")
    creds.add_argument("--sheet", type=Path, help="write the patron sheet with the credentials to this PDF")
    creds.set_defaults(func=lambda args: ctx.run(_credentials(ctx, args)))

    sheet = sub.add_parser("sheet", help="print the patron sheet (no password) to a PDF")
    sheet.add_argument("patron_id")
    sheet.add_argument("output", type=Path)
    sheet.set_defaults(func=lambda args: ctx.run(_sheet(ctx, args)))

    cats = sub.add_parser("categories", help="patron categories (profiles)")
    cat_sub = cats.add_subparsers(dest="categories_command", metavar="ACTION")
    cats.set_defaults(func=lambda args: ctx.run(_categories(ctx)))
    add = cat_sub.add_parser("add", help="create a category (admin)")
    add.add_argument("code")
    add.add_argument("name")
    add.add_argument("--loans", type=int, required=True)
    add.add_argument("--reservations", type=int, required=True)
    add.add_argument("--months", type=int, default=12)
    add.add_argument("--pickup-days", type=int, default=7)
    add.set_defaults(func=lambda args: ctx.run(_add_category(ctx, args)))
    cat_sub.add_parser("list", help="list categories").set_defaults(
        func=lambda args: ctx.run(_categories(ctx))
    )


def _stub(ctx: Any) -> Any:
    """The async stub (typed Any: the generated stubs describe the sync API)."""
    return patrons_pb2_grpc.PatronServiceStub(ctx.channel("patrons"))


async def _search(ctx: Any, args: Any) -> int:
    origin: Any = pb.PATRON_ORIGIN_WEB if args.web else pb.PATRON_ORIGIN_DESK if args.desk else 0
    try:
        reply = await _stub(ctx).SearchPatrons(
            pb.SearchPatronsRequest(
                surname=args.surname,
                given_name=args.name,
                birth_date=args.born,
                origin=origin,
                page_size=max(1, min(args.limit, 100)),
            ),
            timeout=10,
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    table = Table(title=f"Patrons: {args.surname} {args.name}".strip())
    for column in ("name", "born", "in", "address", "origin", "status", "card", "id"):
        table.add_column(column)
    for h in reply.hits:
        flag = " [yellow](duplicate?)[/yellow]" if h.possible_duplicate else ""
        table.add_row(
            h.display_name + flag,
            h.birth_date,
            h.birth_place,
            h.address,
            _ORIGIN.get(h.origin, ""),
            _STATUS.get(h.status, ""),
            h.card_barcode,
            h.patron_id,
        )
    ctx.console.print(table)
    if reply.next_page_token:
        ctx.console.print("[dim]more results: narrow the search (--name, --born)[/dim]")
    return 0


async def _pending(ctx: Any, args: Any) -> int:
    try:
        reply = await _stub(ctx).ListPatrons(
            pb.ListPatronsRequest(
                status=pb.PATRON_STATUS_PRE_REGISTERED,
                origin=pb.PATRON_ORIGIN_WEB,
                page_size=max(1, min(args.limit, 100)),
            ),
            timeout=10,
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    table = Table(title="Web pre-registrations to complete")
    for column in ("since", "name", "born", "in", "address", "id"):
        table.add_column(column)
    for h in reply.hits:
        flag = " [yellow](duplicate?)[/yellow]" if h.possible_duplicate else ""
        table.add_row(
            f"{h.create_time.ToDatetime():%Y-%m-%d}",
            h.display_name + flag,
            h.birth_date,
            h.birth_place,
            h.address,
            h.patron_id,
        )
    ctx.console.print(table)
    return 0


def _print_patron(ctx: Any, p: pb.Patron) -> None:
    table = Table(title=p.display_name, show_header=False)
    table.add_column("field", style="dim")
    table.add_column("value")
    a = p.address
    rows = [
        ("id", p.id),
        ("origin / status", f"{_ORIGIN.get(p.origin, '')} / {_STATUS.get(p.status, '')}"),
        ("born", f"{p.birth_place}, {p.birth_date}"),
        ("address", f"{a.street}, {a.postal_code} {a.city} {a.province} {a.country_code}".strip()),
        ("e-mail / phone", f"{p.email or '—'} / {p.phone or '—'}"),
        ("document", f"{pb.DocumentType.Name(p.document_type)[14:].lower()} {p.document_number}".strip()),
        ("zone / nationality", f"{p.zone or '—'} / {p.nationality or '—'}"),
        ("category", p.category_code or "—"),
        ("card / RFID", f"{p.card_barcode or '—'} / {p.rfid_uid or '—'}"),
        ("enrolled", f"{p.enrollment_date or '—'} → {p.enrollment_expiry_date or '—'}"),
        (
            "web credentials",
            f"{p.credentials.label}"
            + (f" (username {p.credentials.username})" if p.credentials.username else ""),
        ),
        ("etag", p.etag),
    ]
    if p.missing_for_enrollment:
        rows.append(("missing for enrollment", ", ".join(p.missing_for_enrollment)))
    for flag in p.possible_duplicates:
        rows.append(
            (
                "possible duplicate",
                f"{flag.other_display_name} ({flag.other_patron_id}): "
                f"{pb.DuplicateReason.Name(flag.reason)[17:].lower()}",
            )
        )
    for row in rows:
        table.add_row(*row)
    ctx.console.print(table)


async def _show(ctx: Any, args: Any) -> int:
    stub = _stub(ctx)
    try:
        if args.card or args.rfid:
            request = (
                pb.LookUpPatronByCardRequest(barcode=args.card)
                if args.card
                else pb.LookUpPatronByCardRequest(rfid_uid=args.rfid)
            )
            patron = (await stub.LookUpPatronByCard(request, timeout=10)).patron
        else:
            patron = (await stub.GetPatron(pb.GetPatronRequest(patron_id=args.patron_id), timeout=10)).patron
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    _print_patron(ctx, patron)
    return 0


async def _complete(ctx: Any, args: Any) -> int:
    stub = _stub(ctx)
    patron = pb.Patron(id=args.patron_id)
    paths = []
    for option, path in _FIELDS.items():
        value = getattr(args, option)
        if value is None:
            continue
        paths.append(path)
        if path.startswith("address."):
            setattr(patron.address, path.split(".", 1)[1], value)
        else:
            setattr(patron, path, value)
    if args.document_type is not None:
        patron.document_type = _DOCS[args.document_type]
        paths.append("document_type")
    try:
        current = (await stub.GetPatron(pb.GetPatronRequest(patron_id=args.patron_id), timeout=10)).patron
        reply = await stub.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=uuid.uuid4().hex,
                patron=patron,
                update_mask=FieldMask(paths=paths),
                etag=current.etag,
            ),
            timeout=10,
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    _print_patron(ctx, reply.patron)
    return 0


async def _enroll(ctx: Any, args: Any) -> int:
    stub = _stub(ctx)
    try:
        current = (await stub.GetPatron(pb.GetPatronRequest(patron_id=args.patron_id), timeout=10)).patron
        reply = await stub.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=uuid.uuid4().hex,
                patron_id=args.patron_id,
                etag=current.etag,
                category_code=args.category,
                card_barcode=args.card,
                rfid_uid=args.rfid,
                encode_at_station_id=args.station,
            ),
            timeout=60,
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    _print_patron(ctx, reply.patron)
    return 0


async def _credentials(ctx: Any, args: Any) -> int:
    stub = _stub(ctx)
    common = dict(
        request_id=uuid.uuid4().hex,
        patron_id=args.patron_id,
        send_by_email=args.email,
        print_sheet=args.sheet is not None,
    )
    try:
        if args.regenerate:
            reply: Any = await stub.RegenerateTemporaryPassword(
                pb.RegenerateTemporaryPasswordRequest(**common), timeout=10
            )
        else:
            reply = await stub.IssueTemporaryCredentials(
                pb.IssueTemporaryCredentialsRequest(**common), timeout=10
            )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    c = reply.credentials
    ctx.console.print(
        f"username: [bold]{c.username}[/bold]\ntemporary password: [bold]{c.temporary_password}"
        f"[/bold]\nvalid until: {c.expires_at.ToDatetime():%Y-%m-%d %H:%M} UTC\n"
        "[dim]Shown only now: hand it over or print the sheet.[/dim]"
    )
    if reply.email_queued:
        ctx.console.print("e-mail queued to the patron")
    if args.sheet is not None:
        args.sheet.write_bytes(reply.sheet_pdf)
        ctx.console.print(f"patron sheet written to {args.sheet}")
    return 0


async def _sheet(ctx: Any, args: Any) -> int:
    try:
        reply = await _stub(ctx).GetPatronSheet(
            pb.GetPatronSheetRequest(patron_id=args.patron_id), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    args.output.write_bytes(reply.pdf)
    ctx.console.print(f"patron sheet written to {args.output}")
    return 0


async def _categories(ctx: Any) -> int:
    try:
        reply = await _stub(ctx).ListPatronCategories(
            pb.ListPatronCategoriesRequest(include_inactive=True), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    table = Table(title="Patron categories")
    for column in ("code", "name", "loans", "reservations", "months", "pickup days", "active"):
        table.add_column(column)
    for c in reply.categories:
        table.add_row(
            c.code,
            c.name,
            str(c.loan_limit),
            str(c.reservation_limit),
            str(c.enrollment_period_months),
            str(c.pickup_period_days),
            "yes" if c.active else "no",
        )
    ctx.console.print(table)
    return 0


async def _add_category(ctx: Any, args: Any) -> int:
    try:
        reply = await _stub(ctx).CreatePatronCategory(
            pb.CreatePatronCategoryRequest(
                request_id=uuid.uuid4().hex,
                category=pb.PatronCategory(
                    code=args.code,
                    name=args.name,
                    loan_limit=args.loans,
                    reservation_limit=args.reservations,
                    enrollment_period_months=args.months,
                    pickup_period_days=args.pickup_days,
                    active=True,
                ),
            ),
            timeout=10,
        )
    except grpc.aio.AioRpcError as exc:
        return int(ctx.fail_from_rpc(exc))
    ctx.console.print(f"category {reply.category.code} created")
    return 0
