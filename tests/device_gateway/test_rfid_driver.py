"""The RFID driver against the pad emulator through a real pty (by path) and socket://."""

from typing import Any

import pytest

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.emulators.rfid import EmulatedTag, RfidPadEmulator
from services.device_gateway.hardware.encoding import CardFormat, EncodeError, encode_patron_card
from services.device_gateway.hardware.events import TagChange
from services.device_gateway.hardware.framing import DeviceError, LockRefused, TagCommandError
from services.device_gateway.hardware.rfid import RfidOptions, RfidReader
from services.device_gateway.hardware.rfid_3m import CMD_LOCK_AFI, ThreeMCodec
from services.device_gateway.hardware.rfid_feig import ISO_LOCK_AFI, FeigCodec
from services.device_gateway.hardware.transport import PortSettings
from tests.device_gateway.conftest import FAST_BACKOFF, Events, wait_for

BOOK = "E004015000000001"
CARD = "E004015000000002"
OTHER = "E004015000000003"
FAST = RfidOptions(poll_interval=0.02, response_timeout=1.0)


def _reader(emulator: RfidPadEmulator, events: Events | None = None, **options: Any) -> RfidReader:
    opts = RfidOptions(**{**FAST.__dict__, **options})
    codec = ThreeMCodec() if emulator.protocol == "3m810" else FeigCodec()
    reader = RfidReader(
        "desk1-pad",
        PortSettings(emulator.url, baudrate=19200),
        codec,
        events,
        options=opts,
        backoff=FAST_BACKOFF,
    )
    reader.start()
    wait_for(lambda: reader.health.snapshot().frames_read > 0, what="first inventory answered")
    return reader


def book_tag(uid: str = BOOK, **quirks: bool) -> EmulatedTag:
    content = iso28560.LibraryTagData(primary_id="3065000123", country="IT", isil="IT-RM0001")
    return EmulatedTag.with_content(uid, content, afi=0x07, **quirks)


def test_tags_entering_and_leaving_the_field(pad_emulator: RfidPadEmulator, events: Events) -> None:
    reader = _reader(pad_emulator, events)
    try:
        pad_emulator.place(book_tag(reversed_blocks=True))
        entered = events.next()
        assert (entered.change, entered.uid) == (TagChange.ENTERED, BOOK)
        assert entered.content.data.primary_id == "3065000123"
        assert entered.content.reversed_blocks and entered.afi == 0x07
        assert [t.uid for t in reader.tags_in_field()] == [BOOK]
        pad_emulator.place(EmulatedTag.blank(CARD))
        blank = events.next()
        assert (blank.uid, blank.content, blank.content_error) == (CARD, None, "TAG_BLANK")
        pad_emulator.remove(BOOK)
        left = events.next()
        assert (left.change, left.uid) == (TagChange.LEFT, BOOK)
    finally:
        reader.stop()


def test_corrupt_frames_are_counted_and_never_become_events(
    pad_emulator: RfidPadEmulator, events: Events
) -> None:
    reader = _reader(pad_emulator, events, response_timeout=0.25)
    try:
        pad_emulator.inject_bad_crc()  # announces a tag E0040150DEADBEEF with a broken CRC
        pad_emulator.inject_garbage()
        pad_emulator.corrupt_replies = 2
        wait_for(lambda: reader.health.snapshot().frames_rejected >= 4, what="rejections counted")
        pad_emulator.place(book_tag())
        assert events.next().uid == BOOK  # still working
        assert all(e.uid != "E0040150DEADBEEF" for e in events.seen + events.drain())
    finally:
        reader.stop()


def test_unplug_and_replug_resumes_events(pad_emulator: RfidPadEmulator, events: Events) -> None:
    reader = _reader(pad_emulator, events)
    try:
        pad_emulator.place(book_tag())
        assert events.next().change is TagChange.ENTERED
        pad_emulator.stop()
        assert events.next().change is TagChange.LEFT  # nothing is known while unplugged
        wait_for(lambda: not reader.health.snapshot().connected, what="disconnect noticed")
        pad_emulator.start()
        again = events.next()
        assert (again.change, again.uid) == (TagChange.ENTERED, BOOK)
        assert reader.health.snapshot().reconnects >= 1
    finally:
        reader.stop()


