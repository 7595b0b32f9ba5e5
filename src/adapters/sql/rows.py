"""Explicit row to entity functions: the entities are attrs classes and never ORM-mapped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from concert_domain.accounts import Account
from concert_domain.catalog import Concert, ConcertDate, Seat
from concert_domain.idempotency import IdempotencyRecord, IdempotencyState, StoredOutcome
from concert_domain.ids import (
    ConcertId,
    DateId,
    PaymentId,
    ReservationId,
    SeatId,
    UserId,
)
from concert_domain.reservations import Reservation, ReservationStatus
from concert_domain.wallet import LedgerEntry, LedgerKind, Payment


def account_from_row(row: Row[Any]) -> Account:
    return Account(UserId(row.user_id), row.email, row.password_hash, row.created_at)


def concert_from_row(row: Row[Any]) -> Concert:
    return Concert(ConcertId(row.concert_id), row.title)


def date_from_row(row: Row[Any]) -> ConcertDate:
    return ConcertDate(DateId(row.date_id), ConcertId(row.concert_id), row.day, row.starts_at)


def seat_from_row(row: Row[Any]) -> Seat:
    return Seat(
        SeatId(row.seat_id), DateId(row.date_id), ConcertId(row.concert_id), row.number, row.price
    )


def reservation_from_row(row: Row[Any]) -> Reservation:
    return Reservation(
        reservation_id=ReservationId(row.reservation_id),
        user_id=UserId(row.user_id),
        seat_id=SeatId(row.seat_id),
        date_id=DateId(row.date_id),
        concert_id=ConcertId(row.concert_id),
        number=row.number,
        price=row.price,
        status=ReservationStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def reservation_to_row(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": reservation.reservation_id,
        "user_id": reservation.user_id,
        "seat_id": reservation.seat_id,
        "date_id": reservation.date_id,
        "concert_id": reservation.concert_id,
        "number": reservation.number,
        "price": reservation.price,
        "status": reservation.status.value,
        "created_at": reservation.created_at,
        "expires_at": reservation.expires_at,
    }


def ledger_entry_from_row(row: Row[Any]) -> LedgerEntry:
    payment_id = None if row.payment_id is None else PaymentId(row.payment_id)
    return LedgerEntry(
        UserId(row.user_id), LedgerKind(row.kind), row.amount, row.created_at, payment_id
    )


def payment_from_row(row: Row[Any]) -> Payment:
    return Payment(
        PaymentId(row.payment_id),
        ReservationId(row.reservation_id),
        UserId(row.user_id),
        row.amount,
        row.created_at,
    )


def outcome_to_json(outcome: StoredOutcome) -> dict[str, Any]:
    return {
        "body": None if outcome.body is None else dict(outcome.body),
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
    }


def idempotency_from_row(row: Row[Any]) -> IdempotencyRecord:
    stored = row.outcome
    outcome = None
    if stored is not None:
        outcome = StoredOutcome(stored["body"], stored["error_code"], stored["error_message"])
    return IdempotencyRecord(
        UserId(row.user_id),
        row.key,
        row.fingerprint,
        IdempotencyState(row.state),
        row.created_at,
        outcome,
    )
