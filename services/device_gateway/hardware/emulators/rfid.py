"""An RFID pad/encoder emulator with ISO 15693-like tags, speaking the 3M 810 "D6" protocol or
the FEIG ISO-host advanced protocol (the same bytes as the real readers)."""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware import rfid_3m as m3
from services.device_gateway.hardware import rfid_feig as fg
from services.device_gateway.hardware.emulators.base import Emulator, Endpoint, make_endpoint
from services.device_gateway.hardware.framing import Deframer, Frame

PROTOCOLS = ("3m810", "feig")


@dataclass
class EmulatedTag:
    """Tag memory: blocks of 4 bytes, AFI, EAS bit and irreversible locks."""

    uid: str
    memory: bytearray = field(default_factory=lambda: bytearray(32))
    afi: int = 0
    eas: bool = False
    locked_blocks: set[int] = field(default_factory=set)
    afi_locked: bool = False

    def __post_init__(self) -> None:
        self.uid = self.uid.upper()
        m3.uid_bytes(self.uid)

    @classmethod
    def blank(cls, uid: str, blocks: int = 8) -> EmulatedTag:
        return cls(uid=uid, memory=bytearray(blocks * 4))

    @classmethod
    def with_content(
        cls, uid: str, content: iso28560.LibraryTagData, *, afi: int = 0, **quirks: bool
    ) -> EmulatedTag:
        return cls(uid=uid, memory=bytearray(iso28560.encode(content, **quirks)), afi=afi)

    @property
    def blocks(self) -> int:
        return len(self.memory) // 4


class TagFailure(Exception):
    """A tag-level refusal the reader reports with an error status."""


