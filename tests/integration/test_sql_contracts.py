"""The SQL adapter against the same port contracts as the in-memory one."""

from datetime import date

import pytest
from sqlalchemy import event

from adapters.sql import SqlDatabase
from concert_domain.ids import DateId
from concert_domain.ports import UnitOfWorkFactory
from contracts.database import NOW, DatabaseContract, add_seats


class TestSqliteDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, sqlite_database: SqlDatabase) -> UnitOfWorkFactory:
        return sqlite_database.unit_of_work


class TestPostgresDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, postgres_database: SqlDatabase) -> UnitOfWorkFactory:
        return postgres_database.unit_of_work


class TestSqlUnitOfWork:
    async def test_a_hold_reads_its_seat_and_date_from_the_cache_after_the_first_time(
        self, postgres_database: SqlDatabase
    ) -> None:
        [seat] = await add_seats(postgres_database.unit_of_work, count=1)
        sent: list[str] = []
        event.listen(
            postgres_database.engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: sent.append(statement),
        )
        for _ in range(2):
            async with postgres_database.unit_of_work(read_only=True) as uow:
                assert await uow.catalog.get_seat(seat.seat_id) == seat
                assert await uow.catalog.get_date(seat.date_id) is not None
                assert await uow.catalog.get_date(DateId(seat.date_id + 1)) is None
        assert len(sent) == 4  # seat and date once; the unknown date each time
        async with postgres_database.unit_of_work() as uow:
            await uow.commit()  # a unit of work that sent nothing commits nothing
        assert len(sent) == 4

    async def test_a_read_inside_a_rolled_back_write_is_not_cached(
        self, sqlite_database: SqlDatabase
    ) -> None:
        async with sqlite_database.unit_of_work() as uow:
            concert = await uow.catalog.add_concert("Never")
            added = await uow.catalog.add_date(concert.concert_id, date(2027, 1, 1), NOW)
            assert await uow.catalog.get_date(added.date_id) == added
        async with sqlite_database.unit_of_work(read_only=True) as uow:
            assert await uow.catalog.get_date(added.date_id) is None
