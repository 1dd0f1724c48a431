"""Desk stations and their devices, from configuration.

``BIBLIODESK_DEVICE_GATEWAY_STATIONS`` holds JSON (or ``BIBLIODESK_DEVICE_GATEWAY_STATIONS_FILE``
names a JSON file)::

    {"stations": [
      {"id": "desk1", "name": "Front desk", "branch": "CEN", "devices": [
        {"id": "desk1-scanner", "kind": "scanner", "url": "/dev/serial/by-id/usb-Honeywell...",
         "baudrate": 9600, "prefix": "", "suffix": "", "luhn_lengths": [14], "code39_check": false},
        {"id": "desk1-pad", "kind": "rfid", "driver": "3m810", "url": "socket://10.0.0.7:4001",
         "baudrate": 19200}
      ]},
      {"id": "desk2", "devices": [
        {"id": "desk2-pad", "kind": "rfid", "driver": "feig", "url": "/dev/ttyUSB0", "baudrate": 38400}
      ]}
    ]}

Site-wide item security and card settings (all optional):
``DEVICE_GATEWAY_AFI_SECURED`` (0x07), ``DEVICE_GATEWAY_AFI_UNSECURED`` (0xC2, ISO 28560-1
recommendations; some vendors use 0xD7/0xDA), ``DEVICE_GATEWAY_USE_EAS`` (true),
``DEVICE_GATEWAY_ALLOW_LOCKS`` (false: irreversible lock commands refused),
``DEVICE_GATEWAY_COUNTRY`` / ``DEVICE_GATEWAY_ISIL`` (written on patron cards),
``DEVICE_GATEWAY_REVERSED_BLOCKS`` (false: write FKI-style reversed blocks),
``DEVICE_GATEWAY_ENCODE_ATTEMPTS`` (3), ``DEVICE_GATEWAY_POLL_SECONDS`` (0.3),
``DEVICE_GATEWAY_DEMO`` (false: also start a demo desk on emulated devices, as ``up --demo``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bibliodesk.runtime.settings import SettingsError
from services.device_gateway.hardware.barcode import ScannerConfig
from services.device_gateway.hardware.transport import PortSettings

SCANNER = "scanner"
RFID = "rfid"
DRIVERS = {SCANNER: ("serial-scanner",), RFID: ("3m810", "feig")}


@dataclass(frozen=True)
class DeviceConfig:
    device_id: str
    kind: str  # SCANNER | RFID
    driver: str
    port: PortSettings
    scanner: ScannerConfig = field(default_factory=ScannerConfig)
    emulated: bool = False


@dataclass(frozen=True)
class StationConfig:
    station_id: str
    name: str = ""
    branch: str = ""
    devices: tuple[DeviceConfig, ...] = ()

    def device(self, kind: str) -> DeviceConfig | None:
        return next((d for d in self.devices if d.kind == kind), None)


@dataclass(frozen=True)
class SecurityPolicy:
    afi_secured: int = 0x07
    afi_unsecured: int = 0xC2
    use_eas: bool = True
    allow_locks: bool = False


@dataclass(frozen=True)
class GatewayConfig:
    stations: tuple[StationConfig, ...] = ()
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    country: str = ""
    isil: str = ""
    reversed_blocks: bool = False
    encode_attempts: int = 3
    poll_seconds: float = 0.3
    demo: bool = False


def _fail(message: str) -> SettingsError:
    return SettingsError(f"BIBLIODESK_DEVICE_GATEWAY_STATIONS: {message}")


def _device(raw: Any, station_id: str) -> DeviceConfig:
    if not isinstance(raw, Mapping):
        raise _fail(f"station {station_id!r}: each device must be an object")
    device_id = str(raw.get("id") or "")
    kind = str(raw.get("kind") or "")
    url = str(raw.get("url") or "")
    if not device_id or kind not in DRIVERS or not url:
        raise _fail(f"station {station_id!r}: a device needs id, kind (scanner|rfid) and url: {dict(raw)}")
    driver = str(raw.get("driver") or DRIVERS[kind][0])
    if driver not in DRIVERS[kind]:
        raise _fail(
            f"device {device_id!r}: unknown driver {driver!r} for {kind} ({', '.join(DRIVERS[kind])})"
        )
    try:
        port = PortSettings(
            url=url,
            baudrate=int(raw.get("baudrate", 19200 if kind == RFID else 9600)),
            bytesize=int(raw.get("bytesize", 8)),
            parity=str(raw.get("parity", "N")),
            stopbits=float(raw.get("stopbits", 1)),
            rtscts=bool(raw.get("rtscts", False)),
            xonxoff=bool(raw.get("xonxoff", False)),
        )
        scanner = ScannerConfig(
            prefix=str(raw.get("prefix", "")),
            suffix=str(raw.get("suffix", "")),
            code39_check=bool(raw.get("code39_check", False)),
            luhn_lengths=frozenset(int(n) for n in raw.get("luhn_lengths", [])),
            codabar_start_stop=bool(raw.get("codabar_start_stop", True)),
            require_aim=bool(raw.get("require_aim", False)),
        )
    except (TypeError, ValueError) as exc:
        raise _fail(f"device {device_id!r}: {exc}") from None
    return DeviceConfig(device_id, kind, driver, port, scanner, emulated=bool(raw.get("emulated", False)))


def parse_stations(text: str) -> tuple[StationConfig, ...]:
    if not text.strip():
        return ()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"not valid JSON: {exc}") from None
    items = data.get("stations", []) if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise _fail("expected a list of stations")
    stations: list[StationConfig] = []
    seen: set[str] = set()
    for raw in items:
        if not isinstance(raw, Mapping) or not raw.get("id"):
            raise _fail("every station needs an id")
        station_id = str(raw["id"])
        devices = tuple(_device(d, station_id) for d in raw.get("devices", []))
        for ident in (station_id, *(d.device_id for d in devices)):
            if ident in seen:
                raise _fail(f"duplicate id {ident!r}")
            seen.add(ident)
        stations.append(
            StationConfig(station_id, str(raw.get("name", station_id)), str(raw.get("branch", "")), devices)
        )
    return tuple(stations)


def _flag(value: str, key: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"BIBLIODESK_{key} must be true or false, got {value!r}")


def _byte(value: str, key: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        raise SettingsError(f"BIBLIODESK_{key} must be a byte like 0x07, got {value!r}") from None
    if not 0 <= number <= 0xFF:
        raise SettingsError(f"BIBLIODESK_{key} must be 0x00..0xFF")
    return number


def load_gateway_config(get: Any) -> GatewayConfig:
    """``get(key, default)`` reads ``BIBLIODESK_<key>`` (``Settings.get``)."""
    text = get("DEVICE_GATEWAY_STATIONS", "")
    path = get("DEVICE_GATEWAY_STATIONS_FILE", "")
    if path and not text:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(
                f"BIBLIODESK_DEVICE_GATEWAY_STATIONS_FILE: cannot read {path}: {exc}"
            ) from None
    try:
        attempts = int(get("DEVICE_GATEWAY_ENCODE_ATTEMPTS", "3"))
        poll = float(get("DEVICE_GATEWAY_POLL_SECONDS", "0.3"))
    except ValueError as exc:
        raise SettingsError(f"BIBLIODESK_DEVICE_GATEWAY_*: {exc}") from None
    return GatewayConfig(
        stations=parse_stations(text),
        security=SecurityPolicy(
            afi_secured=_byte(get("DEVICE_GATEWAY_AFI_SECURED", "0x07"), "DEVICE_GATEWAY_AFI_SECURED"),
            afi_unsecured=_byte(get("DEVICE_GATEWAY_AFI_UNSECURED", "0xC2"), "DEVICE_GATEWAY_AFI_UNSECURED"),
            use_eas=_flag(get("DEVICE_GATEWAY_USE_EAS", "true"), "DEVICE_GATEWAY_USE_EAS"),
            allow_locks=_flag(get("DEVICE_GATEWAY_ALLOW_LOCKS", "false"), "DEVICE_GATEWAY_ALLOW_LOCKS"),
        ),
        country=get("DEVICE_GATEWAY_COUNTRY", ""),
        isil=get("DEVICE_GATEWAY_ISIL", ""),
        reversed_blocks=_flag(
            get("DEVICE_GATEWAY_REVERSED_BLOCKS", "false"), "DEVICE_GATEWAY_REVERSED_BLOCKS"
        ),
        encode_attempts=max(1, attempts),
        poll_seconds=max(0.01, poll),
        demo=_flag(get("DEVICE_GATEWAY_DEMO", "false"), "DEVICE_GATEWAY_DEMO"),
    )
