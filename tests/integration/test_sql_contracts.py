"""The SQL adapter against the same port contracts as the in-memory one."""

import pytest

from adapters.sql import SqlDatabase
from concert_domain.ports import UnitOfWorkFactory
from contracts.database import DatabaseContract


class TestSqliteDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, sqlite_database: SqlDatabase) -> UnitOfWorkFactory:
        return sqlite_database.unit_of_work


class TestPostgresDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, postgres_database: SqlDatabase) -> UnitOfWorkFactory:
        return postgres_database.unit_of_work
