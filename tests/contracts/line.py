"""The contract of the ports Redis backs: the waiting line, hold timers, login counters and
seat-map versions.

A subclass provides ``queue``, ``timers`` (checking tickets of that ``queue``), ``limiter``
(attempts) and ``versions`` fixtures over empty stores.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from adapters.caching import SeatMapVersions
from concert_domain.ids import DateId, QueueToken, SeatId, UserId
from concert_domain.ports import AttemptLimiter, HoldTimers, Offer, QueueStore
from concert_domain.queue import QueuePolicy, TicketStatus
from concert_domain.reservations import HoldAttempt

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = QueuePolicy(capacity=2, active_seconds=600)
SEAT = SeatId(7)
UNTIL = NOW + timedelta(minutes=5)
MANY = 1_000  # attempts a minute: more than any test makes
TAKEN, BUSY = HoldAttempt.TAKEN, HoldAttempt.SEAT_BUSY
HOUR_LATER = timedelta(hours=1)


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

    async def test_a_customers_live_ticket_is_found_by_customer_until_it_lapses_or_is_spent(
        self, queue: QueueStore
    ) -> None:
        tokens = await join_all(queue, range(1, 4))  # two active, the third waits
        waiting = await queue.live_ticket(UserId(3), NOW)
        active = await queue.live_ticket(UserId(1), NOW + timedelta(seconds=599))
        assert waiting is not None and (waiting.token, waiting.position) == (tokens[2], 1)
        assert active is not None and (active.token, active.status) == (tokens[0], "active")
        assert await queue.live_ticket(UserId(1), NOW + timedelta(seconds=600)) is None  # lapsed
        await queue.expire(tokens[1], NOW)  # its holder paid
        assert await queue.live_ticket(UserId(2), NOW) is None
        assert await queue.live_ticket(UserId(9), NOW) is None  # never joined

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

    async def test_an_expired_ticket_is_told_for_an_hour_then_forgotten(
        self, queue: QueueStore
    ) -> None:
        [paid, idle] = await join_all(queue, range(1, 3))
        await queue.expire(paid, NOW + timedelta(minutes=5))  # its holder paid
        lapsed = NOW + timedelta(seconds=POLICY.active_seconds)
        assert await queue.expire_idle(lapsed) == 1  # only the idle one: the paid one is gone
        assert await statuses(queue, [paid, idle], lapsed) == ["expired", "expired"]
        await queue.expire_idle(NOW + timedelta(minutes=5) + HOUR_LATER)
        assert await statuses(queue, [paid, idle], lapsed + HOUR_LATER) == ["unknown", "expired"]
        await queue.expire_idle(lapsed + HOUR_LATER)
        assert await statuses(queue, [paid, idle], lapsed + HOUR_LATER) == ["unknown", "unknown"]
        again, created = await queue.join(UserId(1), lapsed + HOUR_LATER, POLICY)
        assert created and again.status is TicketStatus.ACTIVE

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

    async def test_sizes_count_the_waiting_and_the_unexpired_active(
        self, queue: QueueStore
    ) -> None:
        assert await queue.sizes(NOW) == (0, 0, 0.0)
        await join_all(queue, range(1, 5))  # POLICY admits two at once, two wait
        assert await queue.sizes(NOW) == (2, 2, 2 / 60)
        assert await queue.sizes(NOW + timedelta(seconds=POLICY.active_seconds)) == (2, 0, 0.0)

    async def test_sizes_carry_the_admission_rate_of_the_last_minute(
        self, queue: QueueStore
    ) -> None:
        tokens = await join_all(queue, range(1, 4))  # two admitted at NOW, one waits
        later = NOW + timedelta(seconds=30)
        await queue.expire(tokens[0], later)
        assert await queue.admit(later, POLICY) == 1
        assert (await queue.sizes(later)).admissions_per_second == 3 / 60
        assert (await queue.sizes(NOW + timedelta(seconds=59))).admissions_per_second == 3 / 60
        assert (await queue.sizes(NOW + timedelta(seconds=60))).admissions_per_second == 1 / 60
        assert (await queue.sizes(later + timedelta(seconds=60))).admissions_per_second == 0.0


class HoldTimersContract:
    async def test_one_owner_at_a_time_until_the_timer_lapses(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        one, two = await join_all(queue, range(1, 3))
        assert (await timers.take(one, UserId(1), [Offer([SEAT])], NOW, UNTIL, MANY))[1] is TAKEN
        assert (await timers.take(two, UserId(2), [Offer([SEAT])], NOW, UNTIL, MANY))[1] is BUSY
        later = UNTIL + timedelta(minutes=5)
        assert (await timers.take(two, UserId(2), [Offer([SEAT])], UNTIL, later, MANY))[1] is TAKEN

    async def test_the_owners_own_timer_does_not_turn_them_away(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        """A request of theirs that took the timers and died before the database (its host
        killed) must not keep them from the seat: they send it again, and the database
        decides."""
        one, two = await join_all(queue, range(1, 3))
        block = Offer([SEAT, SeatId(8)])
        assert (await timers.take(one, UserId(1), [block], NOW, UNTIL, MANY))[1] is TAKEN
        again = await timers.take(one, UserId(1), [block], NOW, UNTIL, MANY)
        assert (again.attempt, again.block, again.busy) == (TAKEN, 0, frozenset())
        assert (await timers.take(two, UserId(2), [block], NOW, UNTIL, MANY))[1] is BUSY

    async def test_only_the_owner_releases(self, queue: QueueStore, timers: HoldTimers) -> None:
        one, two = await join_all(queue, range(1, 3))
        await timers.take(one, UserId(1), [Offer([SEAT])], NOW, UNTIL, MANY)
        await timers.release(SEAT, UserId(2))
        assert (await timers.take(two, UserId(2), [Offer([SEAT])], NOW, UNTIL, MANY))[1] is BUSY
        await timers.release(SEAT, UserId(1))
        assert (await timers.take(two, UserId(2), [Offer([SEAT])], NOW, UNTIL, MANY))[1] is TAKEN

    async def test_seats_are_separate(self, queue: QueueStore, timers: HoldTimers) -> None:
        one, two = await join_all(queue, range(1, 3))
        assert (await timers.take(one, UserId(1), [Offer([SEAT])], NOW, UNTIL, MANY))[1] is TAKEN
        assert (await timers.take(two, UserId(2), [Offer([SeatId(8)])], NOW, UNTIL, MANY))[
            1
        ] is TAKEN

    async def test_a_timer_is_taken_only_for_the_owner_of_an_active_ticket(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        one, _, waiting = await join_all(queue, range(1, 4))
        cases = [
            (waiting, UserId(3), NOW, TicketStatus.WAITING),
            (one, UserId(2), NOW, TicketStatus.ACTIVE),  # another customer's ticket
            (one, UserId(1), NOW + timedelta(seconds=600), TicketStatus.EXPIRED),
        ]
        for token, user, now, status in cases:
            until = now + timedelta(minutes=5)
            ticket, attempt, *_ = await timers.take(token, user, [Offer([SEAT])], now, until, MANY)
            assert attempt is HoldAttempt.NOT_ADMITTED
            assert ticket is not None and (ticket.token, ticket.status) == (token, status)
        made_up = QueueToken("made-up-token-made-up-token-0000")
        made_up_take = await timers.take(made_up, UserId(1), [Offer([SEAT])], NOW, UNTIL, MANY)
        assert (made_up_take.ticket, made_up_take.attempt) == (None, HoldAttempt.NOT_ADMITTED)
        ticket, attempt, *_ = await timers.take(one, UserId(1), [Offer([SEAT])], NOW, UNTIL, MANY)
        assert attempt is TAKEN and ticket is not None and ticket.status is TicketStatus.ACTIVE

    async def test_a_customer_past_the_attempt_limit_takes_no_timer_until_the_minute_passes(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        one, two = await join_all(queue, range(1, 3))
        for n in range(3):  # three attempts, whatever each gives
            await timers.take(one, UserId(1), [Offer([SeatId(n)])], NOW, UNTIL, 3)
        _, attempt, *_ = await timers.take(one, UserId(1), [Offer([SeatId(9)])], NOW, UNTIL, 3)
        assert attempt is HoldAttempt.TOO_FREQUENT
        assert (await timers.take(two, UserId(2), [Offer([SeatId(9)])], NOW, UNTIL, 3))[1] is TAKEN
        a_minute = NOW + timedelta(minutes=1)
        _, attempt, *_ = await timers.take(
            one, UserId(1), [Offer([SeatId(10)])], a_minute, UNTIL, 3
        )
        assert attempt is TAKEN
        _, attempt, *_ = await timers.take(
            one, UserId(1), [Offer([SeatId(11)])], NOW, UNTIL, 0
        )  # no limit
        assert attempt is TAKEN

    async def test_concurrent_contenders_get_one_timer(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        roomy = QueuePolicy(capacity=100, active_seconds=600)
        tokens = [(await queue.join(UserId(n), NOW, roomy))[0].token for n in range(1, 51)]
        results = await asyncio.gather(
            *(
                timers.take(token, UserId(n), [Offer([SEAT])], NOW, UNTIL, MANY)
                for n, token in enumerate(tokens, start=1)
            )
        )
        assert [result.attempt for result in results].count(TAKEN) == 1

    async def test_the_first_free_block_is_taken_whole_and_the_busy_seats_named(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        one, two = await join_all(queue, range(1, 3))
        assert (
            await timers.take(one, UserId(1), [Offer([SeatId(2)])], NOW, UNTIL, MANY)
        ).block == 0
        blocks = [
            Offer([SeatId(1), SeatId(2)]),
            Offer([SeatId(2), SeatId(3)]),
            Offer([SeatId(4), SeatId(5)]),
        ]
        taken = await timers.take(two, UserId(2), blocks, NOW, UNTIL, MANY)
        assert (taken.attempt, taken.block, taken.busy) == (TAKEN, 2, frozenset({SeatId(2)}))
        for seat in (4, 5):  # the whole block is taken
            again = await timers.take(one, UserId(1), [Offer([SeatId(seat)])], NOW, UNTIL, MANY)
            assert (again.attempt, again.busy) == (BUSY, frozenset({SeatId(seat)}))
        free = await timers.take(one, UserId(1), [Offer([SeatId(1), SeatId(3)])], NOW, UNTIL, MANY)
        assert free.attempt is TAKEN  # none of the first two blocks' free seats was taken

    async def test_no_block_free_takes_nothing(self, queue: QueueStore, timers: HoldTimers) -> None:
        one, two = await join_all(queue, range(1, 3))
        await timers.take(one, UserId(1), [Offer([SeatId(2)])], NOW, UNTIL, MANY)
        blocks = [Offer([SeatId(1), SeatId(2)]), Offer([SeatId(2), SeatId(3)])]
        refused = await timers.take(two, UserId(2), blocks, NOW, UNTIL, MANY)
        assert (refused.attempt, refused.block, refused.busy) == (
            BUSY,
            None,
            frozenset({SeatId(2)}),
        )
        for seat in (1, 3):
            taken = await timers.take(one, UserId(1), [Offer([SeatId(seat)])], NOW, UNTIL, MANY)
            assert taken.attempt is TAKEN

    async def test_a_free_block_that_would_leave_a_seat_alone_is_passed_over(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        """Seats 1 to 6 of a row, free when the blocks were chosen. Another customer has just
        taken 2: the pair 4-5, whose left side is seat 3 and beyond it 2, would now leave 3
        alone, so the pair 5-6 is taken; a block that leaves none alone only if seat 1 is
        taken is passed over too, and when every free block leaves one alone, the first is
        taken."""
        one, two = await join_all(queue, range(1, 3))
        await timers.take(one, UserId(1), [Offer([SeatId(2)])], NOW, UNTIL, MANY)
        s = {n: SeatId(n) for n in range(1, 8)}
        pair_4_5 = Offer([s[4], s[5]], [(s[3], s[2]), (s[6], None)])
        pair_5_6 = Offer([s[5], s[6]], [(s[4], s[3])])
        taken = await timers.take(two, UserId(2), [pair_4_5, pair_5_6], NOW, UNTIL, MANY)
        assert (taken.attempt, taken.block) == (TAKEN, 1)
        assert (
            await timers.take(one, UserId(1), [Offer([s[4]])], NOW, UNTIL, MANY)
        ).attempt is TAKEN
        lonely = Offer([s[7]], [(s[3], None)])  # 3 is free and nothing is beyond it
        also = Offer([s[3]], [(s[1], s[2])])  # 1 is free, 2 taken beyond it
        refused = await timers.take(
            two, UserId(2), [lonely, also], NOW, UNTIL, MANY, alone_allowed=False
        )
        assert (refused.attempt, refused.block) == (BUSY, None)
        assert refused.busy == {s[2]}  # the side's seat found taken, which no map showed
        taken = await timers.take(two, UserId(2), [lonely, also], NOW, UNTIL, MANY)
        assert (taken.attempt, taken.block) == (TAKEN, 0)

    async def test_an_extended_timer_runs_to_its_new_end_for_its_owner_only(
        self, queue: QueueStore, timers: HoldTimers
    ) -> None:
        one, two = await join_all(queue, range(1, 3))
        await timers.take(one, UserId(1), [Offer([SEAT])], NOW, UNTIL, MANY)
        later = UNTIL + timedelta(minutes=2)
        await timers.extend(SEAT, UserId(2), NOW, later)  # not theirs: nothing moves
        await timers.extend(SEAT, UserId(1), NOW, later)
        at_until = await timers.take(two, UserId(2), [Offer([SEAT])], UNTIL, later, MANY)
        assert at_until.attempt is BUSY
        at_later = await timers.take(
            two, UserId(2), [Offer([SEAT])], later, later + timedelta(hours=1), MANY
        )
        assert at_later.attempt is TAKEN
        await timers.release(SEAT, UserId(2))
        await timers.extend(SEAT, UserId(2), later, later + HOUR_LATER)  # released: stays so
        again = await timers.take(one, UserId(1), [Offer([SEAT])], later, UNTIL + HOUR_LATER, MANY)
        assert again.attempt is TAKEN


class AttemptLimiterContract:
    async def test_counts_attempts_in_a_window_from_the_first_up_to_the_limit(
        self, limiter: AttemptLimiter
    ) -> None:
        window = timedelta(minutes=1)
        second = timedelta(seconds=1)
        counted = [await limiter.attempt("a", NOW + n * second, window, 3) for n in range(5)]
        assert counted == [True, True, True, False, False]
        assert not await limiter.attempt("a", NOW + 59 * second, window, 3)
        assert await limiter.attempt("a", NOW + 60 * second, window, 3)  # a new window
        assert await limiter.attempt("b", NOW, window, 3)  # keys are separate

    async def test_a_forgiven_attempt_frees_its_place_in_the_window(
        self, limiter: AttemptLimiter
    ) -> None:
        window = timedelta(minutes=1)
        assert [await limiter.attempt("a", NOW, window, 2) for _ in range(2)] == [True, True]
        await limiter.forgive("a", NOW)
        assert await limiter.attempt("a", NOW, window, 2)
        assert not await limiter.attempt("a", NOW, window, 2)
        await limiter.forgive("nobody", NOW)  # nothing to forgive: nothing happens
        assert await limiter.attempt("nobody", NOW, window, 1)

    async def test_attempts_made_at_once_never_pass_the_limit(
        self, limiter: AttemptLimiter
    ) -> None:
        window = timedelta(minutes=1)
        counted = await asyncio.gather(*(limiter.attempt("a", NOW, window, 10) for _ in range(25)))
        assert sum(counted) == 10


class SeatMapVersionsContract:
    async def test_a_version_stays_until_bumped_and_is_never_given_again(
        self, versions: SeatMapVersions
    ) -> None:
        first = await versions.current(DateId(1))
        assert await versions.current(DateId(1)) == first
        seen = {first}
        for _ in range(5):
            await versions.bump([DateId(1)])
            version = await versions.current(DateId(1))
            assert version not in seen
            assert await versions.current(DateId(1)) == version
            seen.add(version)

    async def test_dates_have_their_own_versions(self, versions: SeatMapVersions) -> None:
        other = await versions.current(DateId(2))
        mine = await versions.current(DateId(1))
        await versions.bump([DateId(1)])
        assert await versions.current(DateId(2)) == other
        assert await versions.current(DateId(1)) != mine

    async def test_readers_of_a_new_date_agree_on_its_version(
        self, versions: SeatMapVersions
    ) -> None:
        found = await asyncio.gather(*(versions.current(DateId(3)) for _ in range(10)))
        assert len(set(found)) == 1
