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
)
from adapters.security import Argon2PasswordHasher, JwtAccessTokens
from concert_domain import BookingPolicy, Dependencies
from concert_domain.ports import Clock, PasswordHasher


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
    return Dependencies(
        uow=(database or InMemoryDatabase()).unit_of_work,
        clock=clock or SystemClock(),
        passwords=passwords or Argon2PasswordHasher(),
        tokens=JwtAccessTokens(jwt_secret or secrets.token_bytes(32), access_token_seconds),
        queue=InMemoryQueueStore(),
        timers=InMemoryHoldTimers(),
        login_limiter=InMemoryLoginRateLimiter(),
        policy=policy or BookingPolicy(),
    )
