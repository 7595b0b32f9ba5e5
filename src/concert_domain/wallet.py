"""Wallets, their ledger, and payments.

Money is an ``int`` of won. A balance is never negative and always equals the sum of the ledger:
charges in, payments out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from concert_domain.errors import InvalidRequest
from concert_domain.idempotency import JsonScalar, kept_integer
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
    REFUND = "refund"


@attrs.frozen
class LedgerEntry:
    """One append-only movement of money; ``amount`` is always positive, ``kind`` gives the
    sign; ``balance`` is the balance it left."""

    user_id: UserId
    kind: LedgerKind
    amount: int
    created_at: datetime
    payment_id: PaymentId | None = None
    balance: int = 0
    entry_id: int = 0

    @property
    def signed_amount(self) -> int:
        return -self.amount if self.kind is LedgerKind.PAYMENT else self.amount


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
class Refund:
    """A paid seat given back: the reservation, now refunded; what was paid back; the balance
    that left."""

    reservation: Reservation
    amount: int
    balance: int


@attrs.frozen
class Sale:
    """A held seat paid for: the reservation, now paid; its payment; the balance left."""

    reservation: Reservation
    payment: Payment
    balance: int


@attrs.frozen
class PaymentReceipt:
    """What a successful payment answers: the payment and the balance it left."""

    payment_id: PaymentId
    reservation_id: ReservationId
    amount: int
    balance: int
    status: str = "paid"

    @classmethod
    def of(cls, sale: Sale) -> PaymentReceipt:
        payment = sale.payment
        return cls(payment.payment_id, payment.reservation_id, payment.amount, sale.balance)

    def as_body(self) -> dict[str, JsonScalar]:
        """Plain values, as an idempotency record keeps the answer."""
        return attrs.asdict(self)

    @classmethod
    def from_body(cls, body: Mapping[str, JsonScalar]) -> PaymentReceipt:
        return cls(
            payment_id=PaymentId(kept_integer(body, "payment_id")),
            reservation_id=ReservationId(kept_integer(body, "reservation_id")),
            amount=kept_integer(body, "amount"),
            balance=kept_integer(body, "balance"),
        )
