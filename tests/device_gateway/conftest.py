from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.device_gateway.hardware.emulators.base import PtyEndpoint, TcpEndpoint
from services.device_gateway.hardware.emulators.rfid import RfidPadEmulator
from services.device_gateway.hardware.emulators.scanner import ScannerEmulator
from services.device_gateway.hardware.transport import Backoff

FAST_BACKOFF = Backoff(initial=0.02, maximum=0.2)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait for a condition (a generous ceiling, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Events:
    """A thread-safe sink collecting driver events."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.queue.put(event)

    def next(self, timeout: float = 10.0) -> Any:
        event = self.queue.get(timeout=timeout)
        self.seen.append(event)
        return event

    def drain(self) -> list[Any]:
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        self.seen.extend(items)
        return items


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture(params=["pty", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _endpoint(kind: str, tmp_path: Any, name: str) -> PtyEndpoint | TcpEndpoint:
    return PtyEndpoint(link=str(tmp_path / name)) if kind == "pty" else TcpEndpoint()


@pytest.fixture
def scanner_emulator(transport: str, tmp_path: Any) -> Iterator[ScannerEmulator]:
    emulator = ScannerEmulator(_endpoint(transport, tmp_path, "scanner"))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(params=["3m810", "feig"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pad_emulator(transport: str, protocol: str, tmp_path: Any) -> Iterator[RfidPadEmulator]:
    emulator = RfidPadEmulator(_endpoint(transport, tmp_path, "rfid"), protocol=protocol)
    emulator.start()
    yield emulator
    emulator.stop()
