"""Hold timers and attempt counters in Redis, each change one atomic script."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from adapters.redis import scripts
from adapters.redis.client import to_ms, translated
from adapters.redis.keys import Keys
from adapters.redis.link import RedisLink
from adapters.redis.queue import ticket_from_reply
from concert_domain.ids import QueueToken, SeatId, UserId
from concert_domain.policy import ATTEMPT_WINDOW
from concert_domain.ports import AttemptLimiter, HoldTimers, Offer, TimersTaken
from concert_domain.queue import RATE_WINDOW
from concert_domain.reservations import HoldAttempt


class RedisHoldTimers(HoldTimers):
    """A timer is a string ``owner|expires`` with a TTL, set by one script that also reads
    the customer's queue ticket and takes a whole block of seats or none, choosing among the
    blocks offered as `HoldTimers.take` says (so a hold attempt
    costs one round trip before the database),
    and dropped only by its owner (compare-and-delete)."""

    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._keys = keys or Keys()
        self._take = redis.script(scripts.TAKE_TIMERS)
        self._extend = redis.script(scripts.EXTEND_TIMER)
        self._release = redis.script(scripts.RELEASE_TIMER)
        self._rate_window = int(RATE_WINDOW.total_seconds() * 1000)
        self._attempt_window = int(ATTEMPT_WINDOW.total_seconds() * 1000)

    async def take(
        self,
        token: QueueToken,
        user_id: UserId,
        blocks: Sequence[Offer],
        now: datetime,
        expires_at: datetime,
        attempt_limit: int,
        *,
        alone_allowed: bool = True,
    ) -> TimersTaken:
        k = self._keys
        ttl = max(to_ms(expires_at) - to_ms(now), 1)
        keyed: list[SeatId] = []  # the seats whose timers follow the first four keys
        shapes: list[int] = []
        for block in blocks:
            keyed += block.seats
            shapes += [len(block.seats), len(block.sides)]
            for near, far in block.sides:
                keyed += [near] if far is None else [near, far]
                shapes.append(0 if far is None else 1)
        with translated():
            outcome, described, block, busy = await self._take(
                keys=[
                    k.tickets,
                    k.waiting,
                    k.admitted,
                    k.hold_attempts(user_id),
                    *(k.hold(seat_id) for seat_id in keyed),
                ],
                args=[
                    token,
                    to_ms(now),
                    self._rate_window,
                    user_id,
                    to_ms(expires_at),
                    ttl,
                    attempt_limit,
                    self._attempt_window,
                    1 if alone_allowed else 0,
                    *shapes,
                ],
            )
        ticket = None if described is None else ticket_from_reply(described).as_of(now)
        return TimersTaken(
            ticket,
            HoldAttempt(outcome),
            int(block) - 1 if block else None,
            frozenset(keyed[int(place) - 1] for place in busy),
        )

    async def extend(
        self, seat_id: SeatId, user_id: UserId, now: datetime, expires_at: datetime
    ) -> None:
        ttl = max(to_ms(expires_at) - to_ms(now), 1)
        with translated():
            await self._extend(
                keys=[self._keys.hold(seat_id)],
                args=[user_id, to_ms(expires_at), ttl, to_ms(now)],
            )

    async def release(self, seat_id: SeatId, user_id: UserId) -> None:
        with translated():
            await self._release(keys=[self._keys.hold(seat_id)], args=[user_id])


class RedisAttemptLimiter(AttemptLimiter):
    def __init__(self, redis: RedisLink, keys: Keys | None = None) -> None:
        self._keys = keys or Keys()
        self._attempt = redis.script(scripts.ATTEMPT)
        self._forgive = redis.script(scripts.FORGIVE)

    async def attempt(self, key: str, now: datetime, window: timedelta, limit: int) -> bool:
        window_ms = int(window.total_seconds() * 1000)
        with translated():
            counted = await self._attempt(
                keys=[self._keys.attempts(key)], args=[to_ms(now), window_ms, limit]
            )
        return bool(counted)

    async def forgive(self, key: str, now: datetime) -> None:
        with translated():
            await self._forgive(keys=[self._keys.attempts(key)], args=[to_ms(now)])
