"""Events the drivers emit (from their device threads) to a sink."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from services.device_gateway.hardware.barcode import Scan
from services.device_gateway.hardware.iso28560 import DecodedTag


@dataclass(frozen=True)
class BarcodeRead:
    device_id: str
    scan: Scan
    at: float = field(default_factory=time.time)


class TagChange(enum.Enum):
    ENTERED = "entered"
    LEFT = "left"


@dataclass(frozen=True)
class TagSeen:
    """A tag entered or left a pad's field; ``content`` is decoded on entry when possible."""

    device_id: str
    change: TagChange
    uid: str
    content: DecodedTag | None = None
    content_error: str = ""  # reason when content could not be read or decoded
    afi: int | None = None
    at: float = field(default_factory=time.time)


DeviceEvent = BarcodeRead | TagSeen
