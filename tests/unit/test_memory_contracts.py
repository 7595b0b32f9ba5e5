"""The in-memory adapters against the port contracts that the real stores also pass."""

import pytest

from adapters.memory import InMemoryDatabase
from concert_domain.ports import UnitOfWorkFactory
from contracts.database import DatabaseContract
from inspection import MemoryInspector, StoreInspector


@pytest.fixture
def database() -> InMemoryDatabase:
    return InMemoryDatabase()


@pytest.fixture
def uow(database: InMemoryDatabase) -> UnitOfWorkFactory:
    return database.unit_of_work


@pytest.fixture
def inspect(database: InMemoryDatabase) -> StoreInspector:
    return MemoryInspector(database)


class TestInMemoryDatabase(DatabaseContract):
    pass
