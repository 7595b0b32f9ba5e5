"""The composition root: the one place that chooses adapters and plugs them into the ports.

Nothing connects at import: every builder here is called by a command, a lifespan or a test.
"""

from __future__ import annotations

import secrets

from adapters.clock import SystemClock
from adapters.memory import (
    InMemoryDatabase,
    InMemoryHoldTimers,
    InMemoryLoginRateLimiter,
    InMemoryQueueStore,
    InMemorySeatMapStamps,
)
from adapters.redis import (
    Keys,
    RedisHoldTimers,
    RedisLink,
    RedisLoginRateLimiter,
    RedisQueueStore,
    RedisSeatMapStamps,
)
from adapters.security import Argon2PasswordHasher, JwtAccessTokens
from adapters.sql import SqlDatabase
from concert_domain import BookingPolicy, Dependencies
from concert_domain.ports import (
    Clock,
    HoldTimers,
    LoginRateLimiter,
    PasswordHasher,
    QueueStore,
    SeatMapStamps,
)


def build_dependencies(
    *,
    database: SqlDatabase | InMemoryDatabase,
    redis: RedisLink | None = None,
    redis_keys: Keys | None = None,
    clock: Clock | None = None,
    policy: BookingPolicy | None = None,
    passwords: PasswordHasher | None = None,
    jwt_secret: bytes | None = None,
    access_token_seconds: int = 3600,
) -> Dependencies:
    """Every port: the database for what must not be lost; Redis, when given, for the line,
    hold timers, login counters and seat-map stamps (shared by every process), else process
    memory (one process only)."""
    queue: QueueStore
    timers: HoldTimers
    limiter: LoginRateLimiter
    stamps: SeatMapStamps
    if redis is None:
        queue, timers, limiter, stamps = (
            InMemoryQueueStore(),
            InMemoryHoldTimers(),
            InMemoryLoginRateLimiter(),
            InMemorySeatMapStamps(),
        )
    else:
        queue = RedisQueueStore(redis, redis_keys)
        timers = RedisHoldTimers(redis, redis_keys)
        limiter = RedisLoginRateLimiter(redis, redis_keys)
        stamps = RedisSeatMapStamps(redis, redis_keys)
    return Dependencies(
        uow=database.unit_of_work,
        clock=clock or SystemClock(),
        passwords=passwords or Argon2PasswordHasher(),
        tokens=JwtAccessTokens(jwt_secret or secrets.token_bytes(32), access_token_seconds),
        queue=queue,
        timers=timers,
        login_limiter=limiter,
        stamps=stamps,
        policy=policy or BookingPolicy(),
    )


def build_memory_dependencies(
    *,
    clock: Clock | None = None,
    policy: BookingPolicy | None = None,
    passwords: PasswordHasher | None = None,
    jwt_secret: bytes | None = None,
    access_token_seconds: int = 3600,
    database: InMemoryDatabase | None = None,
) -> Dependencies:
    """Every port on in-memory adapters: no servers, one process, nothing kept on exit."""
    return build_dependencies(
        database=database or InMemoryDatabase(),
        clock=clock,
        policy=policy,
        passwords=passwords,
        jwt_secret=jwt_secret,
        access_token_seconds=access_token_seconds,
    )
