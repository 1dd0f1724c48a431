"""An RFID pad/encoder emulator speaking the 3M 810 "D6" protocol, with ISO 15693-like tags."""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware import rfid_3m as p
from services.device_gateway.hardware.emulators.base import Emulator, Endpoint, make_endpoint
from services.device_gateway.hardware.framing import Frame


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
        p.uid_bytes(self.uid)

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


class RfidPadEmulator(Emulator):
    """Place and remove tags; make the next writes land corrupted; inject broken frames."""

    def __init__(self, endpoint: Endpoint | None = None) -> None:
        super().__init__(endpoint or make_endpoint("pty"))
        self._lock = threading.Lock()
        self._deframer = p.D6Deframer()
        self._field: dict[str, EmulatedTag] = {}
        self.corrupt_writes = 0  # the next N block writes store a flipped byte
        self.corrupt_replies = 0  # the next N replies go out with a bad CRC
        self.silent = False  # answer nothing (a reader that hangs)
        self.commands: list[int] = []  # every command byte received, for tests and the CLI

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
        frame = bytearray(
            p.encode_frame(p.CMD_INVENTORY, b"\x00\x00\x05\x01" + bytes.fromhex("E0040150DEADBEEF"))
        )
        frame[-1] ^= 0xFF
        self.send(bytes(frame))

    def inject_wrong_length(self) -> None:
        self.send(bytes([p.START, 0x00, 0x01, 0xFE]))

    # protocol --------------------------------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        for frame in self._deframer.feed(data):
            reply = self.handle(frame)
            if reply is None or self.silent:
                continue
            with self._lock:
                if self.corrupt_replies:
                    self.corrupt_replies -= 1
                    reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
            self.send(reply)

    def handle(self, frame: Frame) -> bytes | None:
        self.commands.append(frame.cmd)
        if frame.start == p.PROBE_START:
            return p.encode_frame(frame.cmd, frame.data + b"\x0a\x05\x00\x02", start=p.PROBE_START)
        cmd, data = frame.cmd, frame.data
        with self._lock:
            if cmd == p.CMD_INVENTORY:
                uids = b"".join(bytes.fromhex(uid) for uid in self._field)
                return p.encode_frame(cmd, b"\x00\x00\x05" + bytes([len(self._field)]) + uids)
            uid = data[:8].hex().upper()
            tag = self._field.get(uid)
            if tag is None or len(data) < 8:
                return p.encode_frame(cmd, bytes([p.STATUS_ERROR]) + data[:8])
            ok = bytes([p.STATUS_OK]) + data[:8]
            if cmd == p.CMD_READ_BLOCKS and len(data) == 10:
                start, count = data[8], data[9]
                if start + count > tag.blocks:
                    return p.encode_frame(cmd, bytes([p.STATUS_ERROR]) + data[:8])
                body = b"".join(
                    struct.pack("<H", n) + bytes(tag.memory[n * 4 : n * 4 + 4])
                    for n in range(start, start + count)
                )
                return p.encode_frame(cmd, ok + bytes([count]) + body)
            if cmd == p.CMD_WRITE_BLOCKS and len(data) >= 11:
                start, count, payload = data[8], data[9], data[11:]
                if len(payload) != count * 4 or start + count > tag.blocks:
                    return p.encode_frame(cmd, bytes([p.STATUS_ERROR]) + data[:8])
                if any(n in tag.locked_blocks for n in range(start, start + count)):
                    return p.encode_frame(cmd, bytes([p.STATUS_ERROR]) + data[:8])
                stored = bytearray(payload)
                if self.corrupt_writes:
                    self.corrupt_writes -= 1
                    stored[len(stored) // 2] ^= 0x01
                tag.memory[start * 4 : start * 4 + len(stored)] = stored
                return p.encode_frame(cmd, ok + bytes([count]))
            if cmd == p.CMD_READ_AFI:
                return p.encode_frame(cmd, ok + bytes([tag.afi]))
            if cmd == p.CMD_WRITE_AFI and len(data) == 9:
                if tag.afi_locked:
                    return p.encode_frame(cmd, bytes([p.STATUS_ERROR]) + data[:8])
                tag.afi = data[8]
                return p.encode_frame(cmd, ok)
            if cmd == p.CMD_SET_EAS and len(data) == 9:
                tag.eas = bool(data[8])
                return p.encode_frame(cmd, ok + data[8:9])
            if cmd == p.CMD_LOCK_AFI:
                tag.afi_locked = True
                return p.encode_frame(cmd, ok)
            if cmd == p.CMD_LOCK_BLOCKS and len(data) == 10:
                tag.locked_blocks.update(range(data[8], data[8] + data[9]))
                return p.encode_frame(cmd, ok)
            return p.encode_frame(cmd, bytes([p.STATUS_ERROR]) + data[:8])
