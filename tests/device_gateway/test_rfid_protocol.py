import pytest

from services.device_gateway.hardware import rfid_3m as p
from services.device_gateway.hardware import rfid_feig as feig
from services.device_gateway.hardware.framing import Frame, TagCommandError

UID = "E004015012345678"


def test_frames_match_captured_bytes() -> None:
    assert p.encode_frame(0x04, b"\x00\x11", start=p.PROBE_START) == bytes.fromhex("D50005040011 8C66")
    assert p.encode_frame(0xFE, bytes.fromhex("00000700")) == bytes.fromhex("d60007fe00000700af19")
    assert p.ThreeMCodec().inventory().frame == p.encode_frame(0xFE, b"\x00\x05")


def test_captured_no_tag_reply_parses_as_empty_inventory() -> None:
    frames = p.D6Deframer().feed(bytes.fromhex("d60007fe00000700af19"))
    assert frames == [Frame(cmd=0xFE, data=bytes.fromhex("00000700"), start=0xD6)]
    assert p.ThreeMCodec().inventory().parse(frames[0]) == []


def test_deframer_reassembles_split_frames_and_counts_corruption() -> None:
    good = p.encode_frame(0xFE, b"\x00\x00\x05\x01" + bytes.fromhex(UID))
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 1
    wrong_length = bytes([0xD6, 0xFF, 0xFF, 0x00])
    deframer = p.D6Deframer()
    stream = b"noise" + bytes(bad_crc) + wrong_length + good
    frames = []
    for byte in stream:
        frames += deframer.feed(bytes([byte]))
    assert [f.cmd for f in frames] == [0xFE]
    assert deframer.rejected == 3  # garbage, bad CRC, impossible length


def test_error_status_and_foreign_replies_are_refused() -> None:
    codec = p.ThreeMCodec()
    request = codec.read_blocks(UID, 0, 2)
    with pytest.raises(TagCommandError):
        request.parse(Frame(cmd=0x02, data=b"\x06" + bytes.fromhex(UID)))
    other = bytes.fromhex("E004015000000000")
    with pytest.raises(TagCommandError):
        request.parse(Frame(cmd=0x02, data=b"\x00" + other + b"\x02" + b"\x00\x00abcd\x01\x00efgh"))
    ok = Frame(cmd=0x02, data=b"\x00" + bytes.fromhex(UID) + b"\x02" + b"\x00\x00abcd\x01\x00efgh")
    assert request.parse(ok) == b"abcdefgh"


def test_feig_inventory_frame_matches_the_published_bytes() -> None:
    assert feig.FeigCodec().inventory().frame == bytes.fromhex("020009FFB00100" + "1843")


def test_feig_replies_parse_and_corruption_is_counted() -> None:
    codec = feig.FeigCodec()
    reply = feig.encode_frame(0xB0, b"\x00\x01\x03\x00" + bytes.fromhex(UID))
    bad = bytearray(reply)
    bad[6] ^= 0x10
    deframer = feig.FeigDeframer()
    frames = deframer.feed(b"\xff\xfe" + bytes(bad) + reply)
    assert deframer.rejected == 2
    assert codec.inventory().parse(frames[0]) == [UID]
    no_tag = feig.FeigDeframer().feed(feig.encode_frame(0xB0, b"\x01"))[0]
    assert codec.inventory().parse(no_tag) == []
    with pytest.raises(TagCommandError):
        codec.write_afi(UID, 7).parse(feig.FeigDeframer().feed(feig.encode_frame(0xB0, b"\x03"))[0])
