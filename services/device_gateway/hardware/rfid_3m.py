"""The 3M 810 / Bibliotheca "D6" framed protocol (19200 8N1).

Frame: ``D6 | LEN (2, big endian, = cmd + data + 2) | CMD | DATA | CRC (2, big endian)``; the CRC
is CRC-16/GENIBUS over LEN..DATA. Replies repeat the command byte followed by a status byte
(00 ok, 06 error). Commands from dpavlin/Biblio-RFID ``Reader/3M810.pm``:

- ``FE 00 05`` inventory -> ``FE 00 00 05 n UID*n`` (8-byte UIDs)
- ``02 UID start n`` read blocks -> ``02 00 UID n (blockno LE16, 4 bytes)*n``
- ``04 UID start n 00 data`` write blocks -> ``04 00 UID n``
- ``0A UID`` read AFI -> ``0A 00 UID afi``; ``09 UID afi`` write AFI -> ``09 00 UID``

Not seen in the published captures, so defined by this gateway (and its emulator) until
checked against a real reader: ``0C UID 01|00`` set/reset EAS -> ``0C 00 UID flag``;
``0D UID`` lock AFI and ``0E UID start n`` lock blocks -> same command, status 00.
"""

from __future__ import annotations

import struct
from typing import Literal

from services.device_gateway.hardware.crc import crc16_3m
from services.device_gateway.hardware.framing import Deframer, Frame, Request, TagCommandError

START = 0xD6
PROBE_START = 0xD5
MAX_LENGTH = 1024
UID_LENGTH = 8
STATUS_OK = 0x00
STATUS_ERROR = 0x06

CMD_INVENTORY = 0xFE
CMD_READ_BLOCKS = 0x02
CMD_WRITE_BLOCKS = 0x04
CMD_READ_AFI = 0x0A
CMD_WRITE_AFI = 0x09
CMD_SET_EAS = 0x0C
CMD_LOCK_AFI = 0x0D
CMD_LOCK_BLOCKS = 0x0E


def encode_frame(cmd: int, data: bytes = b"", start: int = START) -> bytes:
    body = struct.pack(">H", len(data) + 3) + bytes([cmd]) + data
    return bytes([start]) + body + struct.pack(">H", crc16_3m(body))


class D6Deframer(Deframer):
    START_BYTES = bytes([START, PROBE_START])

    def try_frame(self) -> tuple[Frame | None, int] | Literal[False] | None:
        buf = self.buffer
        if len(buf) < 3:
            return None
        length = (buf[1] << 8) | buf[2]
        if length < 3 or length > MAX_LENGTH:
            return False
        size = 3 + length
        if len(buf) < size:
            return None
        frame = bytes(buf[:size])
        if crc16_3m(frame[1:-2]) != struct.unpack(">H", frame[-2:])[0]:
            return None, size
        return Frame(cmd=frame[3], data=frame[4:-2], start=frame[0]), size


def uid_bytes(uid: str) -> bytes:
    raw = bytes.fromhex(uid)
    if len(raw) != UID_LENGTH:
        raise ValueError(f"UID must be {UID_LENGTH} bytes, got {uid!r}")
    return raw


def _ok(frame: Frame, what: str) -> bytes:
    if not frame.data or frame.data[0] != STATUS_OK:
        status = frame.data[0] if frame.data else -1
        raise TagCommandError(f"{what} failed (status {status:#04x})")
    return frame.data[1:]


def _is(cmd: int):
    return lambda frame: frame.start == START and frame.cmd == cmd


