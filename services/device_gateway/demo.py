"""A demo desk on emulated devices (``bibliodesk up --demo``): a barcode scanner and an RFID pad,
each on a real pseudo-terminal, driven through the very same drivers as real hardware.

The emulators are controlled through a local Unix socket (``$HOME/devices/demo-control``, mode
0600): one command line per connection, e.g. ``scanner code39 LIB-1`` or ``rfid item <uid> <barcode>``
(``bibliodesk devices demo ...`` sends them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from services.device_gateway.config import RFID, SCANNER, DeviceConfig, StationConfig
from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.emulators.base import PtyEndpoint
from services.device_gateway.hardware.emulators.cli import RFID_HELP, SCANNER_HELP, run_command
from services.device_gateway.hardware.emulators.rfid import EmulatedTag, RfidPadEmulator
from services.device_gateway.hardware.emulators.scanner import ScannerEmulator
from services.device_gateway.hardware.transport import PortSettings

DEMO_STATION = "demo-desk"
DEMO_BLANK_CARD = "E0040150A1B2C301"
CONTROL_SOCKET = "demo-control"


@dataclass
class DemoDesk:
    station: StationConfig
    scanner: ScannerEmulator
    pad: RfidPadEmulator
    folder: Path
    _server: asyncio.AbstractServer | None = field(default=None, repr=False)

    @property
    def control_path(self) -> Path:
        return self.folder / CONTROL_SOCKET

    def command(self, line: str) -> str:
        """One control line: ``scanner ...`` or ``rfid ...`` (the emulator CLI's commands)."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return f"error: {exc}"
        if not words or words[0] not in ("scanner", "rfid"):
            return (
                "usage: scanner <command> | rfid <command>\nscanner:\n"
                + SCANNER_HELP
                + "\nrfid:\n"
                + RFID_HELP
            )
        emulator = self.scanner if words[0] == "scanner" else self.pad
        if len(words) == 1:
            words.append("help")
        try:
            return run_command(emulator, words[1:])
        except (ValueError, KeyError, IndexError, iso28560.TagDataError) as exc:
            return f"error: {exc}"

    async def serve_control(self) -> None:
        path = self.control_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = (await reader.readline()).decode("utf-8", "replace").strip()
                writer.write((self.command(line) + "\n").encode())
                await writer.drain()
            finally:
                writer.close()

        self._server = await asyncio.start_unix_server(handle, path=str(path))
        os.chmod(path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
        self.scanner.stop()
        self.pad.stop()


def start_demo_desk(folder: Path, *, branch: str = "CEN") -> DemoDesk:
    """Starts the emulators (symlinks ``folder/demo-scanner`` and ``folder/demo-rfid`` point at
    their ptys) with a blank patron card on the pad, ready for enrollment (P4)."""
    folder.mkdir(parents=True, exist_ok=True)
    scanner = ScannerEmulator(PtyEndpoint(str(folder / "demo-scanner")))
    pad = RfidPadEmulator(PtyEndpoint(str(folder / "demo-rfid")))
    scanner.start()
    pad.start()
    pad.place(EmulatedTag.blank(DEMO_BLANK_CARD))
    station = StationConfig(
        station_id=DEMO_STATION,
        name="Demo desk (emulated devices)",
        branch=branch,
        devices=(
            DeviceConfig("demo-scanner", SCANNER, "serial-scanner", PortSettings(scanner.url), emulated=True),
            DeviceConfig("demo-rfid", RFID, "3m810", PortSettings(pad.url, baudrate=19200), emulated=True),
        ),
    )
    return DemoDesk(station, scanner, pad, folder)
