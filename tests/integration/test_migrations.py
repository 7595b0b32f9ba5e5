"""Migrations build exactly the schema the code describes, on both dialects, and the schema
itself refuses what must never happen."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, Table, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from adapters.sql import MigrationRefused, SqlDatabase
from adapters.sql import sqlite as sqlite_module
from adapters.sql.engine import postgres_migrations_engine, sqlite_engine
from adapters.sql.migrations import alembic_config, upgrade
from adapters.sql.schema import metadata
from concert_domain.accounts import Role
from concert_domain.catalog import SeatStatus
from concert_domain.ids import DateId, ReservationId, UserId
from concert_domain.wallet import LedgerKind
from inspection import sync_engine
from services import private_schema


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
                    "INSERT INTO ledger (user_id, kind, amount, balance, created_at) "
                    "VALUES (1, 'charge', 10, 10, '2026-12-01 00:00:00+00')"
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

    async def seed_a_hold(self, database: SqlDatabase) -> None:
        """A customer's wallet, their hold of seat 1 (reservation 1) and a payment for it (1),
        neither yet naming the other."""
        await self.seed_wallet(database)
        with sync_engine(str(database.url)).begin() as connection:
            for statement in (
                "INSERT INTO concerts (concert_id, title) VALUES (1, 'c')",
                "INSERT INTO concert_dates (date_id, concert_id, day, starts_at, sale_opens_at,"
                " sale_closes_at) VALUES (1, 1, '2030-01-10', '2030-01-10 19:00:00+00',"
                " '2026-12-01 00:00:00+00', '2030-01-10 18:00:00+00')",
                "INSERT INTO seats (seat_id, date_id, concert_id, section, section_order,"
                " row_label, row_order, number, price) VALUES (1, 1, 1, 'Floor', 0, 'A', 0, 1, 5)",
                "INSERT INTO reservations (reservation_id, user_id, seat_id, date_id, concert_id,"
                " section, row_label, number, price, status, created_at, expires_at) VALUES"
                " (1, 1, 1, 1, 1, 'Floor', 'A', 1, 5, 'held', '2026-12-01 00:00:00+00',"
                " '2026-12-01 00:05:00+00')",
                "INSERT INTO payments (payment_id, reservation_id, user_id, amount, created_at)"
                " VALUES (1, 1, 1, 5, '2026-12-01 00:01:00+00')",
            ):
                connection.execute(text(statement))

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE reservations SET status = 'paid', payment_id = 99",
            "INSERT INTO ledger (user_id, kind, amount, balance, created_at, payment_id)"
            " VALUES (1, 'payment', 5, 5, '2026-12-01 00:01:00+00', 99)",
            "INSERT INTO ledger (user_id, kind, amount, balance, created_at, reservation_id)"
            " VALUES (1, 'refund', 5, 15, '2026-12-01 00:01:00+00', 99)",
        ],
    )
    async def test_refuse_a_payment_or_refund_that_names_nothing(
        self, database: SqlDatabase, statement: str
    ) -> None:
        await self.seed_a_hold(database)
        engine = _as_the_service_connects(str(database.url))
        with pytest.raises(DBAPIError), engine.begin() as connection:
            connection.execute(text(statement))
        with engine.begin() as connection:  # named, they go in
            connection.execute(text(statement.replace("99", "1")))
        engine.dispose()


def _as_the_service_connects(url: str) -> Engine:
    """An engine on ``url`` with the service's connection settings: on SQLite, foreign keys
    are checked only on connections that ask for it, as the service's do."""
    return sqlite_engine(url) if url.startswith("sqlite") else sync_engine(url)


# -- taking a database made before 0003 forward --------------------------------------------

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STARTS = datetime(2030, 1, 10, 10, 0, tzinfo=UTC)
PAST = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)


