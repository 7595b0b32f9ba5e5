"""The SQL adapter against the same port contracts as the in-memory one, and what only
PostgreSQL's sessions do: round trips, prepared statements, a killed connection."""

import asyncio
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Integer, select, text

from adapters.sql import SqlDatabase
from adapters.sql.engine import postgres_conninfo
from adapters.sql.postgres import PostgresConnections, PostgresSession
from adapters.sql.queries import Query, param
from adapters.sql.schema import seats
from concert_domain.errors import InsufficientBalance, StoreUnavailable, TransactionConflict
from concert_domain.ids import UserId
from concert_domain.ports import UnitOfWorkFactory
from contracts.database import (
    HOLD,
    NOW,
    DatabaseContract,
    add_customer,
    add_seats,
    credit,
    hold,
    sell_all,
)
from inspection import SqlInspector, StoreInspector


class TestSqliteDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, sqlite_database: SqlDatabase) -> UnitOfWorkFactory:
        return sqlite_database.unit_of_work

    @pytest.fixture
    def inspect(self, sqlite_database: SqlDatabase) -> StoreInspector:
        return SqlInspector(str(sqlite_database.url))


class TestPostgresDatabase(DatabaseContract):
    @pytest.fixture
    def uow(self, postgres_database: SqlDatabase) -> UnitOfWorkFactory:
        return postgres_database.unit_of_work

    @pytest.fixture
    def inspect(self, postgres_database: SqlDatabase) -> StoreInspector:
        return SqlInspector(str(postgres_database.url))


def round_trips(sent: list[str]) -> list[list[str]]:
    """The first word of each statement (as written, before it is prepared) of each round
    trip, the round trips that prepare statements aside."""
    trips = [sql.split(";\n") for sql in sent if not sql.startswith("PREPARE")]
    return [[statement.split()[0] for statement in trip] for trip in trips]


