"""The scanner driver against the emulator through a real pty (opened by path) and socket://."""

import os
from typing import Any

import pytest
import serial

from services.device_gateway.hardware.barcode import ScannerConfig, Symbology
from services.device_gateway.hardware.emulators.base import PtyEndpoint
from services.device_gateway.hardware.emulators.scanner import ScannerEmulator
from services.device_gateway.hardware.events import BarcodeRead
from services.device_gateway.hardware.scanner import ScannerDriver
from services.device_gateway.hardware.transport import PortSettings, open_port
from tests.device_gateway.conftest import FAST_BACKOFF, Events, wait_for


def _driver(emulator: ScannerEmulator, events: Events, **kwargs: Any) -> ScannerDriver:
    driver = ScannerDriver(
        "desk1-scanner", PortSettings(emulator.url), events, backoff=FAST_BACKOFF, **kwargs
    )
    driver.start()
    wait_for(lambda: driver.health.snapshot().connected, what="scanner connected")
    wait_for(lambda: emulator.host_attached, what="emulator sees the host")
    return driver


def test_reads_become_validated_events(scanner_emulator: ScannerEmulator, events: Events) -> None:
    driver = _driver(scanner_emulator, events)
    try:
        scanner_emulator.scan("LIB0001", Symbology.CODE39)
        scanner_emulator.scan("978020137962", Symbology.EAN13)
        first, second = events.next(), events.next()
        assert isinstance(first, BarcodeRead)
        assert (first.scan.symbology, first.scan.value) == (Symbology.CODE39, "LIB0001")
        assert (second.scan.symbology, second.scan.value) == (Symbology.EAN13, "9780201379624")
        health = driver.health.snapshot()
        assert health.frames_read == 2 and health.last_seen is not None
    finally:
        driver.stop()


def test_noise_and_bad_check_digits_are_counted_never_emitted(
    scanner_emulator: ScannerEmulator, events: Events
) -> None:
    driver = _driver(scanner_emulator, events)
    try:
        scanner_emulator.send_raw(b"]E09780201379625\r")  # wrong EAN check digit
        scanner_emulator.send_raw(b"\x07\x1b[2J garbage\r\n")
        scanner_emulator.send_raw(b"]C0PART")  # a partial line: completed by the next chunk
        scanner_emulator.send_raw(b"IAL\r")
        event = events.next()
        assert event.scan.value == "PARTIAL"
        wait_for(lambda: driver.health.snapshot().frames_rejected == 2, what="two rejections")
        assert events.drain() == []
    finally:
        driver.stop()


def test_double_reads_are_debounced(scanner_emulator: ScannerEmulator, events: Events) -> None:
    now = [100.0]
    driver = _driver(scanner_emulator, events, duplicate_window=1.0, clock=lambda: now[0])
    try:
        scanner_emulator.scan("SAME", Symbology.CODE128)
        scanner_emulator.scan("SAME", Symbology.CODE128)
        scanner_emulator.scan("OTHER", Symbology.CODE128)
        assert [events.next().scan.value for _ in range(2)] == ["SAME", "OTHER"]
        now[0] += 5
        scanner_emulator.scan("OTHER", Symbology.CODE128)
        assert events.next().scan.value == "OTHER"
    finally:
        driver.stop()


def test_unplug_and_replug_resumes_events(scanner_emulator: ScannerEmulator, events: Events) -> None:
    driver = _driver(scanner_emulator, events)
    try:
        scanner_emulator.scan("BEFORE", Symbology.CODE128)
        assert events.next().scan.value == "BEFORE"
        scanner_emulator.stop()  # unplugged
        wait_for(lambda: not driver.health.snapshot().connected, what="disconnect noticed")
        scanner_emulator.start()  # plugged back in, same path / URL
        wait_for(lambda: driver.health.snapshot().connected, what="reconnected")
        wait_for(lambda: scanner_emulator.host_attached, what="emulator sees the host")
        health = driver.health.snapshot()
        assert health.reconnects >= 1 and "lost" in health.last_error
        scanner_emulator.scan("AFTER", Symbology.CODE128)
        assert events.next().scan.value == "AFTER"
    finally:
        driver.stop()


def test_one_failing_device_does_not_stop_another(tmp_path: Any, events: Events) -> None:
    missing = ScannerDriver("ghost", PortSettings(str(tmp_path / "nothing")), events, backoff=FAST_BACKOFF)
    missing.start()
    with ScannerEmulator(PtyEndpoint(str(tmp_path / "real"))) as emulator:
        working = _driver(emulator, events)
        try:
            emulator.scan("OK1", Symbology.CODE128)
            assert events.next().scan.value == "OK1"
            ghost = missing.health.snapshot()
            assert not ghost.connected and "open failed" in ghost.last_error
        finally:
            working.stop()
            missing.stop()


def test_a_second_opener_of_a_local_port_is_refused(tmp_path: Any) -> None:
    with ScannerEmulator(PtyEndpoint(str(tmp_path / "scanner"))) as emulator:
        first = open_port(PortSettings(emulator.url))
        try:
            with pytest.raises(serial.SerialException):
                open_port(PortSettings(emulator.url))
            with pytest.raises(serial.SerialException):
                open_port(PortSettings(os.ttyname(first.fileno())))  # same device by its pts name
        finally:
            first.close()
        open_port(PortSettings(emulator.url)).close()  # free again once closed


def test_prefix_suffix_configuration(tmp_path: Any, events: Events) -> None:
    endpoint = PtyEndpoint(str(tmp_path / "scanner"))
    with ScannerEmulator(endpoint, prefix="<", suffix=">", terminator=b"\r\n") as emulator:
        config = ScannerConfig(prefix="<", suffix=">", require_aim=True)
        driver = _driver(emulator, events, config=config)
        try:
            emulator.send_raw(b"]C0NOPREFIX>\r\n")
            emulator.scan("GOOD", Symbology.CODE128)
            assert events.next().scan.value == "GOOD"
            assert driver.last_rejection == "PREFIX_MISSING"
        finally:
            driver.stop()
