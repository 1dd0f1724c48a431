from services.device_gateway.hardware.crc import crc16_3m, crc16_ccitt_false, crc16_feig


def test_data_model_crc_published_vector() -> None:
    assert crc16_ccitt_false(b"RFID tag data model") == 0x1AEE
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_3m_frame_crc_matches_captured_frames() -> None:
    assert crc16_3m(bytes.fromhex("0005040011")) == 0x8C66  # probe D5 00 05 04 00 11 8C66
    assert crc16_3m(bytes.fromhex("0007fe00000700")) == 0xAF19  # "no tag" inventory reply


def test_feig_crc_matches_inventory_frame() -> None:
    assert crc16_feig(bytes.fromhex("020009FFB00100")) == 0x4318
    assert crc16_feig(b"123456789") == 0x6F91
