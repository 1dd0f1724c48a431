"""Binary frames of RFID readers and the errors their commands raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Frame:
    """A checked frame: its command byte and the bytes after it (status first in replies)."""

    cmd: int
    data: bytes
    start: int = 0


@dataclass(frozen=True)
class Request:
    """Bytes to send, how to recognise the reply and how to read it."""

    frame: bytes
    matches: Callable[[Frame], bool]
    parse: Callable[[Frame], Any]
    name: str = ""


class DeviceError(Exception):
    """A device-level failure with a stable UPPER_SNAKE ``reason``."""

    reason = "DEVICE_ERROR"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class DeviceUnavailable(DeviceError):
    reason = "DEVICE_UNAVAILABLE"


class DeviceTimeout(DeviceError):
    reason = "DEVICE_TIMEOUT"


class TagCommandError(DeviceError):
    """The reader answered with an error status (tag gone, write failed, block locked...)."""

    reason = "TAG_COMMAND_FAILED"


class LockRefused(DeviceError):
    """Irreversible lock commands are refused unless the site explicitly enables them."""

    reason = "LOCKS_DISABLED"


class Unsupported(DeviceError):
    reason = "UNSUPPORTED"


class Deframer:
    """Base for stream deframers: ``feed`` returns checked frames and counts rejected ones.

    Garbage before a start byte, an impossible length and a bad CRC each count as one rejected
    frame; the deframer then resynchronises on the next start byte.
    """

    START_BYTES: bytes = b""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.rejected = 0
        self._discarding = False  # inside a run of garbage already counted

    def feed(self, chunk: bytes) -> list[Frame]:
        self.buffer.extend(chunk)
        frames: list[Frame] = []
        while self.buffer:
            if self.buffer[0] not in self.START_BYTES:
                self._skip_to_start(1)
                continue
            self._discarding = False
            result = self.try_frame()
            if result is None:
                break  # incomplete
            if result is False:
                self._skip_to_start(1)
                continue
            frame, size = result
            del self.buffer[:size]
            if frame is None:
                self.rejected += 1
            else:
                frames.append(frame)
        return frames

    def _skip_to_start(self, first: int) -> None:
        """Drop bytes up to the next start byte (counted once as one rejected frame)."""
        if not self._discarding:
            self.rejected += 1
        index = next(
            (i for i in range(first, len(self.buffer)) if self.buffer[i] in self.START_BYTES),
            len(self.buffer),
        )
        del self.buffer[:index]
        self._discarding = not self.buffer

    def flush(self) -> int:
        """Drop an incomplete frame (reply timed out); returns how many were dropped."""
        self._discarding = False
        if not self.buffer:
            return 0
        self.buffer.clear()
        self.rejected += 1
        return 1

    def try_frame(self) -> tuple[Frame | None, int] | Literal[False] | None:
        """Parse at buffer[0]: None if incomplete, False if the header is impossible,
        (frame, size) with frame None when the CRC is wrong."""
        raise NotImplementedError
