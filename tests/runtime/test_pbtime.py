"""The fast datetime → Timestamp conversion gives exactly what protobuf's FromDatetime gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from bibliodesk.runtime.pbtime import timestamp


def _reference(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def test_same_as_from_datetime_for_aware_naive_and_pre_epoch_values() -> None:
    rng = random.Random(5)
    start = datetime(1900, 1, 1, tzinfo=UTC)
    values = [
        start + timedelta(seconds=rng.randrange(0, 6_000_000_000), microseconds=rng.randrange(10**6))
        for _ in range(2000)
    ]
    values += [v.astimezone(timezone(timedelta(hours=rng.choice([-11, 1, 2, 14])))) for v in values[:300]]
    values += [v.replace(tzinfo=None) for v in values[:300]]  # naive: taken as UTC, as protobuf does
    values += [datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    for value in values:
        assert timestamp(value) == _reference(value), value
    assert timestamp(None) is None