def _old_rows() -> dict[str, list[dict[str, Any]]]:
    """A database as 0002 left it: a customer who charged 100,000 won and bought seat 1 of a
    coming date, holds seat 2, let seat 3 lapse; a date already past."""
    return {
        "accounts": [
            {"user_id": 1, "email": "old@example.com", "password_hash": "h", "created_at": T0}
        ],
        "concerts": [{"concert_id": 1, "title": "Old Show"}],
        "concert_dates": [
            {"date_id": 1, "concert_id": 1, "day": STARTS.date(), "starts_at": STARTS},
            {"date_id": 2, "concert_id": 1, "day": PAST.date(), "starts_at": PAST},
        ],
        "seats": [
            {
                "seat_id": n,
                "date_id": 1 if n < 4 else 2,
                "concert_id": 1,
                "number": n,
                "price": 50_000,
            }
            for n in (1, 2, 3, 4)
        ],
        "reservations": [
            {
                "reservation_id": n,
                "user_id": 1,
                "seat_id": n,
                "date_id": 1,
                "concert_id": 1,
                "number": n,
                "price": 50_000,
                "status": status,
                "created_at": T0 + timedelta(n),
                "expires_at": STARTS if status == "held" else T0 + timedelta(n, 300),
            }
            for n, status in ((1, "paid"), (2, "held"), (3, "expired"))
        ],
        "wallets": [{"user_id": 1, "balance": 50_000}],
        "ledger": [
            {
                "entry_id": 1,
                "user_id": 1,
                "kind": "charge",
                "amount": 100_000,
                "payment_id": None,
                "created_at": T0,
            },
            {
                "entry_id": 2,
                "user_id": 1,
                "kind": "payment",
                "amount": 50_000,
                "payment_id": 1,
                "created_at": T0 + timedelta(1),
            },
        ],
        "payments": [
            {
                "payment_id": 1,
                "reservation_id": 1,
                "user_id": 1,
                "amount": 50_000,
                "created_at": T0 + timedelta(1),
            }
        ],
        "idempotency_keys": [
            {
                "user_id": 1,
                "key": "k",
                "fingerprint": "f",
                "state": "done",
                "outcome": {"body": None, "error_code": "x", "error_message": "y"},
                "created_at": T0,
            }
        ],
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0002(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated to 0002 and filled as a service of that time would."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
        engine = sqlite_engine(url)
        yield from _filled_at_0002(url, engine)
        return
    server = request.getfixturevalue("postgres_server_url")
    with private_schema(server) as url:
        yield from _filled_at_0002(url, postgres_migrations_engine(url))


def _filled_at_0002(url: str, engine: Engine) -> Iterator[str]:
    try:
        with engine.connect() as connection:
            upgrade(connection, "0002")
            connection.commit()
        with engine.begin() as connection:
            for name, found in _old_rows().items():
                table = Table(name, MetaData(), autoload_with=connection)
                connection.execute(table.insert(), found)
            if connection.dialect.name == "postgresql":  # ids given by hand: move the counters on
                for name in (
                    "accounts",
                    "payments",
                    "ledger",
                    "concerts",
                    "concert_dates",
                    "seats",
                ):
                    key = Table(name, MetaData(), autoload_with=connection).primary_key.columns
                    column = next(iter(key)).name
                    connection.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', '{column}'), "
                            f"(SELECT max({column}) FROM {name}))"
                        )
                    )
    finally:
        engine.dispose()
    yield url


class TestMigratingAnOldDatabase:
    async def test_keeps_every_row_and_reads_as_before(self, url_at_0002: str) -> None:
        database = SqlDatabase(url_at_0002)
        try:
            await database.migrate()
            with sync_engine(url_at_0002).connect() as connection:
                assert schema_differences(connection) == []
                for name, found in _old_rows().items():
                    count = connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()
                    assert count == len(found), name
            now = T0 + timedelta(days=5)
            async with database.unit_of_work() as uow:
                account = await uow.accounts.get(UserId(1))
                coming = await uow.catalog.get_date(DateId(1))
                past = await uow.catalog.get_date(DateId(2))
                seats = await uow.catalog.seat_map(DateId(1), now, "Floor")
                held = await uow.reservations.get(ReservationId(2))
                entries = await uow.wallets.transactions(UserId(1), None, 10)
                refund = await uow.payments.refund(ReservationId(1), now)
                await uow.commit()
        finally:
            await database.dispose()
        assert account is not None and account.role is Role.CUSTOMER
        assert coming is not None and coming.sale_closes_at == STARTS
        assert coming.sale_opens_at < STARTS and coming.on_sale(datetime.now(UTC))
        assert past is not None and past.sale_has_closed(datetime.now(UTC))
        assert [(v.seat.label, v.status) for v in seats] == [
            ("Floor A-1", SeatStatus.SOLD),
            ("Floor A-2", SeatStatus.HELD),
            ("Floor A-3", SeatStatus.AVAILABLE),
        ]
        assert held is not None and (held.section, held.row) == ("Floor", "A")
        assert [(e.kind, e.amount, e.balance) for e in entries] == [
            (LedgerKind.PAYMENT, 50_000, 50_000),
            (LedgerKind.CHARGE, 100_000, 100_000),
        ]
        assert refund is not None and refund.balance == 100_000

    async def test_keeps_the_ledger_append_only(self, url_at_0002: str) -> None:
        database = SqlDatabase(url_at_0002)
        await database.migrate()
        await database.dispose()
        for statement in ("UPDATE ledger SET amount = 1", "DELETE FROM ledger"):
            with pytest.raises(DBAPIError), sync_engine(url_at_0002).begin() as connection:
                connection.execute(text(statement))


def _taken_to(url: str, revision: str, *changes: str) -> Engine:
    """The database at ``url`` (as 0002 left it) upgraded to ``revision`` and then changed by
    ``changes`` (SQL; ``:at`` is two days after the old rows), as a service of that version
    might have; an engine of the tests' own on it."""
    engine = sync_engine(url)
    with engine.connect() as connection:
        upgrade(connection, revision)
        connection.commit()
    with engine.begin() as connection:
        for change in changes:
            connection.execute(text(change), {"at": T0 + timedelta(days=2)})
    return engine


