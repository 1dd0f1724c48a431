"""A serial barcode scanner emulator: labels are "scanned" by calling ``scan``."""

from __future__ import annotations

from services.device_gateway.hardware.barcode import Symbology, encode_scan
from services.device_gateway.hardware.emulators.base import Emulator, Endpoint, make_endpoint


class ScannerEmulator(Emulator):
    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        aim: bool = True,
        prefix: str = "",
        suffix: str = "",
        terminator: bytes = b"\r",
    ) -> None:
        super().__init__(endpoint or make_endpoint("pty"))
        self.aim, self.prefix, self.suffix, self.terminator = aim, prefix, suffix, terminator

    def scan(self, value: str, symbology: Symbology = Symbology.CODE128, *, add_check: bool = True) -> bytes:
        """Send one read exactly as the programmed scanner would; returns the bytes sent."""
        data = encode_scan(
            value,
            symbology,
            aim=self.aim,
            prefix=self.prefix,
            suffix=self.suffix,
            terminator=self.terminator,
            add_check=add_check,
        )
        self.send(data)
        return data

    def send_raw(self, data: bytes) -> None:
        """Arbitrary bytes: noise, a partial line, a damaged read."""
        self.send(data)
