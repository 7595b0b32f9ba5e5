"""In-memory adapters for every port: real code, used by the unit tests, the HTTP tests and any
library user who wants no servers. They keep the same guarantees under concurrent coroutines as
the real stores, within one process."""

from adapters.memory.database import InMemoryDatabase, InMemoryUnitOfWork
from adapters.memory.queue import InMemoryQueueStore
from adapters.memory.timers import InMemoryAttemptLimiter, InMemoryHoldTimers
from adapters.memory.versions import InMemorySeatMapVersions

__all__ = [
    "InMemoryAttemptLimiter",
    "InMemoryDatabase",
    "InMemoryHoldTimers",
    "InMemoryQueueStore",
    "InMemorySeatMapVersions",
    "InMemoryUnitOfWork",
]
