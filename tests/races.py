"""Workers for the races from separate OS processes (tests/integration/test_sql_races.py).

Each worker process builds its own engine and its own in-process queue and timers, as a server
process would; only the database is shared. Workers line up on a barrier before each round so
that their attempts really collide.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any, TypeVar

import attrs

from adapters.clock import ManualClock
from adapters.sql import SqlDatabase
from booking import cheap_hasher
from concert_domain import BookingPolicy, Dependencies, QueuePolicy, usecases
from concert_domain.accounts import Identity, Role
from concert_domain.errors import ConcertError
from concert_domain.ids import ConcertId, DateId, QueueToken, ReservationId, SeatId, UserId
from entrypoints.wiring import build_dependencies

T = TypeVar("T")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = BookingPolicy(max_holds_per_user=4, queue=QueuePolicy(capacity=100_000))

_barrier: Any = None
# the mixed workload's pacing: how many snapshots the reader has taken and how many writers
# have finished, with a condition to wait on either
_progress: Any = None


def _init(barrier: Any, progress: Any) -> None:
    global _barrier, _progress
    _barrier = barrier
    _progress = progress


def run_in_processes(
    worker: Callable[..., T], jobs: list[tuple[Any, ...]], *, barrier_parties: int | None = None
) -> list[T]:
    """Run ``worker(*job)`` for every job, one process each, all at once."""
    context = get_context("spawn")
    barrier = context.Barrier(barrier_parties or len(jobs))
    progress = (context.Condition(), context.Value("i", 0), context.Value("i", 0))
    with ProcessPoolExecutor(
        len(jobs), mp_context=context, initializer=_init, initargs=(barrier, progress)
    ) as pool:
        return list(pool.map(worker, *zip(*jobs, strict=True)))


def _line_up() -> None:
    _barrier.wait(timeout=60)


def _run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


def worker_deps(
    database: SqlDatabase, clock: ManualClock, policy: BookingPolicy = POLICY
) -> Dependencies:
    return build_dependencies(
        uow=database.unit_of_work,
        clock=clock,
        policy=policy,
        passwords=cheap_hasher(),
        jwt_secret=b"r" * 32,
    )


async def _admit(deps: Dependencies, users: list[UserId]) -> list[QueueToken]:
    return [(await usecases.join_queue(user, deps=deps))[0].token for user in users]


async def _outcome(attempt: Awaitable[Any]) -> str:
    try:
        await attempt
    except ConcertError as error:
        return error.code
    return "ok"


# -- one seat, many contenders, many rounds ------------------------------------------------


def contend_for_seats(url: str, users: list[UserId], seats: list[SeatId]) -> list[list[str]]:
    """For each seat in turn, all of this process's customers try to hold it at once."""

    async def main() -> list[list[str]]:
        database = SqlDatabase(url, pool_size=len(users))
        deps = worker_deps(database, ManualClock(NOW))
        tokens = await _admit(deps, users)
        rounds = []
        for seat in seats:
            _line_up()
            rounds.append(
                list(
                    await asyncio.gather(
                        *(
                            _outcome(usecases.hold_seat(u, t, seat, deps=deps))
                            for u, t in zip(users, tokens, strict=True)
                        )
                    )
                )
            )
        await database.dispose()
        return rounds

    return _run(main())


# -- payments, charges, holds by one customer ----------------------------------------------


def pay_all(url: str, user: UserId, reservations: list[ReservationId]) -> list[str]:
    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=len(reservations))
        deps = worker_deps(database, ManualClock(NOW), attrs.evolve(POLICY, max_holds_per_user=100))
        [token] = await _admit(deps, [user])
        _line_up()
        results = await asyncio.gather(
            *(_outcome(usecases.pay(user, token, r, deps=deps)) for r in reservations)
        )
        await database.dispose()
        return list(results)

    return _run(main())


def charge_many(url: str, user: UserId, count: int, amount: int) -> list[str]:
    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=count)
        deps = worker_deps(database, ManualClock(NOW))
        _line_up()
        results = await asyncio.gather(
            *(_outcome(usecases.charge_wallet(user, amount, deps=deps)) for _ in range(count))
        )
        await database.dispose()
        return list(results)

    return _run(main())


