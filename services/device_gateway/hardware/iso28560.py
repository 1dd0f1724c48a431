"""ISO 28560-3 ("Danish data model") library tag content: 32 bytes in 8 blocks of 4.

| byte  | field                                                        |
|-------|--------------------------------------------------------------|
| 0     | high nibble data model version (1), low nibble type of usage |
| 1     | number of parts in the set                                   |
| 2     | part number                                                  |
| 3-18  | primary item id (barcode), ASCII, NUL padded                 |
| 19-20 | CRC-16/CCITT-FALSE, LSB at byte 19                           |
| 21-22 | country (ISO 3166 alpha-2)                                   |
| 23-31 | ISIL of the owner library, NUL padded                        |

The CRC covers bytes 0-18 and 21-31 followed by two NUL bytes (libdanrfid ``CRC.DDCRC``).
Vendor quirks handled on decode: every 4-byte block written reversed (FKI), and the version and
usage nibbles swapped (Bibliotheca). Both can also be produced on encode for such sites.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.device_gateway.hardware.crc import crc16_ccitt_false

TAG_DATA_LENGTH = 32
BLOCK_SIZE = 4
PRIMARY_ID_LENGTH = 16
ISIL_LENGTH = 9
DATA_MODEL_VERSION = 1


class UsageType(enum.IntEnum):
    """Type of usage (low nibble of byte 0)."""

    ACQUISITION = 0
    CIRCULATING = 1
    NOT_FOR_LOAN = 2
    LOCAL_3 = 3
    LOCAL_4 = 4
    FUTURE = 5
    UNKNOWN = 6
    DISCARDED = 7
    PATRON_CARD = 8
    EQUIPMENT = 9


class TagDataError(ValueError):
    """The bytes are not valid ISO 28560-3 content; ``reason`` is a stable UPPER_SNAKE code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LibraryTagData:
    """The decoded content of one tag (one part of a possibly multi-part set)."""

    primary_id: str
    usage: UsageType = UsageType.CIRCULATING
    parts_in_set: int = 1
    part_number: int = 1
    country: str = ""
    isil: str = ""
    version: int = DATA_MODEL_VERSION

    def __post_init__(self) -> None:
        _check_ascii("primary_id", self.primary_id, PRIMARY_ID_LENGTH)
        _check_ascii("country", self.country, 2)
        _check_ascii("isil", self.isil, ISIL_LENGTH)
        if not self.primary_id:
            raise TagDataError("PRIMARY_ID_MISSING", "primary item id is empty")
        if not 1 <= self.parts_in_set <= 255:
            raise TagDataError("PARTS_OUT_OF_RANGE", f"parts in set {self.parts_in_set} not in 1..255")
        if not 1 <= self.part_number <= self.parts_in_set:
            raise TagDataError(
                "PART_NUMBER_OUT_OF_RANGE", f"part {self.part_number} not in 1..{self.parts_in_set}"
            )
        if not 0 <= self.version <= 15:
            raise TagDataError("VERSION_OUT_OF_RANGE", f"version {self.version} not in 0..15")

    @classmethod
    def patron_card(cls, patron_barcode: str, country: str = "", isil: str = "") -> LibraryTagData:
        """Content of a patron card: usage 8 (byte 0 = 0x18), one part of one."""
        return cls(primary_id=patron_barcode, usage=UsageType.PATRON_CARD, country=country, isil=isil)


@dataclass(frozen=True)
class DecodedTag:
    """Decoded content plus how it was found on the tag."""

    data: LibraryTagData
    reversed_blocks: bool = False
    swapped_nibbles: bool = False


def _check_ascii(field: str, value: str, max_length: int) -> None:
    if len(value) > max_length:
        raise TagDataError("FIELD_TOO_LONG", f"{field} is longer than {max_length} characters")
    if not all(0x20 <= ord(c) < 0x7F for c in value):
        raise TagDataError("FIELD_NOT_ASCII", f"{field} must be printable ASCII")


def reverse_blocks(data: bytes) -> bytes:
    """Reverse the byte order inside every 4-byte block (the FKI quirk); its own inverse."""
    return b"".join(data[i : i + BLOCK_SIZE][::-1] for i in range(0, len(data), BLOCK_SIZE))


def data_model_crc(data: bytes | bytearray) -> int:
    """The data model CRC of 32 tag bytes (the CRC field itself is skipped)."""
    return crc16_ccitt_false(bytes(data[:19]) + bytes(data[21:32]) + b"\x00\x00")


