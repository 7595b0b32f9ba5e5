"""The waiting line: join, ask where you are, and the scheduler's admission steps.

`require_active_token` is the gate in front of every queue-only use case.
"""

from __future__ import annotations

from datetime import datetime

from concert_domain.dependencies import Dependencies
from concert_domain.errors import QueueTokenInvalid, QueueTokenNotActive, QueueTokenRequired
from concert_domain.ids import QueueToken, UserId
from concert_domain.queue import QueueStatus, QueueTicket, TicketStatus, estimate_wait_seconds


async def join_queue(user_id: UserId, *, deps: Dependencies) -> tuple[QueueStatus, bool]:
    """The caller's ticket, and True if it is new (False: their live ticket, returned again)."""
    now = deps.clock.now()
    ticket, created = await deps.queue.join(user_id, now, deps.policy.queue)
    return await _status_of(ticket, now, deps), created


async def queue_status(user_id: UserId, token: str | None, *, deps: Dependencies) -> QueueStatus:
    """Where the caller's ticket stands. Their own expired ticket answers ``expired``;
    raises `QueueTokenRequired`, `QueueTokenInvalid` (unknown, or someone else's)."""
    now = deps.clock.now()
    ticket = await _own_ticket(user_id, token, now, deps)
    return await _status_of(ticket, now, deps)


async def require_active_token(
    user_id: UserId, token: str | None, now: datetime, *, deps: Dependencies
) -> QueueToken:
    """The caller's token if it is active at ``now``. Raises `QueueTokenRequired`,
    `QueueTokenInvalid` (unknown, expired, someone else's), `QueueTokenNotActive` (waiting)."""
    ticket = await _own_ticket(user_id, token, now, deps)
    if ticket.status is TicketStatus.EXPIRED:
        raise QueueTokenInvalid("this queue token has expired; join the queue again")
    if ticket.status is TicketStatus.WAITING:
        raise QueueTokenNotActive(f"still waiting in line, at position {ticket.position}")
    return ticket.token


async def admit_waiting(*, deps: Dependencies) -> int:
    """Admit waiting tickets in join order up to capacity; returns how many."""
    return await deps.queue.admit(deps.clock.now(), deps.policy.queue)


async def expire_idle_tokens(*, deps: Dependencies) -> int:
    """Expire active tickets whose time is up, freeing room; returns how many."""
    return await deps.queue.expire_idle(deps.clock.now())


async def _own_ticket(
    user_id: UserId, token: str | None, now: datetime, deps: Dependencies
) -> QueueTicket:
    if not token:
        raise QueueTokenRequired("an X-Queue-Token header is required; join the queue first")
    ticket = await deps.queue.get(QueueToken(token), now)
    if ticket is None or ticket.user_id != user_id:
        raise QueueTokenInvalid("this queue token is not valid")
    return ticket.as_of(now)


async def _status_of(ticket: QueueTicket, now: datetime, deps: Dependencies) -> QueueStatus:
    ticket = ticket.as_of(now)
    waiting = ticket.status is TicketStatus.WAITING
    position = ticket.position if waiting else None
    rate = ticket.admissions_per_second if waiting else 0.0
    return QueueStatus(
        token=ticket.token,
        status=ticket.status,
        position=position,
        estimated_wait_seconds=estimate_wait_seconds(position, rate, deps.policy.queue),
    )
