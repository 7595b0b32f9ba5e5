"""Look at a reservation or list them, cancel one, refund a paid one, and sweep
lapsed holds back to sale."""

from __future__ import annotations

from datetime import datetime

from concert_domain.accounts import Identity
from concert_domain.dependencies import Dependencies
from concert_domain.errors import (
    NotFound,
    ReservationNotHeld,
    ReservationNotPaid,
)
from concert_domain.idempotency import fingerprint, validate_idempotency_key
from concert_domain.ids import ReservationId, UserId
from concert_domain.paging import LIMIT_DEFAULT, Page, Position, checked_limit, page_of
from concert_domain.ports import UnitOfWork
from concert_domain.reservations import Reservation, ReservationStatus
from concert_domain.usecases._follow_up import follow_up
from concert_domain.usecases._idempotent import Attempt, answered_once
from concert_domain.usecases.accounts import require_admin

SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 100


async def get_reservation(
    user_id: UserId, reservation_id: ReservationId, *, deps: Dependencies
) -> Reservation:
    """The caller's reservation as of now. Raises `NotFound`, also for another's."""
    now = deps.clock.now()
    async with deps.uow(read_only=True) as uow:
        reservation = await _owned(uow, user_id, reservation_id)
    return reservation.as_of(now)


async def cancel_reservation(
    user_id: UserId, reservation_id: ReservationId, *, deps: Dependencies
) -> Reservation:
    """Cancel the caller's unexpired hold; the seat is available at once. Raises `NotFound`,
    `ReservationNotHeld` (paid, cancelled or expired)."""
    now = deps.clock.now()
    async with deps.uow() as uow:
        reservation = await _owned(uow, user_id, reservation_id)
        cancelled = await uow.reservations.cancel(reservation_id, now)
        if cancelled is None:  # changed since we read it
            latest = await uow.reservations.get(reservation_id)
            (latest or reservation).ensure_cancellable(now)
            raise ReservationNotHeld(f"reservation {reservation_id} is no longer held")
        await uow.commit()
    await follow_up(deps.timers.release(cancelled.seat_id, user_id), "drop a hold timer")
    return cancelled


async def list_reservations(
    user_id: UserId,
    status: ReservationStatus | None = None,
    cursor: str | None = None,
    limit: int = LIMIT_DEFAULT,
    *,
    deps: Dependencies,
) -> Page[Reservation]:
    """The caller's reservations as of now, newest first, a page at a time; ``status`` as
    the caller sees it (a lapsed hold is expired). Raises `InvalidRequest` (a bad cursor or
    limit)."""
    limit = checked_limit(limit)
    before = None if cursor is None else Position.of_cursor(cursor)
    now = deps.clock.now()
    async with deps.uow(read_only=True) as uow:
        found = await uow.reservations.of_customer(user_id, status, before, limit + 1, now)
    return page_of([r.as_of(now) for r in found], limit, _position)


async def refund(
    caller: Identity,
    reservation_id: ReservationId,
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> Reservation:
    """Give a paid seat back: the reservation is refunded and its seat on sale again at
    once, its price back in the customer's wallet (whatever the balance cap), the payment
    kept on record; at most once, however many refunds race. Raises `Forbidden`, `NotFound`,
    `ReservationNotPaid` and the idempotency errors."""
    require_admin(caller)
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    now = deps.clock.now()
    request = fingerprint("refund", reservation_id=reservation_id)
    async with answered_once(deps, caller.user_id, key, request, now) as attempt:
        if attempt.kept is None:
            refunded = await _refund(deps, attempt, reservation_id, now)
            timer = deps.timers.release(refunded.seat_id, refunded.user_id)
            await follow_up(timer, "drop a refunded seat's timer")
            return refunded
    async with deps.uow(read_only=True) as uow:  # a retry: the reservation as it is now
        found = await uow.reservations.get(reservation_id)
    assert found is not None, "a refund was kept for a reservation that is not there"
    return found


async def _refund(
    deps: Dependencies, attempt: Attempt, reservation_id: ReservationId, now: datetime
) -> Reservation:
    async with deps.uow() as uow:
        done = await uow.payments.refund(reservation_id, now)
        if done is None:
            found = await uow.reservations.get(reservation_id)
            if found is None:
                raise NotFound(f"no reservation {reservation_id}")
            found.ensure_refundable()
            raise ReservationNotPaid(f"reservation {reservation_id} is no longer paid")
        await attempt.keep(uow, {"reservation_id": reservation_id})
        await uow.commit()
    return done.reservation


def _position(reservation: Reservation) -> Position:
    return Position(reservation.created_at, reservation.reservation_id)


async def sweep_expired_holds(*, deps: Dependencies, batch: int = SWEEP_BATCH) -> int:
    """Mark lapsed holds expired and drop their timers; returns how many. Safe to run from
    any number of schedulers at once: each hold is swept by exactly one."""
    swept = 0
    for _ in range(SWEEP_MAX_BATCHES):
        async with deps.uow() as uow:
            expired = await uow.reservations.expire_due(deps.clock.now(), batch)
            await uow.commit()
        for reservation in expired:
            release = deps.timers.release(reservation.seat_id, reservation.user_id)
            await follow_up(release, "drop a lapsed hold's timer")
        swept += len(expired)
        if len(expired) < batch:
            break
    return swept


async def _owned(uow: UnitOfWork, user_id: UserId, reservation_id: ReservationId) -> Reservation:
    reservation = await uow.reservations.get(reservation_id)
    if reservation is None or reservation.user_id != user_id:
        raise NotFound(f"no reservation {reservation_id}")
    return reservation
