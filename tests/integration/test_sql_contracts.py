"""The SQL adapter against the same port contracts as the in-memory one."""

import asyncio
from datetime import date, timedelta

import psycopg
import pytest
from sqlalchemy import Integer, select, text

from adapters.sql import SqlDatabase
from adapters.sql.engine import postgres_conninfo
from adapters.sql.queries import Query, param
from adapters.sql.schema import seats
from adapters.sql.sessions import CatalogCache, PostgresConnections, PostgresSession
from concert_domain.catalog import Seat
from concert_domain.errors import StoreUnavailable
from concert_domain.ids import DateId
from concert_domain.ports import UnitOfWorkFactory
from contracts.database import (
    HOLD,
    NOW,
    DatabaseContract,
    add_customer,
    add_seats,
    credit,
)


class TestSqliteDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, sqlite_database: SqlDatabase) -> UnitOfWorkFactory:
        return sqlite_database.unit_of_work


class TestPostgresDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, postgres_database: SqlDatabase) -> UnitOfWorkFactory:
        return postgres_database.unit_of_work


class TestSqlUnitOfWork:
    async def test_a_hold_reads_its_seats_and_date_from_the_cache_after_the_first_time(
        self, postgres_database: SqlDatabase
    ) -> None:
        seats = await add_seats(postgres_database.unit_of_work, count=3)
        sent: list[str] = []
        postgres_database.watch(sent.append)
        for seat in seats:  # the first seat read brings its date's other seats along
            async with postgres_database.unit_of_work(read_only=True) as uow:
                assert await uow.catalog.get_seat(seat.seat_id) == seat
                assert await uow.catalog.get_date(seat.date_id) is not None
                assert await uow.catalog.get_date(DateId(seat.date_id + 1)) is None
        statements = [sql.split()[0] for sql in sent if not sql.startswith("PREPARE")]
        assert statements == ["SELECT"] * 5  # seats and date once; the unknown date each time
        before = len(sent)
        async with postgres_database.unit_of_work() as uow:
            await uow.commit()  # a unit of work that sent nothing commits nothing
        assert len(sent) == before

    async def test_a_hold_and_a_sale_each_take_one_round_trip(
        self, postgres_database: SqlDatabase
    ) -> None:
        [seat] = await add_seats(postgres_database.unit_of_work, count=1)
        user = await add_customer(postgres_database.unit_of_work)
        await credit(postgres_database.unit_of_work, user, 50_000)
        sent: list[str] = []
        postgres_database.watch(sent.append)
        async with postgres_database.unit_of_work() as uow:
            held = await uow.commit_with(uow.reservations.hold(user, seat, NOW, NOW + HOLD, 4))
        async with postgres_database.unit_of_work() as uow:
            await uow.commit_with(uow.payments.pay(held.reservation_id, user, NOW))
        trips = [sql.split(";\n") for sql in sent if not sql.startswith("PREPARE")]
        assert [[s.split()[0] for s in trip] for trip in trips] == [
            ["BEGIN", "WITH", "INSERT", "COMMIT"],
            ["BEGIN", "WITH", "COMMIT"],
        ]

    async def test_a_cold_process_met_by_many_holds_reads_the_date_once(
        self, postgres_database: SqlDatabase
    ) -> None:
        seats = await add_seats(postgres_database.unit_of_work, count=20)
        sent: list[str] = []
        postgres_database.watch(sent.append)

        async def look_up(seat: Seat) -> Seat | None:
            async with postgres_database.unit_of_work(read_only=True) as uow:
                return await uow.catalog.get_seat(seat.seat_id)

        assert await asyncio.gather(*(look_up(seat) for seat in seats)) == seats
        assert [sql.split()[0] for sql in sent if not sql.startswith("PREPARE")] == ["SELECT"]

    async def test_the_direct_path_reads_utc_and_gives_up_a_killed_connection(
        self, postgres_database: SqlDatabase
    ) -> None:
        [seat] = await add_seats(postgres_database.unit_of_work, count=1)
        database = SqlDatabase.from_url(postgres_database.engine.url, pool_size=1)
        try:
            async with database.unit_of_work() as uow:
                user = (await uow.accounts.add("mina@example.com", "x", NOW)).user_id
                held = await uow.reservations.hold(user, seat, NOW, NOW + HOLD, 4)
                await uow.commit()
            assert held.expires_at.utcoffset() == timedelta(0)
            assert held.expires_at == NOW + HOLD
            async with database.unit_of_work() as uow:  # in a transaction: killable
                assert await uow.reservations.get(held.reservation_id) == held
                async with postgres_database.engine.connect() as killer:
                    await killer.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                            "AND state = 'idle in transaction'"
                        )
                    )
                with pytest.raises(StoreUnavailable):
                    await uow.reservations.get(held.reservation_id)
            async with database.unit_of_work(read_only=True) as uow:  # a new connection
                assert await uow.reservations.get(held.reservation_id) == held
        finally:
            await database.dispose()

    async def test_a_statement_that_cannot_be_prepared_costs_its_connection_only(
        self, postgres_database: SqlDatabase
    ) -> None:
        connections = PostgresConnections(postgres_conninfo(postgres_database.engine.url), size=1)
        good = Query(select(seats.c.seat_id).where(seats.c.seat_id == param("seat_id", Integer())))
        broken = Query(text("SELECT no_such_column FROM seats"))

        def session() -> PostgresSession:
            return PostgresSession(connections, read_only=True, catalog=CatalogCache())

        try:
            first = session()
            with pytest.raises(psycopg.errors.UndefinedColumn):
                await first.run_together((good, {"seat_id": 1}), (broken, {}))
            await first.close()
            again = session()  # on a fresh connection: the old one had `good` half-known
            assert await again.run(good, seat_id=1) == []
            await again.close()
        finally:
            await connections.close()

    async def test_a_read_inside_a_rolled_back_write_is_not_cached(
        self, sqlite_database: SqlDatabase
    ) -> None:
        async with sqlite_database.unit_of_work() as uow:
            concert = await uow.catalog.add_concert("Never")
            added = await uow.catalog.add_date(concert.concert_id, date(2027, 1, 1), NOW)
            assert await uow.catalog.get_date(added.date_id) == added
        async with sqlite_database.unit_of_work(read_only=True) as uow:
            assert await uow.catalog.get_date(added.date_id) is None
