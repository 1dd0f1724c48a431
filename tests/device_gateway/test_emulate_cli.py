"""``bibliodesk devices emulate``: an emulated device driven by typed commands."""

from __future__ import annotations

import io
import os
import re
import threading
from typing import Any

from services.device_gateway.hardware.barcode import Symbology
from services.device_gateway.hardware.emulators.cli import main_emulate
from services.device_gateway.hardware.events import TagChange
from services.device_gateway.hardware.rfid import RfidOptions, RfidReader
from services.device_gateway.hardware.rfid_3m import ThreeMCodec
from services.device_gateway.hardware.scanner import ScannerDriver
from services.device_gateway.hardware.transport import PortSettings
from tests.device_gateway.conftest import FAST_BACKOFF, Events, wait_for


class Console:
    """Typed input through a pipe, output collected thread-safely."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        self.stdin = os.fdopen(read_fd, "r")
        self.stdout = io.StringIO()

    def type(self, line: str) -> None:
        os.write(self._write_fd, (line + "\n").encode())

    def output(self) -> str:
        return self.stdout.getvalue()

    def close(self) -> None:
        os.close(self._write_fd)


def _run(argv: list[str]) -> tuple[Console, threading.Thread, str]:
    console = Console()
    thread = threading.Thread(
        target=main_emulate, args=(argv,), kwargs={"stdin": console.stdin, "stdout": console.stdout}
    )
    thread.start()
    match = wait_for(lambda: re.search(r"device url (\S+)", console.output()), what="emulator ready")
    return console, thread, match.group(1)


def test_typed_scans_reach_the_driver(events: Events) -> None:
    console, thread, url = _run(["scanner"])
    driver = ScannerDriver("cli-scanner", PortSettings(url), events, backoff=FAST_BACKOFF)
    driver.start()
    try:
        wait_for(lambda: driver.health.snapshot().connected)
        console.type("code39 LIB-42")
        read = events.next()
        assert (read.scan.symbology, read.scan.value) == (Symbology.CODE39, "LIB-42")
        console.type("noise")
        wait_for(lambda: driver.health.snapshot().frames_rejected == 1, what="noise rejected")
    finally:
        console.type("quit")
        thread.join(10)
        driver.stop()
        console.close()
    assert "scanned" in console.output()


def test_typed_tags_on_an_rfid_pad_over_tcp(events: Events, tmp_path: Any) -> None:
    console, thread, url = _run(["rfid", "--tcp", "0"])
    assert url.startswith("socket://127.0.0.1:")
    reader = RfidReader(
        "cli-pad",
        PortSettings(url),
        ThreeMCodec(),
        events,
        options=RfidOptions(poll_interval=0.02),
        backoff=FAST_BACKOFF,
    )
    reader.start()
    try:
        console.type("item E004015000000009 BOOK-9 1/1")
        entered = events.next()
        assert (entered.change, entered.content.data.primary_id) == (TagChange.ENTERED, "BOOK-9")
        console.type("nonsense")
        wait_for(lambda: "unknown command" in console.output())
    finally:
        console.close()  # end of input stops the emulator
        thread.join(10)
        reader.stop()
    assert not thread.is_alive()
