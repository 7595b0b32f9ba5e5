"""The waiting line in process memory, for a single process (the embedded default and tests).

Every method runs to completion without an ``await``, so concurrent coroutines see each call as
one atomic step, as they see one Lua script in Redis. Active tokens and retired ones are also
kept in heaps by time, so that expiring and forgetting them costs what lapses, not a walk over
every token.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import secrets
from collections import deque
from datetime import datetime, timedelta

import attrs

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


@attrs.define
class _Entry:
    user_id: UserId
    sequence: int
    status: TicketStatus
    expires_at: datetime | None = None
    expired_at: datetime | None = None


class InMemoryQueueStore(QueueStore):
    def __init__(self) -> None:
        self._entries: dict[QueueToken, _Entry] = {}
        self._live_by_user: dict[UserId, QueueToken] = {}
        self._waiting: list[tuple[int, QueueToken]] = []
        self._head = 0
        self._active: dict[QueueToken, datetime] = {}
        # (expires_at, token) of every activation and (expired_at, token) of every retirement;
        # an entry whose token has moved on (retired early, forgotten) is skipped when it comes up
        self._expiries: list[tuple[datetime, QueueToken]] = []
        self._retirements: list[tuple[datetime, QueueToken]] = []
        self._admitted_at: deque[datetime] = deque()
        self._sequence = itertools.count(1)

    async def join(
        self, user_id: UserId, now: datetime, policy: QueuePolicy
    ) -> tuple[QueueTicket, bool]:
        self._expire_lapsed(now)
        live = self._live_by_user.get(user_id)
        if live is not None:
            return self._ticket(live, now), False
        token = QueueToken(secrets.token_urlsafe(24))
        sequence = next(self._sequence)
        self._entries[token] = _Entry(user_id, sequence, TicketStatus.WAITING)
        self._live_by_user[user_id] = token
        if self._head == len(self._waiting) and len(self._active) < policy.capacity:
            self._activate(token, now, policy)
        else:
            self._waiting.append((sequence, token))
        return self._ticket(token, now), True

    async def get(self, token: QueueToken, now: datetime) -> QueueTicket | None:
        return self.ticket(token, now)

    def ticket(self, token: QueueToken, now: datetime) -> QueueTicket | None:
        """`get`, in one step: for the hold timers that check admission as they are taken."""
        if token not in self._entries:
            return None
        return self._ticket(token, now).as_of(now)

    async def live_ticket(self, user_id: UserId, now: datetime) -> QueueTicket | None:
        token = self._live_by_user.get(user_id)
        ticket = None if token is None else self.ticket(token, now)
        return ticket if ticket is not None and ticket.status is not TicketStatus.EXPIRED else None

    async def admit(self, now: datetime, policy: QueuePolicy) -> int:
        self._expire_lapsed(now)
        admitted = 0
        while self._head < len(self._waiting) and len(self._active) < policy.capacity:
            _, token = self._waiting[self._head]
            self._head += 1
            self._activate(token, now, policy)
            admitted += 1
        if self._head > 1024 and self._head * 2 > len(self._waiting):
            del self._waiting[: self._head]
            self._head = 0
        return admitted

    async def expire_idle(self, now: datetime) -> int:
        expired = self._expire_lapsed(now)
        self._rate(now)  # forgets the admissions out of its window, though no one waits
        while self._retirements and self._retirements[0][0] + EXPIRED_RETENTION <= now:
            expired_at, token = heapq.heappop(self._retirements)
            entry = self._entries.get(token)
            if entry is not None and entry.expired_at == expired_at:
                del self._entries[token]
        return expired

    async def sizes(self, now: datetime) -> QueueSizes:
        active = sum(1 for expires_at in self._active.values() if now < expires_at)
        return QueueSizes(len(self._waiting) - self._head, active, self._rate(now))

    async def expire(self, token: QueueToken, now: datetime) -> None:
        entry = self._entries.get(token)
        if entry is not None and entry.status is TicketStatus.ACTIVE:
            self._retire(token, now)

    def _rate(self, now: datetime) -> float:
        while self._admitted_at and self._admitted_at[0] <= now - RATE_WINDOW:
            self._admitted_at.popleft()
        return admission_rate(len(self._admitted_at))

    def _activate(self, token: QueueToken, now: datetime, policy: QueuePolicy) -> None:
        entry = self._entries[token]
        entry.status = TicketStatus.ACTIVE
        entry.expires_at = now + timedelta(seconds=policy.active_seconds)
        self._active[token] = entry.expires_at
        heapq.heappush(self._expiries, (entry.expires_at, token))
        self._admitted_at.append(now)

    def _expire_lapsed(self, now: datetime) -> int:
        lapsed = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, token = heapq.heappop(self._expiries)
            if token in self._active:  # not retired early, by a payment
                self._retire(token, now)
                lapsed += 1
        return lapsed

    def _retire(self, token: QueueToken, when: datetime) -> None:
        entry = self._entries[token]
        entry.status = TicketStatus.EXPIRED
        entry.expires_at = None
        entry.expired_at = when
        heapq.heappush(self._retirements, (when, token))
        self._active.pop(token, None)
        if self._live_by_user.get(entry.user_id) == token:
            del self._live_by_user[entry.user_id]

    def _ticket(self, token: QueueToken, now: datetime) -> QueueTicket:
        entry = self._entries[token]
        if entry.status is not TicketStatus.WAITING:
            return QueueTicket(token, entry.user_id, entry.status, None, entry.expires_at)
        rank = bisect.bisect_left(self._waiting, (entry.sequence, token), lo=self._head)
        position = rank - self._head + 1
        return QueueTicket(
            token, entry.user_id, entry.status, position, admissions_per_second=self._rate(now)
        )
