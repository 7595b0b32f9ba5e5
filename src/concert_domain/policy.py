"""The tunable rules of booking, read once from configuration by the entrypoints."""

from __future__ import annotations

from datetime import timedelta

import attrs

from concert_domain.queue import QueuePolicy

LOGIN_FAILURE_LIMIT = 10
LOGIN_FAILURE_WINDOW = timedelta(minutes=1)


@attrs.frozen
class BookingPolicy:
    hold_seconds: int = 300
    max_holds_per_user: int = 4
    queue: QueuePolicy = attrs.Factory(QueuePolicy)

    @property
    def hold_duration(self) -> timedelta:
        return timedelta(seconds=self.hold_seconds)
