import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.iso28560 import LibraryTagData, TagDataError, UsageType

ascii_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)


@st.composite
def tags(draw: st.DrawFn) -> LibraryTagData:
    parts = draw(st.integers(1, 255))
    return LibraryTagData(
        primary_id=draw(ascii_text),
        usage=draw(st.sampled_from(UsageType)),
        parts_in_set=parts,
        part_number=draw(st.integers(1, parts)),
        country=draw(st.sampled_from(["", "DK", "NO", "DE", "IT"])),
        isil=draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", max_size=9)),
    )


@given(tags(), st.booleans())
def test_round_trip(tag: LibraryTagData, reversed_blocks: bool) -> None:
    raw = iso28560.encode(tag, reversed_blocks=reversed_blocks)
    assert len(raw) == 32
    decoded = iso28560.decode(raw)
    assert decoded.data == tag
    # A reversed tag is recognised as such (unless both orders happen to be identical).
    if raw != iso28560.reverse_blocks(raw):
        assert decoded.reversed_blocks == reversed_blocks


@given(tags(), st.integers(0, 31), st.integers(1, 255))
def test_any_single_byte_change_is_detected(tag: LibraryTagData, position: int, flip: int) -> None:
    raw = bytearray(iso28560.encode(tag))
    raw[position] ^= flip
    # CRC-16 catches every burst of up to 16 bits, so any one damaged byte is refused.
    with pytest.raises(TagDataError):
        iso28560.decode(bytes(raw), allow_reversed_blocks=False)


def test_patron_card_layout() -> None:
    raw = iso28560.encode(LibraryTagData.patron_card("23000012345678", country="IT", isil="IT-RM0001"))
    assert raw[0] == 0x18  # version 1, usage 8 (patron card)
    assert raw[1:3] == b"\x01\x01"
    assert raw[3:19] == b"23000012345678\x00\x00"
    assert raw[21:23] == b"IT"
    assert raw[23:32] == b"IT-RM0001"
    crc = iso28560.data_model_crc(raw)
    assert raw[19] == crc & 0xFF and raw[20] == crc >> 8  # LSB first


def test_crc_covers_bytes_with_crc_field_skipped_and_two_nuls() -> None:
    raw = iso28560.encode(LibraryTagData(primary_id="1003011860976002", country="NO", isil="02030000"))
    from services.device_gateway.hardware.crc import crc16_ccitt_false

    assert iso28560.data_model_crc(raw) == crc16_ccitt_false(raw[:19] + raw[21:] + b"\0\0")


def test_reversed_block_quirk_can_be_refused() -> None:
    raw = iso28560.encode(LibraryTagData(primary_id="A1234"), reversed_blocks=True)
    assert iso28560.decode(raw).reversed_blocks
    with pytest.raises(TagDataError) as err:
        iso28560.decode(raw, allow_reversed_blocks=False)
    assert err.value.reason == "CRC_MISMATCH"


def test_swapped_nibbles_bibliotheca() -> None:
    raw = iso28560.encode(LibraryTagData(primary_id="X1", usage=UsageType.NOT_FOR_LOAN), swapped_nibbles=True)
    assert raw[0] == 0x21
    decoded = iso28560.decode(raw)
    assert decoded.swapped_nibbles and decoded.data.usage is UsageType.NOT_FOR_LOAN
    card = iso28560.encode(LibraryTagData.patron_card("P1"), swapped_nibbles=True)
    assert card[0] == 0x81 and iso28560.decode(card).data.usage is UsageType.PATRON_CARD


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00" * 32, "TAG_BLANK"),
        (b"\xff" * 32, "TAG_BLANK"),
        (b"\x11" * 20, "TAG_DATA_TOO_SHORT"),
        (b"\x55" * 32, "CRC_MISMATCH"),
    ],
)
def test_invalid_content(raw: bytes, reason: str) -> None:
    with pytest.raises(TagDataError) as err:
        iso28560.decode(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"primary_id": ""}, "PRIMARY_ID_MISSING"),
        ({"primary_id": "X" * 17}, "FIELD_TOO_LONG"),
        ({"primary_id": "è"}, "FIELD_NOT_ASCII"),
        ({"primary_id": "A", "parts_in_set": 2, "part_number": 3}, "PART_NUMBER_OUT_OF_RANGE"),
        ({"primary_id": "A", "parts_in_set": 0}, "PARTS_OUT_OF_RANGE"),
        ({"primary_id": "A", "isil": "TOOLONGISIL"}, "FIELD_TOO_LONG"),
    ],
)
def test_invalid_fields(kwargs: dict, reason: str) -> None:
    with pytest.raises(TagDataError) as err:
        LibraryTagData(**kwargs)
    assert err.value.reason == reason


def test_multi_part_sets_complete_and_incomplete() -> None:
    cd_box = [LibraryTagData(primary_id="BOX1", parts_in_set=3, part_number=n) for n in (1, 3)]
    book = [LibraryTagData(primary_id="BOOK", parts_in_set=1, part_number=1)]
    status = {s.primary_id: s for s in iso28560.set_status(cd_box + book)}
    assert status["BOOK"].complete
    assert not status["BOX1"].complete
    assert status["BOX1"].missing == (2,)
    whole = [*cd_box, LibraryTagData(primary_id="BOX1", parts_in_set=3, part_number=2)]
    assert iso28560.set_status(whole)[0].complete