class ThreeMCodec:
    """Builds requests and reads replies; no I/O."""

    name = "3m810"
    deframer_class = D6Deframer

    def inventory(self) -> Request:
        def parse(frame: Frame) -> list[str]:
            rest = _ok(frame, "inventory")
            if len(rest) < 3:
                raise TagCommandError("short inventory reply")
            count, uids = rest[2], rest[3:]
            if len(uids) != count * UID_LENGTH:
                raise TagCommandError(f"inventory reply says {count} tags but has {len(uids)} bytes")
            return [uids[i : i + UID_LENGTH].hex().upper() for i in range(0, len(uids), UID_LENGTH)]

        return Request(encode_frame(CMD_INVENTORY, b"\x00\x05"), _is(CMD_INVENTORY), parse, "inventory")

    def read_blocks(self, uid: str, start: int, count: int) -> Request:
        def parse(frame: Frame) -> bytes:
            rest = _ok(frame, "read blocks")
            if rest[:UID_LENGTH] != uid_bytes(uid) or len(rest) < UID_LENGTH + 1:
                raise TagCommandError("read blocks reply for another tag")
            n, payload = rest[UID_LENGTH], rest[UID_LENGTH + 1 :]
            if len(payload) != n * 6 or n != count:
                raise TagCommandError("read blocks reply has the wrong size")
            blocks: dict[int, bytes] = {}
            for i in range(n):
                number = struct.unpack("<H", payload[i * 6 : i * 6 + 2])[0]
                blocks[number] = payload[i * 6 + 2 : i * 6 + 6]
            if sorted(blocks) != list(range(start, start + count)):
                raise TagCommandError("read blocks reply has unexpected block numbers")
            return b"".join(blocks[b] for b in sorted(blocks))

        data = uid_bytes(uid) + bytes([start, count])
        return Request(encode_frame(CMD_READ_BLOCKS, data), _is(CMD_READ_BLOCKS), parse, "read_blocks")

    def write_blocks(self, uid: str, start: int, data: bytes) -> Request:
        if len(data) % 4:
            raise ValueError("data must be whole 4-byte blocks")
        count = len(data) // 4

        def parse(frame: Frame) -> None:
            rest = _ok(frame, "write blocks")
            if rest[:UID_LENGTH] != uid_bytes(uid):
                raise TagCommandError("write blocks reply for another tag")

        payload = uid_bytes(uid) + bytes([start, count, 0]) + data
        return Request(encode_frame(CMD_WRITE_BLOCKS, payload), _is(CMD_WRITE_BLOCKS), parse, "write_blocks")

    def read_afi(self, uid: str) -> Request:
        def parse(frame: Frame) -> int:
            rest = _ok(frame, "read AFI")
            if len(rest) != UID_LENGTH + 1 or rest[:UID_LENGTH] != uid_bytes(uid):
                raise TagCommandError("read AFI reply malformed")
            return rest[UID_LENGTH]

        return Request(encode_frame(CMD_READ_AFI, uid_bytes(uid)), _is(CMD_READ_AFI), parse, "read_afi")

    def write_afi(self, uid: str, afi: int) -> Request:
        def parse(frame: Frame) -> None:
            _ok(frame, "write AFI")

        data = uid_bytes(uid) + bytes([afi])
        return Request(encode_frame(CMD_WRITE_AFI, data), _is(CMD_WRITE_AFI), parse, "write_afi")

    def set_eas(self, uid: str, enabled: bool) -> Request:
        def parse(frame: Frame) -> None:
            _ok(frame, "set EAS")

        data = uid_bytes(uid) + bytes([1 if enabled else 0])
        return Request(encode_frame(CMD_SET_EAS, data), _is(CMD_SET_EAS), parse, "set_eas")

    def lock_afi(self, uid: str) -> Request:
        def parse(frame: Frame) -> None:
            _ok(frame, "lock AFI")

        return Request(encode_frame(CMD_LOCK_AFI, uid_bytes(uid)), _is(CMD_LOCK_AFI), parse, "lock_afi")

    def lock_blocks(self, uid: str, start: int, count: int) -> Request:
        def parse(frame: Frame) -> None:
            _ok(frame, "lock blocks")

        data = uid_bytes(uid) + bytes([start, count])
        return Request(encode_frame(CMD_LOCK_BLOCKS, data), _is(CMD_LOCK_BLOCKS), parse, "lock_blocks")
