"""Wallets, their ledger, and payments.

Money is an ``int`` of won. A balance is never negative and always equals the sum of the ledger:
charges in, payments out.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from concert_domain.errors import InsufficientBalance, InvalidRequest
from concert_domain.ids import PaymentId, ReservationId, UserId
from concert_domain.reservations import Reservation

CHARGE_MIN = 1
CHARGE_MAX = 10_000_000
BALANCE_MAX = 100_000_000


def validate_charge(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest("amount must be an integer number of won")
    if not CHARGE_MIN <= amount <= CHARGE_MAX:
        raise InvalidRequest(f"amount must be from {CHARGE_MIN:,} to {CHARGE_MAX:,} won")
    return amount


class LedgerKind(enum.StrEnum):
    CHARGE = "charge"
    PAYMENT = "payment"


@attrs.frozen
class LedgerEntry:
    """One append-only movement of money; ``amount`` is always positive, ``kind`` gives the sign."""

    user_id: UserId
    kind: LedgerKind
    amount: int
    created_at: datetime
    payment_id: PaymentId | None = None

    @property
    def signed_amount(self) -> int:
        return self.amount if self.kind is LedgerKind.CHARGE else -self.amount


def ledger_balance(entries: list[LedgerEntry]) -> int:
    """The balance the ledger says a wallet holds."""
    return sum(entry.signed_amount for entry in entries)


@attrs.frozen
class Payment:
    payment_id: PaymentId
    reservation_id: ReservationId
    user_id: UserId
    amount: int
    created_at: datetime


@attrs.frozen
class Sale:
    """A held seat paid for: the reservation, now paid; its payment; the balance left."""

    reservation: Reservation
    payment: Payment
    balance: int


def shortfall(reservation_id: ReservationId) -> InsufficientBalance:
    """The error for a balance that does not cover the reservation's price."""
    return InsufficientBalance(
        f"the balance does not cover reservation {reservation_id}; top up the wallet and pay again"
    )


@attrs.frozen
class PaymentReceipt:
    """What a successful payment answers: the payment and the balance it left."""

    payment_id: PaymentId
    reservation_id: ReservationId
    amount: int
    balance: int
    status: str = "paid"
