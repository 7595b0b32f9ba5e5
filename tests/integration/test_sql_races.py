"""The SQL adapter's guards under real concurrency: many OS processes, one PostgreSQL.

Each worker process has its own engine, queue and hold timers, like a server process; the
timers cannot help across processes, so every collision is decided by the database.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, TypeVar

import attrs
import pytest
from sqlalchemy import text

import races
from adapters.sql import SqlDatabase
from contracts.database import HOLD, NOW, add_customer, add_seats, credit, hold, row_of, sell
from inspection import sync_engine

pytestmark = pytest.mark.integration
T = TypeVar("T")


def url_of(database: SqlDatabase) -> str:
    return str(database.url)


async def scalar(database: SqlDatabase, sql: str) -> int:
    with sync_engine(url_of(database)).connect() as connection:
        return int(connection.execute(text(sql)).scalar() or 0)


def chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def test_fifty_contenders_for_one_seat_in_twenty_rounds_make_one_winner_each(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    seats = [s.seat_id for s in await add_seats(uow, count=20)]
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(50)]
    per_process = races.run_in_processes(
        races.contend_for_seats,
        [(url_of(postgres_database), group, seats) for group in chunks(users, 5)],
    )
    for round_number in range(20):
        outcomes = Counter(o for process in per_process for o in process[round_number])
        assert outcomes["ok"] == 1, (round_number, outcomes)
        assert set(outcomes) <= {"ok", "seat_unavailable", "hold_limit_reached"}, outcomes
    assert await scalar(postgres_database, "SELECT count(*) FROM reservations") == 20


async def test_twenty_payments_against_a_balance_for_one_make_one_payment(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    seats = await add_seats(uow, count=20, price=50_000)
    user = await add_customer(uow)
    reservations = [await hold(uow, user, seat, limit=100) for seat in seats]
    await credit(uow, user, 50_000)
    per_process = races.run_in_processes(
        races.pay_all, [(url_of(postgres_database), user, pair) for pair in chunks(reservations, 2)]
    )
    outcomes = Counter(o for process in per_process for o in process)
    assert outcomes["ok"] == 1, outcomes
    assert set(outcomes) <= {"ok", "insufficient_balance", "queue_token_invalid"}, outcomes
    assert await scalar(postgres_database, "SELECT balance FROM wallets") == 0
    assert await scalar(postgres_database, "SELECT count(*) FROM payments") == 1
    assert (
        await scalar(postgres_database, "SELECT count(*) FROM ledger WHERE kind = 'payment'") == 1
    )


async def test_forty_concurrent_charges_lose_no_update(postgres_database: SqlDatabase) -> None:
    user = await add_customer(postgres_database.unit_of_work)
    per_process = races.run_in_processes(
        races.charge_many, [(url_of(postgres_database), user, 5, 1_000) for _ in range(8)]
    )
    assert Counter(o for process in per_process for o in process) == {"ok": 40}
    assert await scalar(postgres_database, "SELECT balance FROM wallets") == 40_000
    assert await scalar(postgres_database, "SELECT count(*) FROM ledger") == 40


async def test_twenty_concurrent_holds_by_one_customer_stop_at_four(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    seats = [s.seat_id for s in await add_seats(uow, count=20)]
    user = await add_customer(uow)
    per_process = races.run_in_processes(
        races.hold_many, [(url_of(postgres_database), user, pair) for pair in chunks(seats, 2)]
    )
    assert Counter(o for process in per_process for o in process) == {
        "ok": 4,
        "hold_limit_reached": 16,
    }


async def test_payment_racing_the_sweep_ends_sold_with_one_debit_or_released_with_none(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    seats = await add_seats(uow, count=200, price=10_000)
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(50)]
    trials = []
    for n, seat in enumerate(seats):
        user = users[n % 50]
        created = NOW + timedelta(seconds=n)
        trials.append((user, await hold(uow, user, seat, now=created, limit=4), created + HOLD))
    for user in users:
        await credit(uow, user, 40_000)
    url = url_of(postgres_database)
    payer, _sweeper = races.run_in_processes(
        races.pay_or_sweep, [(url, "payer", trials), (url, "sweeper", trials)]
    )
    assert set(payer) <= {"ok", "hold_expired"}, Counter(payer)
    with sync_engine(url).connect() as connection:
        states = connection.execute(
            text(
                "SELECT r.status, count(p.payment_id), count(l.entry_id) FROM reservations r "
                "LEFT JOIN payments p ON p.reservation_id = r.reservation_id "
                "LEFT JOIN ledger l ON l.payment_id = p.payment_id "
                "GROUP BY r.reservation_id, r.status"
            )
        ).all()
    outcomes = Counter((status, payments, debits) for status, payments, debits in states)
    assert set(outcomes) <= {("paid", 1, 1), ("expired", 0, 0)}, outcomes
    assert sum(outcomes.values()) == 200
    assert outcomes[("paid", 1, 1)] == Counter(payer)["ok"]
    print(f"\npayment vs sweep, 200 trials: {dict(outcomes)}")
    money = await scalar(
        postgres_database, "SELECT sum(balance) + (SELECT sum(amount) FROM payments) FROM wallets"
    )
    assert money == 50 * 40_000


async def test_every_snapshot_under_a_mixed_workload_balances_its_books(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    seats = [s.seat_id for s in await add_seats(uow, count=30, price=20_000)]
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(6)]
    url = url_of(postgres_database)
    jobs: list[tuple[Any, ...]] = [(url, "reader", 0, [], [], 80)] + [
        (url, "writer", seed, users, seats, 80) for seed in range(1, 5)
    ]
    reader, *writers = races.run_in_processes(races.jepsen_role, jobs)
    assert isinstance(reader, list)
    *violations, snapshots = reader
    assert violations == []
    assert int(snapshots.split("=")[1]) >= 10, snapshots
    totals: Counter[str] = Counter()
    for counts in writers:
        assert isinstance(counts, dict)
        totals.update(counts)
    assert totals["pay ok"] > 0, totals
    assert totals["charge ok"] > 0, totals
    print(f"\nmixed workload: {snapshots}, outcomes {dict(totals)}")
    assert await scalar(postgres_database, "SELECT count(*) FROM wallets WHERE balance < 0") == 0


async def test_refunds_racing_from_eight_processes_refund_each_seat_once(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    seats = await add_seats(uow, count=10, price=20_000)
    user = await add_customer(uow)
    await credit(uow, user, 200_000)
    sold = []
    for seat in seats:
        reservation_id = await hold(uow, user, seat, limit=100)
        assert await sell(uow, user, reservation_id) is not None
        sold.append(reservation_id)
    url = url_of(postgres_database)
    admin = await add_customer(uow, "ops@example.com")
    per_process = races.run_in_processes(
        races.refund_all, [(url, admin, sold, keyed) for keyed in (True, False) * 4]
    )
    outcomes = Counter(o for process in per_process for o in process)
    # a keyed retry of a refund made is answered again; every other try finds it refunded
    assert outcomes["ok"] >= 10 and set(outcomes) <= {
        "ok",
        "reservation_not_paid",
        "idempotency_key_in_use",
    }, outcomes
    balance = f"SELECT balance FROM wallets WHERE user_id = {user}"
    assert await scalar(postgres_database, balance) == 200_000
    refunds = "SELECT count(*) FROM ledger WHERE kind = 'refund'"
    assert await scalar(postgres_database, refunds) == 10
    assert await scalar(postgres_database, "SELECT count(*) FROM payments") == 10
    refunded = "SELECT count(*) FROM reservations WHERE status = 'refunded'"
    assert await scalar(postgres_database, refunded) == 10
    print(f"\n8 processes refunding 10 seats at once: {dict(outcomes)}")


async def test_sales_add_up_at_every_read_while_holds_lapse_and_payments_land(
    postgres_database: SqlDatabase,
) -> None:
    uow = postgres_database.unit_of_work
    layout = [
        *row_of(20, races.PRICE_OF["Front"], section="Front"),
        *(attrs.evolve(s, section_order=1) for s in row_of(20, races.PRICE_OF["Back"], "Back")),
    ]
    seats = [s.seat_id for s in await add_seats(uow, layout=layout)]
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(8)]
    for user in users:
        await credit(uow, user, 1_000_000)
    admin = await add_customer(uow, "ops@example.com")
    async with uow(read_only=True) as tx:
        first = await tx.catalog.get_seat(seats[0])
    assert first is not None
    url = url_of(postgres_database)
    step = timedelta(seconds=40)  # a hold lapses after 8 rounds
    jobs = [(users[n * 2 : n * 2 + 2], seats[n::4], step) for n in range(4)]
    watcher, *holders = races.run_in_processes(
        _sales_or_holds,
        [(url, "watch", (admin, first.concert_id, first.date_id, step))]
        + [(url, "hold", job) for job in jobs],
    )
    *broken, reads = watcher
    assert broken == [] and reads == "reads=60", watcher
    outcomes = Counter(o for process in holders for o in process)
    assert outcomes["paid"] > 0 and outcomes["held"] > 0, outcomes
    async with uow(read_only=True) as tx:
        sales = await tx.catalog.sales(first.date_id, NOW + step * 20)
    assert sales.sold == outcomes["paid"]
    print(f"\nsales read 60 times while 4 processes held and paid: {dict(outcomes)}")


def _sales_or_holds(url: str, role: str, args: tuple[Any, ...]) -> list[str]:
    if role == "watch":
        admin, concert_id, date_id, step = args
        return races.watch_sales(url, admin, concert_id, date_id, 60, step / 2)
    users, seats, step = args
    return races.hold_and_pay(url, users, seats, step)
