"""The in-memory line, timers, login counters and seat-map versions against the contracts
Redis also passes."""

from datetime import timedelta

import pytest

from adapters.memory import (
    InMemoryAttemptLimiter,
    InMemoryHoldTimers,
    InMemoryQueueStore,
    InMemorySeatMapVersions,
)
from concert_domain.ids import UserId
from contracts.line import (
    NOW,
    POLICY,
    AttemptLimiterContract,
    HoldTimersContract,
    QueueStoreContract,
    SeatMapVersionsContract,
    join_all,
    statuses,
)


class TestInMemoryQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self) -> InMemoryQueueStore:
        return InMemoryQueueStore()


class TestInMemoryHoldTimers(HoldTimersContract):
    @pytest.fixture
    def queue(self) -> InMemoryQueueStore:
        return InMemoryQueueStore()

    @pytest.fixture
    def timers(self, queue: InMemoryQueueStore) -> InMemoryHoldTimers:
        return InMemoryHoldTimers(queue)


class TestInMemoryAttemptLimiter(AttemptLimiterContract):
    @pytest.fixture
    def limiter(self) -> InMemoryAttemptLimiter:
        return InMemoryAttemptLimiter()

    async def test_forgets_lapsed_windows_and_stays_within_its_bound(self) -> None:
        limiter = InMemoryAttemptLimiter(limit=100)
        window = timedelta(minutes=1)
        for n in range(1_000):  # a thousand distinct (long) keys, one attempt each
            assert await limiter.attempt(f"{n}@{'x' * 1000}.example", NOW, window, 1)
        assert len(limiter._windows) == 100
        assert await limiter.attempt("0@" + "x" * 1000 + ".example", NOW, window, 1)


class TestInMemorySeatMapVersions(SeatMapVersionsContract):
    @pytest.fixture
    def versions(self) -> InMemorySeatMapVersions:
        return InMemorySeatMapVersions()


class TestInMemoryQueueStoreForgetting:
    """What only the in-memory line holds beside the contract's (when a ticket is forgotten is
    in `contracts.line`)."""

    async def test_a_ticket_paid_and_made_again_is_not_expired_by_the_first_ones_time(
        self,
    ) -> None:
        queue = InMemoryQueueStore()
        first, _ = await queue.join(UserId(1), NOW, POLICY)
        await queue.expire(first.token, NOW)
        later = NOW + timedelta(minutes=5)
        second, created = await queue.join(UserId(1), later, POLICY)
        assert created
        assert await queue.expire_idle(NOW + timedelta(seconds=POLICY.active_seconds)) == 0
        assert await statuses(queue, [second.token], later) == ["active"]

    async def test_forgets_admissions_past_the_rate_window_when_no_one_waits(self) -> None:
        queue = InMemoryQueueStore()
        await join_all(queue, range(1, 1 + POLICY.capacity))  # all admitted: no one waits
        assert len(queue._admitted_at) == POLICY.capacity
        await queue.expire_idle(NOW + timedelta(minutes=2))
        assert len(queue._admitted_at) == 0
