"""The in-memory adapters against the port contracts that the real stores also pass."""

import pytest

from adapters.memory import InMemoryDatabase
from concert_domain.ports import UnitOfWorkFactory
from contracts.database import DatabaseContract


@pytest.fixture
def uow() -> UnitOfWorkFactory:
    return InMemoryDatabase().unit_of_work


class TestInMemoryDatabase(DatabaseContract):
    pass