def hold_many(url: str, user: UserId, seats: list[SeatId]) -> list[str]:
    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=len(seats))
        deps = worker_deps(database, ManualClock(NOW))
        [token] = await _admit(deps, [user])
        _line_up()
        results = await asyncio.gather(
            *(_outcome(usecases.hold_seat(user, token, s, deps=deps)) for s in seats)
        )
        await database.dispose()
        return list(results)

    return _run(main())


def operator(user_id: UserId) -> Identity:
    """An admin's access token, as verified, for the account ``user_id`` (the idempotency
    records of its refunds belong to it)."""
    return Identity(user_id, datetime.max.replace(tzinfo=UTC), Role.ADMIN)


def refund_all(
    url: str, admin: UserId, reservations: list[ReservationId], keyed: bool
) -> list[str]:
    """Every reservation refunded at once by this process, with a key (``keyed``: one per
    reservation, as an operator retrying would send) or none."""

    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=len(reservations))
        deps = worker_deps(database, ManualClock(NOW))
        _line_up()
        results = await asyncio.gather(
            *(
                _outcome(
                    usecases.refund(operator(admin), r, f"refund-{r}" if keyed else None, deps=deps)
                )
                for r in reservations
            )
        )
        await database.dispose()
        return list(results)

    return _run(main())


def watch_sales(
    url: str, admin: UserId, concert_id: ConcertId, date_id: DateId, reads: int, step: timedelta
) -> list[str]:
    """Read the date's sales ``reads`` times, the clock moving ``step`` each time (so that
    holds lapse between reads), while others hold and pay; returns what broke a rule (every
    section adds up at its instant, revenue is what its sold seats cost, and sold only grows
    when nothing is refunded), and last how many reads were made."""

    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=1)
        clock = ManualClock(NOW)
        deps = worker_deps(database, clock)
        broken: list[str] = []
        sold_before: dict[str, int] = {}
        _line_up()
        for _ in range(reads):
            sales = await usecases.date_sales(operator(admin), concert_id, date_id, deps=deps)
            for section in sales.sections:
                counted = section.available + section.held + section.sold
                if counted != section.seats_total or min(section.available, section.held) < 0:
                    broken.append(f"{section} does not add up")
                if section.revenue != section.sold * PRICE_OF[section.name]:
                    broken.append(f"{section}: revenue is not what its sold seats cost")
                if section.sold < sold_before.get(section.name, 0):
                    broken.append(f"{section}: fewer sold than before")
                sold_before[section.name] = section.sold
            clock.advance(step)
            await asyncio.sleep(0)
        await database.dispose()
        return [*broken, f"reads={reads}"]

    return _run(main())


# the sections of the sales race and their prices (test_sql_races)
PRICE_OF = {"Front": 30_000, "Back": 10_000}


def hold_and_pay(url: str, users: list[UserId], seats: list[SeatId], step: timedelta) -> list[str]:
    """Each customer holds seats in turn and pays every other hold, the clock moving ``step``
    between rounds, so that unpaid holds lapse while others are paid."""

    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=len(users))
        clock = ManualClock(NOW)
        deps = worker_deps(database, clock)
        outcomes = []
        _line_up()
        for n, seat in enumerate(seats):
            user = users[n % len(users)]
            [token] = await _admit(deps, [user])
            outcome = "held"
            try:
                held = await usecases.hold_seat(user, token, seat, deps=deps)
                if n % 2 == 0:
                    await usecases.pay(user, token, held.reservation_id, deps=deps)
                    outcome = "paid"
            except ConcertError as error:
                outcome = error.code
            outcomes.append(outcome)
            clock.advance(step)
            await asyncio.sleep(0)
        await database.dispose()
        return outcomes

    return _run(main())


# -- payment against the sweep, around expires_at -------------------------------------------


