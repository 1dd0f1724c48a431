"""CRC-16 variants used by library RFID readers and the ISO 28560-3 tag data model.

Three variants appear on the wire (see research/devices.md):

- ``crc16_ccitt_false``: poly 0x1021, init 0xFFFF, MSB first, no final XOR. The ISO 28560-3 /
  Danish data model CRC. Check value ("123456789") 0x29B1.
- ``crc16_3m``: the same with a final XOR of 0xFFFF (CRC-16/GENIBUS). The 3M 810 / Bibliotheca
  "D6" frame checksum.
- ``crc16_feig``: reflected poly 0x8408, init 0xFFFF, no final XOR (CRC-16/MCRF4XX). The FEIG
  OBID ISO-host frame checksum.
"""

from __future__ import annotations


def _table_msb(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


def _table_lsb(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_MSB_1021 = _table_msb(0x1021)
_LSB_8408 = _table_lsb(0x8408)


def crc16_ccitt_false(data: bytes, init: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (ISO 28560-3 data model)."""
    crc = init
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _MSB_1021[((crc >> 8) ^ byte) & 0xFF]
    return crc


def crc16_3m(data: bytes) -> int:
    """CRC-16/GENIBUS: the 3M 810 / Bibliotheca frame checksum (CCITT-FALSE xor 0xFFFF)."""
    return crc16_ccitt_false(data) ^ 0xFFFF


def crc16_feig(data: bytes, init: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX: the FEIG ISO-host frame checksum (reflected 0x8408, no final XOR)."""
    crc = init
    for byte in data:
        crc = (crc >> 8) ^ _LSB_8408[(crc ^ byte) & 0xFF]
    return crc
