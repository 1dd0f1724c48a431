"""FEIG OBID ISO-host protocol, advanced frame, for ISO 15693 readers (e.g. ID ISC.MR/LR series).

Frame: ``02 | LEN (2, big endian, whole frame) | COM-ADR | CMD | DATA | CRC (2, LSB first)``; the
CRC is CRC-16/MCRF4XX (reflected 0x8408, init 0xFFFF) over every byte before it. Replies insert a
STATUS byte after CMD (00 OK, 01 no transponder, 02 data false, 03 write error, 04 address
error...). Host command ``[0xB0]`` carries ISO 15693 commands (addressed mode 0x01 + UID):

- ``B0 01 00`` inventory -> ``DATA-SETS (TR-TYPE DSFID UID)*``
- ``B0 23 01 UID DB-ADR DB-N`` read multiple blocks -> ``DB-N DB-SIZE (SEC-STATUS DB)*``
- ``B0 24 01 UID DB-ADR DB-N DB-SIZE DB*`` write multiple blocks
- ``B0 27 01 UID AFI`` write AFI; ``B0 28 01 UID`` lock AFI; ``B0 22 01 UID DB-ADR`` lock block
- ``B0 2B 01 UID`` system information -> ``DSFID UID AFI MEM-SIZE(2) IC-REF`` (read AFI)
- ``B1 MFR CMD 01 UID``: NXP custom commands (MFR 04): A2 set EAS, A3 reset EAS.

The inventory frame and its CRC are verified against a published frame; the other layouts follow
the manual's command descriptions and are exercised against this gateway's emulator only.
"""

from __future__ import annotations

import struct
from typing import Literal

from services.device_gateway.hardware.crc import crc16_feig
from services.device_gateway.hardware.framing import Deframer, Frame, Request, TagCommandError
from services.device_gateway.hardware.rfid_3m import uid_bytes

STX = 0x02
MIN_LENGTH = 7  # STX LEN LEN ADR CMD CRC CRC
MAX_LENGTH = 1024
CMD_ISO = 0xB0
CMD_CUSTOM = 0xB1
ADDRESSED = 0x01
MFR_NXP = 0x04
BLOCK_SIZE = 4

ISO_INVENTORY = 0x01
ISO_LOCK_BLOCK = 0x22
ISO_READ_MULTIPLE = 0x23
ISO_WRITE_MULTIPLE = 0x24
ISO_WRITE_AFI = 0x27
ISO_LOCK_AFI = 0x28
ISO_SYSTEM_INFO = 0x2B
NXP_SET_EAS = 0xA2
NXP_RESET_EAS = 0xA3

STATUS_OK = 0x00
STATUS_NO_TRANSPONDER = 0x01
STATUS_DATA_FALSE = 0x02
STATUS_WRITE_ERROR = 0x03


def encode_frame(cmd: int, data: bytes = b"", com_adr: int = 0xFF) -> bytes:
    length = 1 + 2 + 1 + 1 + len(data) + 2
    body = bytes([STX]) + struct.pack(">H", length) + bytes([com_adr, cmd]) + data
    return body + struct.pack("<H", crc16_feig(body))


