"""Hold timers and attempt counters in process memory, keyed and expiring as in Redis.

Each call runs without an ``await``, so concurrent coroutines see it as one step. What they
keep is bounded: past its limit the least recently used key is forgotten, and what has lapsed
is forgotten when next looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from adapters.caching.lru import LeastRecentlyUsed
from adapters.memory.queue import InMemoryQueueStore
from concert_domain import queue
from concert_domain.errors import NotAdmitted
from concert_domain.ids import QueueToken, SeatId, UserId
from concert_domain.policy import ATTEMPT_WINDOW
from concert_domain.ports import AttemptLimiter, HoldTimers, Offer, TimersTaken
from concert_domain.reservations import HoldAttempt

LIMIT = 1_000_000


class InMemoryAttemptLimiter(AttemptLimiter):
    def __init__(self, *, limit: int = LIMIT) -> None:
        self._windows: LeastRecentlyUsed[str, tuple[datetime, int]] = LeastRecentlyUsed(limit)

    async def attempt(self, key: str, now: datetime, window: timedelta, limit: int) -> bool:
        return self.count(key, now, window, limit)

    def count(self, key: str, now: datetime, window: timedelta, limit: int) -> bool:
        """`attempt`, in one step."""
        ends_at, count = self._open(key, now) or (now + window, 0)
        if count >= limit:
            return False
        self._windows.put(key, (ends_at, count + 1))
        return True

    async def forgive(self, key: str, now: datetime) -> None:
        opened = self._open(key, now)
        if opened is not None and opened[1] > 0:
            self._windows.put(key, (opened[0], opened[1] - 1))

    def _open(self, key: str, now: datetime) -> tuple[datetime, int] | None:
        window = self._windows.get(key)
        if window is not None and now >= window[0]:
            self._windows.pop(key)
            return None
        return window


class InMemoryHoldTimers(HoldTimers):
    """Timers per seat, taken only for a customer the in-memory line admits, with each
    customer's attempts counted as `InMemoryAttemptLimiter` counts them."""

    def __init__(self, line: InMemoryQueueStore, *, limit: int = LIMIT) -> None:
        self._line = line
        self._timers: LeastRecentlyUsed[SeatId, tuple[UserId, datetime]] = LeastRecentlyUsed(limit)
        self._attempts = InMemoryAttemptLimiter(limit=limit)

    async def take(
        self,
        token: QueueToken,
        user_id: UserId,
        blocks: Sequence[Offer],
        now: datetime,
        expires_at: datetime,
        attempt_limit: int,
        *,
        alone_allowed: bool = True,
    ) -> TimersTaken:
        ticket = self._line.ticket(token, now)
        try:
            queue.admitted(ticket, user_id, now)
        except NotAdmitted:
            return TimersTaken(ticket, HoldAttempt.NOT_ADMITTED)
        if attempt_limit and not self._attempts.count(
            f"user:{user_id}", now, ATTEMPT_WINDOW, attempt_limit
        ):
            return TimersTaken(ticket, HoldAttempt.TOO_FREQUENT)
        busy: set[SeatId] = set()
        free: list[int] = []
        for index, block in enumerate(blocks):
            # the caller's own timer (of a request of theirs that died before the database)
            # is no bar to them: the database decides
            running = {s for s in block.seats if self._runs(s, now, but_for=user_id)}
            busy |= running
            if not running:
                free.append(index)
        for block in blocks:  # the sides' seats found taken tell what the map did not
            for near, far in block.sides:
                busy |= {s for s in (near, far) if s is not None and self._runs(s, now)}
        alone = [n for n in free if self._leaves_one_alone(blocks[n], now)]
        fallback = free[0] if free and alone_allowed else None
        chosen = next((n for n in free if n not in alone), fallback)
        if chosen is None:
            return TimersTaken(ticket, HoldAttempt.SEAT_BUSY, None, frozenset(busy))
        for seat_id in blocks[chosen].seats:
            self._timers.put(seat_id, (user_id, expires_at))
        return TimersTaken(ticket, HoldAttempt.TAKEN, chosen, frozenset(busy))

    def _leaves_one_alone(self, block: Offer, now: datetime) -> bool:
        return any(
            not self._runs(near, now) and (far is None or self._runs(far, now))
            for near, far in block.sides
        )

    async def extend(
        self, seat_id: SeatId, user_id: UserId, now: datetime, expires_at: datetime
    ) -> None:
        current = self._timers.get(seat_id)
        if current is not None and current[0] == user_id and now < current[1]:
            self._timers.put(seat_id, (user_id, expires_at))

    def _runs(self, seat_id: SeatId, now: datetime, but_for: UserId | None = None) -> bool:
        current = self._timers.get(seat_id)
        return current is not None and current[0] != but_for and now < current[1]

    async def release(self, seat_id: SeatId, user_id: UserId) -> None:
        current = self._timers.get(seat_id)
        if current is not None and current[0] == user_id:
            self._timers.pop(seat_id)