class TestMigratingTo0004:
    async def test_paid_seats_name_their_payment_and_refunds_their_reservation(
        self, url_at_0002: str
    ) -> None:
        """A database at 0003 with a seat refunded: 0004 ties the paid and refunded
        reservations to their payments and the refund entry to its reservation, which may
        then be refunded no more."""
        engine = _taken_to(
            url_at_0002,
            "0003",
            "UPDATE reservations SET status = 'refunded' WHERE reservation_id = 1",
            "INSERT INTO ledger (user_id, kind, amount, payment_id, created_at, balance) "
            "VALUES (1, 'refund', 50000, 1, :at, 100000)",
        )
        database = SqlDatabase(url_at_0002)
        try:
            await database.migrate()
        finally:
            await database.dispose()
        with engine.connect() as connection:
            assert schema_differences(connection) == []
            paid_by = connection.execute(
                text("SELECT reservation_id, payment_id, extended FROM reservations ORDER BY 1")
            ).all()
            refunds = connection.execute(
                text("SELECT reservation_id, payment_id FROM ledger WHERE kind = 'refund'")
            ).all()
        assert [tuple(row) for row in paid_by] == [
            (1, 1, False),
            (2, None, False),
            (3, None, False),
        ]
        assert [tuple(row) for row in refunds] == [(1, 1)]
        with pytest.raises(DBAPIError), engine.begin() as connection:  # once per reservation
            connection.execute(
                text(
                    "INSERT INTO ledger (user_id, kind, amount, payment_id, reservation_id,"
                    " created_at, balance) VALUES (1, 'refund', 50000, 1, 1, :at, 150000)"
                ),
                {"at": T0 + timedelta(days=3)},
            )


class TestMigratingTo0005:
    async def test_stops_on_a_reference_that_does_not_hold(
        self, url_at_0002: str, tmp_path: Path
    ) -> None:
        """A paid reservation naming a payment that does not exist (which 0004 could not
        refuse): 0005 is refused whole, the database stays at 0004 (on SQLite, the process's
        one connection checking references again), and `concert migrate` says so in one
        line."""
        engine = _taken_to(
            url_at_0002, "0004", "UPDATE reservations SET payment_id = 99 WHERE status = 'paid'"
        )
        database = SqlDatabase(url_at_0002)
        try:
            with pytest.raises(MigrationRefused, match="nothing was migrated"):
                await database.migrate()
            if database._sqlite is not None:
                with database._sqlite.engine.connect() as connection:
                    assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        finally:
            await database.dispose()
        ran = await asyncio.to_thread(_concert_migrate, url_at_0002, tmp_path)
        assert ran.returncode == 2, ran.stderr
        said = ran.stderr.strip().splitlines()[-1]
        assert said.startswith("concert: CONCERT_DATABASE_URL: cannot be migrated: "), said
        assert "payments" in said and "Traceback" not in ran.stderr
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0004"


def _concert_migrate(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"CONCERT_DATABASE_URL": url, "CONCERT_JWT_SECRET": "s" * 32}
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "migrate"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "CONCERT_LOG_FORMAT": "text", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestMigratingFrom0003:
    async def test_every_step_is_rolled_back_with_the_one_refused(self, url_at_0002: str) -> None:
        """A ledger entry naming a payment that does not exist, at 0003: 0004 goes through,
        0005 is refused, and the database is left at 0003, not 0004."""
        engine = _taken_to(
            url_at_0002,
            "0003",
            "INSERT INTO ledger (user_id, kind, amount, payment_id, created_at, balance) "
            "VALUES (1, 'payment', 1, 99, :at, 49999)",
        )
        database = SqlDatabase(url_at_0002)
        try:
            with pytest.raises(MigrationRefused, match="nothing was migrated"):
                await database.migrate()
        finally:
            await database.dispose()
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            columns = [c["name"] for c in sa_inspect(connection).get_columns("reservations")]
        assert version == "0003"
        assert "payment_id" not in columns  # 0004's column went with it


async def test_a_failed_sqlite_migration_leaves_nothing_and_references_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that fails halfway: what it did is rolled back, and the process's one connection
    checks references again (a pragma set inside a transaction would have been ignored)."""

    def failing(connection: Connection, revision: str = "head") -> None:
        connection.exec_driver_sql("CREATE TABLE halfway (n INTEGER)")
        raise RuntimeError("a step failed")

    monkeypatch.setattr(sqlite_module, "upgrade", failing)
    database = SqlDatabase(f"sqlite:///{tmp_path / 'failing.sqlite3'}")
    try:
        with pytest.raises(RuntimeError, match="a step failed"):
            await database.migrate()
        assert database._sqlite is not None
        with database._sqlite.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            tables = connection.exec_driver_sql("SELECT name FROM sqlite_master").all()
        assert ("halfway",) not in [tuple(row) for row in tables]
    finally:
        await database.dispose()
