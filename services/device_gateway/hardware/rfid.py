"""RFID reader/encoder driver: a polling thread for tag enter/leave events plus blocking
commands (inventory, blocks, AFI, EAS, locks) that the service runs with ``asyncio.to_thread``.

The protocol lives in a codec (``ThreeMCodec``, ``FeigCodec``): the driver only moves checked
frames. Corrupt frames are counted in the device health and never become events or answers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import serial

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.events import TagChange, TagSeen
from services.device_gateway.hardware.framing import (
    Deframer,
    DeviceError,
    DeviceTimeout,
    DeviceUnavailable,
    LockRefused,
    Request,
)
from services.device_gateway.hardware.transport import (
    IO_ERRORS,
    Backoff,
    DeviceRunner,
    EventSink,
    PortSettings,
)

log = logging.getLogger(__name__)

BLOCK_SIZE = 4
DATA_MODEL_BLOCKS = iso28560.TAG_DATA_LENGTH // BLOCK_SIZE


class RfidCodec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def deframer_class(self) -> type[Deframer]: ...

    def inventory(self) -> Request: ...
    def read_blocks(self, uid: str, start: int, count: int) -> Request: ...
    def write_blocks(self, uid: str, start: int, data: bytes) -> Request: ...
    def read_afi(self, uid: str) -> Request: ...
    def write_afi(self, uid: str, afi: int) -> Request: ...
    def set_eas(self, uid: str, enabled: bool) -> Request: ...
    def lock_afi(self, uid: str) -> Request: ...
    def lock_blocks(self, uid: str, start: int, count: int) -> Request: ...


@dataclass(frozen=True)
class RfidOptions:
    poll_interval: float = 0.3  # the Deichman FEIG notes advise no faster than 300 ms
    absent_polls: int = 2  # a tag has left after this many inventories without it (debounce)
    response_timeout: float = 1.0
    timeouts_before_reconnect: int = 3
    allow_locks: bool = False  # irreversible lock commands
    read_content: bool = True  # read and decode ISO 28560-3 content of tags entering the field
    allow_reversed_blocks: bool = True


@dataclass(frozen=True)
class TagReading:
    """A tag on the pad with its decoded content (or why there is none)."""

    uid: str
    content: iso28560.DecodedTag | None
    content_error: str = ""
    afi: int | None = None


class RfidReader(DeviceRunner):
    def __init__(
        self,
        device_id: str,
        port: PortSettings,
        codec: RfidCodec,
        sink: EventSink | None = None,
        *,
        options: RfidOptions | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(device_id, port, backoff=backoff)
        self.codec = codec
        self.sink = sink
        self.options = options or RfidOptions()
        self._io = threading.Lock()
        self._deframer = codec.deframer_class()
        self._timeouts = 0
        self._present: dict[str, int] = {}  # uid -> consecutive polls missed
        self._contents: dict[str, TagReading] = {}
        #: uid -> how many times a command path re-read the tag after writing to it: a poll that
        #: read the tag before such a write must not store its older reading over the newer one
        self._rereads: dict[str, int] = {}
        self._state_lock = threading.Lock()

    # device thread ---------------------------------------------------------------------------
    def on_connected(self, port: serial.SerialBase) -> None:
        with self._io:
            self._deframer = self.codec.deframer_class()
            self._timeouts = 0

    def on_disconnected(self) -> None:
        # Tags cannot be seen while the pad is away; they are reported again after replug.
        with self._state_lock:
            gone = list(self._present)
            self._present.clear()
            self._contents.clear()
        for uid in gone:
            self._emit(TagSeen(device_id=self.device_id, change=TagChange.LEFT, uid=uid))

    def serve(self, port: serial.SerialBase) -> None:
        while not self.stopping:
            if self.port is not port:
                return  # a command path dropped the connection; reopen
            try:
                self.poll_once()
            except DeviceTimeout:
                pass
            except DeviceError as exc:
                self.health.error(str(exc))
            self.wait_stop(self.options.poll_interval)

    def poll_once(self) -> None:
        uids = self.inventory()
        entered: list[str] = []
        left: list[str] = []
        with self._state_lock:
            for uid in uids:
                if uid not in self._present:
                    entered.append(uid)
                self._present[uid] = 0
            for uid in list(self._present):
                if uid in uids:
                    continue
                self._present[uid] += 1
                if self._present[uid] >= self.options.absent_polls:
                    del self._present[uid]
                    self._contents.pop(uid, None)
                    self._rereads.pop(uid, None)
                    left.append(uid)
        for uid in entered:
            with self._state_lock:
                rereads = self._rereads.get(uid, 0)
            reading = self.read_tag(uid) if self.options.read_content else TagReading(uid, None)
            with self._state_lock:
                if uid in self._present and self._rereads.get(uid, 0) == rereads:
                    self._contents[uid] = reading
            self._emit(
                TagSeen(
                    device_id=self.device_id,
                    change=TagChange.ENTERED,
                    uid=uid,
                    content=reading.content,
                    content_error=reading.content_error,
                    afi=reading.afi,
                )
            )
        for uid in left:
            self._emit(TagSeen(device_id=self.device_id, change=TagChange.LEFT, uid=uid))

    def _emit(self, event: TagSeen) -> None:
        if self.sink is not None:
            self.sink(event)

    def refresh_tag(self, uid: str) -> TagReading:
        """Read a tag again after writing to it, so ``tags_in_field`` shows what is on it now."""
        reading = self.read_tag(uid)
        with self._state_lock:
            # kept even if the polling has not listed the tag yet: it shows once it does
            self._rereads[uid] = self._rereads.get(uid, 0) + 1
            self._contents[uid] = reading
        return reading

    def tags_in_field(self) -> list[TagReading]:
        """What the polling thread currently sees (no I/O)."""
        with self._state_lock:
            return [self._contents.get(uid, TagReading(uid, None)) for uid in sorted(self._present)]

    # commands --------------------------------------------------------------------------------
    def transact(self, request: Request) -> Any:
        """Send one request and wait for its checked reply; thread-safe."""
        with self._io:
            port = self.port
            if port is None:
                raise DeviceUnavailable(f"device {self.device_id} is not connected")
            try:
                return self._exchange(port, request)
            except IO_ERRORS as exc:
                self._io_failed(exc)
                raise DeviceUnavailable(f"device {self.device_id} went away: {exc}") from exc

    def _io_failed(self, exc: BaseException) -> None:
        # Closing needs no I/O lock; the device thread notices and reopens with backoff.
        self.drop_connection(f"device lost: {exc}")

    def _exchange(self, port: serial.SerialBase, request: Request) -> Any:
        before = self._deframer.rejected
        try:
            self._drain(port)
            port.write(request.frame)
            deadline = time.monotonic() + self.options.response_timeout
            while True:
                if time.monotonic() > deadline:
                    self._deframer.flush()
                    self._timeouts += 1
                    if self._timeouts >= self.options.timeouts_before_reconnect:
                        self._timeouts = 0
                        raise serial.SerialException(f"no answer to {request.name}")
                    raise DeviceTimeout(f"no answer to {request.name} from {self.device_id}")
                chunk = port.read(port.in_waiting or 1)
                for frame in self._deframer.feed(chunk) if chunk else []:
                    if request.matches(frame):
                        self.health.frame_ok()
                        self._timeouts = 0
                        return request.parse(frame)
                    # A well-formed but unrelated frame (a late reply): not corrupt, just stale.
                    self.health.frame_ok()
        finally:
            self.health.frame_rejected(self._deframer.rejected - before)

    def _drain(self, port: serial.SerialBase) -> None:
        """Consume bytes that arrived between commands (noise, injected frames) before asking."""
        waiting = port.in_waiting
        if waiting:
            for _frame in self._deframer.feed(port.read(waiting)):
                self.health.frame_ok()
        self._deframer.flush()

    def inventory(self) -> list[str]:
        return list(self.transact(self.codec.inventory()))

    def read_blocks(self, uid: str, start: int, count: int) -> bytes:
        return bytes(self.transact(self.codec.read_blocks(uid, start, count)))

    def write_blocks(self, uid: str, start: int, data: bytes) -> None:
        self.transact(self.codec.write_blocks(uid, start, data))

    def read_afi(self, uid: str) -> int:
        return int(self.transact(self.codec.read_afi(uid)))

    def write_afi(self, uid: str, afi: int) -> None:
        if not 0 <= afi <= 0xFF:
            raise ValueError("AFI is one byte")
        self.transact(self.codec.write_afi(uid, afi))

    def set_eas(self, uid: str, enabled: bool) -> None:
        self.transact(self.codec.set_eas(uid, enabled))

    def lock_afi(self, uid: str) -> None:
        self._check_locks()
        self.transact(self.codec.lock_afi(uid))

    def lock_blocks(self, uid: str, start: int, count: int) -> None:
        self._check_locks()
        for block in range(start, start + count):
            self.transact(self.codec.lock_blocks(uid, block, 1))

    def _check_locks(self) -> None:
        if not self.options.allow_locks:
            raise LockRefused("irreversible tag locks are disabled for this site")

    def read_tag(self, uid: str) -> TagReading:
        """Read and decode the data model blocks and the AFI of one tag."""
        try:
            raw = self.read_blocks(uid, 0, DATA_MODEL_BLOCKS)
            afi = self.read_afi(uid)
        except DeviceError as exc:
            return TagReading(uid, None, content_error=exc.reason)
        try:
            content = iso28560.decode(raw, allow_reversed_blocks=self.options.allow_reversed_blocks)
        except iso28560.TagDataError as exc:
            return TagReading(uid, None, content_error=exc.reason, afi=afi)
        return TagReading(uid, content, afi=afi)