class RfidPadEmulator(Emulator):
    """Place and remove tags; make the next writes land corrupted; inject broken frames."""

    def __init__(self, endpoint: Endpoint | None = None, *, protocol: str = "3m810") -> None:
        super().__init__(endpoint or make_endpoint("pty"))
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r} ({', '.join(PROTOCOLS)})")
        self.protocol = protocol
        self._lock = threading.Lock()
        self._deframer: Deframer = m3.D6Deframer() if protocol == "3m810" else fg.FeigDeframer()
        self._field: dict[str, EmulatedTag] = {}
        self.corrupt_writes = 0  # the next N block writes store a flipped byte
        self.corrupt_replies = 0  # the next N replies go out with a bad CRC
        self.silent = False  # answer nothing (a reader that hangs)
        self.commands: list[int] = []  # command bytes received (ISO command for FEIG [B0]/[B1])

    # control API -----------------------------------------------------------------------------
    def place(self, tag: EmulatedTag) -> EmulatedTag:
        with self._lock:
            self._field[tag.uid] = tag
        return tag

    def remove(self, uid: str) -> EmulatedTag | None:
        with self._lock:
            return self._field.pop(uid.upper(), None)

    def clear(self) -> None:
        with self._lock:
            self._field.clear()

    def tag(self, uid: str) -> EmulatedTag:
        with self._lock:
            return self._field[uid.upper()]

    def tags(self) -> list[EmulatedTag]:
        with self._lock:
            return list(self._field.values())

    def set_corrupt_writes(self, count: int) -> None:
        with self._lock:
            self.corrupt_writes = count

    def inject_garbage(self, data: bytes = b"\x13\x37garbage\x00\xff") -> None:
        self.send(data)

    def inject_bad_crc(self) -> None:
        """An inventory reply announcing a tag, with a broken CRC: must never become an event."""
        uid = bytes.fromhex("E0040150DEADBEEF")
        if self.protocol == "3m810":
            frame = bytearray(m3.encode_frame(m3.CMD_INVENTORY, b"\x00\x00\x05\x01" + uid))
        else:
            frame = bytearray(fg.encode_frame(fg.CMD_ISO, b"\x00\x01\x03\x00" + uid))
        frame[-1] ^= 0xFF
        self.send(bytes(frame))

    def inject_wrong_length(self) -> None:
        start = m3.START if self.protocol == "3m810" else fg.STX
        self.send(bytes([start, 0x00, 0x01, 0xFE]))

    # tag operations (shared by both protocols; callers hold the lock) -----------------------------
    def _tag(self, uid: bytes) -> EmulatedTag:
        tag = self._field.get(uid.hex().upper())
        if tag is None:
            raise TagFailure("no such tag in the field")
        return tag

    def _read(self, uid: bytes, start: int, count: int) -> list[bytes]:
        tag = self._tag(uid)
        if count == 0 or start + count > tag.blocks:
            raise TagFailure("block address out of range")
        return [bytes(tag.memory[n * 4 : n * 4 + 4]) for n in range(start, start + count)]

    def _write(self, uid: bytes, start: int, count: int, payload: bytes) -> None:
        tag = self._tag(uid)
        if len(payload) != count * 4 or start + count > tag.blocks:
            raise TagFailure("block address out of range")
        if any(n in tag.locked_blocks for n in range(start, start + count)):
            raise TagFailure("block locked")
        stored = bytearray(payload)
        if self.corrupt_writes:
            self.corrupt_writes -= 1
            stored[len(stored) // 2] ^= 0x01
        tag.memory[start * 4 : start * 4 + len(stored)] = stored

    def _write_afi(self, uid: bytes, afi: int) -> None:
        tag = self._tag(uid)
        if tag.afi_locked:
            raise TagFailure("AFI locked")
        tag.afi = afi

    # protocol --------------------------------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        for frame in self._deframer.feed(data):
            with self._lock:
                reply = self._handle_3m(frame) if self.protocol == "3m810" else self._handle_feig(frame)
                if reply is not None and self.corrupt_replies:
                    self.corrupt_replies -= 1
                    reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
            if reply is not None and not self.silent:
                self.send(reply)

    def _handle_3m(self, frame: Frame) -> bytes | None:
        self.commands.append(frame.cmd)
        cmd, data = frame.cmd, frame.data
        if frame.start == m3.PROBE_START:
            return m3.encode_frame(cmd, data + b"\x0a\x05\x00\x02", start=m3.PROBE_START)
        if cmd == m3.CMD_INVENTORY:
            uids = b"".join(bytes.fromhex(uid) for uid in self._field)
            return m3.encode_frame(cmd, b"\x00\x00\x05" + bytes([len(self._field)]) + uids)
        uid = data[:8]
        error = m3.encode_frame(cmd, bytes([m3.STATUS_ERROR]) + uid)
        ok = bytes([m3.STATUS_OK]) + uid
        try:
            if cmd == m3.CMD_READ_BLOCKS and len(data) == 10:
                blocks = self._read(uid, data[8], data[9])
                body = b"".join(struct.pack("<H", data[8] + i) + b for i, b in enumerate(blocks))
                return m3.encode_frame(cmd, ok + bytes([len(blocks)]) + body)
            if cmd == m3.CMD_WRITE_BLOCKS and len(data) >= 11:
                self._write(uid, data[8], data[9], data[11:])
                return m3.encode_frame(cmd, ok + bytes([data[9]]))
            if cmd == m3.CMD_READ_AFI and len(data) == 8:
                return m3.encode_frame(cmd, ok + bytes([self._tag(uid).afi]))
            if cmd == m3.CMD_WRITE_AFI and len(data) == 9:
                self._write_afi(uid, data[8])
                return m3.encode_frame(cmd, ok)
            if cmd == m3.CMD_SET_EAS and len(data) == 9:
                self._tag(uid).eas = bool(data[8])
                return m3.encode_frame(cmd, ok + data[8:9])
            if cmd == m3.CMD_LOCK_AFI and len(data) == 8:
                self._tag(uid).afi_locked = True
                return m3.encode_frame(cmd, ok)
            if cmd == m3.CMD_LOCK_BLOCKS and len(data) == 10:
                self._tag(uid).locked_blocks.update(range(data[8], data[8] + data[9]))
                return m3.encode_frame(cmd, ok)
        except TagFailure:
            return error
        return error

    def _handle_feig(self, frame: Frame) -> bytes | None:
        def reply(status: int, payload: bytes = b"") -> bytes:
            return fg.encode_frame(frame.cmd, bytes([status]) + payload)

        data = frame.data
        if frame.cmd == fg.CMD_CUSTOM and len(data) == 11:
            self.commands.append(data[1])
            try:
                if data[0] != fg.MFR_NXP or data[1] not in (fg.NXP_SET_EAS, fg.NXP_RESET_EAS):
                    return reply(fg.STATUS_DATA_FALSE)
                self._tag(data[3:11]).eas = data[1] == fg.NXP_SET_EAS
                return reply(fg.STATUS_OK)
            except TagFailure:
                return reply(fg.STATUS_NO_TRANSPONDER)
        if frame.cmd != fg.CMD_ISO or not data:
            return reply(fg.STATUS_DATA_FALSE)
        iso, args = data[0], data[1:]
        self.commands.append(iso)
        if iso == fg.ISO_INVENTORY:
            if not self._field:
                return reply(fg.STATUS_NO_TRANSPONDER)
            records = b"".join(b"\x03\x00" + bytes.fromhex(uid) for uid in self._field)
            return reply(fg.STATUS_OK, bytes([len(self._field)]) + records)
        if len(args) < 9 or args[0] != fg.ADDRESSED:
            return reply(fg.STATUS_DATA_FALSE)
        uid, rest = args[1:9], args[9:]
        try:
            if iso == fg.ISO_READ_MULTIPLE and len(rest) == 2:
                blocks = self._read(uid, rest[0], rest[1])
                body = b"".join(b"\x00" + b for b in blocks)
                return reply(fg.STATUS_OK, bytes([len(blocks), 4]) + body)
            if iso == fg.ISO_WRITE_MULTIPLE and len(rest) >= 3 and rest[2] == 4:
                self._write(uid, rest[0], rest[1], rest[3:])
                return reply(fg.STATUS_OK)
            if iso == fg.ISO_SYSTEM_INFO and not rest:
                tag = self._tag(uid)
                return reply(
                    fg.STATUS_OK, b"\x00" + uid + bytes([tag.afi]) + bytes([tag.blocks - 1, 3]) + b"\x01"
                )
            if iso == fg.ISO_WRITE_AFI and len(rest) == 1:
                self._write_afi(uid, rest[0])
                return reply(fg.STATUS_OK)
            if iso == fg.ISO_LOCK_AFI and not rest:
                self._tag(uid).afi_locked = True
                return reply(fg.STATUS_OK)
            if iso == fg.ISO_LOCK_BLOCK and len(rest) == 1:
                self._tag(uid).locked_blocks.add(rest[0])
                return reply(fg.STATUS_OK)
        except TagFailure as exc:
            missing = "no such tag" in str(exc)
            return reply(fg.STATUS_NO_TRANSPONDER if missing else fg.STATUS_WRITE_ERROR)
        return reply(fg.STATUS_DATA_FALSE)
