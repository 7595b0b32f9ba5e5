import pytest

from adapters.clock import ManualClock
from booking import PASSWORD, memory_deps
from concert_domain import BookingPolicy, Dependencies, QueuePolicy
from concert_domain.errors import QueueTokenInvalid, QueueTokenNotActive, QueueTokenRequired
from concert_domain.ids import UserId
from concert_domain.queue import estimate_wait_seconds
from concert_domain.usecases import (
    admit_waiting,
    expire_idle_tokens,
    join_queue,
    queue_sizes,
    queue_status,
    require_active_token,
    sign_up,
)


@pytest.fixture
def small_queue(clock: ManualClock) -> Dependencies:
    return memory_deps(clock, BookingPolicy(queue=QueuePolicy(capacity=2, active_seconds=600)))


async def customers(deps: Dependencies, count: int) -> list[UserId]:
    return [(await sign_up(f"c{n}@example.com", PASSWORD, deps=deps)).user_id for n in range(count)]


class TestJoinQueue:
    async def test_is_active_at_once_when_there_is_room_and_nobody_waits(
        self, deps: Dependencies
    ) -> None:
        [mina] = await customers(deps, 1)
        status, created = await join_queue(mina, deps=deps)
        assert created
        assert (status.status, status.position, status.estimated_wait_seconds) == (
            "active",
            None,
            0,
        )

    async def test_returns_the_live_token_again_to_a_second_join(
        self, small_queue: Dependencies
    ) -> None:
        a, b, c = await customers(small_queue, 3)
        for user in (a, b, c):
            first, _ = await join_queue(user, deps=small_queue)
            again, created = await join_queue(user, deps=small_queue)
            assert (again.token, created) == (first.token, False)

    async def test_waits_in_join_order_once_the_capacity_is_used(
        self, small_queue: Dependencies
    ) -> None:
        users = await customers(small_queue, 5)
        statuses = [(await join_queue(user, deps=small_queue))[0] for user in users]
        assert [s.status for s in statuses] == ["active", "active", "waiting", "waiting", "waiting"]
        assert [s.position for s in statuses] == [None, None, 1, 2, 3]
        assert all(s.estimated_wait_seconds > 0 for s in statuses[2:])

    async def test_gives_every_customer_a_different_unguessable_token(
        self, deps: Dependencies
    ) -> None:
        users = await customers(deps, 20)
        tokens = {(await join_queue(user, deps=deps))[0].token for user in users}
        assert len(tokens) == 20
        assert min(len(token) for token in tokens) >= 32

    async def test_gives_a_new_token_once_the_old_one_expired(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        [mina] = await customers(deps, 1)
        first, _ = await join_queue(mina, deps=deps)
        clock.advance(600)
        second, created = await join_queue(mina, deps=deps)
        assert created
        assert second.token != first.token
        assert second.status == "active"


class TestAdmission:
    async def test_admits_waiting_customers_in_order_as_room_frees(
        self, small_queue: Dependencies, clock: ManualClock
    ) -> None:
        users = await customers(small_queue, 5)
        tokens = [(await join_queue(user, deps=small_queue))[0].token for user in users]
        assert await admit_waiting(deps=small_queue) == 0
        clock.advance(600)
        assert await expire_idle_tokens(deps=small_queue) == 2
        assert await admit_waiting(deps=small_queue) == 2
        states = [
            (await queue_status(user, token, deps=small_queue)).status
            for user, token in zip(users, tokens, strict=True)
        ]
        assert states == ["expired", "expired", "active", "active", "waiting"]
        assert (await queue_status(users[4], tokens[4], deps=small_queue)).position == 1

    async def test_lets_a_new_customer_queue_behind_those_waiting_even_when_room_frees(
        self, small_queue: Dependencies, clock: ManualClock
    ) -> None:
        users = await customers(small_queue, 4)
        for user in users[:3]:
            await join_queue(user, deps=small_queue)
        clock.advance(600)
        late, _ = await join_queue(users[3], deps=small_queue)
        assert (late.status, late.position) == ("waiting", 2)

    async def test_a_payment_expiry_frees_room_for_the_next_in_line(
        self, small_queue: Dependencies, clock: ManualClock
    ) -> None:
        a, b, c = await customers(small_queue, 3)
        first, _ = await join_queue(a, deps=small_queue)
        await join_queue(b, deps=small_queue)
        third, _ = await join_queue(c, deps=small_queue)
        await small_queue.queue.expire(first.token, clock.now())
        assert await admit_waiting(deps=small_queue) == 1
        assert (await queue_status(c, third.token, deps=small_queue)).status == "active"

    async def test_estimates_the_wait_from_the_measured_admission_rate(
        self, small_queue: Dependencies
    ) -> None:
        users = await customers(small_queue, 3)
        for user in users:
            status, _ = await join_queue(user, deps=small_queue)
        # two admissions in the last minute: 2/60 per second, so position 1 waits 30 s
        assert status.estimated_wait_seconds == 30


class TestQueueStatus:
    async def test_refuses_a_missing_token(self, deps: Dependencies) -> None:
        [mina] = await customers(deps, 1)
        with pytest.raises(QueueTokenRequired):
            await queue_status(mina, None, deps=deps)

    async def test_refuses_an_unknown_token_and_another_customers_token(
        self, deps: Dependencies
    ) -> None:
        mina, joon = await customers(deps, 2)
        joons, _ = await join_queue(joon, deps=deps)
        for token in ("made-up-token", joons.token):
            with pytest.raises(QueueTokenInvalid):
                await queue_status(mina, token, deps=deps)

    async def test_tells_the_holder_that_their_token_expired(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        [mina] = await customers(deps, 1)
        status, _ = await join_queue(mina, deps=deps)
        clock.advance(600)
        expired = await queue_status(mina, status.token, deps=deps)
        assert (expired.status, expired.position, expired.estimated_wait_seconds) == (
            "expired",
            None,
            0,
        )


class TestQueueGate:
    async def test_passes_an_active_token_of_the_caller(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        [mina] = await customers(deps, 1)
        status, _ = await join_queue(mina, deps=deps)
        assert (
            await require_active_token(mina, status.token, clock.now(), deps=deps) == status.token
        )

    async def test_refuses_a_waiting_token_as_not_active(
        self, small_queue: Dependencies, clock: ManualClock
    ) -> None:
        users = await customers(small_queue, 3)
        statuses = [(await join_queue(user, deps=small_queue))[0] for user in users]
        with pytest.raises(QueueTokenNotActive):
            await require_active_token(users[2], statuses[2].token, clock.now(), deps=small_queue)

    async def test_refuses_an_expired_token_as_invalid(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        [mina] = await customers(deps, 1)
        status, _ = await join_queue(mina, deps=deps)
        clock.advance(600)
        with pytest.raises(QueueTokenInvalid):
            await require_active_token(mina, status.token, clock.now(), deps=deps)


class TestWaitEstimate:
    def test_is_zero_for_a_customer_who_is_not_waiting(self) -> None:
        assert estimate_wait_seconds(None, 5.0, QueuePolicy()) == 0

    def test_falls_back_to_whole_active_periods_before_any_admission_is_measured(self) -> None:
        policy = QueuePolicy(capacity=10, active_seconds=600)
        assert [estimate_wait_seconds(p, 0.0, policy) for p in (1, 10, 11, 25)] == [
            600,
            600,
            1200,
            1800,
        ]


class TestLineReport:
    async def test_gives_the_rate_of_the_last_minute_and_the_last_in_lines_wait(
        self, small_queue: Dependencies, clock: ManualClock
    ) -> None:
        people = await customers(small_queue, 6)
        first = [(await join_queue(p, deps=small_queue))[0] for p in people]
        # two admitted at once, four wait; no admission measured in the window yet beyond those
        line = await queue_sizes(deps=small_queue)
        assert (line.waiting, line.active, line.admissions_per_second) == (4, 2, 2 / 60)
        assert line.clears_in_seconds == 4 * 30  # the 4th waits 4 / (2 a minute)
        clock.advance(60)  # the first two's admissions leave the window
        line = await queue_sizes(deps=small_queue)
        assert (line.admissions_per_second, line.clears_in_seconds) == (0.0, 2 * 600)
        for status in first[:2]:  # they pay: their tokens lapse, two more go in
            await small_queue.queue.expire(status.token, clock.now())
        assert await admit_waiting(deps=small_queue) == 2
        line = await queue_sizes(deps=small_queue)
        assert (line.waiting, line.active, line.clears_in_seconds) == (2, 2, 2 * 30)

    async def test_clears_at_once_when_nobody_waits(self, small_queue: Dependencies) -> None:
        [mina] = await customers(small_queue, 1)
        await join_queue(mina, deps=small_queue)
        line = await queue_sizes(deps=small_queue)
        assert (line.waiting, line.active, line.clears_in_seconds) == (0, 1, 0)
