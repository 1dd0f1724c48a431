"""A demo desk on emulated devices (``bibliodesk up --demo``): a barcode scanner and an RFID pad,
each on a real pseudo-terminal, driven through the very same drivers as real hardware."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.device_gateway.config import RFID, SCANNER, DeviceConfig, StationConfig
from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.emulators.base import PtyEndpoint
from services.device_gateway.hardware.emulators.rfid import EmulatedTag, RfidPadEmulator
from services.device_gateway.hardware.emulators.scanner import ScannerEmulator
from services.device_gateway.hardware.transport import PortSettings

DEMO_STATION = "demo-desk"
DEMO_BLANK_CARD = "E0040150A1B2C301"
DEMO_BOOK = "E0040150A1B2C302"


@dataclass
class DemoDesk:
    station: StationConfig
    scanner: ScannerEmulator
    pad: RfidPadEmulator

    def stop(self) -> None:
        self.scanner.stop()
        self.pad.stop()


def start_demo_desk(
    folder: Path, *, country: str = "IT", isil: str = "IT-DEMO01", branch: str = "CEN"
) -> DemoDesk:
    """Starts the emulators (symlinks ``folder/demo-scanner`` and ``folder/demo-rfid`` point at
    their ptys) with a blank patron card and a two-part item on the pad (part 2 missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    scanner = ScannerEmulator(PtyEndpoint(str(folder / "demo-scanner")))
    pad = RfidPadEmulator(PtyEndpoint(str(folder / "demo-rfid")))
    scanner.start()
    pad.start()
    pad.place(EmulatedTag.blank(DEMO_BLANK_CARD))
    book = iso28560.LibraryTagData(
        primary_id="3065000123", parts_in_set=2, part_number=1, country=country, isil=isil
    )
    pad.place(EmulatedTag.with_content(DEMO_BOOK, book, afi=0x07))
    station = StationConfig(
        station_id=DEMO_STATION,
        name="Demo desk (emulated devices)",
        branch=branch,
        devices=(
            DeviceConfig("demo-scanner", SCANNER, "serial-scanner", PortSettings(scanner.url), emulated=True),
            DeviceConfig("demo-rfid", RFID, "3m810", PortSettings(pad.url, baudrate=19200), emulated=True),
        ),
    )
    return DemoDesk(station, scanner, pad)
