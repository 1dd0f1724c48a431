"""The patron sheet ("stampa scheda", P5): patron data, the card's Code 128 barcode and, when just
issued, the temporary credentials. One A4 page, rendered with reportlab."""

from __future__ import annotations

import io
from zoneinfo import ZoneInfo

from reportlab.graphics.barcode import code128
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

from bibliodesk.patrons.v1 import patrons_pb2 as pb

from .app.config import PatronsConfig

_DOCS = {
    pb.DOCUMENT_TYPE_IDENTITY_CARD: "Carta d'identità / Identity card",
    pb.DOCUMENT_TYPE_PASSPORT: "Passaporto / Passport",
    pb.DOCUMENT_TYPE_DRIVING_LICENCE: "Patente / Driving licence",
    pb.DOCUMENT_TYPE_RESIDENCE_PERMIT: "Permesso di soggiorno / Residence permit",
    pb.DOCUMENT_TYPE_OTHER: "Altro / Other",
}


def render_sheet(
    patron: pb.Patron, cfg: PatronsConfig, *, credentials: pb.TemporaryCredentials | None, tz: ZoneInfo
) -> bytes:
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    c.setTitle(f"Scheda utente {patron.display_name}")
    width, height = A4
    left = 20 * mm
    y = height - 25 * mm
    c.setFont("Helvetica-Bold", 18)
    c.drawString(left, y, cfg.library_name)
    c.setFont("Helvetica", 11)
    y -= 8 * mm
    c.drawString(left, y, "Scheda utente — Patron sheet")
    c.setStrokeColor(colors.grey)
    c.line(left, y - 3 * mm, width - left, y - 3 * mm)
    y -= 14 * mm
    a = patron.address
    place = " ".join(p for p in (a.postal_code, a.city) if p) + (f" ({a.province})" if a.province else "")
    rows = [
        ("Cognome e nome / Name", patron.display_name),
        ("Nato/a a, il / Born in, on", f"{patron.birth_place}, {patron.birth_date}"),
        ("Indirizzo / Address", f"{a.street}, {place}"),
        ("E-mail", patron.email or "—"),
        ("Telefono / Phone", patron.phone or "—"),
        ("Documento / Document", f"{_DOCS.get(patron.document_type, '—')} {patron.document_number}".strip()),
        ("Nazionalità / Nationality", patron.nationality or "—"),
        ("Zona / Zone", patron.zone or "—"),
        ("Profilo / Category", patron.category_code or "—"),
        (
            "Iscrizione / Enrolled",
            f"{patron.enrollment_date or '—'}  →  {patron.enrollment_expiry_date or '—'}",
        ),
        ("Sede di riferimento / Home branch", patron.home_branch or "—"),
    ]
    for label, value in rows:
        c.setFont("Helvetica", 9)
        c.setFillColor(colors.grey)
        c.drawString(left, y, label)
        c.setFillColor(colors.black)
        c.setFont("Helvetica", 11)
        c.drawString(left + 62 * mm, y, value[:80])
        y -= 7 * mm
    if patron.card_barcode:
        y -= 6 * mm
        c.setFont("Helvetica-Bold", 12)
        c.drawString(left, y, "Tessera / Library card")
        y -= 24 * mm
        barcode = code128.Code128(patron.card_barcode, barHeight=18 * mm, barWidth=0.38 * mm, quiet=True)
        barcode.drawOn(c, left, y)
        c.setFont("Courier", 12)
        c.drawString(left + 10 * mm, y - 6 * mm, patron.card_barcode)
        y -= 14 * mm
    if credentials is not None and credentials.temporary_password:
        y -= 6 * mm
        c.setStrokeColor(colors.black)
        c.rect(left, y - 38 * mm, width - 2 * left, 42 * mm)
        c.setFont("Helvetica-Bold", 12)
        c.drawString(left + 5 * mm, y - 4 * mm, "Credenziali provvisorie / Temporary credentials")
        c.setFont("Helvetica", 11)
        c.drawString(left + 5 * mm, y - 13 * mm, "Username:")
        c.drawString(left + 5 * mm, y - 21 * mm, "Password:")
        c.setFont("Courier-Bold", 14)
        c.drawString(left + 35 * mm, y - 13 * mm, credentials.username)
        c.drawString(left + 35 * mm, y - 21 * mm, credentials.temporary_password)
        c.setFont("Helvetica", 9)
        expires = credentials.expires_at.ToDatetime().replace(tzinfo=ZoneInfo("UTC")).astimezone(tz)
        c.drawString(
            left + 5 * mm,
            y - 29 * mm,
            f"Valide fino al / Valid until {expires:%Y-%m-%d %H:%M}. Al primo accesso scegli username e "
            "password personali.",
        )
        c.drawString(
            left + 5 * mm,
            y - 34 * mm,
            "At first log-in you will choose your own username and password. Keep this sheet private.",
        )
    c.setFont("Helvetica", 8)
    c.setFillColor(colors.grey)
    c.drawString(left, 12 * mm, f"Codice utente / Patron id: {patron.id}")
    c.showPage()
    c.save()
    return buffer.getvalue()
