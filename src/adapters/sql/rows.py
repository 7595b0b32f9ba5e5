"""Explicit row to entity functions: the entities are attrs classes and never ORM-mapped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from concert_domain.accounts import Account, Role
from concert_domain.catalog import Concert, ConcertDate, NewSeat, Seat, SoldSeat
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
    return Account(
        UserId(row.user_id), row.email, row.password_hash, row.created_at, Role(row.role)
    )


def concert_from_row(row: Row[Any]) -> Concert:
    return Concert(ConcertId(row.concert_id), row.title, row.venue)


def date_from_row(row: Row[Any]) -> ConcertDate:
    return ConcertDate(
        DateId(row.date_id),
        ConcertId(row.concert_id),
        row.day,
        row.starts_at,
        row.sale_opens_at,
        row.sale_closes_at,
    )


def seat_from_row(row: Row[Any]) -> Seat:
    return Seat(
        seat_id=SeatId(row.seat_id),
        date_id=DateId(row.date_id),
        concert_id=ConcertId(row.concert_id),
        section=row.section,
        row=row.row_label,
        number=row.number,
        price=row.price,
        section_order=row.section_order,
        row_order=row.row_order,
    )


def seat_to_row(date_id: DateId, concert_id: ConcertId, seat: NewSeat) -> dict[str, Any]:
    return {
        "date_id": date_id,
        "concert_id": concert_id,
        "section": seat.section,
        "section_order": seat.section_order,
        "row_label": seat.row,
        "row_order": seat.row_order,
        "number": seat.number,
        "price": seat.price,
    }


def sold_seat_from_row(row: Row[Any]) -> SoldSeat:
    return SoldSeat(
        reservation_id=ReservationId(row.reservation_id),
        payment_id=PaymentId(row.payment_id),
        section=row.section,
        row=row.row_label,
        number=row.number,
        price=row.price,
        paid_at=row.paid_at,
        email=row.email,
    )


def reservation_from_row(row: Row[Any]) -> Reservation:
    return Reservation(
        reservation_id=ReservationId(row.reservation_id),
        user_id=UserId(row.user_id),
        seat_id=SeatId(row.seat_id),
        date_id=DateId(row.date_id),
        concert_id=ConcertId(row.concert_id),
        section=row.section,
        row=row.row_label,
        number=row.number,
        price=row.price,
        status=ReservationStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        extended=bool(row.extended),
    )


def reservation_to_row(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": reservation.reservation_id,
        "user_id": reservation.user_id,
        "seat_id": reservation.seat_id,
        "date_id": reservation.date_id,
        "concert_id": reservation.concert_id,
        "section": reservation.section,
        "row_label": reservation.row,
        "number": reservation.number,
        "price": reservation.price,
        "status": reservation.status.value,
        "created_at": reservation.created_at,
        "expires_at": reservation.expires_at,
    }


def ledger_entry_from_row(row: Row[Any]) -> LedgerEntry:
    payment_id = None if row.payment_id is None else PaymentId(row.payment_id)
    return LedgerEntry(
        user_id=UserId(row.user_id),
        kind=LedgerKind(row.kind),
        amount=row.amount,
        created_at=row.created_at,
        payment_id=payment_id,
        balance=row.balance,
        entry_id=row.entry_id,
        reservation_id=None if row.reservation_id is None else ReservationId(row.reservation_id),
    )


def payment_from_row(row: Row[Any], reservation_ids: Sequence[ReservationId]) -> Payment:
    return Payment(
        PaymentId(row.payment_id),
        tuple(reservation_ids),
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
