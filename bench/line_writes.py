"""What keyed holds and payments from customers still in line cost PostgreSQL, against what an
admitted customer's keyed hold costs, same run.

    .venv/bin/python bench/line_writes.py [--customers 1000]

On a throwaway PostgreSQL made for the run and removed after it (its statistics are the run's
alone), with the waiting line in process at capacity 1: one customer is admitted and
``--customers`` wait. Each waiting customer sends a keyed hold of a seat and a keyed payment;
then as many admitted customers (each admitted in turn as the one before leaves) send a keyed
hold each. Counted from `pg_stat_database` around each phase (the pool closed first, so that
every connection has flushed its statistics): transactions (read-only ones included) and rows
inserted, updated and deleted, per request. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import psycopg

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import services
from adapters.clock import ManualClock
from adapters.sql import SqlDatabase
from adapters.sql.engine import postgres_conninfo
from booking import PASSWORD, add_venue, cheap_hasher
from concert_domain import BookingPolicy, Dependencies, QueuePolicy, usecases
from concert_domain.catalog import RowSpec, SectionSpec
from concert_domain.errors import ConcertError
from concert_domain.ids import QueueToken, ReservationId, SeatId, UserId
from entrypoints.wiring import build_dependencies

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIGURES = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")


@attrs.frozen
class Phase:
    name: str
    requests: int
    outcomes: Counter[str]
    figures: tuple[int, ...]  # FIGURES, over the phase

    def row(self) -> str:
        per = [f"{figure / self.requests:.2f}" for figure in self.figures]
        answers = ", ".join(f"{count} {code}" for code, count in sorted(self.outcomes.items()))
        return f"| {self.name} | {self.requests:,} | {' | '.join(per)} | {answers} |"


def statistics(conninfo: str) -> tuple[int, ...]:
    with psycopg.connect(conninfo, autocommit=True) as connection:
        row = connection.execute(
            f"SELECT {', '.join(FIGURES)} FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return tuple(int(value) for value in row)


class Run:
    def __init__(self, url: str, customers: int) -> None:
        self.url = url
        self.conninfo = postgres_conninfo(url)
        self.customers = customers
        self.clock = ManualClock(NOW)
        self.database = SqlDatabase(url, pool_size=4)
        self.deps = self._deps()

    def _deps(self) -> Dependencies:
        return build_dependencies(
            uow=self.database.unit_of_work,
            clock=self.clock,
            policy=BookingPolicy(queue=QueuePolicy(capacity=1)),
            passwords=cheap_hasher(),
            jwt_secret=b"b" * 32,
        )

    async def measured(
        self, name: str, requests: Callable[[Dependencies], list[Coroutine[Any, Any, Any]]]
    ) -> Phase:
        """Run each of the requests (coroutines, made on the phase's dependencies) in turn, on
        a pool of their own; the database's counts over them."""
        await self.database.dispose()  # every connection's statistics flushed
        self.database = SqlDatabase(self.url, pool_size=4)
        self.deps = attrs.evolve(self.deps, uow=self.database.unit_of_work)  # the same line
        before = statistics(self.conninfo)
        outcomes: Counter[str] = Counter()
        made = requests(self.deps)
        for request in made:
            try:
                await request
                outcomes["ok"] += 1
            except ConcertError as e:
                outcomes[e.code] += 1
        await self.database.dispose()
        after = statistics(self.conninfo)
        figures = tuple(a - b for a, b in zip(after, before, strict=True))
        return Phase(name, len(made), outcomes, figures)

    async def main(self) -> list[Phase]:
        await self.database.migrate()
        deps = self.deps
        rows = [RowSpec(f"R{n}", 100) for n in range(self.customers // 100 + 1)]
        venue = await add_venue(deps, sections=[SectionSpec("Floor", 50_000, rows)])
        seats = [seat.seat_id for seat in venue.seats]
        users: list[UserId] = []
        for n in range(self.customers + 1):
            account = await usecases.sign_up(f"c{n}@example.com", PASSWORD, deps=deps)
            users.append(account.user_id)
        tokens: list[QueueToken] = []
        for user in users:
            tokens.append((await usecases.join_queue(user, deps=deps))[0].token)
        waiting = list(zip(users[1:], tokens[1:], strict=True))
        phases = [
            await self.measured(
                "keyed hold, customer in line",
                lambda d: [usecases.hold_seat(u, t, seats[0], f"h{u}", deps=d) for u, t in waiting],
            ),
            await self.measured(
                "keyed payment, customer in line",
                lambda d: [
                    usecases.pay(u, t, ReservationId(1), f"p{u}", deps=d) for u, t in waiting
                ],
            ),
            await self.measured(
                "keyed hold, admitted customer",
                lambda d: [
                    self._admitted_hold(d, n, users, tokens, seats[n]) for n in range(len(waiting))
                ],
            ),
        ]
        await self.database.dispose()
        return phases

    async def _admitted_hold(
        self,
        deps: Dependencies,
        n: int,
        users: list[UserId],
        tokens: list[QueueToken],
        seat: SeatId,
    ) -> None:
        """Customer ``n`` holds with a key, leaves the line, and the next is admitted."""
        try:
            await usecases.hold_seat(users[n], tokens[n], seat, f"a{n}", deps=deps)
        finally:
            await deps.queue.expire(tokens[n], self.clock.now())
            await usecases.admit_waiting(deps=deps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000)
    options = parser.parse_args()
    with services.throwaway_postgres() as server:
        url = server.replace("postgresql://", "postgresql+psycopg://", 1)
        phases = asyncio.run(Run(url, options.customers).main())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"`{' '.join(['python', *sys.argv])}`, {datetime.now(UTC):%Y-%m-%d}, {commit}\n")
    columns = "transactions | rows inserted | rows updated | rows deleted"
    print(f"PostgreSQL's work per request:\n\n| request | count | {columns} | answers |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for phase in phases:
        print(phase.row())


if __name__ == "__main__":
    main()
