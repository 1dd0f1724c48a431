"""The desk: drivers built from configuration, their events fanned out per station, and the
hardware use cases (read tags, encode a patron card, set item security). No gRPC here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bibliodesk.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.device_gateway.app.feed import DeviceStatus, StationFeed
from services.device_gateway.config import RFID, SCANNER, DeviceConfig, GatewayConfig, StationConfig
from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.encoding import (
    CardFormat,
    EncodeError,
    EncodeResult,
    encode_patron_card,
)
from services.device_gateway.hardware.framing import (
    DeviceError,
    DeviceTimeout,
    DeviceUnavailable,
    LockRefused,
    TagCommandError,
)
from services.device_gateway.hardware.rfid import RfidOptions, RfidReader, TagReading
from services.device_gateway.hardware.rfid_3m import ThreeMCodec
from services.device_gateway.hardware.rfid_feig import FeigCodec
from services.device_gateway.hardware.scanner import ScannerDriver
from services.device_gateway.hardware.transport import Backoff, DeviceRunner

log = logging.getLogger(__name__)

CHECK_OUT = "check_out"
CHECK_IN = "check_in"


@contextlib.contextmanager
def device_errors() -> Iterator[None]:
    """Driver exceptions -> domain errors with stable reasons (mapped to gRPC once, at the edge)."""
    try:
        yield
    except LockRefused as exc:
        raise PermissionDenied(exc.reason, str(exc)) from None
    except (DeviceUnavailable, DeviceTimeout) as exc:
        raise Unavailable(exc.reason, str(exc)) from None
    except EncodeError as exc:
        if exc.reason == "INVALID_PATRON_BARCODE":
            raise InvalidArgument(field="patron_barcode", description=str(exc), reason=exc.reason) from None
        raise FailedPrecondition(exc.reason, str(exc)) from None
    except DeviceError as exc:
        raise FailedPrecondition(exc.reason, str(exc)) from None


@dataclass(frozen=True)
class SecurityOutcome:
    uid: str
    primary_id: str
    afi: int
    eas: bool
    afi_locked: bool
    error_reason: str = ""


class Desk:
    """Owns every configured device. ``start`` must run inside the service's event loop."""

    def __init__(
        self, config: GatewayConfig, *, backoff: Backoff | None = None, now: Callable[[], datetime]
    ) -> None:
        self.config = config
        self.backoff = backoff
        self.now = now
        self.stations: dict[str, StationConfig] = {s.station_id: s for s in config.stations}
        self.drivers: dict[str, DeviceRunner] = {}
        self.device_station: dict[str, str] = {}
        self.feeds: dict[str, StationFeed] = {s: StationFeed(s) for s in self.stations}
        self._locks: dict[str, asyncio.Lock] = {s: asyncio.Lock() for s in self.stations}
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle -------------------------------------------------------------------------------
    def add_station(self, station: StationConfig) -> None:
        if station.station_id in self.stations:
            raise ValueError(f"station {station.station_id} already configured")
        self.stations[station.station_id] = station
        self.feeds[station.station_id] = StationFeed(station.station_id)
        self._locks[station.station_id] = asyncio.Lock()
        if self._loop is not None:
            self._start_station(station)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for station in self.stations.values():
            self._start_station(station)

    def _start_station(self, station: StationConfig) -> None:
        for device in station.devices:
            driver = self._build(device)
            driver.on_status = self._status_sink
            self.drivers[device.device_id] = driver
            self.device_station[device.device_id] = station.station_id
            driver.start()

    def _build(self, device: DeviceConfig) -> DeviceRunner:
        if device.kind == SCANNER:
            return ScannerDriver(
                device.device_id, device.port, self._event_sink, config=device.scanner, backoff=self.backoff
            )
        options = RfidOptions(
            poll_interval=self.config.poll_seconds, allow_locks=self.config.security.allow_locks
        )
        return RfidReader(
            device.device_id,
            device.port,
            FeigCodec() if device.driver == "feig" else ThreeMCodec(),
            self._event_sink,
            options=options,
            backoff=self.backoff,
        )

    async def stop(self) -> None:
        drivers = list(self.drivers.values())
        await asyncio.gather(*(asyncio.to_thread(d.stop) for d in drivers))

    # events (called from device threads) -----------------------------------------------------
    def _event_sink(self, event: Any) -> None:
        self._hand_over(event.device_id, event)

    def _status_sink(self, device_id: str, connected: bool, detail: str) -> None:
        self._hand_over(device_id, DeviceStatus(device_id, connected, detail))

    def _hand_over(self, device_id: str, event: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._publish, device_id, event)

    def _publish(self, device_id: str, event: Any) -> None:
        station_id = self.device_station.get(device_id)
        if station_id is not None:
            at = datetime.fromtimestamp(event.at, UTC) if hasattr(event, "at") else self.now()
            self.feeds[station_id].publish(event, at)

    # lookups ---------------------------------------------------------------------------------
    def station(self, station_id: str) -> StationConfig:
        if not station_id.strip():
            raise InvalidArgument(field="station_id", description="is required")
        station = self.stations.get(station_id)
        if station is None:
            raise NotFound(
                "STATION_NOT_FOUND", f"no desk station {station_id!r}", metadata={"station_id": station_id}
            )
        return station

    def feed(self, station_id: str) -> StationFeed:
        self.station(station_id)
        return self.feeds[station_id]

    def reader(self, station_id: str) -> RfidReader:
        device = self.station(station_id).device(RFID)
        if device is None:
            raise FailedPrecondition("NO_RFID_READER", f"station {station_id!r} has no RFID reader")
        driver = self.drivers.get(device.device_id)
        if not isinstance(driver, RfidReader):
            raise Unavailable("DEVICE_UNAVAILABLE", f"the RFID reader of {station_id!r} is not running")
        return driver

    def station_lock(self, station_id: str) -> asyncio.Lock:
        self.station(station_id)
        return self._locks[station_id]

    # use cases -------------------------------------------------------------------------------
    async def read_tags(self, station_id: str, *, fresh: bool) -> list[TagReading]:
        reader = self.reader(station_id)
        if not fresh:
            return reader.tags_in_field()
        with device_errors():
            return await asyncio.to_thread(_read_all, reader)

    async def encode_patron_card(
        self, station_id: str, patron_barcode: str, *, overwrite: bool
    ) -> EncodeResult:
        reader = self.reader(station_id)
        card = CardFormat(
            country=self.config.country,
            isil=self.config.isil,
            reversed_blocks=self.config.reversed_blocks,
            attempts=self.config.encode_attempts,
        )
        with device_errors():
            result = await asyncio.to_thread(
                encode_patron_card, reader, patron_barcode, card, overwrite=overwrite
            )
        await asyncio.to_thread(reader.refresh_tag, result.uid)
        return result

    async def set_item_security(
        self, station_id: str, action: str, uids: list[str], *, allow_incomplete: bool, lock_afi: bool
    ) -> list[SecurityOutcome]:
        reader = self.reader(station_id)
        policy = self.config.security
        if lock_afi and not policy.allow_locks:
            raise PermissionDenied("LOCKS_DISABLED", "irreversible tag locks are disabled for this site")
        with device_errors():
            on_pad = {t.uid: t for t in await asyncio.to_thread(_read_all, reader)}
        wanted = [u.upper() for u in uids]
        missing = [u for u in wanted if u not in on_pad]
        if missing:
            raise FailedPrecondition(
                "TAG_NOT_ON_PAD",
                f"not on the pad: {', '.join(missing)}",
                metadata={"tag_uids": ",".join(missing)},
            )
        if not wanted:
            wanted = [
                uid
                for uid, t in on_pad.items()
                if not (t.content and t.content.data.usage is iso28560.UsageType.PATRON_CARD)
            ]
        if not wanted:
            raise FailedPrecondition("NO_TAG", "no item tag on the pad")
        if action == CHECK_OUT and not allow_incomplete:
            _require_complete_sets([on_pad[u] for u in wanted], list(on_pad.values()))
        secure = action == CHECK_IN
        afi = policy.afi_secured if secure else policy.afi_unsecured
        outcomes = []
        for uid in wanted:
            reading = on_pad[uid]
            outcomes.append(
                await asyncio.to_thread(
                    _secure_one, reader, reading, afi, secure and policy.use_eas, policy.use_eas, lock_afi
                )
            )
        return outcomes


