"""The catalog: concerts, their dates with a sale window, and the seats of each date, laid out
in sections (in order of quality, each with a price) of rows.

A seat's status is not stored on the seat: it follows from the seat's live reservation at a given
instant, so an expired hold shows the seat available at once, with or without the scheduler.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime

import attrs

from concert_domain.errors import InvalidRequest, SaleClosed, SaleNotOpen
from concert_domain.ids import ConcertId, DateId, PaymentId, ReservationId, SeatId

TITLE_MAX_LENGTH = 200
VENUE_MAX_LENGTH = 200
SECTIONS_MAX = 50
SECTION_NAME_MAX_LENGTH = 50
ROWS_MAX = 200
ROW_LABEL_MAX_LENGTH = 10
SEATS_PER_ROW_MAX = 500
SEATS_PER_DATE_MAX = 20_000
PRICE_MIN = 1
PRICE_MAX = 10_000_000


@attrs.frozen
class Concert:
    concert_id: ConcertId
    title: str
    venue: str = ""


@attrs.frozen
class ConcertDate:
    """A date of a concert, on sale from ``sale_opens_at`` until ``sale_closes_at``."""

    date_id: DateId
    concert_id: ConcertId
    date: date
    starts_at: datetime
    sale_opens_at: datetime
    sale_closes_at: datetime

    def on_sale(self, now: datetime) -> bool:
        return self.sale_opens_at <= now < self.sale_closes_at

    def sale_has_closed(self, now: datetime) -> bool:
        return now >= self.sale_closes_at

    def ensure_on_sale(self, now: datetime) -> None:
        """Raise `SaleNotOpen` before the sale window, `SaleClosed` from its end."""
        if now < self.sale_opens_at:
            raise SaleNotOpen(f"the sale for {self.date} opens at {self.sale_opens_at.isoformat()}")
        if self.sale_has_closed(now):
            raise SaleClosed(
                f"the sale for {self.date} closed at {self.sale_closes_at.isoformat()}"
            )


def seat_label(section: str, row: str, number: int) -> str:
    """What people call a seat: ``VIP A-7``."""
    return f"{section} {row}-{number}"


@attrs.frozen
class Seat:
    """A seat of a date: ``number`` counts from 1 in its row; sections and rows keep the
    order of the layout (``section_order``, ``row_order``), the best first."""

    seat_id: SeatId
    date_id: DateId
    concert_id: ConcertId
    section: str
    row: str
    number: int
    price: int
    section_order: int = 0
    row_order: int = 0

    @property
    def label(self) -> str:
        return seat_label(self.section, self.row, self.number)


@attrs.frozen
class NewSeat:
    """A seat a layout makes, before a store numbers it."""

    section: str
    section_order: int
    row: str
    row_order: int
    number: int
    price: int


@attrs.frozen
class RowSpec:
    row: str
    seats: int


@attrs.frozen
class SectionSpec:
    name: str
    price: int
    rows: Sequence[RowSpec]


@attrs.frozen
class DateSpec:
    """A date as an operator lays it out: when it starts, its sale window (opening now and
    closing at the start unless given) and its sections, the best first."""

    starts_at: datetime
    sections: Sequence[SectionSpec]
    sale_opens_at: datetime | None = None
    sale_closes_at: datetime | None = None

    def checked(self, now: datetime) -> DatePlan:
        """This spec with its sale window filled in; raises `InvalidRequest` naming the
        first rule it breaks."""
        opens = self.sale_opens_at or now.replace(microsecond=0)
        closes = self.sale_closes_at or self.starts_at
        if self.starts_at <= now:
            raise InvalidRequest("starts_at must be in the future")
        if not opens < closes <= self.starts_at:
            raise InvalidRequest("the sale must open before it closes, and close by starts_at")
        _check_count("sections", len(self.sections), SECTIONS_MAX)
        _check_distinct("section names", [s.name for s in self.sections])
        for section in self.sections:
            _check_text(f"section name {section.name!r}", section.name, SECTION_NAME_MAX_LENGTH)
            if not PRICE_MIN <= section.price <= PRICE_MAX:
                raise InvalidRequest(
                    f"section {section.name!r}: the price must be {PRICE_MIN:,} to "
                    f"{PRICE_MAX:,} won"
                )
            _check_count(f"rows of section {section.name!r}", len(section.rows), ROWS_MAX)
            _check_distinct(f"row labels of {section.name!r}", [r.row for r in section.rows])
            for row in section.rows:
                _check_text(f"row label {row.row!r}", row.row, ROW_LABEL_MAX_LENGTH)
                _check_count(
                    f"seats of row {row.row!r} of {section.name!r}", row.seats, SEATS_PER_ROW_MAX
                )
        plan = DatePlan(
            self.starts_at.date(),
            self.starts_at.astimezone(UTC),
            opens.astimezone(UTC),
            closes.astimezone(UTC),
            self.sections,
        )
        _check_count("seats of a date", plan.seats_total, SEATS_PER_DATE_MAX)
        return plan


@attrs.frozen
class DatePlan:
    """A `DateSpec` checked, its sale window filled in, its instants in UTC; ``day`` is the
    day it starts where it is played (at the offset its start was given with)."""

    day: date
    starts_at: datetime
    sale_opens_at: datetime
    sale_closes_at: datetime
    sections: Sequence[SectionSpec]

    @property
    def seats_total(self) -> int:
        return sum(row.seats for section in self.sections for row in section.rows)

    def seats(self) -> Iterator[NewSeat]:
        """Every seat of the layout, in its order."""
        for section_order, section in enumerate(self.sections):
            for row_order, row in enumerate(section.rows):
                for number in range(1, row.seats + 1):
                    yield NewSeat(
                        section.name, section_order, row.row, row_order, number, section.price
                    )


def _check_count(what: str, count: int, most: int) -> None:
    if not 1 <= count <= most:
        raise InvalidRequest(f"{what}: 1 to {most:,}, not {count:,}")


def _check_distinct(what: str, names: list[str]) -> None:
    if len(set(names)) != len(names):
        raise InvalidRequest(f"{what} must be distinct")


def _check_text(what: str, text: str, longest: int) -> None:
    if not 1 <= len(text) <= longest or not text.strip() or "\x00" in text:
        raise InvalidRequest(f"{what}: 1 to {longest} characters, not blank")


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
    """A date whose sale has not closed, and how many of its seats are available at one
    instant."""

    date: ConcertDate
    available_seats: int


@attrs.frozen
class SectionSales:
    name: str
    seats_total: int
    available: int
    held: int
    sold: int
    revenue: int


@attrs.frozen
class Sales:
    """A date's seats counted at one instant: available + held + sold = seats_total, in all
    and in each section; ``revenue`` is what the sold seats were paid."""

    date_id: DateId
    sections: Sequence[SectionSales]

    @property
    def seats_total(self) -> int:
        return sum(s.seats_total for s in self.sections)

    @property
    def available(self) -> int:
        return sum(s.available for s in self.sections)

    @property
    def held(self) -> int:
        return sum(s.held for s in self.sections)

    @property
    def sold(self) -> int:
        return sum(s.sold for s in self.sections)

    @property
    def revenue(self) -> int:
        return sum(s.revenue for s in self.sections)


@attrs.frozen
class SoldSeat:
    """One line of a date's sales listing."""

    reservation_id: ReservationId
    payment_id: PaymentId
    section: str
    row: str
    number: int
    price: int
    paid_at: datetime
    email: str
