"""The line's contracts on the Redis adapters, over whatever link the module's ``redis_keys``
fixture gives (one server, a guarded link, a cluster): a test module subclasses these."""

from __future__ import annotations

import pytest

from adapters.redis import (
    Keys,
    RedisAttemptLimiter,
    RedisHoldTimers,
    RedisLink,
    RedisQueueStore,
    RedisSeatMapVersions,
)
from contracts.line import (
    AttemptLimiterContract,
    HoldTimersContract,
    QueueStoreContract,
    SeatMapVersionsContract,
)


class OnRedisQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)


class OnRedisHoldTimers(HoldTimersContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)

    @pytest.fixture
    def timers(self, redis_keys: tuple[RedisLink, Keys]) -> RedisHoldTimers:
        return RedisHoldTimers(*redis_keys)


class OnRedisAttemptLimiter(AttemptLimiterContract):
    @pytest.fixture
    def limiter(self, redis_keys: tuple[RedisLink, Keys]) -> RedisAttemptLimiter:
        return RedisAttemptLimiter(*redis_keys)


class OnRedisSeatMapVersions(SeatMapVersionsContract):
    @pytest.fixture
    def versions(self, redis_keys: tuple[RedisLink, Keys]) -> RedisSeatMapVersions:
        return RedisSeatMapVersions(*redis_keys)
