"""The ports a use case may reach, bundled so that callers pass one keyword argument.

Built once by the composition root (`entrypoints.wiring`) and shared by every request: it holds
factories and clients, never per-request state.
"""

from __future__ import annotations

import attrs

from concert_domain.policy import BookingPolicy
from concert_domain.ports import (
    AccessTokens,
    AttemptLimiter,
    Clock,
    HoldTimers,
    PasswordHasher,
    QueueStore,
    UnitOfWorkFactory,
)


@attrs.frozen
class Dependencies:
    uow: UnitOfWorkFactory
    clock: Clock
    passwords: PasswordHasher
    tokens: AccessTokens
    queue: QueueStore
    timers: HoldTimers
    attempts: AttemptLimiter
    policy: BookingPolicy = attrs.Factory(BookingPolicy)
