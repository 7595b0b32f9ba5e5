"""The ports a use case may reach, bundled so that callers pass one keyword argument.

Built once by the composition root (`entrypoints.wiring`) and shared by every request: it holds
factories, clients and the process's seat-map read model, never per-request state.
"""

from __future__ import annotations

import attrs

from concert_domain.policy import BookingPolicy
from concert_domain.ports import (
    AccessTokens,
    Clock,
    HoldTimers,
    LoginRateLimiter,
    PasswordHasher,
    QueueStore,
    SeatMapStamps,
    UnitOfWorkFactory,
)
from concert_domain.seatmaps import SeatMapCache


@attrs.frozen
class Dependencies:
    uow: UnitOfWorkFactory
    clock: Clock
    passwords: PasswordHasher
    tokens: AccessTokens
    queue: QueueStore
    timers: HoldTimers
    login_limiter: LoginRateLimiter
    stamps: SeatMapStamps
    policy: BookingPolicy = attrs.Factory(BookingPolicy)
    seat_maps: SeatMapCache = attrs.Factory(SeatMapCache)
