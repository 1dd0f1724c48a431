"""Serial barcode scanner driver: reads lines, validates them, emits ``BarcodeRead`` events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import serial

from services.device_gateway.hardware.barcode import LineFramer, ScannerConfig, ScanRejected, parse_scan
from services.device_gateway.hardware.events import BarcodeRead
from services.device_gateway.hardware.transport import Backoff, DeviceRunner, EventSink, PortSettings

log = logging.getLogger(__name__)


class ScannerDriver(DeviceRunner):
    """One serial scanner. Rejected lines (noise, bad check digits) are counted, never emitted.

    ``duplicate_window``: the same value read again within this many seconds is a double read of
    one label and is suppressed (debounce).
    """

    def __init__(
        self,
        device_id: str,
        port: PortSettings,
        sink: EventSink,
        *,
        config: ScannerConfig | None = None,
        duplicate_window: float = 0.3,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(device_id, port, backoff=backoff)
        self.sink = sink
        self.config = config or ScannerConfig()
        self.duplicate_window = duplicate_window
        self.clock = clock
        self.framer = LineFramer(max_line_length=self.config.max_line_length, clock=clock)
        self._last: tuple[str, float] | None = None
        self.last_rejection = ""

    def on_disconnected(self) -> None:
        if self.framer.reset():
            self.health.frame_rejected()

    def serve(self, port: serial.SerialBase) -> None:
        while not self.stopping:
            chunk = port.read(port.in_waiting or 1)
            if not chunk:
                continue
            dropped_before = self.framer.dropped
            lines = self.framer.feed(chunk)
            self.health.frame_rejected(self.framer.dropped - dropped_before)
            for line in lines:
                self.handle_line(line)

    def handle_line(self, line: bytes) -> None:
        try:
            scan = parse_scan(line.decode("latin-1"), self.config)
        except ScanRejected as exc:
            self.health.frame_rejected()
            self.last_rejection = exc.reason
            log.info("scanner %s rejected a line: %s", self.device_id, exc.reason)
            return
        self.health.frame_ok()
        now = self.clock()
        if self._last and self._last[0] == scan.value and now - self._last[1] < self.duplicate_window:
            return
        self._last = (scan.value, now)
        self.sink(BarcodeRead(device_id=self.device_id, scan=scan))
