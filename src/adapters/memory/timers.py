"""Hold timers and login rate counters in process memory, keyed and expiring as in Redis."""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.memory.queue import InMemoryQueueStore
from concert_domain import queue
from concert_domain.errors import NotAdmitted
from concert_domain.ids import QueueToken, SeatId, UserId
from concert_domain.ports import HoldTimers, LoginRateLimiter
from concert_domain.queue import QueueTicket


class InMemoryHoldTimers(HoldTimers):
    """Timers per seat, taken only for a customer the in-memory line admits. Each call runs
    without an ``await``, so concurrent coroutines see it as one step."""

    def __init__(self, line: InMemoryQueueStore) -> None:
        self._line = line
        self._timers: dict[SeatId, tuple[UserId, datetime]] = {}

    async def take(
        self,
        token: QueueToken,
        user_id: UserId,
        seat_id: SeatId,
        now: datetime,
        expires_at: datetime,
    ) -> tuple[QueueTicket | None, bool]:
        ticket = self._line.ticket(token, now)
        try:
            queue.admitted(ticket, user_id, now)
        except NotAdmitted:
            return ticket, False
        current = self._timers.get(seat_id)
        if current is not None and now < current[1]:
            return ticket, False
        self._timers[seat_id] = (user_id, expires_at)
        return ticket, True

    async def release(self, seat_id: SeatId, user_id: UserId) -> None:
        current = self._timers.get(seat_id)
        if current is not None and current[0] == user_id:
            del self._timers[seat_id]


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
