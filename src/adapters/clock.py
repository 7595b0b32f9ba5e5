"""Clocks: the system's, and one that only moves when told (tests, simulations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from concert_domain.ports import Clock


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock(Clock):
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("a clock's time must be timezone-aware")

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta | float) -> datetime:
        """Move time forward by a timedelta or a number of seconds; returns the new time."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta(0):
            raise ValueError("time only moves forward")
        self._now += step
        return self._now
