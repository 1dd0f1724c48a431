"""Endpoints (pseudo-terminal or TCP) and the emulator I/O thread."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from pathlib import Path
from typing import Self


class PtyEndpoint:
    """A pseudo-terminal: the emulator holds the master, the driver opens the slave by path.

    With ``link`` the slave is also reachable through a stable symlink (like socat's
    ``PTY,link=`` or udev's ``/dev/serial/by-id``), so a restarted emulator (replug) appears at
    the same path even though the kernel hands out a new ``/dev/pts/N``.
    """

    def __init__(self, link: str | None = None) -> None:
        self.link = link
        self.master: int | None = None
        self._slave: int | None = None
        self.pts_path = ""

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing before the driver configures the port
        self.master, self._slave = master, slave
        self.pts_path = os.ttyname(slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.pts_path, tmp)
            os.replace(tmp, self.link)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = None
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    @property
    def url(self) -> str:
        return self.link or self.pts_path

    @property
    def host_attached(self) -> bool:
        return self.master is not None  # a pty cannot tell whether the slave is open

    def read_fds(self) -> list[int]:
        return [self.master] if self.master is not None else []

    def on_readable(self, fd: int) -> bytes | None:
        try:
            return os.read(fd, 4096)
        except OSError:
            return None

    def write(self, data: bytes) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, data)


class TcpEndpoint:
    """A TCP server for ``socket://host:port``; one client at a time, like a serial-to-LAN box.

    The port chosen on first open (0 = any free port) is kept across restarts.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.listener: socket.socket | None = None
        self.client: socket.socket | None = None

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1)
        self.port = listener.getsockname()[1]
        self.listener = listener

    def close(self) -> None:
        for sock in (self.client, self.listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self.client = self.listener = None

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def host_attached(self) -> bool:
        return self.client is not None

    def read_fds(self) -> list[int]:
        fds = [self.listener.fileno()] if self.listener else []
        if self.client is not None:
            fds.append(self.client.fileno())
        return fds

    def on_readable(self, fd: int) -> bytes | None:
        if self.listener is not None and fd == self.listener.fileno():
            client, _ = self.listener.accept()
            if self.client is not None:
                with contextlib.suppress(OSError):
                    self.client.close()
            self.client = client
            return b""
        if self.client is None:
            return b""
        try:
            data = self.client.recv(4096)
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(OSError):
                self.client.close()
            self.client = None
            return b""
        return data

    def write(self, data: bytes) -> None:
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.sendall(data)


Endpoint = PtyEndpoint | TcpEndpoint


def make_endpoint(
    kind: str = "pty", *, link: str | None = None, host: str = "127.0.0.1", port: int = 0
) -> Endpoint:
    if kind == "pty":
        return PtyEndpoint(link)
    if kind == "tcp":
        return TcpEndpoint(host, port)
    raise ValueError(f"unknown endpoint kind {kind!r} (pty or tcp)")


class Emulator:
    """Runs an endpoint in a thread; subclasses answer bytes in ``on_data``.

    ``stop()`` then ``start()`` is an unplug and replug: the driver's port fails (EIO on a pty,
    a closed socket on TCP) and the device is back at the same path or URL.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._write_lock = threading.Lock()
        self._running = False

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def running(self) -> bool:
        return self._running

    @property
    def host_attached(self) -> bool:
        """A host is connected (always true for a pty, whose slave side cannot be watched)."""
        return self._running and self.endpoint.host_attached

    def start(self) -> str:
        if self._running:
            return self.url
        self.endpoint.open()
        self._wake_r, self._wake_w = os.pipe()
        self._running = True
        self._thread = threading.Thread(
            target=self._loop, name=f"emulator-{type(self).__name__}", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        with self._write_lock:
            self.endpoint.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def restart(self) -> str:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def send(self, data: bytes) -> None:
        """Bytes from the device to the host (dropped while nobody is connected over TCP)."""
        with self._write_lock:
            if self._running:
                self.endpoint.write(data)

    def on_data(self, data: bytes) -> None:
        """Bytes from the host to the device."""

    def _loop(self) -> None:
        while self._running:
            fds = [self._wake_r, *self.endpoint.read_fds()]
            try:
                readable, _, _ = select.select(fds, [], [], 1.0)
            except (OSError, ValueError):
                break
            for fd in readable:
                if fd == self._wake_r:
                    return
                data = self.endpoint.on_readable(fd)
                if data:
                    self.on_data(data)


def temp_link(directory: str | Path, name: str) -> str:
    return str(Path(directory) / name)