def pay_or_sweep(
    url: str, role: str, trials: list[tuple[UserId, ReservationId, datetime]]
) -> list[str]:
    """``payer``: pay each reservation just before it lapses; ``sweeper``: sweep just after."""

    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=2)
        clock = ManualClock(NOW)
        deps = worker_deps(database, clock)
        results = []
        for user, reservation_id, expires_at in trials:
            _line_up()
            if role == "payer":
                clock.advance(
                    max(expires_at - timedelta(milliseconds=1) - clock.now(), timedelta(0))
                )
                [token] = await _admit(deps, [user])  # a payment expires the token: join again
                results.append(await _outcome(usecases.pay(user, token, reservation_id, deps=deps)))
            else:
                clock.advance(
                    max(expires_at + timedelta(milliseconds=1) - clock.now(), timedelta(0))
                )
                results.append(str(await usecases.sweep_expired_holds(deps=deps)))
        await database.dispose()
        return results

    return _run(main())


# -- a random mixed workload, and a reader checking every snapshot --------------------------


def mixed_workload(
    url: str, seed: int, users: list[UserId], seats: list[SeatId], operations: int
) -> dict[str, int]:
    """Random charges, holds, cancels and payments by several customers, and refunds of what
    they paid by an operator (``users[0]``); counts outcomes. Between two batches it waits
    (up to `PACE_SECONDS`) for the reader to take a snapshot, so that snapshots fall all
    through the workload however the processes are scheduled."""

    async def main() -> dict[str, int]:
        rng = random.Random(seed)
        database = SqlDatabase(url, pool_size=4)
        deps = worker_deps(database, ManualClock(NOW))
        tokens = dict(zip(users, await _admit(deps, users), strict=True))
        held: list[tuple[UserId, ReservationId]] = []
        paid: list[ReservationId] = []
        counts: dict[str, int] = {}
        _line_up()

        async def one(step: int) -> None:
            user = rng.choice(users)
            kind = rng.choice(["charge", "hold", "hold", "pay", "pay", "cancel", "refund"])
            attempt: Awaitable[object]
            if kind == "charge":
                attempt = usecases.charge_wallet(
                    user, rng.choice([10_000, 30_000, 60_000]), deps=deps
                )
            elif kind == "hold" or not held:
                kind = "hold"
                attempt = _hold(user)
            elif kind == "refund":
                if not paid:
                    return
                refunded = paid.pop(rng.randrange(len(paid)))
                attempt = usecases.refund(operator(users[0]), refunded, deps=deps)
            else:
                owner, reservation_id = held.pop(rng.randrange(len(held)))
                if kind == "pay":
                    attempt = _pay(owner, reservation_id, f"k{seed}-{step}")
                else:
                    attempt = usecases.cancel_reservation(owner, reservation_id, deps=deps)
            result = await _outcome(attempt)
            counts[f"{kind} {result}"] = counts.get(f"{kind} {result}", 0) + 1

        async def _hold(user: UserId) -> None:
            reservation = await usecases.hold_seat(user, tokens[user], rng.choice(seats), deps=deps)
            held.append((user, reservation.reservation_id))

        async def _pay(user: UserId, reservation_id: ReservationId, key: str) -> None:
            await usecases.pay(user, tokens[user], reservation_id, key, deps=deps)
            paid.append(reservation_id)

        condition, snapshots, finished = _progress
        try:
            for start in range(0, operations, 4):
                seen = snapshots.value
                steps = range(start, min(start + 4, operations))
                await asyncio.gather(*(one(step) for step in steps))
                # a payment expires the payer's token: join again, as the customer would
                for user in users:
                    status, _ = await usecases.join_queue(user, deps=deps)
                    tokens[user] = status.token
                with condition:
                    condition.wait_for(lambda seen=seen: snapshots.value > seen, PACE_SECONDS)
        finally:  # a writer that failed is done too: the reader does not wait for it
            with condition:
                finished.value += 1
                condition.notify_all()
        await database.dispose()
        return counts

    return _run(main())


SNAPSHOT_CHECK = """
SELECT w.user_id, w.balance,
  COALESCE((SELECT sum(amount) FROM ledger l WHERE l.user_id = w.user_id AND kind = 'charge'), 0),
  COALESCE((SELECT sum(amount) FROM ledger l WHERE l.user_id = w.user_id AND kind = 'payment'), 0),
  COALESCE((SELECT sum(amount) FROM ledger l WHERE l.user_id = w.user_id AND kind = 'refund'), 0),
  COALESCE((SELECT sum(amount) FROM payments p WHERE p.user_id = w.user_id), 0),
  COALESCE((SELECT sum(p.amount) FROM payments p JOIN reservations r USING (reservation_id)
            WHERE p.user_id = w.user_id AND r.status = 'refunded'), 0)
FROM wallets w
"""


