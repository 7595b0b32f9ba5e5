"""The Redis adapters against the same contracts as the in-memory ones."""

import pytest

from adapters.redis import (
    Keys,
    RedisHoldTimers,
    RedisLink,
    RedisLoginRateLimiter,
    RedisQueueStore,
    RedisSeatMapStamps,
)
from concert_domain.ids import DateId
from contracts.line import (
    HoldTimersContract,
    LoginRateLimiterContract,
    QueueStoreContract,
    SeatMapStampsContract,
)


class TestRedisQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self, redis_keys: tuple[RedisLink, Keys]) -> RedisQueueStore:
        return RedisQueueStore(*redis_keys)


class TestRedisHoldTimers(HoldTimersContract):
    @pytest.fixture
    def timers(self, redis_keys: tuple[RedisLink, Keys]) -> RedisHoldTimers:
        return RedisHoldTimers(*redis_keys)


class TestRedisLoginRateLimiter(LoginRateLimiterContract):
    @pytest.fixture
    def limiter(self, redis_keys: tuple[RedisLink, Keys]) -> RedisLoginRateLimiter:
        return RedisLoginRateLimiter(*redis_keys)


class TestRedisSeatMapStamps(SeatMapStampsContract):
    @pytest.fixture
    def stamps(self, redis_keys: tuple[RedisLink, Keys]) -> RedisSeatMapStamps:
        return RedisSeatMapStamps(*redis_keys)

    async def test_a_forgotten_stamp_is_made_again_anew(
        self, stamps: RedisSeatMapStamps, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        redis, keys = redis_keys
        before = await stamps.current(DateId(1))
        await redis.call("DEL", keys.seat_map_stamp(DateId(1)))  # Redis restarted empty, say
        again = await stamps.current(DateId(1))
        assert again != before
        assert await stamps.current(DateId(1)) == again
        assert 0 < await redis.call("PTTL", keys.seat_map_stamp(DateId(1))) <= 86_400_000
