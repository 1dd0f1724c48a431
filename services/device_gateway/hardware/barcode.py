"""Barcode scanner line protocol: framing, AIM symbology identifiers and check digits.

A serial scanner sends ``[prefix][AIM id][data][suffix]`` and a terminator (CR, LF or CRLF).
The AIM identifier is ``]`` + code character + modifier (ISO/IEC 15424), e.g. ``]A0`` Code 39,
``]C0`` Code 128, ``]E0`` EAN-13, ``]E4`` EAN-8, ``]F0`` Codabar.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Symbology(enum.Enum):
    UNKNOWN = "unknown"
    CODE39 = "code39"
    CODE128 = "code128"
    EAN13 = "ean13"
    EAN8 = "ean8"
    CODABAR = "codabar"
    INTERLEAVED_2_OF_5 = "itf"
    QR = "qr"
    DATA_MATRIX = "datamatrix"


# AIM code character -> symbology (EAN-8 is "]E4", decided by the modifier below).
_AIM_CODES = {
    "A": Symbology.CODE39,
    "C": Symbology.CODE128,
    "E": Symbology.EAN13,
    "F": Symbology.CODABAR,
    "I": Symbology.INTERLEAVED_2_OF_5,
    "Q": Symbology.QR,
    "d": Symbology.DATA_MATRIX,
}

CODE39_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"
CODABAR_START_STOP = "ABCD"
CODABAR_DATA = "0123456789-$:/.+"


class ScanRejected(ValueError):
    """A line that is not a valid scan; ``reason`` is a stable UPPER_SNAKE code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def code39_check_char(data: str) -> str:
    """Code 39 modulo 43 check character."""
    try:
        total = sum(CODE39_CHARS.index(c) for c in data)
    except ValueError as exc:
        raise ScanRejected("INVALID_CHARACTER", f"{data!r} has characters outside Code 39") from exc
    return CODE39_CHARS[total % 43]


def gtin_check_digit(digits: str) -> str:
    """EAN-13 / EAN-8 / UPC check digit of the data digits (weights 3,1,... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def luhn_valid(digits: str) -> bool:
    """Luhn mod 10 over the whole number including its check digit."""
    if not digits.isdigit():
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def luhn_check_digit(digits: str) -> str:
    for candidate in "0123456789":
        if luhn_valid(digits + candidate):
            return candidate
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ScannerConfig:
    """How a site's scanners are programmed and which checks apply."""

    prefix: str = ""
    suffix: str = ""
    # Code 39 labels carry a mod 43 check character (the scanner transmits it: AIM modifier 1).
    code39_check: bool = False
    # Numeric barcodes of these lengths carry a Luhn mod 10 check digit (library 14-digit cards).
    luhn_lengths: frozenset[int] = frozenset()
    # Codabar start/stop characters are transmitted and must be present and valid.
    codabar_start_stop: bool = True
    # Lines without an AIM identifier are accepted as UNKNOWN symbology.
    require_aim: bool = False
    max_line_length: int = 128


@dataclass(frozen=True)
class Scan:
    """One validated read."""

    symbology: Symbology
    value: str
    raw: str
    aim_id: str = ""


def parse_scan(line: str, config: ScannerConfig) -> Scan:
    """Validate one complete line (terminator removed)."""
    raw = line
    if config.prefix:
        if not line.startswith(config.prefix):
            raise ScanRejected("PREFIX_MISSING", "line does not start with the configured prefix")
        line = line[len(config.prefix) :]
    if config.suffix:
        if not line.endswith(config.suffix):
            raise ScanRejected("SUFFIX_MISSING", "line does not end with the configured suffix")
        line = line[: -len(config.suffix)]
    aim_id = ""
    symbology = Symbology.UNKNOWN
    if line.startswith("]"):
        if len(line) < 3:
            raise ScanRejected("BAD_AIM_ID", "truncated AIM symbology identifier")
        aim_id, line = line[:3], line[3:]
        symbology = _AIM_CODES.get(aim_id[1], Symbology.UNKNOWN)
        if symbology is Symbology.EAN13 and aim_id[2] == "4":
            symbology = Symbology.EAN8
    elif config.require_aim:
        raise ScanRejected("AIM_ID_MISSING", "line has no AIM symbology identifier")
    if not line:
        raise ScanRejected("EMPTY", "no data after the identifiers")
    if not all(0x20 <= ord(c) < 0x7F for c in line):
        raise ScanRejected("NOISE", "line contains control or non-ASCII characters")
    value = _validate(symbology, aim_id[2:] if aim_id else "", line, config)
    if value.isdigit() and len(value) in config.luhn_lengths and not luhn_valid(value):
        raise ScanRejected("CHECK_DIGIT_MISMATCH", "Luhn mod 10 check digit does not match")
    return Scan(symbology=symbology, value=value, raw=raw, aim_id=aim_id)


