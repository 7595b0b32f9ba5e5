"""Hold timers and login failure counters in Redis, each change one atomic script."""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.redis import scripts
from adapters.redis.client import to_ms, translated
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from adapters.redis.queue import ticket_from_reply
from concert_domain.ids import QueueToken, SeatId, UserId
from concert_domain.ports import HoldTimers, LoginRateLimiter
from concert_domain.queue import RATE_WINDOW, QueueTicket


class RedisHoldTimers(HoldTimers):
    """A timer is a string ``owner|expires`` with a TTL, set by one script that also reads
    the customer's queue ticket (so a hold attempt costs one round trip before the database),
    and dropped only by its owner (compare-and-delete)."""

    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._keys = keys or Keys()
        self._take = redis.script(scripts.TAKE_TIMER)
        self._release = redis.script(scripts.RELEASE_TIMER)
        self._rate_window = int(RATE_WINDOW.total_seconds() * 1000)

    async def take(
        self,
        token: QueueToken,
        user_id: UserId,
        seat_id: SeatId,
        now: datetime,
        expires_at: datetime,
    ) -> tuple[QueueTicket | None, bool]:
        k = self._keys
        ttl = max(to_ms(expires_at) - to_ms(now), 1)
        with translated():
            taken, described = await self._take(
                keys=[k.ticket(token), k.waiting, k.admitted, k.hold(seat_id)],
                args=[token, to_ms(now), self._rate_window, user_id, to_ms(expires_at), ttl],
            )
        ticket = None if described is None else ticket_from_reply(described).as_of(now)
        return ticket, bool(taken)

    async def release(self, seat_id: SeatId, user_id: UserId) -> None:
        with translated():
            await self._release(keys=[self._keys.hold(seat_id)], args=[user_id])


class RedisLoginRateLimiter(LoginRateLimiter):
    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._redis = redis
        self._keys = keys or Keys()
        self._record = redis.script(scripts.RECORD_FAILURE)

    async def failures(self, email: str, now: datetime) -> int:
        with translated():
            ends, count = await self._redis.call(
                "HMGET", self._keys.login_failures(email), "ends", "count"
            )
        if ends is None or int(ends) <= to_ms(now):
            return 0
        return int(count or 0)

    async def record_failure(self, email: str, now: datetime, window: timedelta) -> int:
        window_ms = int(window.total_seconds() * 1000)
        with translated():
            count = await self._record(
                keys=[self._keys.login_failures(email)], args=[to_ms(now), window_ms]
            )
        return int(count)
