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
    reservation_id: ReservationId | None = None  # a refund's

    @property
    def signed_amount(self) -> int:
        return -self.amount if self.kind is LedgerKind.PAYMENT else self.amount


def ledger_balance(entries: list[LedgerEntry]) -> int:
    """The balance the ledger says a wallet holds."""
    return sum(entry.signed_amount for entry in entries)


@attrs.frozen
class Payment:
    """One payment for one or more holds of one customer: ``amount`` is their total."""

    payment_id: PaymentId
    reservation_ids: tuple[ReservationId, ...]
    user_id: UserId
    amount: int
    created_at: datetime

    @property
    def reservation_id(self) -> ReservationId:
        """The first of the holds paid for (the payment is recorded under it)."""
        return self.reservation_ids[0]


@attrs.frozen
class Refund:
    """A paid seat given back: the reservation, now refunded; what was paid back; the balance
    that left."""

    reservation: Reservation
    amount: int
    balance: int


@attrs.frozen
class Sale:
    """Held seats paid for together: the reservations, now paid, in the order asked; their
    one payment; the balance left."""

    reservations: tuple[Reservation, ...]
    payment: Payment
    balance: int


@attrs.frozen
class PaymentReceipt:
    """What a successful payment answers: the payment and the balance it left."""

    payment_id: PaymentId
    reservation_ids: tuple[ReservationId, ...]
    amount: int
    balance: int
    status: str = "paid"
    # the first answer given again to a retry with the same idempotency key
    replayed: bool = attrs.field(default=False, eq=False)

    @property
    def reservation_id(self) -> ReservationId:
        return self.reservation_ids[0]

    @classmethod
    def of(cls, sale: Sale) -> PaymentReceipt:
        payment = sale.payment
        return cls(payment.payment_id, payment.reservation_ids, payment.amount, sale.balance)

    def as_body(self) -> dict[str, JsonScalar]:
        """Plain values, as an idempotency record keeps the answer (the ids as one string)."""
        return {
            "payment_id": self.payment_id,
            "reservation_ids": ",".join(str(r) for r in self.reservation_ids),
            "amount": self.amount,
            "balance": self.balance,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, JsonScalar]) -> PaymentReceipt:
        kept = body.get("reservation_ids")
        if isinstance(kept, str):
            reservation_ids = tuple(ReservationId(int(r)) for r in kept.split(","))
        else:  # kept before a payment could cover several holds
            reservation_ids = (ReservationId(kept_integer(body, "reservation_id")),)
        return cls(
            payment_id=PaymentId(kept_integer(body, "payment_id")),
            reservation_ids=reservation_ids,
            amount=kept_integer(body, "amount"),
            balance=kept_integer(body, "balance"),
        )
