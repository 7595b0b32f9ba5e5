"""The in-memory line, timers, login counters and seat-map stamps against the contracts Redis
also passes."""

import pytest

from adapters.memory import (
    InMemoryHoldTimers,
    InMemoryLoginRateLimiter,
    InMemoryQueueStore,
    InMemorySeatMapStamps,
)
from contracts.line import (
    HoldTimersContract,
    LoginRateLimiterContract,
    QueueStoreContract,
    SeatMapStampsContract,
)


class TestInMemoryQueueStore(QueueStoreContract):
    @pytest.fixture
    def queue(self) -> InMemoryQueueStore:
        return InMemoryQueueStore()


class TestInMemoryHoldTimers(HoldTimersContract):
    @pytest.fixture
    def timers(self) -> InMemoryHoldTimers:
        return InMemoryHoldTimers()


class TestInMemoryLoginRateLimiter(LoginRateLimiterContract):
    @pytest.fixture
    def limiter(self) -> InMemoryLoginRateLimiter:
        return InMemoryLoginRateLimiter()


class TestInMemorySeatMapStamps(SeatMapStampsContract):
    @pytest.fixture
    def stamps(self) -> InMemorySeatMapStamps:
        return InMemorySeatMapStamps()
