"""The wallet and payment: read the balance, charge it, and pay for a held seat."""

from __future__ import annotations

from datetime import datetime

import attrs

from concert_domain.dependencies import Dependencies
from concert_domain.errors import InvalidRequest, NotFound, ReservationNotHeld
from concert_domain.idempotency import fingerprint, validate_idempotency_key
from concert_domain.ids import PaymentId, QueueToken, ReservationId, UserId
from concert_domain.ports import UnitOfWork
from concert_domain.reservations import Reservation
from concert_domain.usecases._idempotent import Body, Finish, run_idempotently
from concert_domain.usecases._tidy import seat_map_changed, tidy
from concert_domain.usecases.queue import require_active_token
from concert_domain.wallet import BALANCE_MAX, PaymentReceipt, validate_charge


async def get_balance(user_id: UserId, *, deps: Dependencies) -> int:
    async with deps.uow(read_only=True) as uow:
        return await uow.wallets.balance(user_id)


async def charge_wallet(
    user_id: UserId, amount: int, idempotency_key: str | None = None, *, deps: Dependencies
) -> int:
    """Add ``amount`` won; returns the new balance. Raises `InvalidRequest` (amount out of
    range, or a balance that would pass the maximum) and the idempotency errors."""
    validate_charge(amount)
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)

    async def work(uow: UnitOfWork, now: datetime, finish: Finish) -> Body:
        balance = await finish(uow.wallets.credit(user_id, amount, now, BALANCE_MAX))
        if balance is None:
            raise InvalidRequest(f"a balance may not pass {BALANCE_MAX:,} won")
        return {"balance": balance}

    body, _ = await run_idempotently(
        deps=deps,
        user_id=user_id,
        key=key,
        fingerprint=fingerprint("charge", amount=amount),
        work=work,
    )
    return _int(body, "balance")


async def pay(
    user_id: UserId,
    queue_token: str | None,
    reservation_id: ReservationId,
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> PaymentReceipt:
    """Pay for a held seat in one step: the seat is sold, the balance debited, the payment
    recorded; or nothing happens. Then the caller's queue token expires and every process
    is told the seat map changed.

    Raises `NotFound`, `HoldExpired`, `ReservationNotHeld`, `InsufficientBalance`, the queue
    gate's errors and the idempotency errors. A retry with the same key replays the first
    answer, even after the queue token has expired.
    """
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    admitted: list[QueueToken] = []
    paid: list[Reservation] = []

    async def admit(now: datetime) -> None:
        admitted.append(await require_active_token(user_id, queue_token, now, deps=deps))

    async def work(uow: UnitOfWork, now: datetime, finish: Finish) -> Body:
        # the sale first, explained only when it does not happen
        sale = await finish(uow.payments.pay(reservation_id, user_id, now))
        if sale is None:
            reservation = await uow.reservations.get(reservation_id)
            if reservation is None or reservation.user_id != user_id:
                raise NotFound(f"no reservation {reservation_id}")
            reservation.ensure_payable(now)
            raise ReservationNotHeld(f"reservation {reservation_id} is no longer held")
        paid.append(sale.reservation)
        payment = sale.payment
        return attrs.asdict(
            PaymentReceipt(payment.payment_id, reservation_id, payment.amount, sale.balance)
        )

    body, replayed = await run_idempotently(
        deps=deps,
        user_id=user_id,
        key=key,
        fingerprint=fingerprint("pay", reservation_id=reservation_id),
        before=admit,
        work=work,
    )
    if not replayed:
        for sold in paid:
            await seat_map_changed(sold.date_id, deps)
        for token in admitted:
            await tidy(deps.queue.expire(token, deps.clock.now()), "expire a paid queue token")
        # the seat's hold timer is left to lapse with the hold's time: a sold seat can never
        # be held again, so the timer only turns contenders away before the database does
    return PaymentReceipt(
        payment_id=PaymentId(_int(body, "payment_id")),
        reservation_id=ReservationId(_int(body, "reservation_id")),
        amount=_int(body, "amount"),
        balance=_int(body, "balance"),
    )


def _int(body: Body, name: str) -> int:
    value = body[name]
    if not isinstance(value, int):
        raise TypeError(f"stored answer has a non-integer {name}: {value!r}")
    return value
