"""Seat-map versions in Redis, shared by every server process: one string per date, a fresh
value on every change, forgotten after a day of quiet (a forgotten version is made again, which
only costs each process one more read of the database)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from datetime import timedelta

from adapters.caching.seatmaps import SeatMapVersions
from adapters.redis import scripts
from adapters.redis.client import translated
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from concert_domain.ids import DateId

LIFETIME = timedelta(days=1)


class RedisSeatMapVersions(SeatMapVersions):
    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._redis = redis
        self._keys = keys or Keys()
        self._current = redis.script(scripts.CURRENT_VERSION)
        self._lifetime = int(LIFETIME.total_seconds() * 1000)
        # a fresh version is this process's random name and a counter: never given twice, and
        # cheaper than drawing random bytes for every read that might need one
        self._process = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def _fresh(self) -> str:
        return f"{self._process}.{next(self._counter)}"

    async def current(self, date_id: DateId) -> str:
        with translated():
            version = await self._current(
                keys=[self._keys.seat_map_version(date_id)],
                args=[self._fresh(), self._lifetime],
            )
        return str(version)

    async def bump(self, date_ids: Sequence[DateId]) -> None:
        pairs = [(self._keys.seat_map_version(d), self._fresh()) for d in date_ids]
        with translated():
            for key, version in pairs:
                await self._redis.call("SET", key, version, "PX", self._lifetime)