class FeigDeframer(Deframer):
    START_BYTES = bytes([STX])

    def try_frame(self) -> tuple[Frame | None, int] | Literal[False] | None:
        buf = self.buffer
        if len(buf) < 3:
            return None
        length = (buf[1] << 8) | buf[2]
        if length < MIN_LENGTH or length > MAX_LENGTH:
            return False
        if len(buf) < length:
            return None
        frame = bytes(buf[:length])
        if crc16_feig(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
            return None, length
        return Frame(cmd=frame[4], data=frame[5:-2], start=STX), length


def _ok(frame: Frame, what: str) -> bytes:
    status = frame.data[0] if frame.data else -1
    if status != STATUS_OK:
        raise TagCommandError(f"{what} failed (status {status:#04x})")
    return frame.data[1:]


def _is(cmd: int):
    return lambda frame: frame.cmd == cmd


class FeigCodec:
    name = "feig"
    deframer_class = FeigDeframer

    def __init__(self, com_adr: int = 0xFF) -> None:
        self.com_adr = com_adr

    def _iso(self, iso_cmd: int, payload: bytes = b"") -> bytes:
        return encode_frame(CMD_ISO, bytes([iso_cmd]) + payload, self.com_adr)

    def inventory(self) -> Request:
        def parse(frame: Frame) -> list[str]:
            if frame.data[:1] == bytes([STATUS_NO_TRANSPONDER]):
                return []
            rest = _ok(frame, "inventory")
            if not rest:
                raise TagCommandError("short inventory reply")
            count, records = rest[0], rest[1:]
            if len(records) != count * 10:
                raise TagCommandError(f"inventory reply says {count} tags but has {len(records)} bytes")
            return [records[i * 10 + 2 : i * 10 + 10].hex().upper() for i in range(count)]

        return Request(self._iso(ISO_INVENTORY, b"\x00"), _is(CMD_ISO), parse, "inventory")

    def read_blocks(self, uid: str, start: int, count: int) -> Request:
        def parse(frame: Frame) -> bytes:
            rest = _ok(frame, "read blocks")
            if len(rest) < 2 or rest[0] != count or rest[1] != BLOCK_SIZE:
                raise TagCommandError("read blocks reply has the wrong shape")
            records = rest[2:]
            if len(records) != count * (1 + BLOCK_SIZE):
                raise TagCommandError("read blocks reply has the wrong size")
            step = 1 + BLOCK_SIZE
            return b"".join(records[i * step + 1 : (i + 1) * step] for i in range(count))

        payload = bytes([ADDRESSED]) + uid_bytes(uid) + bytes([start, count])
        return Request(self._iso(ISO_READ_MULTIPLE, payload), _is(CMD_ISO), parse, "read_blocks")

    def write_blocks(self, uid: str, start: int, data: bytes) -> Request:
        if len(data) % BLOCK_SIZE:
            raise ValueError("data must be whole 4-byte blocks")
        payload = (
            bytes([ADDRESSED]) + uid_bytes(uid) + bytes([start, len(data) // BLOCK_SIZE, BLOCK_SIZE]) + data
        )
        return Request(
            self._iso(ISO_WRITE_MULTIPLE, payload),
            _is(CMD_ISO),
            lambda f: _ok(f, "write blocks"),
            "write_blocks",
        )

    def read_afi(self, uid: str) -> Request:
        def parse(frame: Frame) -> int:
            rest = _ok(frame, "system information")
            if len(rest) < 10 or rest[1:9] != uid_bytes(uid):
                raise TagCommandError("system information reply malformed")
            return rest[9]

        payload = bytes([ADDRESSED]) + uid_bytes(uid)
        return Request(self._iso(ISO_SYSTEM_INFO, payload), _is(CMD_ISO), parse, "read_afi")

    def write_afi(self, uid: str, afi: int) -> Request:
        payload = bytes([ADDRESSED]) + uid_bytes(uid) + bytes([afi])
        return Request(
            self._iso(ISO_WRITE_AFI, payload), _is(CMD_ISO), lambda f: _ok(f, "write AFI"), "write_afi"
        )

    def set_eas(self, uid: str, enabled: bool) -> Request:
        command = NXP_SET_EAS if enabled else NXP_RESET_EAS
        data = bytes([MFR_NXP, command, ADDRESSED]) + uid_bytes(uid)
        frame = encode_frame(CMD_CUSTOM, data, self.com_adr)
        return Request(frame, _is(CMD_CUSTOM), lambda f: _ok(f, "set EAS"), "set_eas")

    def lock_afi(self, uid: str) -> Request:
        payload = bytes([ADDRESSED]) + uid_bytes(uid)
        return Request(
            self._iso(ISO_LOCK_AFI, payload), _is(CMD_ISO), lambda f: _ok(f, "lock AFI"), "lock_afi"
        )

    def lock_blocks(self, uid: str, start: int, count: int) -> Request:
        if count != 1:
            raise ValueError("the FEIG driver locks one block per command")
        payload = bytes([ADDRESSED]) + uid_bytes(uid) + bytes([start])
        return Request(
            self._iso(ISO_LOCK_BLOCK, payload), _is(CMD_ISO), lambda f: _ok(f, "lock block"), "lock_blocks"
        )
