"""The waiting line: join, ask where you are, and the scheduler's admission steps.

`require_active_token` is the gate in front of every queue-only use case.
"""

from __future__ import annotations

from datetime import datetime

from concert_domain import queue
from concert_domain.dependencies import Dependencies
from concert_domain.ids import QueueToken, UserId
from concert_domain.queue import LineReport, QueueStatus


async def join_queue(user_id: UserId, *, deps: Dependencies) -> tuple[QueueStatus, bool]:
    """The caller's ticket, and True if it is new (False: their live ticket, returned again)."""
    now = deps.clock.now()
    ticket, created = await deps.queue.join(user_id, now, deps.policy.queue)
    return QueueStatus.of(ticket.as_of(now), deps.policy.queue), created


async def queue_status(user_id: UserId, token: str | None, *, deps: Dependencies) -> QueueStatus:
    """Where the caller's ticket stands. Their own expired ticket answers ``expired``;
    raises `QueueTokenRequired`, `QueueTokenInvalid` (unknown, or someone else's)."""
    now = deps.clock.now()
    ticket = await deps.queue.get(queue.required(token), now)
    return QueueStatus.of(queue.own_ticket(ticket, user_id, now), deps.policy.queue)


async def require_active_token(
    user_id: UserId, token: str | None, now: datetime, *, deps: Dependencies
) -> QueueToken:
    """The caller's token if it is active at ``now``. Raises `QueueTokenRequired`,
    `QueueTokenInvalid` (unknown, expired, someone else's), `QueueTokenNotActive` (waiting)."""
    ticket = await deps.queue.get(queue.required(token), now)
    return queue.admitted(ticket, user_id, now)


async def queue_sizes(*, deps: Dependencies) -> LineReport:
    """How many wait in line and how many are admitted, now; how fast they are admitted, and
    when the last in line is likely to be."""
    sizes = await deps.queue.sizes(deps.clock.now())
    return LineReport.of(*sizes, deps.policy.queue)


async def admit_waiting(*, deps: Dependencies) -> int:
    """Admit waiting tickets in join order up to capacity; returns how many."""
    return await deps.queue.admit(deps.clock.now(), deps.policy.queue)


async def expire_idle_tokens(*, deps: Dependencies) -> int:
    """Expire active tickets whose time is up, freeing room; returns how many."""
    return await deps.queue.expire_idle(deps.clock.now())
