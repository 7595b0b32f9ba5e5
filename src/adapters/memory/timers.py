"""Hold timers and login rate counters in process memory, keyed and expiring as in Redis."""

from __future__ import annotations

from datetime import datetime, timedelta

from concert_domain.ids import ConcertId, SeatId
from concert_domain.ports import HoldTimers, LoginRateLimiter


class InMemoryHoldTimers(HoldTimers):
    def __init__(self) -> None:
        self._timers: dict[tuple[ConcertId, SeatId], tuple[str, datetime]] = {}

    async def acquire(
        self,
        concert_id: ConcertId,
        seat_id: SeatId,
        owner: str,
        now: datetime,
        expires_at: datetime,
    ) -> bool:
        current = self._timers.get((concert_id, seat_id))
        if current is not None and now < current[1]:
            return False
        self._timers[(concert_id, seat_id)] = (owner, expires_at)
        return True

    async def release(self, concert_id: ConcertId, seat_id: SeatId, owner: str) -> None:
        current = self._timers.get((concert_id, seat_id))
        if current is not None and current[0] == owner:
            del self._timers[(concert_id, seat_id)]


class InMemoryLoginRateLimiter(LoginRateLimiter):
    def __init__(self) -> None:
        self._windows: dict[str, tuple[datetime, int]] = {}

    async def failures(self, email: str, now: datetime) -> int:
        window = self._windows.get(email)
        if window is None or now >= window[0]:
            return 0
        return window[1]

    async def record_failure(self, email: str, now: datetime, window: timedelta) -> int:
        ends_at, count = self._windows.get(email) or (now, 0)
        if now >= ends_at:
            ends_at, count = now + window, 0
        self._windows[email] = (ends_at, count + 1)
        return count + 1
