"""Time as the library sees it. Inject a clock; never call datetime.now() in the domain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


class Clock:
    """The system clock, aware of the library's time zone ("today" is the library's today)."""

    def __init__(self, tz: ZoneInfo | str = "Europe/Rome") -> None:
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        return datetime.now(UTC)

    def today(self) -> date:
        """The library's calendar date now."""
        return self.now().astimezone(self.tz).date()

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The UTC instants where the library's ``day`` starts and ends (DST-safe)."""
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        end_day = day + timedelta(days=1)
        end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=self.tz)
        return start.astimezone(UTC), end.astimezone(UTC)


class ManualClock(Clock):
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None, tz: ZoneInfo | str = "Europe/Rome") -> None:
        super().__init__(tz)
        self._now = start or datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now