def _read_all(reader: RfidReader) -> list[TagReading]:
    return [reader.read_tag(uid) for uid in reader.inventory()]


def _secure_one(
    reader: RfidReader, reading: TagReading, afi: int, eas_on: bool, use_eas: bool, lock_afi: bool
) -> SecurityOutcome:
    primary_id = reading.content.data.primary_id if reading.content else ""
    try:
        reader.write_afi(reading.uid, afi)
        if use_eas:
            reader.set_eas(reading.uid, eas_on)
        if lock_afi:
            reader.lock_afi(reading.uid)
    except (TagCommandError, DeviceTimeout, DeviceUnavailable) as exc:
        return SecurityOutcome(reading.uid, primary_id, afi, eas_on, False, error_reason=exc.reason)
    reader.refresh_tag(reading.uid)
    return SecurityOutcome(reading.uid, primary_id, afi, eas_on, lock_afi)


def _require_complete_sets(selected: list[TagReading], on_pad: list[TagReading]) -> None:
    wanted_ids = {t.content.data.primary_id for t in selected if t.content}
    contents = [t.content.data for t in on_pad if t.content and t.content.data.primary_id in wanted_ids]
    for status in iso28560.set_status(contents):
        if not status.complete:
            raise FailedPrecondition(
                "SET_INCOMPLETE",
                f"item {status.primary_id} has {status.parts_in_set} parts; missing on the pad: "
                + ", ".join(str(n) for n in status.missing),
                metadata={
                    "primary_id": status.primary_id,
                    "missing_parts": ",".join(str(n) for n in status.missing),
                },
            )