# a writer waits at most this long for a snapshot between two batches; the reader reads at
# most this long in all
PACE_SECONDS = 5.0
READ_SECONDS = 120.0


def read_snapshots(url: str, writers: int) -> list[str]:
    """Take REPEATABLE READ snapshots until the ``writers`` have finished (at most
    `READ_SECONDS`); returns every violation seen (empty when all held) and, last, how many
    snapshots were checked while writers ran."""
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    violations: list[str] = []
    condition, snapshots, finished = _progress
    with psycopg.connect(conninfo) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        _line_up()
        deadline = time.monotonic() + READ_SECONDS
        while finished.value < writers and time.monotonic() < deadline:
            with connection.transaction():
                for row in connection.execute(SNAPSHOT_CHECK):
                    user, balance, charges, paid, refunds, payments, refunded = row
                    if (
                        balance < 0
                        or balance != charges - paid + refunds
                        or paid != payments
                        or refunds != refunded
                    ):
                        violations.append(
                            f"user {user}: balance {balance}, charges {charges}, ledger payments "
                            f"{paid} and refunds {refunds}, payments {payments}, of seats "
                            f"refunded {refunded}"
                        )
            with condition:
                snapshots.value += 1
                condition.notify_all()
    return [*violations, f"snapshots={snapshots.value}"]


def jepsen_role(
    url: str, role: str, seed: int, users: list[UserId], seats: list[SeatId], operations: int
) -> list[str] | dict[str, int]:
    """One process of the mixed-workload check: a ``reader`` (``seed`` is then the number of
    writers it reads alongside) or a ``writer``."""
    if role == "reader":
        return read_snapshots(url, writers=seed)
    return mixed_workload(url, seed, users, seats, operations)


# -- many schedulers at once ---------------------------------------------------------------


def scheduler_ticks(
    url: str, redis_url: str, prefix: str, now: datetime, capacity: int
) -> list[tuple[int, int, int]]:
    """Tick until a tick finds nothing to do; returns (holds, expired tokens, admitted) per
    tick. Bounded: at most 100 ticks."""
    from adapters.redis import Keys, connect

    async def main() -> list[tuple[int, int, int]]:
        database = SqlDatabase(url, pool_size=2)
        redis = connect(redis_url)
        deps = build_dependencies(
            uow=database.unit_of_work,
            redis=redis,
            redis_keys=Keys(prefix),
            clock=ManualClock(now),
            policy=attrs.evolve(POLICY, queue=QueuePolicy(capacity=capacity)),
            passwords=cheap_hasher(),
            jwt_secret=b"r" * 32,
        )
        ticks = []
        _line_up()
        for _ in range(100):
            report = await usecases.run_scheduler_tick(deps=deps)
            ticks.append((report.expired_holds, report.expired_tokens, report.admitted_tokens))
            if ticks[-1] == (0, 0, 0):
                break
        await redis.aclose()
        await database.dispose()
        return ticks

    return _run(main())


# -- several seats at once: best available, overlapping blocks, payments against the sweep --

# a customer still without an answer this long after asking counts as hung
ANSWER_SECONDS = 30.0


async def _answer(attempt: Awaitable[Any]) -> str:
    """The attempt's outcome, or ``no answer`` when it has none after `ANSWER_SECONDS`."""
    try:
        return await asyncio.wait_for(_outcome(attempt), ANSWER_SECONDS)
    except TimeoutError:
        return "no answer"


