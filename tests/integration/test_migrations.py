"""Migrations build exactly the schema the code describes, on both dialects, and the schema
itself refuses what must never happen."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from adapters.sql import SqlDatabase
from adapters.sql.migrations import alembic_config
from adapters.sql.schema import metadata
from inspection import sync_engine


def schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> SqlDatabase:
    fixture = "sqlite_database" if request.param == "sqlite" else "postgres_database"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


class TestMigrations:
    async def test_build_exactly_the_schema_of_the_code(self, database: SqlDatabase) -> None:
        with sync_engine(str(database.url)).connect() as connection:
            assert schema_differences(connection) == []

    async def test_running_them_again_changes_nothing(self, database: SqlDatabase) -> None:
        await database.migrate()
        with sync_engine(str(database.url)).connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


class TestSchemaGuards:
    async def seed_wallet(self, database: SqlDatabase) -> None:
        with sync_engine(str(database.url)).begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (user_id, email, password_hash, created_at) "
                    "VALUES (1, 'a@example.com', 'h', '2026-12-01 00:00:00+00')"
                )
            )
            connection.execute(text("INSERT INTO wallets (user_id, balance) VALUES (1, 10)"))
            connection.execute(
                text(
                    "INSERT INTO ledger (user_id, kind, amount, created_at) "
                    "VALUES (1, 'charge', 10, '2026-12-01 00:00:00+00')"
                )
            )

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE ledger SET amount = 1000",
            "DELETE FROM ledger",
            "UPDATE wallets SET balance = -1",
        ],
    )
    async def test_refuse_to_rewrite_the_ledger_or_go_below_zero(
        self, database: SqlDatabase, statement: str
    ) -> None:
        await self.seed_wallet(database)
        with pytest.raises(DBAPIError), sync_engine(str(database.url)).begin() as connection:
            connection.execute(text(statement))
