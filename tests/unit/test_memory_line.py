"""The in-memory line, timers and login counters against the contracts Redis also passes."""

import pytest

from adapters.memory import InMemoryHoldTimers, InMemoryLoginRateLimiter, InMemoryQueueStore
from contracts.line import HoldTimersContract, LoginRateLimiterContract, QueueStoreContract


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
