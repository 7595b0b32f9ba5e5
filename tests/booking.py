"""Test helpers that drive the use cases the way a customer would."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import attrs

from adapters.caching.seatmaps import MAX_AGE
from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase
from adapters.security import Argon2PasswordHasher
from concert_domain import BookingPolicy, Dependencies, usecases
from concert_domain.catalog import ConcertDate, Seat
from concert_domain.ids import ConcertId, QueueToken, UserId
from entrypoints.wiring import build_memory_dependencies

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


def cheap_hasher() -> Argon2PasswordHasher:
    """Real argon2id at the lowest costs, so that hundreds of sign-ups stay fast."""
    return Argon2PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def memory_deps(
    clock: ManualClock,
    policy: BookingPolicy | None = None,
    database: InMemoryDatabase | None = None,
    seat_map_max_age: timedelta = MAX_AGE,
) -> Dependencies:
    return build_memory_dependencies(
        clock=clock,
        policy=policy,
        passwords=cheap_hasher(),
        jwt_secret=b"k" * 32,
        database=database,
        seat_map_max_age=seat_map_max_age,
    )


@attrs.frozen
class Customer:
    user_id: UserId
    email: str
    access_token: str
    queue_token: QueueToken


async def admitted_customer(deps: Dependencies, email: str) -> Customer:
    """Sign up, log in and join the queue; the queue must have room."""
    account = await usecases.sign_up(email, PASSWORD, deps=deps)
    token = await usecases.log_in(email, PASSWORD, deps=deps)
    status, _ = await usecases.join_queue(account.user_id, deps=deps)
    assert status.status == "active", "the queue had no room for this customer"
    return Customer(account.user_id, account.email, token.access_token, status.token)


async def rejoin(deps: Dependencies, customer: Customer) -> Customer:
    """Join the queue again (after paying, say) and come back with the new active token."""
    status, _ = await usecases.join_queue(customer.user_id, deps=deps)
    assert status.status == "active", "the queue had no room for this customer"
    return attrs.evolve(customer, queue_token=status.token)


@attrs.frozen
class Venue:
    dates: list[ConcertDate]
    seats: list[Seat]

    @property
    def concert_id(self) -> ConcertId:
        return self.dates[0].concert_id


async def add_venue(
    deps: Dependencies, *, seats: int = 5, price: int = 50_000, days: tuple[int, ...] = (7,)
) -> Venue:
    """One concert with a date ``days`` after the clock's today, each with numbered seats;
    ``Venue.seats`` are those of the first date."""
    now = deps.clock.now()
    async with deps.uow() as uow:
        concert = await uow.catalog.add_concert("Test Concert")
        dates: list[ConcertDate] = []
        first_seats: list[Seat] = []
        for offset in days:
            starts_at = now + timedelta(days=offset)
            concert_date = await uow.catalog.add_date(
                concert.concert_id, date.fromordinal(starts_at.toordinal()), starts_at
            )
            added = await uow.catalog.add_seats(
                concert_date.date_id, [(n, price) for n in range(1, seats + 1)]
            )
            first_seats = first_seats or added
            dates.append(concert_date)
        await uow.commit()
    return Venue(dates, first_seats)
