"""Hold timers and login failure counters in Redis, each change one atomic script."""

from __future__ import annotations

from datetime import datetime, timedelta

from adapters.redis import scripts
from adapters.redis.client import to_ms, translated
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from concert_domain.ids import ConcertId, SeatId
from concert_domain.ports import HoldTimers, LoginRateLimiter


class RedisHoldTimers(HoldTimers):
    """``SET`` with an owner and a TTL, taken only if no unexpired timer is there, and dropped
    only by its owner (compare-and-delete)."""

    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._keys = keys or Keys()
        self._acquire = redis.script(scripts.ACQUIRE_TIMER)
        self._release = redis.script(scripts.RELEASE_TIMER)

    async def acquire(
        self,
        concert_id: ConcertId,
        seat_id: SeatId,
        owner: str,
        now: datetime,
        expires_at: datetime,
    ) -> bool:
        ttl = max(to_ms(expires_at) - to_ms(now), 1)
        with translated():
            taken = await self._acquire(
                keys=[self._keys.hold(concert_id, seat_id)],
                args=[owner, to_ms(expires_at), to_ms(now), ttl],
            )
        return bool(taken)

    async def release(self, concert_id: ConcertId, seat_id: SeatId, owner: str) -> None:
        with translated():
            await self._release(keys=[self._keys.hold(concert_id, seat_id)], args=[owner])


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