def _validate(symbology: Symbology, modifier: str, data: str, config: ScannerConfig) -> str:
    if symbology is Symbology.CODE39:
        if any(c not in CODE39_CHARS for c in data) and modifier not in ("4", "5", "7"):
            raise ScanRejected("INVALID_CHARACTER", "character outside Code 39")
        # Modifier 1/5: check verified by the scanner and transmitted; 3/7: verified and stripped.
        if modifier in ("1", "5") or (config.code39_check and modifier in ("", "0")):
            body, check = data[:-1], data[-1:]
            if not body or code39_check_char(body) != check:
                raise ScanRejected("CHECK_DIGIT_MISMATCH", "Code 39 mod 43 check character does not match")
            return body
        return data
    if symbology in (Symbology.EAN13, Symbology.EAN8):
        length = 8 if symbology is Symbology.EAN8 else 13
        if len(data) == 12 and symbology is Symbology.EAN13:  # UPC-A sent without its leading 0
            data = "0" + data
        if len(data) != length or not data.isdigit():
            raise ScanRejected("BAD_LENGTH", f"{symbology.name} needs {length} digits")
        if gtin_check_digit(data[:-1]) != data[-1]:
            raise ScanRejected("CHECK_DIGIT_MISMATCH", f"{symbology.name} check digit does not match")
        return data
    if symbology is Symbology.CODABAR:
        first, last = data[0].upper(), data[-1].upper()
        has_start, has_stop = first in CODABAR_START_STOP, last in CODABAR_START_STOP
        if has_start != has_stop or (config.codabar_start_stop and not has_start):
            raise ScanRejected("CODABAR_START_STOP", "Codabar start/stop characters missing or unpaired")
        body = data[1:-1] if has_start else data
        if not body or any(c not in CODABAR_DATA for c in body):
            raise ScanRejected("INVALID_CHARACTER", "character outside Codabar")
        return body
    return data


@dataclass
class LineFramer:
    """Reassembles lines from arbitrary byte chunks.

    CR, LF and CRLF all end a line. A partial line is kept until its terminator arrives, but one
    older than ``stale_after`` seconds is dropped when new bytes come (a scan cut off by a
    glitch must not glue onto the next one). Lines too long without a terminator are noise.
    """

    max_line_length: int = 128
    stale_after: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _buffer: bytearray = field(default_factory=bytearray)
    _started: float = 0.0
    _discarding: bool = False
    dropped: int = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        now = self.clock()
        if self._buffer and now - self._started > self.stale_after:
            self._buffer.clear()
            self.dropped += 1
        lines: list[bytes] = []
        for byte in chunk:
            if byte in (0x0D, 0x0A):
                self._discarding = False
                if self._buffer:
                    lines.append(bytes(self._buffer))
                    self._buffer.clear()
                continue
            if self._discarding or (byte in (0x00, 0x11, 0x13) and not self._buffer):
                continue  # rest of an overlong line, or idle NUL / XON / XOFF between reads
            if not self._buffer:
                self._started = now
            self._buffer.append(byte)
            if len(self._buffer) > self.max_line_length:
                self._buffer.clear()
                self._discarding = True
                self.dropped += 1
        return lines

    def reset(self) -> bool:
        """Forget a partial line (device gone); True when one was dropped."""
        had = bool(self._buffer)
        if had:
            self.dropped += 1
        self._buffer.clear()
        self._discarding = False
        return had


def encode_scan(
    value: str,
    symbology: Symbology,
    *,
    aim: bool = True,
    prefix: str = "",
    suffix: str = "",
    terminator: bytes = b"\r",
    add_check: bool = True,
) -> bytes:
    """The bytes a scanner sends for a label carrying ``value`` (used by the emulator).

    With ``add_check`` the emulator prints labels with their check character: Code 39 gets a
    mod 43 character (AIM modifier 1), EAN values given without their check digit get one, and
    Codabar is wrapped in A...B start/stop characters.
    """
    data, modifier = value, "0"
    if symbology is Symbology.CODE39 and add_check:
        data, modifier = value + code39_check_char(value), "1"
    elif symbology in (Symbology.EAN13, Symbology.EAN8):
        length = 8 if symbology is Symbology.EAN8 else 13
        if add_check and len(value) == length - 1:
            data = value + gtin_check_digit(value)
        modifier = "4" if symbology is Symbology.EAN8 else "0"
    elif symbology is Symbology.CODABAR and add_check:
        data = f"A{value}B"
    code = {v: k for k, v in _AIM_CODES.items()}.get(symbology)
    if symbology is Symbology.EAN8:
        code = "E"
    aim_id = f"]{code}{modifier}" if aim and code else ""
    return f"{prefix}{aim_id}{data}{suffix}".encode("latin-1") + terminator
