"""Hold a seat, look at a reservation, cancel it, and sweep lapsed holds back to sale."""

from __future__ import annotations

from datetime import datetime

from concert_domain import queue
from concert_domain.catalog import ConcertDate, Seat
from concert_domain.dependencies import Dependencies
from concert_domain.errors import NotFound, RateLimited, ReservationNotHeld, SeatUnavailable
from concert_domain.ids import ReservationId, SeatId, UserId
from concert_domain.ports import UnitOfWork
from concert_domain.reservations import HoldAttempt, Reservation
from concert_domain.usecases._follow_up import follow_up
from concert_domain.usecases._retry import retrying

SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 100


async def hold_seat(
    user_id: UserId, queue_token: str | None, seat_id: SeatId, *, deps: Dependencies
) -> Reservation:
    """Hold a seat for ``policy.hold_seconds``. Raises `NotFound` (no such seat),
    `SeatUnavailable`, `HoldLimitReached`, `RateLimited` (too many attempts this minute) and
    the queue gate's errors.

    The seat's timer turns most contenders away before the database; the database decides.
    """
    token = queue.required(queue_token)
    now = deps.clock.now()
    seat, concert_date = await _seat_on_sale(seat_id, now, deps)
    expires_at = now + deps.policy.hold_duration
    limit = deps.policy.hold_attempts_per_customer
    ticket, attempt = await deps.timers.take(token, user_id, seat_id, now, expires_at, limit)
    queue.admitted(ticket, user_id, now)
    if attempt is HoldAttempt.TOO_FREQUENT:
        raise RateLimited("too many attempts to hold seats; try again within a minute")
    if attempt is not HoldAttempt.TAKEN:
        raise SeatUnavailable(
            f"seat {seat.number} on {concert_date.date} is held by another customer"
        )
    try:
        return await retrying(lambda: _hold(deps, user_id, seat, now, expires_at))
    except BaseException:
        await follow_up(deps.timers.release(seat_id, user_id), "drop a hold timer")
        raise


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


async def _hold(
    deps: Dependencies, user_id: UserId, seat: Seat, now: datetime, expires_at: datetime
) -> Reservation:
    async with deps.uow() as uow:
        limit = deps.policy.max_holds_per_user
        held = await uow.reservations.hold(user_id, seat, now, expires_at, limit)
        await uow.commit()
    return held


async def _seat_on_sale(
    seat_id: SeatId, now: datetime, deps: Dependencies
) -> tuple[Seat, ConcertDate]:
    """The seat and its date, if it can be held at ``now``. Raises `NotFound`,
    `SeatUnavailable` (booking has closed)."""
    async with deps.uow(read_only=True) as uow:
        seat = await uow.catalog.get_seat(seat_id)
        concert_date = None if seat is None else await uow.catalog.get_date(seat.date_id)
    if seat is None or concert_date is None:
        raise NotFound(f"no seat {seat_id}")
    if not concert_date.is_open(now):
        raise SeatUnavailable(f"booking for {concert_date.date} has closed")
    return seat, concert_date


async def _owned(uow: UnitOfWork, user_id: UserId, reservation_id: ReservationId) -> Reservation:
    reservation = await uow.reservations.get(reservation_id)
    if reservation is None or reservation.user_id != user_id:
        raise NotFound(f"no reservation {reservation_id}")
    return reservation
