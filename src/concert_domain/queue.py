"""The waiting line: tickets, their status, and the admission rules.

At most ``capacity`` tickets are active at once. A ticket is active at once when there is room and
nobody waits; otherwise it waits in join order and the scheduler admits it when room frees. An
active ticket lapses ``active_seconds`` after admission, and at once when its holder pays.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime, timedelta

import attrs

from concert_domain.errors import QueueTokenInvalid, QueueTokenNotActive, QueueTokenRequired
from concert_domain.ids import QueueToken, UserId

# the admission rate a waiting customer is told is measured over this window
RATE_WINDOW = timedelta(minutes=1)


def admission_rate(admitted_in_window: int) -> float:
    """Admissions per second, from how many were admitted within `RATE_WINDOW`."""
    return admitted_in_window / RATE_WINDOW.total_seconds()


_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
# an expired ticket stays known this long, so that its holder is told "expired", not "unknown"
EXPIRED_RETENTION = timedelta(hours=1)


class TicketStatus(enum.StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    EXPIRED = "expired"


@attrs.frozen
class QueueTicket:
    """A customer's place in line as the queue store knows it.

    ``position`` is 1 for the first in line and set only while waiting; ``expires_at`` is set
    only while active. ``admissions_per_second`` is the line's recent admission rate, read with
    the ticket while it waits (so that a status answer takes one look at the store), else 0.
    """

    token: QueueToken = attrs.field(repr=False)
    user_id: UserId
    status: TicketStatus
    position: int | None = None
    expires_at: datetime | None = None
    admissions_per_second: float = 0.0

    def as_of(self, now: datetime) -> QueueTicket:
        """An active ticket reads as expired from its ``expires_at`` on."""
        if (
            self.status is TicketStatus.ACTIVE
            and self.expires_at is not None
            and now >= self.expires_at
        ):
            return attrs.evolve(self, status=TicketStatus.EXPIRED, expires_at=None)
        return self


def required(token: str | None) -> QueueToken:
    """The queue token a request carries. Raises `QueueTokenRequired` when it carries none and
    `QueueTokenInvalid` for one that cannot be a token (stores hand out 32 URL-safe
    characters; nothing else is looked up)."""
    if not token:
        raise QueueTokenRequired("an X-Queue-Token header is required; join the queue first")
    if not _TOKEN.fullmatch(token):
        raise QueueTokenInvalid("this queue token is not valid")
    return QueueToken(token)


def own_ticket(ticket: QueueTicket | None, user_id: UserId, now: datetime) -> QueueTicket:
    """The caller's ticket as of ``now``. Raises `QueueTokenInvalid` for an unknown ticket or
    another customer's."""
    if ticket is None or ticket.user_id != user_id:
        raise QueueTokenInvalid("this queue token is not valid")
    return ticket.as_of(now)


def admitted(ticket: QueueTicket | None, user_id: UserId, now: datetime) -> QueueToken:
    """The caller's token if it is active at ``now``. Raises `QueueTokenInvalid` (unknown,
    expired, someone else's) and `QueueTokenNotActive` (still waiting)."""
    own = own_ticket(ticket, user_id, now)
    if own.status is TicketStatus.EXPIRED:
        raise QueueTokenInvalid("this queue token has expired; join the queue again")
    if own.status is TicketStatus.WAITING:
        raise QueueTokenNotActive(f"still waiting in line, at position {own.position}")
    return own.token


@attrs.frozen
class QueuePolicy:
    capacity: int = 1000
    active_seconds: int = 600


@attrs.frozen
class QueueStatus:
    """What a customer is told about their ticket."""

    token: QueueToken = attrs.field(repr=False)
    status: TicketStatus
    position: int | None
    estimated_wait_seconds: int

    @classmethod
    def of(cls, ticket: QueueTicket, policy: QueuePolicy) -> QueueStatus:
        """What the holder of ``ticket`` (as of the instant asked about) is told."""
        waiting = ticket.status is TicketStatus.WAITING
        position = ticket.position if waiting else None
        rate = ticket.admissions_per_second if waiting else 0.0
        return cls(
            token=ticket.token,
            status=ticket.status,
            position=position,
            estimated_wait_seconds=estimate_wait_seconds(position, rate, policy),
        )


@attrs.frozen
class LineReport:
    """The line as whoever runs the on-sale sees it: tickets waiting and active, the recent
    admission rate, and how long until the last in line is likely admitted (0 when nobody
    waits), by the estimate each waiting customer is given."""

    waiting: int
    active: int
    admissions_per_second: float
    clears_in_seconds: int

    @classmethod
    def of(
        cls, waiting: int, active: int, admissions_per_second: float, policy: QueuePolicy
    ) -> LineReport:
        last = waiting if waiting > 0 else None
        clears = estimate_wait_seconds(last, admissions_per_second, policy)
        return cls(waiting, active, admissions_per_second, clears)


def estimate_wait_seconds(
    position: int | None, admissions_per_second: float, policy: QueuePolicy
) -> int:
    """Seconds until a waiting customer at ``position`` is likely admitted.

    From the measured admission rate when there is one; before anything has been measured, from
    the worst case where every active customer uses their whole active time.
    """
    if position is None:
        return 0
    if admissions_per_second > 0:
        return math.ceil(position / admissions_per_second)
    rounds = math.ceil(position / max(policy.capacity, 1))
    return rounds * policy.active_seconds
