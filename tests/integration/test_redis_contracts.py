"""The Redis adapters against the same contracts as the in-memory ones."""

from adapters.redis import (
    Keys,
    RedisLink,
    RedisQueueStore,
    RedisSeatMapVersions,
)
from concert_domain.ids import DateId, UserId
from concert_domain.queue import EXPIRED_RETENTION, QueuePolicy
from contracts.line import (
    NOW,
)
from contracts.on_redis import (
    OnRedisAttemptLimiter,
    OnRedisHoldTimers,
    OnRedisQueueStore,
    OnRedisSeatMapVersions,
)


class TestRedisQueueStore(OnRedisQueueStore):
    async def test_forgets_at_most_a_thousand_tickets_a_call(
        self, queue: RedisQueueStore, redis_keys: tuple[RedisLink, Keys]
    ) -> None:
        """A backlog (the scheduler down for a while) is worked off a batch a tick, never in
        one long script that holds Redis."""
        redis, keys = redis_keys
        policy = QueuePolicy(capacity=2_500, active_seconds=60)
        for user in range(1, 2_501):
            ticket, _ = await queue.join(UserId(user), NOW, policy)
            await queue.expire(ticket.token, NOW)
        later = NOW + EXPIRED_RETENTION
        left = []
        for _ in range(3):
            await queue.expire_idle(later)
            left.append(await redis.call("HLEN", keys.tickets))
        assert left == [1_500, 500, 0]


class TestRedisHoldTimers(OnRedisHoldTimers):
    """The contract on one server."""


class TestRedisAttemptLimiter(OnRedisAttemptLimiter):
    """The contract on one server."""


class TestRedisSeatMapVersions(OnRedisSeatMapVersions):
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