def ask_for_best(
    url: str, shared: tuple[str, str] | None, date_id: DateId, asks: list[tuple[UserId, int]]
) -> list[tuple[str, list[SeatId], float]]:
    """All of this process's customers ask at once for the best ``quantity`` seats side by
    side (``asks``: customer and quantity); returns for each its answer (``ok``, an error's
    code, or ``no answer`` after `ANSWER_SECONDS`), the seats it got and the seconds it took.
    The line, hold timers and seat-map versions are the process's own, or with ``shared``
    (a Redis URL and key prefix) every process's, as servers share them."""
    from adapters.redis import Keys, connect

    async def main() -> list[tuple[str, list[SeatId], float]]:
        # a connection for most customers: one who waits two seconds for one is answered 503
        database = SqlDatabase(url, pool_size=40)
        redis = None if shared is None else connect(shared[0])
        deps = build_dependencies(
            uow=database.unit_of_work,
            redis=redis,
            redis_keys=None if shared is None else Keys(shared[1]),
            clock=ManualClock(NOW),
            policy=POLICY,
            passwords=cheap_hasher(),
            jwt_secret=b"r" * 32,
        )
        tokens = await _admit(deps, [user for user, _ in asks])

        async def ask(
            user: UserId, token: QueueToken, quantity: int
        ) -> tuple[str, list[SeatId], float]:
            started = time.monotonic()
            attempt = usecases.hold_best(user, token, date_id, quantity, deps=deps)
            try:
                held = await asyncio.wait_for(attempt, ANSWER_SECONDS)
            except ConcertError as error:
                return error.code, [], time.monotonic() - started
            except TimeoutError:
                return "no answer", [], time.monotonic() - started
            return "ok", [r.seat_id for r in held], time.monotonic() - started

        _line_up()
        answers = await asyncio.gather(
            *(ask(user, token, n) for (user, n), token in zip(asks, tokens, strict=True))
        )
        if redis is not None:
            await redis.aclose()
        await database.dispose()
        return list(answers)

    return _run(main())


def hold_blocks(url: str, users: list[UserId], rounds: list[list[list[SeatId]]]) -> list[list[str]]:
    """Round by round, this process's customers each ask at once for their seats of the round
    (``rounds[n][k]`` is what ``users[k]`` asks for in round ``n``: one seat through
    `hold_seat`, several all or none through `hold_seats`); the outcomes, round by round."""

    async def main() -> list[list[str]]:
        database = SqlDatabase(url, pool_size=len(users))
        deps = worker_deps(database, ManualClock(NOW), attrs.evolve(POLICY, max_holds_per_user=100))
        tokens = await _admit(deps, users)

        def attempt(user: UserId, token: QueueToken, seats: list[SeatId]) -> Awaitable[object]:
            if len(seats) == 1:
                return usecases.hold_seat(user, token, seats[0], deps=deps)
            return usecases.hold_seats(user, token, seats, deps=deps)

        outcomes = []
        for asked in rounds:
            _line_up()
            outcomes.append(
                list(
                    await asyncio.gather(
                        *(
                            _answer(attempt(u, t, s))
                            for u, t, s in zip(users, tokens, asked, strict=True)
                        )
                    )
                )
            )
        await database.dispose()
        return outcomes

    return _run(main())


def pay_holds_or_sweep(
    url: str, role: str, rounds: list[tuple[datetime, list[tuple[UserId, list[ReservationId]]]]]
) -> list[str]:
    """Round by round, at the instant the round's holds lapse (``rounds``: their expiry, and
    each customer's holds): a ``payer`` pays each customer's holds together, all at once, its
    clock a millisecond before; a ``sweeper`` sweeps, its clock on the expiry. The payments'
    outcomes in order, or how many holds each sweep expired."""

    async def main() -> list[str]:
        database = SqlDatabase(url, pool_size=8)
        clock = ManualClock(NOW)
        deps = worker_deps(database, clock)
        results = []
        for expires_at, holds in rounds:
            if role == "payer":
                clock.advance(expires_at - timedelta(milliseconds=1) - clock.now())
                tokens = await _admit(deps, [user for user, _ in holds])
                _line_up()
                results.extend(
                    await asyncio.gather(
                        *(
                            _answer(usecases.pay_holds(user, token, reservations, deps=deps))
                            for (user, reservations), token in zip(holds, tokens, strict=True)
                        )
                    )
                )
            else:
                clock.advance(expires_at - clock.now())
                _line_up()
                swept = usecases.sweep_expired_holds(deps=deps)
                results.append(str(await asyncio.wait_for(swept, ANSWER_SECONDS)))
        await database.dispose()
        return results

    return _run(main())
