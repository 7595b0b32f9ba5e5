"""The tunable rules of booking, read once from configuration by the entrypoints."""

from __future__ import annotations

from datetime import timedelta

import attrs

from concert_domain.queue import QueuePolicy

# the window every attempt limit counts in: a limit is so many attempts a minute
ATTEMPT_WINDOW = timedelta(minutes=1)
LOGIN_FAILURE_LIMIT = 10


@attrs.frozen
class BookingPolicy:
    hold_seconds: int = 300
    # what one extension adds to a hold (a hold is extended at most once)
    hold_extension_seconds: int = 120
    max_holds_per_user: int = 4
    queue: QueuePolicy = attrs.Factory(QueuePolicy)
    # sign-ups and logins a minute from one client address (argon2id costs each its CPU);
    # 0 for no limit
    auth_attempts_per_address: int = 120
    # hold attempts a minute by one customer, far above what a person clicks; 0 for no limit
    hold_attempts_per_customer: int = 600

    @property
    def hold_duration(self) -> timedelta:
        return timedelta(seconds=self.hold_seconds)

    @property
    def hold_extension(self) -> timedelta:
        return timedelta(seconds=self.hold_extension_seconds)
