"""Datetimes to ``google.protobuf.Timestamp`` without the slow path.

``Timestamp.FromDatetime`` is pure Python (a ``calendar.timegm`` over a time tuple, validity
checks); an inbox page converts hundreds of datetimes, so it showed in the profiles. Same result.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """``value`` as a Timestamp (a naive datetime is taken as UTC, as protobuf does); None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)
