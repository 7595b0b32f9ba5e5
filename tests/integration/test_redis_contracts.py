"""The Redis adapters against the same contracts as the in-memory ones."""

import pytest
from redis.asyncio import Redis

from adapters.redis import Keys, RedisHoldTimers, RedisLoginRateLimiter, RedisQueueStore
from contracts.line import HoldTimersContract, LoginRateLimiterContract, QueueStoreContract


class TestRedisQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[Redis, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)


class TestRedisHoldTimers(HoldTimersContract):
    @pytest.fixture
    def timers(self, redis_keys: tuple[Redis, Keys]) -> RedisHoldTimers:
        return RedisHoldTimers(*redis_keys)


class TestRedisLoginRateLimiter(LoginRateLimiterContract):
    @pytest.fixture
    def limiter(self, redis_keys: tuple[Redis, Keys]) -> RedisLoginRateLimiter:
        return RedisLoginRateLimiter(*redis_keys)
