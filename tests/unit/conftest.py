import pytest

from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase
from booking import START, memory_deps
from concert_domain import Dependencies
from inspection import MemoryInspector


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def database() -> InMemoryDatabase:
    return InMemoryDatabase()


@pytest.fixture
def deps(clock: ManualClock, database: InMemoryDatabase) -> Dependencies:
    return memory_deps(clock, database=database)


@pytest.fixture
def inspect(database: InMemoryDatabase) -> MemoryInspector:
    """What the store holds beside its ports (the ledger, payments), read directly."""
    return MemoryInspector(database)
