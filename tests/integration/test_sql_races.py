"""The SQL adapter's guards under real concurrency: many OS processes, one PostgreSQL.

Each worker process has its own engine, queue and hold timers, like a server process; the
timers cannot help across processes, so every collision is decided by the database.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from itertools import groupby
from typing import Any, TypeVar

import attrs
import pytest
from sqlalchemy import text

import races
from adapters.redis import Keys, RedisLink
from adapters.sql import SqlDatabase
from concert_domain.catalog import NewSeat, Seat
from concert_domain.ids import SeatId, UserId
from concert_domain.reservations import Reservation
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
    writing: list[tuple[Any, ...]] = [
        (url, "writer", seed, users, seats, 80) for seed in range(1, 5)
    ]
    jobs = [(url, "reader", len(writing), [], [], 0), *writing]
    reader, *writers = races.run_in_processes(races.jepsen_role, jobs)
    assert isinstance(reader, list)
    *violations, snapshots = reader
    assert violations == []
    # each writer waits for a snapshot between its 20 batches
    assert int(snapshots.split("=")[1]) >= 20, snapshots
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


# -- several seats at once -------------------------------------------------------------------


def hall(rows: int = 10, seats_a_row: int = 50) -> list[NewSeat]:
    """``rows`` rows of ``seats_a_row``: the first half of the rows the Front section, the
    rest the Back."""
    half = rows // 2
    return [
        NewSeat(
            "Front" if r < half else "Back",
            0 if r < half else 1,
            chr(ord("A") + r),
            r % half,
            number,
            30_000 if r < half else 10_000,
        )
        for r in range(rows)
        for number in range(1, seats_a_row + 1)
    ]


def free_runs(seats: list[Seat], taken: set[SeatId]) -> list[int]:
    """The lengths of the runs of seats side by side that are not ``taken``, row by row
    (``seats`` in layout order)."""
    runs: list[int] = []
    for _, row in groupby(seats, key=lambda seat: (seat.section, seat.row)):
        run = 0
        for seat in row:
            if seat.seat_id in taken:
                runs.append(run)
                run = 0
            else:
                run += 1
        runs.append(run)
    return [run for run in runs if run]


def live_holds(url: str) -> dict[UserId, list[SeatId]]:
    """Every customer's live reservations' seats; fails if a seat has two."""
    with sync_engine(url).connect() as connection:
        found = connection.execute(
            text(
                "SELECT user_id, seat_id FROM reservations "
                "WHERE status = 'paid' OR (status = 'held' AND expires_at > :now)"
            ),
            {"now": NOW},
        ).all()
    twice = [seat for seat, n in Counter(seat for _, seat in found).items() if n > 1]
    assert twice == [], f"seats in two live reservations: {twice}"
    seats: dict[UserId, list[SeatId]] = {}
    for user, seat in found:
        seats.setdefault(UserId(user), []).append(SeatId(seat))
    return seats


@pytest.mark.parametrize("share", [False, True], ids=["process memory", "redis"])
async def test_two_hundred_customers_asking_for_the_best_blocks_at_once_get_a_block_or_a_no(
    postgres_database: SqlDatabase, redis_keys: tuple[RedisLink, Keys], redis_url: str, share: bool
) -> None:
    """Blocks of 2 to 4 from four processes of 50 customers at once, 600 seats asked for 500.
    With the processes' own line, timers and seat-map versions the database decides every
    collision; with Redis they share them, as servers do, and only then is a refusal a promise
    that no row had the seats (a process's kept map misses the others' holds, and under a
    clock that stands still never lapses)."""
    uow = postgres_database.unit_of_work
    seats = await add_seats(uow, layout=hall())
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(200)]
    asks = [(user, 2 + n % 3) for n, user in enumerate(users)]
    url = url_of(postgres_database)
    shared = (redis_url, redis_keys[1].prefix) if share else None
    per_process = races.run_in_processes(
        races.ask_for_best, [(url, shared, seats[0].date_id, group) for group in chunks(asks, 50)]
    )
    answers = [answer for process in per_process for answer in process]
    outcomes = Counter(outcome for outcome, _, _ in answers)
    allowed = {"ok", "seats_not_together", "seat_unavailable", "hold_limit_reached"}
    assert set(outcomes) <= allowed and sum(outcomes.values()) == 200, outcomes
    held = live_holds(url)
    by_id = {seat.seat_id: seat for seat in seats}
    for (user, quantity), (outcome, got, _) in zip(asks, answers, strict=True):
        assert sorted(held.get(user, [])) == sorted(got), (user, outcome)
        if outcome != "ok":
            assert got == [], (user, outcome, got)
            continue
        block = sorted((by_id[seat] for seat in got), key=lambda seat: seat.number)
        numbers = [seat.number for seat in block]
        assert len({(seat.section, seat.row) for seat in block}) == 1, (user, block)
        assert numbers == list(range(numbers[0], numbers[0] + quantity)), (user, block)
    runs = free_runs(seats, {seat for got in held.values() for seat in got})
    # nothing is cancelled and nothing lapses: seats free at the end were free all along
    refused_with_room = sum(
        1
        for (_, quantity), (outcome, _, _) in zip(asks, answers, strict=True)
        if outcome == "seats_not_together" and max(runs, default=0) >= quantity
    )
    print(
        f"\nbest available ({'redis' if share else 'process memory'}), 200 customers asking "
        f"for 2-4 of 500 seats from 4 processes: ok {outcomes['ok']}, seats_not_together "
        f"{outcomes['seats_not_together']}, seats held {sum(map(len, held.values()))}, lone "
        f"seats left {runs.count(1)}, free runs {sorted(runs, reverse=True)}, refused while a "
        f"block stayed free {refused_with_room}, slowest answer "
        f"{max(seconds for _, _, seconds in answers):.1f} s"
    )
    if share:
        assert refused_with_room == 0, sorted(runs, reverse=True)


async def test_blocks_held_all_or_none_racing_single_holds_over_them_never_share_a_seat(
    postgres_database: SqlDatabase,
) -> None:
    """Twenty rounds, each over four seats side by side: twelve customers from four processes
    ask at once for pairs and triples of them (some for the same ones) or for one seat each."""
    uow = postgres_database.unit_of_work
    layout = [seat for row in "ABCD" for seat in row_of(20, row=row)]
    seats = [s.seat_id for s in await add_seats(uow, layout=layout)]
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(12)]
    rounds = chunks(seats, 4)  # four seats side by side a round, twenty rounds

    def asks(a: SeatId, b: SeatId, c: SeatId, d: SeatId) -> list[list[SeatId]]:
        return [[a, b], [b, c], [c, d], [a, b, c], [d, c, b], [a], [b], [c], [d]]

    # customer ``k`` asks for the ``k + round``-th of these: some ask for the same seats from
    # other processes, all of them overlap
    asked = [
        [asks(*group)[(k + n) % 9] for k in range(len(users))] for n, group in enumerate(rounds)
    ]
    per_process = races.run_in_processes(
        races.hold_blocks,
        [
            (url_of(postgres_database), users[k : k + 3], [a[k : k + 3] for a in asked])
            for k in range(0, 12, 3)
        ],
    )
    held = live_holds(url_of(postgres_database))
    outcomes: Counter[tuple[int, str]] = Counter()
    for n, group in enumerate(rounds):
        got = [o for process in per_process for o in process[n]]
        assert set(got) <= {"ok", "seat_unavailable"}, (n, got)
        assert "ok" in got, n  # the first to commit in a round cannot be refused
        for user, seats_asked, outcome in zip(users, asked[n], got, strict=True):
            mine = {seat for seat in held.get(user, []) if seat in group}
            assert mine == (set(seats_asked) if outcome == "ok" else set()), (n, user, outcome)
            outcomes[len(seats_asked), outcome] += 1
    print(f"\nblocks of (size, outcome) against single holds, 20 rounds: {dict(outcomes)}")


async def test_payments_of_several_holds_racing_the_sweep_at_expiry_sell_all_or_nothing(
    postgres_database: SqlDatabase,
) -> None:
    """Twenty rounds: four customers' holds of 2 or 3 seats lapse at one instant, when two
    processes pay them, each holds together, and a third sweeps."""
    uow = postgres_database.unit_of_work
    layout = [NewSeat("Floor", 0, "A", 0, n, 10_000 + 1_000 * (n % 7)) for n in range(1, 201)]
    seats = await add_seats(uow, layout=layout)
    users = [await add_customer(uow, f"p{n}@example.com") for n in range(80)]
    held: dict[UserId, list[Reservation]] = {}
    rest = iter(seats)
    for n, user in enumerate(users):
        created = NOW + timedelta(seconds=n // 4)  # four customers' holds lapse at once
        async with uow() as tx:
            chosen = [next(rest) for _ in range(2 + n % 2)]
            held[user] = await tx.reservations.hold(user, chosen, created, created + HOLD, 4)
            await tx.commit()
        await credit(uow, user, 100_000)

    def rounds(payer: int) -> list[tuple[Any, ...]]:
        """The round's expiry, and each customer's holds, paid in another order by half."""
        return [
            (
                held[group[0]][0].expires_at,
                [
                    (user, [r.reservation_id for r in held[user]][:: 1 - 2 * (n % 2)])
                    for n, user in enumerate(group[payer * 2 : payer * 2 + 2])
                ],
            )
            for group in chunks(users, 4)
        ]

    url = url_of(postgres_database)
    first, second, sweeps = races.run_in_processes(
        races.pay_holds_or_sweep,
        [(url, "payer", rounds(0)), (url, "payer", rounds(1)), (url, "sweeper", rounds(0))],
    )
    paid_by: dict[UserId, str] = {}
    for n, group in enumerate(chunks(users, 4)):
        paid_by.update(
            zip(group, first[n * 2 : n * 2 + 2] + second[n * 2 : n * 2 + 2], strict=True)
        )
    outcomes = Counter(paid_by.values())
    assert set(outcomes) <= {"ok", "hold_expired", "reservation_not_held"}, outcomes
    with sync_engine(url).connect() as connection:
        statuses = connection.execute(
            text("SELECT user_id, status, payment_id FROM reservations")
        ).all()
        payments = connection.execute(text("SELECT user_id, amount FROM payments")).all()
        debits = connection.execute(
            text("SELECT user_id, amount FROM ledger WHERE kind = 'payment'")
        ).all()
        charges = connection.execute(
            text("SELECT user_id, sum(amount) FROM ledger WHERE kind = 'charge' GROUP BY user_id")
        ).all()
        wallets = connection.execute(text("SELECT user_id, balance FROM wallets")).all()
    charged: dict[UserId, int] = {user: int(amount) for user, amount in charges}
    balances: dict[UserId, int] = {user: int(balance) for user, balance in wallets}
    for user in users:
        mine = [(status, payment) for owner, status, payment in statuses if owner == user]
        paid = [amount for owner, amount in payments if owner == user]
        debited = [amount for owner, amount in debits if owner == user]
        total = sum(r.price for r in held[user])
        if paid_by[user] == "ok":
            assert {status for status, _ in mine} == {"paid"}, (user, mine)
            assert len({payment for _, payment in mine}) == 1, (user, mine)
            assert paid == [total] and debited == [total], (user, paid, debited)
            assert balances[user] == charged[user] - total == 100_000 - total, user
        else:
            assert {status for status, _ in mine} <= {"held", "expired"}, (user, mine)
            assert paid == [] and debited == [], (user, paid, debited)
            assert balances[user] == charged[user] == 100_000, user
    swept = sum(int(count) for count in sweeps)
    assert swept == sum(1 for _, status, _ in statuses if status == "expired")
    left = sum(1 for _, status, _ in statuses if status == "held")
    print(
        f"\npayments of 2-3 holds vs the sweep, 80 customers in 20 rounds: {dict(outcomes)}, "
        f"holds swept {swept}, lapsed holds left unswept {left}"
    )
