"""Encoding a patron card: exactly one tag on the pad, write the ISO 28560-3 patron-card data,
read it back, compare, retry a bounded number of times."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.framing import DeviceError, TagCommandError
from services.device_gateway.hardware.rfid import BLOCK_SIZE, RfidReader

log = logging.getLogger(__name__)


class EncodeError(DeviceError):
    """Card encoding failed; nothing usable is on the tag. ``reason`` says why:
    NO_TAG, MULTIPLE_TAGS, TAG_IN_USE, WRITE_VERIFY_FAILED, or a device reason."""

    reason = "ENCODE_FAILED"


@dataclass(frozen=True)
class EncodeResult:
    uid: str
    attempts: int
    data: bytes


@dataclass(frozen=True)
class CardFormat:
    """Site settings for patron cards."""

    country: str = ""
    isil: str = ""
    reversed_blocks: bool = False  # write FKI-style reversed blocks for readers that expect them
    attempts: int = 3


def encode_patron_card(
    reader: RfidReader, patron_barcode: str, card: CardFormat | None = None, *, overwrite: bool = False
) -> EncodeResult:
    """Blocking; run it in a thread from asyncio code."""
    card = card or CardFormat()
    try:
        content = iso28560.LibraryTagData.patron_card(patron_barcode, country=card.country, isil=card.isil)
    except iso28560.TagDataError as exc:
        raise EncodeError(str(exc), reason="INVALID_PATRON_BARCODE") from exc
    data = iso28560.encode(content, reversed_blocks=card.reversed_blocks)
    uids = reader.inventory()
    if not uids:
        raise EncodeError("no card on the pad", reason="NO_TAG")
    if len(uids) > 1:
        raise EncodeError(f"{len(uids)} tags on the pad; place exactly one card", reason="MULTIPLE_TAGS")
    uid = uids[0]
    blocks = len(data) // BLOCK_SIZE
    if not overwrite:
        _refuse_foreign_content(reader, uid, patron_barcode, blocks)
    last_problem = ""
    for attempt in range(1, max(1, card.attempts) + 1):
        try:
            reader.write_blocks(uid, 0, data)
            if reader.read_blocks(uid, 0, blocks) == data:
                log.info("encoded patron card %s on tag %s (attempt %d)", patron_barcode, uid, attempt)
                return EncodeResult(uid=uid, attempts=attempt, data=data)
            last_problem = "read-back differs from what was written"
        except TagCommandError as exc:
            last_problem = str(exc)
        log.warning("encoding tag %s attempt %d failed: %s", uid, attempt, last_problem)
    raise EncodeError(
        f"card {uid} could not be written and verified after {card.attempts} attempts: {last_problem}",
        reason="WRITE_VERIFY_FAILED",
    )


def _refuse_foreign_content(reader: RfidReader, uid: str, patron_barcode: str, blocks: int) -> None:
    """A tag already carrying valid data (an item, another patron's card) is not overwritten."""
    try:
        existing = iso28560.decode(reader.read_blocks(uid, 0, blocks))
    except (iso28560.TagDataError, TagCommandError):
        return  # blank or unreadable content: free to write
    found = existing.data
    if found.usage is iso28560.UsageType.PATRON_CARD and found.primary_id == patron_barcode:
        return  # re-encoding the same card is harmless (a retried request)
    raise EncodeError(
        f"tag {uid} already carries {found.usage.name.lower()} data for {found.primary_id!r}",
        reason="TAG_IN_USE",
    )
