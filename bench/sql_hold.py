"""Hold throughput of the SQL adapter against raw psycopg doing the same conditional write,
measured in one run on one throwaway PostgreSQL (or CONCERT_TEST_DATABASE_URL), plus the
round trips of a hold and a payment through the use cases, with the statements each carries
(a transaction's BEGIN travels with its first statements and its COMMIT with the statements
still pending: `adapters.sql.postgres`).

    python bench/sql_hold.py [--seconds 5] [--workers 8]

The raw side is the floor of any implementation: one autocommit INSERT ... ON CONFLICT DO
NOTHING against the live-seat index, without the hold limit. Figures are ratios to it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import services
from adapters.clock import ManualClock
from adapters.sql import SqlDatabase
from adapters.sql.engine import postgres_conninfo
from booking import cheap_hasher
from concert_domain import BookingPolicy, QueuePolicy, usecases
from concert_domain.ids import SeatId, UserId
from entrypoints.wiring import build_dependencies

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=5)
USERS = 2_000
SEATS_PER_DATE = 1_000
DATES = 60

RAW_HOLD = """
INSERT INTO reservations
    (user_id, seat_id, date_id, concert_id, section, row_label, number, price, status,
     created_at, expires_at)
VALUES (%s, %s, %s, %s, 'Floor', 'A', %s, %s, 'held', %s, %s)
ON CONFLICT (seat_id) WHERE status IN ('held', 'paid') DO NOTHING
RETURNING reservation_id
"""


async def seed_customers(cursor: psycopg.AsyncCursor[Any], count: int) -> None:
    """Customers 1 to ``count`` (user ids, on a fresh schema), each with an empty wallet."""
    await cursor.execute(
        "INSERT INTO accounts (email, password_hash, created_at) "
        "SELECT 'u' || n || '@example.com', 'x', now() FROM generate_series(1, %s) n",
        (count,),
    )
    await cursor.execute("INSERT INTO wallets (user_id, balance) SELECT user_id, 0 FROM accounts")


async def seed(conninfo: str) -> list[tuple[int, int, int, int]]:
    """Customers, and many seats so that no hold collides: (seat, date, concert, number).
    Every date is on sale at NOW; its seats are in section ``Floor``, row ``A``."""
    async with await psycopg.AsyncConnection.connect(conninfo) as connection:
        cursor = connection.cursor()
        await seed_customers(cursor, USERS)
        await cursor.execute("INSERT INTO concerts (title) VALUES ('bench') RETURNING concert_id")
        created = await cursor.fetchone()
        assert created is not None
        (concert,) = created
        await cursor.execute(
            "INSERT INTO concert_dates "
            "(concert_id, day, starts_at, sale_opens_at, sale_closes_at) "
            "SELECT %s, DATE '2027-01-01' + n, TIMESTAMPTZ '2027-01-01' + n * INTERVAL '1 day', "
            "%s, TIMESTAMPTZ '2027-01-01' FROM generate_series(1, %s) n",
            (concert, NOW - timedelta(days=30), DATES),
        )
        await cursor.execute(
            "INSERT INTO seats "
            "(date_id, concert_id, section, section_order, row_label, row_order, number, price) "
            "SELECT d.date_id, d.concert_id, 'Floor', 0, 'A', 0, n, 50000 "
            "FROM concert_dates d, generate_series(1, %s) n",
            (SEATS_PER_DATE,),
        )
        await cursor.execute(
            "SELECT seat_id, date_id, concert_id, number FROM seats ORDER BY seat_id"
        )
        seats = list(await cursor.fetchall())
        await connection.commit()
        return seats


async def run_for(
    seconds: float, workers: int, operation: Callable[[int], Awaitable[None]], budget: int
) -> tuple[int, float]:
    counter = itertools.count()
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = next(counter)
            if n >= budget:
                return
            await operation(n)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done, time.perf_counter() - start


async def measure(url: str, seconds: float, workers: int) -> None:
    database = SqlDatabase(url, pool_size=workers)
    await database.migrate()
    conninfo = postgres_conninfo(url)
    seats = await seed(conninfo)
    half = len(seats) // 2
    raw_seats, adapter_seats = seats[:half], seats[half:]
    raw_connections = [
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) for _ in range(workers)
    ]
    free = asyncio.Queue[psycopg.AsyncConnection[Any]]()
    for connection in raw_connections:
        free.put_nowait(connection)

    async def raw_hold(n: int) -> None:
        seat_id, date_id, concert_id, number = raw_seats[n]
        connection = await free.get()
        try:
            await connection.execute(
                RAW_HOLD,
                (1 + n % USERS, seat_id, date_id, concert_id, number, 50_000, NOW, NOW + HOLD),
            )
        finally:
            free.put_nowait(connection)

    deps = build_dependencies(
        uow=database.unit_of_work,
        clock=ManualClock(NOW),
        policy=BookingPolicy(max_holds_per_user=1_000_000, queue=QueuePolicy(capacity=10**6)),
        passwords=cheap_hasher(),
        jwt_secret=b"b" * 32,
    )
    tokens = {}

    async def adapter_hold(n: int) -> None:
        seat_id = adapter_seats[n][0]
        user = UserId(1 + n % USERS)
        if user not in tokens:
            tokens[user] = (await usecases.join_queue(user, deps=deps))[0].token
        await usecases.hold_seat(user, tokens[user], SeatId(seat_id), deps=deps)

    budget = half // 3
    offsets: dict[Callable[[int], Awaitable[None]], int] = {raw_hold: 0, adapter_hold: 0}

    async def timed(operation: Callable[[int], Awaitable[None]], length: float, cap: int) -> float:
        start = offsets[operation]

        async def shifted(n: int) -> None:
            await operation(n + start)

        done, elapsed = await run_for(length, workers, shifted, cap)
        offsets[operation] += done + workers
        return done / elapsed

    await timed(raw_hold, 1.0, 200)  # warm up both sides: connections, prepared statements
    await timed(adapter_hold, 1.0, 200)
    results = {}
    for label, operation in (
        ("raw", raw_hold),
        ("adapter", adapter_hold),
        ("raw again", raw_hold),
        ("adapter again", adapter_hold),
    ):
        results[label] = await timed(operation, seconds, budget)
        print(f"{label:>14}: {results[label]:7.0f} holds/s")
    raw = (results["raw"] + results["raw again"]) / 2
    adapter = (results["adapter"] + results["adapter again"]) / 2
    print(f"adapter / raw = {adapter / raw:.2f}  ({workers} workers, {seconds:.0f} s per run)")

    # one entry per round trip: the first word of each statement it carries. A connection
    # prepares each statement once, in a round trip of its own: those are left out.
    statements: list[str] = []

    def note(sent: str) -> None:
        if not sent.startswith("PREPARE"):
            statements.append("+".join(s.split()[0] for s in sent.split(";\n")))

    database.watch(note)

    user = UserId(USERS)
    token = (await usecases.join_queue(user, deps=deps))[0].token
    await usecases.charge_wallet(user, 100_000, deps=deps)
    seat = SeatId(adapter_seats[-1][0])
    statements.clear()
    held = await usecases.hold_seat(user, token, seat, deps=deps)
    print(f"hold: {trips(statements)}")
    statements.clear()
    await usecases.pay(user, token, held.reservation_id, deps=deps)
    print(f"pay:  {trips(statements)}")
    token = (await usecases.join_queue(user, deps=deps))[0].token
    held = await usecases.hold_seat(user, token, SeatId(adapter_seats[-2][0]), deps=deps)
    statements.clear()
    await usecases.pay(user, token, held.reservation_id, "bench-key", deps=deps)
    print(f"pay with an idempotency key: {trips(statements)}")

    for connection in raw_connections:
        await connection.close()
    await database.dispose()


def trips(statements: list[str]) -> str:
    plural = "" if len(statements) == 1 else "s"
    return f"{len(statements)} round trip{plural}: {' '.join(statements)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed run")
    parser.add_argument("--workers", type=int, default=8, help="concurrent workers = connections")
    args = parser.parse_args()
    with services.postgres_server() as server, services.private_schema(server) as url:
        asyncio.run(measure(url, args.seconds, args.workers))


if __name__ == "__main__":
    main()
