"""The Redis adapters against the same contracts as the in-memory ones."""

import pytest

from adapters.redis import (
    Keys,
    RedisAttemptLimiter,
    RedisHoldTimers,
    RedisLink,
    RedisQueueStore,
    RedisSeatMapVersions,
)
from concert_domain.ids import DateId
from contracts.line import (
    AttemptLimiterContract,
    HoldTimersContract,
    QueueStoreContract,
    SeatMapVersionsContract,
)


class TestRedisQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)


class TestRedisHoldTimers(HoldTimersContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)

    @pytest.fixture
    def timers(self, redis_keys: tuple[RedisLink, Keys]) -> RedisHoldTimers:
        return RedisHoldTimers(*redis_keys)


class TestRedisAttemptLimiter(AttemptLimiterContract):
    @pytest.fixture
    def limiter(self, redis_keys: tuple[RedisLink, Keys]) -> RedisAttemptLimiter:
        return RedisAttemptLimiter(*redis_keys)


class TestRedisSeatMapVersions(SeatMapVersionsContract):
    @pytest.fixture
    def versions(self, redis_keys: tuple[RedisLink, Keys]) -> RedisSeatMapVersions:
        return RedisSeatMapVersions(*redis_keys)

    async def test_a_forgotten_version_is_made_again_anew(
        self, versions: RedisSeatMapVersions, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        redis, keys = redis_keys
        before = await versions.current(DateId(1))
        await redis.call("DEL", keys.seat_map_version(DateId(1)))  # Redis restarted empty, say
        again = await versions.current(DateId(1))
        assert again != before
        assert await versions.current(DateId(1)) == again
        assert 0 < await redis.call("PTTL", keys.seat_map_version(DateId(1))) <= 86_400_000
