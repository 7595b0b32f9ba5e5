"""The contract of the ports Redis backs: the waiting line, hold timers, login counters and
seat-map stamps.

A subclass provides ``queue``, ``timers``, ``limiter`` and ``stamps`` fixtures over empty
stores.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from concert_domain.ids import ConcertId, DateId, QueueToken, SeatId, UserId
from concert_domain.ports import HoldTimers, LoginRateLimiter, QueueStore, SeatMapStamps
from concert_domain.queue import QueuePolicy, TicketStatus

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = QueuePolicy(capacity=2, active_seconds=600)
CONCERT, SEAT = ConcertId(1), SeatId(7)


async def join_all(queue: QueueStore, users: range, now: datetime = NOW) -> list[QueueToken]:
    return [(await queue.join(UserId(u), now, POLICY))[0].token for u in users]


async def statuses(queue: QueueStore, tokens: list[QueueToken], now: datetime) -> list[str]:
    found = [await queue.get(token, now) for token in tokens]
    return [t.status.value if t else "unknown" for t in found]


class QueueStoreContract:
    async def test_the_first_to_join_an_empty_line_is_active_at_once(
        self, queue: QueueStore
    ) -> None:
        ticket, created = await queue.join(UserId(1), NOW, POLICY)
        assert created
        assert (ticket.user_id, ticket.status, ticket.position) == (1, TicketStatus.ACTIVE, None)
        assert ticket.expires_at == NOW + timedelta(seconds=600)

    async def test_joiners_past_capacity_wait_in_join_order(self, queue: QueueStore) -> None:
        tokens = await join_all(queue, range(1, 6))
        tickets = [await queue.get(t, NOW) for t in tokens]
        assert [t.status.value if t else None for t in tickets] == [
            "active", "active", "waiting", "waiting", "waiting",
        ]  # fmt: skip
        assert [t.position if t else None for t in tickets] == [None, None, 1, 2, 3]

    async def test_a_live_ticket_is_returned_again_and_a_new_one_made_once_it_expired(
        self, queue: QueueStore
    ) -> None:
        first, _ = await queue.join(UserId(1), NOW, POLICY)
        again, created = await queue.join(UserId(1), NOW + timedelta(seconds=599), POLICY)
        assert (again.token, created) == (first.token, False)
        later, created = await queue.join(UserId(1), NOW + timedelta(seconds=600), POLICY)
        assert created
        assert later.token != first.token

    async def test_tokens_are_unguessable_and_unknown_ones_are_not_found(
        self, queue: QueueStore
    ) -> None:
        tokens = await join_all(queue, range(1, 11))
        assert len(set(tokens)) == 10
        assert min(len(t) for t in tokens) >= 32
        assert await queue.get(QueueToken("made-up"), NOW) is None

    async def test_admission_fills_freed_room_in_join_order(self, queue: QueueStore) -> None:
        tokens = await join_all(queue, range(1, 6))
        assert await queue.admit(NOW, POLICY) == 0
        later = NOW + timedelta(seconds=600)
        assert await queue.admit(later, POLICY) == 2
        assert await statuses(queue, tokens, later) == [
            "expired", "expired", "active", "active", "waiting",
        ]  # fmt: skip
        last = await queue.get(tokens[4], later)
        assert last is not None
        assert last.position == 1

    async def test_expiring_a_paid_token_frees_its_room_and_its_holder(
        self, queue: QueueStore
    ) -> None:
        tokens = await join_all(queue, range(1, 4))
        await queue.expire(tokens[0], NOW)
        assert await queue.admit(NOW, POLICY) == 1
        assert await statuses(queue, tokens, NOW) == ["expired", "active", "active"]
        again, created = await queue.join(UserId(1), NOW, POLICY)
        assert created
        assert again.status is TicketStatus.WAITING

    async def test_idle_tokens_expire_on_time(self, queue: QueueStore) -> None:
        await join_all(queue, range(1, 4))
        assert await queue.expire_idle(NOW + timedelta(seconds=599)) == 0
        assert await queue.expire_idle(NOW + timedelta(seconds=600)) == 2

    async def test_concurrent_admissions_never_pass_capacity(self, queue: QueueStore) -> None:
        policy = QueuePolicy(capacity=10, active_seconds=60)
        for user in range(1, 41):
            await queue.join(UserId(user), NOW, policy)
        later = NOW + timedelta(seconds=60)
        admitted = await asyncio.gather(*(queue.admit(later, policy) for _ in range(8)))
        assert sum(admitted) == 10

    async def test_concurrent_joins_by_one_customer_make_one_ticket(
        self, queue: QueueStore
    ) -> None:
        results = await asyncio.gather(*(queue.join(UserId(1), NOW, POLICY) for _ in range(10)))
        assert len({ticket.token for ticket, _ in results}) == 1
        assert sum(created for _, created in results) == 1

    async def test_the_admission_rate_counts_the_last_minute(self, queue: QueueStore) -> None:
        assert await queue.admissions_per_second(NOW) == 0.0
        await join_all(queue, range(1, 4))
        assert await queue.admissions_per_second(NOW) == 2 / 60
        assert await queue.admissions_per_second(NOW + timedelta(seconds=61)) == 0.0

    async def test_a_waiting_ticket_carries_the_admission_rate(self, queue: QueueStore) -> None:
        tokens = await join_all(queue, range(1, 4))
        waiting, created = await queue.join(UserId(4), NOW, POLICY)
        looked_up = await queue.get(tokens[2], NOW)
        active = await queue.get(tokens[0], NOW)
        assert created
        assert (waiting.position, waiting.admissions_per_second) == (2, 2 / 60)
        assert looked_up is not None and looked_up.position == 1
        assert looked_up.admissions_per_second == 2 / 60
        assert active is not None and active.admissions_per_second == 0.0
        again, created = await queue.join(UserId(3), NOW + timedelta(seconds=61), POLICY)
        assert not created
        assert (again.token, again.position, again.admissions_per_second) == (tokens[2], 1, 0.0)


class HoldTimersContract:
    async def test_one_owner_at_a_time_until_the_timer_lapses(self, timers: HoldTimers) -> None:
        until = NOW + timedelta(minutes=5)
        assert await timers.acquire(CONCERT, SEAT, "user:1", NOW, until)
        assert not await timers.acquire(CONCERT, SEAT, "user:2", NOW, until)
        assert not await timers.acquire(CONCERT, SEAT, "user:1", NOW, until)
        assert await timers.acquire(CONCERT, SEAT, "user:2", until, until + timedelta(minutes=5))

    async def test_only_the_owner_releases(self, timers: HoldTimers) -> None:
        until = NOW + timedelta(minutes=5)
        await timers.acquire(CONCERT, SEAT, "user:1", NOW, until)
        await timers.release(CONCERT, SEAT, "user:2")
        await timers.release(CONCERT, SEAT, "user:")
        assert not await timers.acquire(CONCERT, SEAT, "user:2", NOW, until)
        await timers.release(CONCERT, SEAT, "user:1")
        assert await timers.acquire(CONCERT, SEAT, "user:2", NOW, until)

    async def test_seats_and_concerts_are_separate(self, timers: HoldTimers) -> None:
        until = NOW + timedelta(minutes=5)
        assert await timers.acquire(CONCERT, SEAT, "user:1", NOW, until)
        assert await timers.acquire(CONCERT, SeatId(8), "user:2", NOW, until)
        assert await timers.acquire(ConcertId(2), SEAT, "user:3", NOW, until)

    async def test_concurrent_contenders_get_one_timer(self, timers: HoldTimers) -> None:
        until = NOW + timedelta(minutes=5)
        results = await asyncio.gather(
            *(timers.acquire(CONCERT, SEAT, f"user:{n}", NOW, until) for n in range(50))
        )
        assert sum(results) == 1


class LoginRateLimiterContract:
    async def test_counts_failures_in_a_window_from_the_first(
        self, limiter: LoginRateLimiter
    ) -> None:
        window = timedelta(minutes=1)
        assert await limiter.failures("a@example.com", NOW) == 0
        for n in range(1, 4):
            assert (
                await limiter.record_failure("a@example.com", NOW + timedelta(seconds=n), window)
                == n
            )
        assert await limiter.failures("a@example.com", NOW + timedelta(seconds=60)) == 3
        assert await limiter.failures("a@example.com", NOW + timedelta(seconds=61)) == 0
        assert (
            await limiter.record_failure("a@example.com", NOW + timedelta(seconds=61), window) == 1
        )
        assert await limiter.failures("b@example.com", NOW) == 0


class SeatMapStampsContract:
    async def test_a_stamp_stays_until_renewed_and_is_never_given_again(
        self, stamps: SeatMapStamps
    ) -> None:
        first = await stamps.current(DateId(1))
        assert await stamps.current(DateId(1)) == first
        seen = {first}
        for _ in range(5):
            await stamps.renew(DateId(1))
            stamp = await stamps.current(DateId(1))
            assert stamp not in seen
            assert await stamps.current(DateId(1)) == stamp
            seen.add(stamp)

    async def test_dates_have_their_own_stamps(self, stamps: SeatMapStamps) -> None:
        other = await stamps.current(DateId(2))
        await stamps.renew(DateId(1))
        assert await stamps.current(DateId(2)) == other

    async def test_readers_of_a_new_date_agree_on_its_stamp(self, stamps: SeatMapStamps) -> None:
        found = await asyncio.gather(*(stamps.current(DateId(3)) for _ in range(10)))
        assert len(set(found)) == 1