class TestPostgresSession:
    async def test_a_hold_a_sale_and_a_charge_each_go_in_as_few_round_trips_as_they_can(
        self, postgres_database: SqlDatabase
    ) -> None:
        uow = postgres_database.unit_of_work
        first, second = await add_seats(uow, count=2)
        user = await add_customer(uow)
        await hold(uow, user, first)  # takes this process's block of reservation ids
        sent: list[str] = []
        postgres_database.watch(sent.append)
        held = await hold(uow, user, second)
        with pytest.raises(InsufficientBalance):
            async with uow() as tx:
                await tx.payments.pay([held], user, NOW)
        await credit(uow, user, 50_000)
        async with uow() as tx:
            assert await tx.payments.pay([held], user, NOW) is not None
            await tx.commit()
        assert round_trips(sent) == [
            ["BEGIN", "WITH", "WITH", "COMMIT"],  # the hold (a lock, an insert), committed
            ["BEGIN", "WITH"],  # a sale the balance does not cover...
            ["ROLLBACK"],  # ...is rolled back
            ["BEGIN", "WITH"],  # a charge answers its balance...
            ["COMMIT"],  # ...so its commit follows
            ["BEGIN", "WITH"],  # a sale answers its payment and balance likewise
            ["COMMIT"],
        ]

    async def test_a_session_that_sent_nothing_commits_nothing(
        self, postgres_database: SqlDatabase
    ) -> None:
        sent: list[str] = []
        postgres_database.watch(sent.append)
        async with postgres_database.unit_of_work() as uow:
            await uow.commit()
        assert sent == []

    async def test_times_come_back_in_utc_and_a_killed_connection_is_given_up(
        self, postgres_database: SqlDatabase
    ) -> None:
        [seat] = await add_seats(postgres_database.unit_of_work, count=1)
        database = SqlDatabase(postgres_database.url, pool_size=1)
        conninfo = postgres_conninfo(postgres_database.url)
        try:
            async with database.unit_of_work() as uow:
                user = (await uow.accounts.add("mina@example.com", "x", NOW)).user_id
                await uow.wallets.open(user)
                await uow.commit()
            held = await hold(database.unit_of_work, user, seat)
            async with database.unit_of_work() as uow:  # in a transaction: killable
                found = await uow.reservations.get(held)
                assert found is not None and found.expires_at == NOW + HOLD
                assert found.expires_at.utcoffset() == timedelta(0)
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as killer:
                    await killer.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                        "AND state = 'idle in transaction'"
                    )
                with pytest.raises(StoreUnavailable):
                    await uow.reservations.get(held)
            async with database.unit_of_work(read_only=True) as uow:  # a new connection
                assert await uow.reservations.get(held) == found
        finally:
            await database.dispose()

    async def test_backends_terminated_while_idle_cost_no_request(
        self, postgres_database: SqlDatabase
    ) -> None:
        uow = postgres_database.unit_of_work
        seats = await add_seats(uow, count=8)
        users = [await add_customer(uow, f"p{n}@example.com") for n in range(8)]

        async def balance(user: UserId) -> int:
            async with uow(read_only=True) as tx:
                return await tx.wallets.balance(user)

        await asyncio.gather(*(balance(user) for user in users * 4))  # the pool opens up
        conninfo = postgres_conninfo(postgres_database.url)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as killer:
            cursor = await killer.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND application_name = '' AND state = 'idle'"
            )
            found = await cursor.fetchone()
        assert found is not None and found[0] >= 2  # as a restart would
        results = await asyncio.gather(
            *(hold(uow, user, seat) for user, seat in zip(users, seats, strict=True)),
            *(balance(user) for user in users),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException)] == []

    async def test_a_statement_that_cannot_be_prepared_costs_its_connection_only(
        self, postgres_database: SqlDatabase
    ) -> None:
        connections = PostgresConnections(postgres_conninfo(postgres_database.url), size=1)
        good = Query(select(seats.c.seat_id).where(seats.c.seat_id == param("seat_id", Integer())))
        broken = Query(text("SELECT no_such_column FROM seats"))
        try:
            first = PostgresSession(connections, read_only=True)
            with pytest.raises(psycopg.errors.UndefinedColumn):
                await first.run_together((good, {"seat_id": 1}), (broken, {}))
            await first.close()
            again = PostgresSession(connections, read_only=True)  # the old one is replaced
            assert await again.run(good, seat_id=1) == []
            await again.close()
        finally:
            await connections.close()

    async def test_a_pool_with_every_connection_in_use_says_so(
        self, postgres_database: SqlDatabase
    ) -> None:
        conninfo = postgres_conninfo(postgres_database.url)
        connections = PostgresConnections(conninfo, size=1, wait_seconds=0.2)
        try:
            taken = await connections.get()
            with pytest.raises(StoreUnavailable, match="no database connection came free"):
                await connections.get()
            await connections.give_back(taken)
        finally:
            await connections.close()
        nowhere = PostgresConnections(
            "host=127.0.0.1 port=1 connect_timeout=1", size=1, wait_seconds=0.5
        )
        try:
            with pytest.raises(StoreUnavailable, match="cannot be reached"):
                await nowhere.get()
        finally:
            await nowhere.close()

    async def test_a_hold_that_lapses_while_its_payment_waits_for_it_fails_the_whole_payment(
        self, postgres_database: SqlDatabase
    ) -> None:
        """The guard of a payment of several holds: the sale counts the holds in its snapshot,
        and one of them is expired by another transaction that commits while the sale waits
        for its row. The sale's UPDATE then passes over that row, and the statement refuses
        itself whole (a conflict, which the use case retries) rather than sell the rest."""
        uow = postgres_database.unit_of_work
        one, two = await add_seats(uow, count=2, price=20_000)
        user = await add_customer(uow)
        await credit(uow, user, 100_000)
        first, second = await hold(uow, user, one), await hold(uow, user, two)
        conninfo = postgres_conninfo(postgres_database.url)
        async with await psycopg.AsyncConnection.connect(conninfo) as sweeper:
            await sweeper.execute(
                "UPDATE reservations SET status = 'expired' WHERE reservation_id = %s", [second]
            )
            paying = asyncio.ensure_future(sell_all(uow, user, [first, second]))
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as look:
                for _ in range(200):  # until the sale waits for the sweeper's row lock
                    waiting = await look.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND query LIKE 'BEGIN%'"
                    )
                    if (await waiting.fetchone()) != (0,):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the sale never waited for the row")
            await sweeper.commit()
            with pytest.raises(TransactionConflict):
                await paying
        async with uow(read_only=True) as tx:
            kept = await tx.reservations.get(first)
            assert await tx.wallets.balance(user) == 100_000
        assert kept is not None and kept.status == "held"
