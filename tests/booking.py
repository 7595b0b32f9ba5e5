"""Test helpers that drive the use cases the way a customer would."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import attrs

from adapters.caching.seatmaps import MAX_AGE
from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase
from adapters.security import Argon2PasswordHasher
from concert_domain import BookingPolicy, Dependencies, usecases
from concert_domain.accounts import Identity, Role
from concert_domain.catalog import ConcertDate, DateSpec, RowSpec, Seat, SectionSpec
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


# an operator as a verified access token names one (the use cases check the role)
OPERATOR = Identity(UserId(10**9), datetime.max.replace(tzinfo=UTC), Role.ADMIN)


def one_row(seats: int, price: int, section: str = "Floor", row: str = "A") -> SectionSpec:
    return SectionSpec(section, price, [RowSpec(row, seats)])


async def add_venue(
    deps: Dependencies,
    *,
    seats: int = 5,
    price: int = 50_000,
    days: tuple[int, ...] = (7,),
    sections: Sequence[SectionSpec] | None = None,
) -> Venue:
    """One concert with a date ``days`` after the clock's now, each on sale from now and laid
    out as ``sections`` (one row ``A`` of ``seats`` in section ``Floor`` unless given), made as
    an operator makes them; ``Venue.seats`` are those of the first date, in layout order."""
    now = deps.clock.now()
    concert = await usecases.create_concert(OPERATOR, "Test Concert", "Test Hall", deps=deps)
    dates = [
        (
            await usecases.create_date(
                OPERATOR,
                concert.concert_id,
                DateSpec(now + timedelta(days=offset), sections or [one_row(seats, price)]),
                deps=deps,
            )
        ).date
        for offset in days
    ]
    async with deps.uow(read_only=True) as uow:
        views = await uow.catalog.seat_map(dates[0].date_id, now)
    return Venue(dates, [view.seat for view in views])
