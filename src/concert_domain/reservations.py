"""Reservations: a hold on one seat that becomes paid, or is cancelled, or expires.

A hold is expired from its ``expires_at`` on, whether or not the scheduler has marked it: every
rule here takes the instant it is asked about, and stores compare against the same instant.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs

from concert_domain.catalog import Seat, seat_label
from concert_domain.errors import (
    ExtensionLimitReached,
    HoldExpired,
    ReservationNotHeld,
    ReservationNotPaid,
)
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId, UserId


class ReservationStatus(enum.StrEnum):
    HELD = "held"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"


class HoldAttempt(enum.Enum):
    """How the front guard before the database answered an attempt to hold a seat."""

    TAKEN = "taken"
    SEAT_BUSY = "seat_busy"
    TOO_FREQUENT = "too_frequent"
    NOT_ADMITTED = "not_admitted"


@attrs.frozen
class Reservation:
    reservation_id: ReservationId
    user_id: UserId
    seat_id: SeatId
    date_id: DateId
    concert_id: ConcertId
    section: str
    row: str
    number: int
    price: int
    status: ReservationStatus
    created_at: datetime
    expires_at: datetime
    extended: bool = False

    @property
    def label(self) -> str:
        return seat_label(self.section, self.row, self.number)

    @classmethod
    def hold(
        cls,
        reservation_id: ReservationId,
        user_id: UserId,
        seat: Seat,
        now: datetime,
        expires_at: datetime,
    ) -> Reservation:
        return cls(
            reservation_id=reservation_id,
            user_id=user_id,
            seat_id=seat.seat_id,
            date_id=seat.date_id,
            concert_id=seat.concert_id,
            section=seat.section,
            row=seat.row,
            number=seat.number,
            price=seat.price,
            status=ReservationStatus.HELD,
            created_at=now,
            expires_at=expires_at,
        )

    def is_held(self, now: datetime) -> bool:
        """Held and not yet expired."""
        return self.status is ReservationStatus.HELD and now < self.expires_at

    def is_live(self, now: datetime) -> bool:
        """Live reservations block their seat: an unexpired hold, or a payment."""
        return self.status is ReservationStatus.PAID or self.is_held(now)

    def as_of(self, now: datetime) -> Reservation:
        """This reservation as a customer sees it at ``now``: a lapsed hold reads as expired."""
        if self.status is ReservationStatus.HELD and now >= self.expires_at:
            return attrs.evolve(self, status=ReservationStatus.EXPIRED)
        return self

    def ensure_payable(self, now: datetime) -> None:
        """Raise unless this is a hold that can be paid at ``now``."""
        status = self.as_of(now).status
        if status is ReservationStatus.EXPIRED:
            raise HoldExpired(
                f"the hold on seat {self.number} expired at {self.expires_at.isoformat()}"
            )
        if status is not ReservationStatus.HELD:
            raise ReservationNotHeld(f"reservation {self.reservation_id} is already {status}")

    def ensure_extendable(self, now: datetime) -> None:
        """Raise unless this is a hold that may be extended at ``now``: held, unexpired, and
        never extended before."""
        self.ensure_payable(now)
        if self.extended:
            raise ExtensionLimitReached(
                f"the hold on seat {self.label} has been extended once already"
            )

    def extended_by(self, extension: timedelta) -> Reservation:
        return attrs.evolve(self, expires_at=self.expires_at + extension, extended=True)

    def ensure_cancellable(self, now: datetime) -> None:
        if not self.is_held(now):
            raise ReservationNotHeld(
                f"reservation {self.reservation_id} is {self.as_of(now).status}, not held"
            )

    def ensure_refundable(self) -> None:
        """Raise `ReservationNotPaid` unless this reservation is paid (and not refunded)."""
        if self.status is not ReservationStatus.PAID:
            raise ReservationNotPaid(
                f"reservation {self.reservation_id} is {self.status}, not paid"
            )

    def refunded(self) -> Reservation:
        return attrs.evolve(self, status=ReservationStatus.REFUNDED)

    def paid(self) -> Reservation:
        return attrs.evolve(self, status=ReservationStatus.PAID)

    def cancelled(self) -> Reservation:
        return attrs.evolve(self, status=ReservationStatus.CANCELLED)

    def expired(self) -> Reservation:
        return attrs.evolve(self, status=ReservationStatus.EXPIRED)
