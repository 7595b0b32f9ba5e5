"""Seat-map stamps in Redis, shared by every server process: one string per date, a fresh
random value on every renewal, forgotten after a day of quiet (a forgotten stamp is made
again, which only costs each process one more read of the database)."""

from __future__ import annotations

import itertools
import secrets
from datetime import timedelta

from adapters.redis import scripts
from adapters.redis.client import translated
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from concert_domain.ids import DateId
from concert_domain.ports import SeatMapStamps

STAMP_LIFETIME = timedelta(days=1)


class RedisSeatMapStamps(SeatMapStamps):
    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._redis = redis
        self._keys = keys or Keys()
        self._current = redis.script(scripts.CURRENT_STAMP)
        self._lifetime = int(STAMP_LIFETIME.total_seconds() * 1000)
        # a fresh stamp is this process's random name and a counter: never given twice, and
        # cheaper than drawing random bytes for every read that might need one
        self._process = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def _fresh(self) -> str:
        return f"{self._process}.{next(self._counter)}"

    async def current(self, date_id: DateId) -> str:
        with translated():
            stamp = await self._current(
                keys=[self._keys.seat_map_stamp(date_id)],
                args=[self._fresh(), self._lifetime],
            )
        return str(stamp)

    async def renew(self, date_id: DateId) -> None:
        key = self._keys.seat_map_stamp(date_id)
        with translated():
            await self._redis.call("SET", key, self._fresh(), "PX", self._lifetime)