def test_encode_patron_card_writes_and_verifies(pad_emulator: RfidPadEmulator) -> None:
    pad_emulator.place(EmulatedTag.blank(CARD))
    reader = _reader(pad_emulator)
    try:
        result = encode_patron_card(reader, "23000012345678", CardFormat(country="IT", isil="IT-RM0001"))
        assert result.uid == CARD and result.attempts == 1
        stored = iso28560.decode(bytes(pad_emulator.tag(CARD).memory)).data
        assert stored == iso28560.LibraryTagData.patron_card("23000012345678", "IT", "IT-RM0001")
        # The same card again is a harmless retry; another patron's barcode is refused.
        assert (
            encode_patron_card(reader, "23000012345678", CardFormat(country="IT", isil="IT-RM0001")).uid
            == CARD
        )
        with pytest.raises(EncodeError) as err:
            encode_patron_card(reader, "99999", CardFormat())
        assert err.value.reason == "TAG_IN_USE"
    finally:
        reader.stop()


def test_write_verify_failure_is_retried_then_reported(pad_emulator: RfidPadEmulator) -> None:
    pad_emulator.place(EmulatedTag.blank(CARD))
    reader = _reader(pad_emulator)
    try:
        pad_emulator.set_corrupt_writes(1)
        assert encode_patron_card(reader, "P-1", CardFormat(attempts=3)).attempts == 2
        pad_emulator.place(EmulatedTag.blank(CARD))
        pad_emulator.set_corrupt_writes(10)
        with pytest.raises(EncodeError) as err:
            encode_patron_card(reader, "P-2", CardFormat(attempts=3))
        assert err.value.reason == "WRITE_VERIFY_FAILED"
        assert pad_emulator.corrupt_writes == 7  # exactly three attempts
    finally:
        reader.stop()


@pytest.mark.parametrize(("tags", "reason"), [([], "NO_TAG"), ([CARD, OTHER], "MULTIPLE_TAGS")])
def test_encoding_needs_exactly_one_card(pad_emulator: RfidPadEmulator, tags: list[str], reason: str) -> None:
    for uid in tags:
        pad_emulator.place(EmulatedTag.blank(uid))
    reader = _reader(pad_emulator)
    try:
        with pytest.raises(EncodeError) as err:
            encode_patron_card(reader, "P-1")
        assert err.value.reason == reason
    finally:
        reader.stop()


def test_afi_eas_and_locks(pad_emulator: RfidPadEmulator) -> None:
    tag = pad_emulator.place(book_tag())
    reader = _reader(pad_emulator)
    try:
        reader.write_afi(BOOK, 0xC2)
        assert reader.read_afi(BOOK) == 0xC2 == tag.afi
        reader.set_eas(BOOK, True)
        assert tag.eas
        reader.set_eas(BOOK, False)
        assert not tag.eas
        with pytest.raises(LockRefused):
            reader.lock_afi(BOOK)
        lock = CMD_LOCK_AFI if pad_emulator.protocol == "3m810" else ISO_LOCK_AFI
        assert lock not in pad_emulator.commands  # nothing irreversible was sent
        with pytest.raises(TagCommandError):
            reader.read_afi(OTHER)  # not on the pad
    finally:
        reader.stop()
    unlocked = _reader(pad_emulator, allow_locks=True)
    try:
        unlocked.lock_afi(BOOK)
        with pytest.raises(TagCommandError):
            unlocked.write_afi(BOOK, 0x07)
    finally:
        unlocked.stop()


def test_a_reader_that_stops_answering_times_out_then_is_reopened(pad_emulator: RfidPadEmulator) -> None:
    tag = pad_emulator.place(book_tag())
    reader = _reader(pad_emulator, response_timeout=0.1, timeouts_before_reconnect=2)
    try:
        pad_emulator.silent = True
        with pytest.raises(DeviceError) as err:  # a timeout, or the reopen already under way
            reader.write_afi(BOOK, 0xC2)
        assert err.value.reason in ("DEVICE_TIMEOUT", "DEVICE_UNAVAILABLE")
        wait_for(lambda: reader.health.snapshot().reconnects >= 1, what="reopened after timeouts")
        pad_emulator.silent = False
        wait_for(lambda: reader.health.snapshot().connected, what="connected again")
        wait_for(lambda: _try_write(reader, 0xC2), what="answers again")
        assert tag.afi == 0xC2
    finally:
        reader.stop()


def _try_write(reader: RfidReader, afi: int) -> bool:
    try:
        reader.write_afi(BOOK, afi)
    except DeviceError:
        return False
    return True
