"""Opening serial ports, health counters and the reconnecting device thread.

pyserial's own ``ReaderThread`` dies when the device is unplugged; ``DeviceRunner`` instead
closes the port, reports the device as disconnected and reopens it with exponential backoff.
One runner per device, so one failing device never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import serial

log = logging.getLogger(__name__)

# What an unplugged or vanished device raises, depending on the moment and the URL scheme.
IO_ERRORS = (serial.SerialException, OSError)


@dataclass(frozen=True)
class PortSettings:
    """A pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://...``) and line settings."""

    url: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False

    @property
    def is_local_path(self) -> bool:
        return "://" not in self.url


def open_port(settings: PortSettings, *, timeout: float = 0.05) -> serial.SerialBase:
    """Open the port; a local device is opened exclusively so a second opener is refused."""
    kwargs: dict[str, Any] = {
        "baudrate": settings.baudrate,
        "bytesize": settings.bytesize,
        "parity": settings.parity,
        "stopbits": settings.stopbits,
        "rtscts": settings.rtscts,
        "xonxoff": settings.xonxoff,
        "timeout": timeout,
        "write_timeout": 2.0,
    }
    if settings.is_local_path:
        kwargs["exclusive"] = True
    return serial.serial_for_url(settings.url, **kwargs)


@dataclass(frozen=True)
class DeviceHealth:
    """A snapshot of one device's state, for ListDevices and logs."""

    connected: bool = False
    last_seen: float | None = None  # wall-clock time of the last valid frame
    frames_read: int = 0
    frames_rejected: int = 0
    reconnects: int = 0
    last_error: str = ""


@dataclass
class HealthCounter:
    """Thread-safe mutable health; ``snapshot()`` gives an immutable copy."""

    _state: DeviceHealth = field(default_factory=DeviceHealth)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ever_connected: bool = False

    def connected(self) -> None:
        with self._lock:
            reconnects = self._state.reconnects + (1 if self._ever_connected else 0)
            self._ever_connected = True
            self._state = replace(self._state, connected=True, reconnects=reconnects)

    def disconnected(self, error: str) -> None:
        with self._lock:
            self._state = replace(self._state, connected=False, last_error=error)

    def error(self, error: str) -> None:
        with self._lock:
            self._state = replace(self._state, last_error=error)

    def frame_ok(self) -> None:
        with self._lock:
            self._state = replace(self._state, frames_read=self._state.frames_read + 1, last_seen=time.time())

    def frame_rejected(self, count: int = 1) -> None:
        if count:
            with self._lock:
                self._state = replace(self._state, frames_rejected=self._state.frames_rejected + count)

    def snapshot(self) -> DeviceHealth:
        with self._lock:
            return self._state


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0


class DeviceRunner:
    """Owns one port in a daemon thread: open, serve until an I/O error, close, back off, reopen.

    Subclasses implement ``serve(port)``, which returns only when asked to stop or raises one of
    ``IO_ERRORS`` when the device went away.
    """

    def __init__(self, device_id: str, port: PortSettings, *, backoff: Backoff | None = None) -> None:
        self.device_id = device_id
        self.port_settings = port
        self.backoff = backoff or Backoff()
        self.health = HealthCounter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._port: serial.SerialBase | None = None
        self._port_lock = threading.RLock()
        # Called from the device thread as (device_id, connected, detail) on every change.
        self.on_status: Callable[[str, bool, str], None] | None = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"device-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._port_lock:
            port = self._port
        if port is not None:
            with contextlib.suppress(Exception):
                port.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close("stopped")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_stop(self, seconds: float) -> bool:
        return self._stop.wait(seconds)

    # the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.backoff.initial
        while not self._stop.is_set():
            try:
                port = open_port(self.port_settings)
            except (*IO_ERRORS, ValueError) as exc:
                self.health.disconnected(f"open failed: {exc}")
                self._stop.wait(delay)
                delay = min(delay * self.backoff.factor, self.backoff.maximum)
                continue
            with self._port_lock:
                self._port = port
            self.health.connected()
            self._status(True, "")
            log.info("device %s connected on %s", self.device_id, self.port_settings.url)
            delay = self.backoff.initial
            try:
                self.on_connected(port)
                self.serve(port)
            except IO_ERRORS as exc:
                log.warning("device %s lost: %s", self.device_id, exc)
                self._close(f"device lost: {exc}")
            except Exception as exc:  # a driver bug must not kill the thread for good
                log.exception("device %s driver failed", self.device_id)
                self._close(f"driver error: {exc}")
            else:
                self._close("stopped")
            if not self._stop.is_set():
                self._stop.wait(delay)

    def _close(self, reason: str) -> None:
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()
            self.health.disconnected(reason)
            self.on_disconnected()
            self._status(False, reason)

    def _status(self, connected: bool, detail: str) -> None:
        if self.on_status is not None:
            try:
                self.on_status(self.device_id, connected, detail)
            except Exception:
                log.exception("status callback failed")

    def drop_connection(self, reason: str) -> None:
        """Called by command paths that saw the device vanish; the thread reopens it."""
        self._close(reason)

    @property
    def port(self) -> serial.SerialBase | None:
        return self._port

    # hooks -----------------------------------------------------------------------------------
    def on_connected(self, port: serial.SerialBase) -> None:
        """Called in the device thread after each (re)open."""

    def on_disconnected(self) -> None:
        """Called after the port was closed."""

    def serve(self, port: serial.SerialBase) -> None:
        raise NotImplementedError


EventSink = Callable[[Any], None]


class AsyncEventBridge:
    """A thread-safe sink that hands device events to an asyncio queue on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 0) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def __call__(self, event: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(event)
