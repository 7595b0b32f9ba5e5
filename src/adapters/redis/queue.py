"""The waiting line in Redis: one sorted set in join order, active tokens with their expiry,
every change an atomic Lua script, so concurrent servers never admit past capacity or out of
order. Tickets and customers' live tokens are fields of two hashes, and an expired ticket is
forgotten by `expire_idle` an hour after (`EXPIRED_RETENTION`), as the in-memory line does."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime

from adapters.redis import scripts
from adapters.redis.client import from_ms, to_ms, translated
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from concert_domain.ids import QueueToken, UserId
from concert_domain.ports import QueueSizes, QueueStore
from concert_domain.queue import (
    EXPIRED_RETENTION,
    RATE_WINDOW,
    QueuePolicy,
    QueueTicket,
    TicketStatus,
    admission_rate,
)


class RedisQueueStore(QueueStore):
    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._keys = keys or Keys()
        self._redis = redis
        self._join = redis.script(scripts.JOIN)
        self._admit = redis.script(scripts.ADMIT)
        self._expire_idle = redis.script(scripts.EXPIRE_IDLE)
        self._expire_one = redis.script(scripts.EXPIRE_ONE)
        self._describe = redis.script(scripts.TICKET)
        self._live = redis.script(scripts.LIVE_TICKET)
        self._retention = int(EXPIRED_RETENTION.total_seconds() * 1000)
        self._rate_window = int(RATE_WINDOW.total_seconds() * 1000)

    def _line(self) -> list[str]:
        """The KEYS every script that changes the line begins with."""
        k = self._keys
        return [k.waiting, k.active, k.admitted, k.tickets, k.live_tokens, k.retired]

    async def join(
        self, user_id: UserId, now: datetime, policy: QueuePolicy
    ) -> tuple[QueueTicket, bool]:
        with translated():
            created, described = await self._join(
                keys=[*self._line(), self._keys.sequence],
                args=[
                    to_ms(now),
                    policy.capacity,
                    policy.active_seconds * 1000,
                    secrets.token_urlsafe(24),
                    self._retention,
                    user_id,
                    self._rate_window,
                ],
            )
        return ticket_from_reply(described), bool(created)

    async def get(self, token: QueueToken, now: datetime) -> QueueTicket | None:
        k = self._keys
        with translated():
            described = await self._describe(
                keys=[k.tickets, k.waiting, k.admitted],
                args=[token, to_ms(now), self._rate_window],
            )
        return None if described is None else ticket_from_reply(described).as_of(now)

    async def live_ticket(self, user_id: UserId, now: datetime) -> QueueTicket | None:
        k = self._keys
        with translated():
            described = await self._live(
                keys=[k.live_tokens, k.tickets, k.waiting, k.admitted],
                args=[user_id, to_ms(now), self._rate_window],
            )
        if described is None:
            return None
        ticket = ticket_from_reply(described).as_of(now)
        return None if ticket.status is TicketStatus.EXPIRED else ticket

    async def admit(self, now: datetime, policy: QueuePolicy) -> int:
        with translated():
            admitted = await self._admit(
                keys=self._line(),
                args=[to_ms(now), policy.capacity, policy.active_seconds * 1000, self._retention],
            )
        return int(admitted)

    async def expire_idle(self, now: datetime) -> int:
        with translated():
            expired = await self._expire_idle(
                keys=self._line(), args=[to_ms(now), self._retention, self._rate_window]
            )
        return int(expired)

    async def sizes(self, now: datetime) -> QueueSizes:
        k = self._keys
        since = to_ms(now) - self._rate_window  # as TICKET counts: after it, not at it
        with translated():
            waiting, active, admitted = await asyncio.gather(
                self._redis.call("ZCARD", k.waiting),
                self._redis.call("ZCOUNT", k.active, f"({to_ms(now)}", "+inf"),
                self._redis.call("ZCOUNT", k.admitted, f"({since}", "+inf"),
            )
        return QueueSizes(int(waiting), int(active), admission_rate(int(admitted)))

    async def expire(self, token: QueueToken, now: datetime) -> None:
        with translated():
            await self._expire_one(keys=self._line(), args=[to_ms(now), self._retention, token])


def ticket_from_reply(described: list[str | int]) -> QueueTicket:
    """A ticket as the scripts' ``describe`` gives it (TICKET, and within JOIN's and
    TAKE_TIMERS' replies)."""
    token, user, status, expires, rank, recent = described
    waiting = status == TicketStatus.WAITING
    return QueueTicket(
        token=QueueToken(str(token)),
        user_id=UserId(int(user)),
        status=TicketStatus(str(status)),
        position=int(rank) + 1 if waiting and int(rank) >= 0 else None,
        expires_at=from_ms(expires) if expires else None,
        admissions_per_second=admission_rate(int(recent)),
    )