def _pad(value: str, length: int) -> bytes:
    return value.encode("ascii").ljust(length, b"\x00")


def encode(tag: LibraryTagData, *, reversed_blocks: bool = False, swapped_nibbles: bool = False) -> bytes:
    """The 32 bytes to write to the tag."""
    high, low = tag.version, int(tag.usage)
    if swapped_nibbles:
        high, low = low, high
    raw = bytearray(TAG_DATA_LENGTH)
    raw[0] = (high << 4) | low
    raw[1] = tag.parts_in_set
    raw[2] = tag.part_number
    raw[3:19] = _pad(tag.primary_id, PRIMARY_ID_LENGTH)
    raw[21:23] = _pad(tag.country, 2)
    raw[23:32] = _pad(tag.isil, ISIL_LENGTH)
    crc = data_model_crc(raw)
    raw[19] = crc & 0xFF
    raw[20] = crc >> 8
    return reverse_blocks(bytes(raw)) if reversed_blocks else bytes(raw)


def _text(raw: bytes, field: str) -> str:
    value = raw.split(b"\x00", 1)[0]
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TagDataError("FIELD_NOT_ASCII", f"{field} is not ASCII") from exc
    if not all(0x20 <= ord(c) < 0x7F for c in text):
        raise TagDataError("FIELD_NOT_ASCII", f"{field} is not printable ASCII")
    return text


def _crc_ok(raw: bytes) -> bool:
    return data_model_crc(raw) == raw[19] | (raw[20] << 8)


def decode(
    data: bytes, *, allow_reversed_blocks: bool = True, allow_swapped_nibbles: bool = True
) -> DecodedTag:
    """Decode tag memory (at least 32 bytes; further blocks are ignored).

    The CRC decides the block order: as stored first, then every block reversed when the site
    allows that quirk. Swapped nibbles are recognised when the high nibble is not version 1 and
    the low nibble is.
    """
    if len(data) < TAG_DATA_LENGTH:
        raise TagDataError("TAG_DATA_TOO_SHORT", f"need {TAG_DATA_LENGTH} bytes, got {len(data)}")
    raw = bytes(data[:TAG_DATA_LENGTH])
    if raw == b"\x00" * TAG_DATA_LENGTH or raw == b"\xff" * TAG_DATA_LENGTH:
        raise TagDataError("TAG_BLANK", "tag memory is blank")
    reversed_ = False
    if not _crc_ok(raw):
        if allow_reversed_blocks and _crc_ok(reverse_blocks(raw)):
            raw, reversed_ = reverse_blocks(raw), True
        else:
            raise TagDataError("CRC_MISMATCH", "tag data CRC does not match")
    high, low = raw[0] >> 4, raw[0] & 0x0F
    swapped = False
    if high != DATA_MODEL_VERSION and low == DATA_MODEL_VERSION and allow_swapped_nibbles:
        high, low, swapped = low, high, True
    if high != DATA_MODEL_VERSION:
        raise TagDataError("UNSUPPORTED_VERSION", f"data model version {high} is not supported")
    if low > max(UsageType):
        raise TagDataError("UNKNOWN_USAGE", f"type of usage {low} is unknown")
    tag = LibraryTagData(
        version=high,
        usage=UsageType(low),
        parts_in_set=raw[1],
        part_number=raw[2],
        primary_id=_text(raw[3:19], "primary_id"),
        country=_text(raw[21:23], "country"),
        isil=_text(raw[23:32], "isil"),
    )
    return DecodedTag(data=tag, reversed_blocks=reversed_, swapped_nibbles=swapped)


@dataclass(frozen=True)
class SetStatus:
    """Whether all parts of a multi-part item are on the pad."""

    primary_id: str
    parts_in_set: int
    present: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return set(self.present) == set(range(1, self.parts_in_set + 1))

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(sorted(set(range(1, self.parts_in_set + 1)) - set(self.present)))


def set_status(tags: list[LibraryTagData]) -> list[SetStatus]:
    """Group tags by (primary id, owner) and tell for each set which parts are present."""
    groups: dict[tuple[str, str, str], list[LibraryTagData]] = {}
    for tag in tags:
        groups.setdefault((tag.primary_id, tag.country, tag.isil), []).append(tag)
    result = []
    for (primary_id, _, _), members in sorted(groups.items()):
        parts = max(m.parts_in_set for m in members)
        present = tuple(sorted({m.part_number for m in members}))
        result.append(SetStatus(primary_id=primary_id, parts_in_set=parts, present=present))
    return result
