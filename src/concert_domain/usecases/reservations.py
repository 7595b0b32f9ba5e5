"""Hold a seat, look at a reservation, cancel it, and sweep lapsed holds back to sale."""

from __future__ import annotations

from concert_domain.dependencies import Dependencies
from concert_domain.errors import NotFound, ReservationNotHeld, SeatUnavailable
from concert_domain.ids import ReservationId, SeatId, UserId
from concert_domain.ports import UnitOfWork
from concert_domain.reservations import Reservation
from concert_domain.usecases._retry import retrying
from concert_domain.usecases._tidy import seat_map_changed, tidy
from concert_domain.usecases.queue import require_active_token

SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 100


def timer_owner(user_id: UserId) -> str:
    """The owner value a customer's hold timers carry: only they may release them."""
    return f"user:{user_id}"


async def hold_seat(
    user_id: UserId, queue_token: str | None, seat_id: SeatId, *, deps: Dependencies
) -> Reservation:
    """Hold a seat for ``policy.hold_seconds``. Raises `NotFound` (no such seat),
    `SeatUnavailable`, `HoldLimitReached` and the queue gate's errors.

    The hold timer turns most contenders away before the database; the database decides.
    """
    now = deps.clock.now()
    await require_active_token(user_id, queue_token, now, deps=deps)
    async with deps.uow(read_only=True) as uow:
        seat = await uow.catalog.get_seat(seat_id)
        concert_date = None if seat is None else await uow.catalog.get_date(seat.date_id)
    if seat is None or concert_date is None:
        raise NotFound(f"no seat {seat_id}")
    if not concert_date.is_open(now):
        raise SeatUnavailable(f"booking for {concert_date.date} has closed")
    expires_at = now + deps.policy.hold_duration
    owner = timer_owner(user_id)
    if not await deps.timers.acquire(seat.concert_id, seat.seat_id, owner, now, expires_at):
        raise SeatUnavailable(
            f"seat {seat.number} on {concert_date.date} is held by another customer"
        )

    async def insert_hold() -> Reservation:
        async with deps.uow() as uow:
            limit = deps.policy.max_holds_per_user
            return await uow.commit_with(
                uow.reservations.hold(user_id, seat, now, expires_at, limit)
            )

    try:
        reservation = await retrying(insert_hold)
    except BaseException:
        await tidy(deps.timers.release(seat.concert_id, seat.seat_id, owner), "drop a timer")
        raise
    await seat_map_changed(seat.date_id, deps)
    return reservation


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
    await seat_map_changed(cancelled.date_id, deps)
    owner = timer_owner(user_id)
    await tidy(deps.timers.release(cancelled.concert_id, cancelled.seat_id, owner), "drop a timer")
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
            owner = timer_owner(reservation.user_id)
            release = deps.timers.release(reservation.concert_id, reservation.seat_id, owner)
            await tidy(release, "drop a lapsed hold's timer")
        swept += len(expired)
        if len(expired) < batch:
            break
    return swept


async def _owned(uow: UnitOfWork, user_id: UserId, reservation_id: ReservationId) -> Reservation:
    reservation = await uow.reservations.get(reservation_id)
    if reservation is None or reservation.user_id != user_id:
        raise NotFound(f"no reservation {reservation_id}")
    return reservation
