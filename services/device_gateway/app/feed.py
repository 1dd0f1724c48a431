"""Per-station event feed: sequence numbers, a replay buffer and live watchers (asyncio side)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    connected: bool
    detail: str = ""


@dataclass(frozen=True)
class StationEvent:
    sequence: int
    at: datetime
    event: Any  # BarcodeRead | TagSeen | DeviceStatus


@dataclass
class Subscription:
    replay: list[StationEvent]
    queue: asyncio.Queue[StationEvent]
    events_missed: bool
    restarted: bool


class StationFeed:
    """Touched only from the event loop thread, so publish and subscribe never interleave.

    ``stream_id`` changes with every gateway run: sequence numbers restart with it.
    """

    def __init__(self, station_id: str, capacity: int = 1000) -> None:
        self.station_id = station_id
        self.stream_id = uuid.uuid4().hex
        self.sequence = 0
        self.buffer: deque[StationEvent] = deque(maxlen=capacity)
        self.watchers: set[asyncio.Queue[StationEvent]] = set()

    def publish(self, event: Any, at: datetime) -> StationEvent:
        self.sequence += 1
        item = StationEvent(self.sequence, at, event)
        self.buffer.append(item)
        for queue in self.watchers:
            queue.put_nowait(item)  # unbounded: desk events are few; a watcher is one screen
        return item

    def subscribe(self, after_sequence: int = 0, stream_id: str = "") -> Subscription:
        restarted = bool(stream_id) and stream_id != self.stream_id
        if restarted:
            after_sequence = 0
            replay = list(self.buffer)
        elif after_sequence:
            replay = [e for e in self.buffer if e.sequence > after_sequence]
        else:
            replay = []
        oldest = self.buffer[0].sequence if self.buffer else self.sequence + 1
        missed = bool(after_sequence) and after_sequence + 1 < oldest and after_sequence < self.sequence
        if restarted:
            missed = bool(self.buffer) and self.buffer[0].sequence > 1
        queue: asyncio.Queue[StationEvent] = asyncio.Queue()
        self.watchers.add(queue)
        return Subscription(replay, queue, missed, restarted)

    def unsubscribe(self, queue: asyncio.Queue[StationEvent]) -> None:
        self.watchers.discard(queue)
