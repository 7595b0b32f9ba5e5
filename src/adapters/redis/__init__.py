"""The Redis adapter: the waiting line, hold timers, attempt counters and seat-map versions,
shared by every server process. What it holds may be lost without harm: a lost line costs
places, never seats or money, for the database decides every sale."""

from adapters.redis.client import connect
from adapters.redis.cluster import RedisClusterLink
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from adapters.redis.queue import RedisQueueStore
from adapters.redis.timers import RedisAttemptLimiter, RedisHoldTimers
from adapters.redis.versions import RedisSeatMapVersions

__all__ = [
    "Keys",
    "RedisAttemptLimiter",
    "RedisClusterLink",
    "RedisHoldTimers",
    "RedisLink",
    "RedisQueueStore",
    "RedisSeatMapVersions",
    "connect",
]
