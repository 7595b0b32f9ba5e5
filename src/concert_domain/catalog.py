"""The catalog: concerts, their dates and the seats of each date.

A seat's status is not stored on the seat: it follows from the seat's live reservation at a given
instant, so an expired hold shows the seat available at once, with or without the scheduler.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import attrs

from concert_domain.ids import ConcertId, DateId, SeatId


@attrs.frozen
class Concert:
    concert_id: ConcertId
    title: str


@attrs.frozen
class ConcertDate:
    date_id: DateId
    concert_id: ConcertId
    date: date
    starts_at: datetime

    def is_open(self, now: datetime) -> bool:
        """Booking stays open until the show starts."""
        return now < self.starts_at


@attrs.frozen
class Seat:
    seat_id: SeatId
    date_id: DateId
    concert_id: ConcertId
    number: int
    price: int


class SeatStatus(enum.StrEnum):
    AVAILABLE = "available"
    HELD = "held"
    SOLD = "sold"


@attrs.frozen
class SeatView:
    """A seat as the seat map shows it at one instant. A held seat says until when: from then
    on the same view would be wrong, the seat being available again."""

    seat: Seat
    status: SeatStatus
    held_until: datetime | None = None


@attrs.frozen
class DateAvailability:
    """An open date and how many of its seats are available at one instant."""

    date: ConcertDate
    available_seats: int
