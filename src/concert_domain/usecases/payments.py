"""The wallet and payment: read the balance, charge it, and pay for held seats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from concert_domain.dependencies import Dependencies
from concert_domain.errors import InvalidRequest, NotFound, ReservationNotHeld
from concert_domain.idempotency import fingerprint, kept_integer, validate_idempotency_key
from concert_domain.ids import ReservationId, UserId
from concert_domain.paging import LIMIT_DEFAULT, Page, Position, checked_limit, page_of
from concert_domain.ports import UnitOfWork
from concert_domain.usecases._follow_up import follow_up
from concert_domain.usecases._idempotent import Attempt, answered_once
from concert_domain.usecases._retry import retrying
from concert_domain.usecases.queue import require_active_token
from concert_domain.wallet import BALANCE_MAX, LedgerEntry, PaymentReceipt, validate_charge


async def get_balance(user_id: UserId, *, deps: Dependencies) -> int:
    async with deps.uow(read_only=True) as uow:
        return await uow.wallets.balance(user_id)


async def list_transactions(
    user_id: UserId, cursor: str | None = None, limit: int = LIMIT_DEFAULT, *, deps: Dependencies
) -> Page[LedgerEntry]:
    """The caller's wallet movements, newest first, a page at a time: charges, payments
    (their amount negative in `LedgerEntry.signed_amount`) and refunds, each with the balance
    it left. Raises `InvalidRequest` (a bad cursor or limit)."""
    limit = checked_limit(limit)
    before = None if cursor is None else Position.of_cursor(cursor)
    async with deps.uow(read_only=True) as uow:
        found = await uow.wallets.transactions(user_id, before, limit + 1)
    return page_of(found, limit, lambda entry: Position(entry.created_at, entry.entry_id))


async def charge_wallet(
    user_id: UserId, amount: int, idempotency_key: str | None = None, *, deps: Dependencies
) -> int:
    """Add ``amount`` won; returns the new balance. Raises `InvalidRequest` (amount out of
    range, or a balance that would pass the maximum) and the idempotency errors."""
    validate_charge(amount)
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    now = deps.clock.now()
    request = fingerprint("charge", amount=amount)
    async with answered_once(deps, user_id, key, request, now) as attempt:
        if attempt.kept is not None:
            return kept_integer(attempt.kept, "balance")
        return await retrying(lambda: _credit(deps, attempt, user_id, amount, now))


async def pay(
    user_id: UserId,
    queue_token: str | None,
    reservation_id: ReservationId,
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> PaymentReceipt:
    """Pay for a held seat in one step: the seat is sold, the balance debited, the payment
    recorded; or nothing happens. Then the caller's queue token expires.

    Raises `NotFound`, `HoldExpired`, `ReservationNotHeld`, `InsufficientBalance`, the queue
    gate's errors and the idempotency errors. A retry with the same key replays the first
    answer, even after the queue token has expired.
    """
    return await pay_holds(user_id, queue_token, [reservation_id], idempotency_key, deps=deps)


async def pay_holds(
    user_id: UserId,
    queue_token: str | None,
    reservation_ids: Sequence[ReservationId],
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> PaymentReceipt:
    """Pay for 1 to ``policy.max_holds_per_user`` distinct holds at once, as `pay` pays for
    one: every seat sold, one debit of the total, one payment, the queue token expired once;
    or nothing. When one hold cannot be paid, its error is the answer. Raises
    `InvalidRequest` (none, too many, or repeated) and the errors of `pay`."""
    most = deps.policy.max_holds_per_user
    if not 1 <= len(reservation_ids) <= most:
        raise InvalidRequest(f"from 1 to {most} holds may be paid at once")
    if len(set(reservation_ids)) != len(reservation_ids):
        raise InvalidRequest("a hold may be named once")
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    now = deps.clock.now()
    if len(reservation_ids) == 1:
        request = fingerprint("pay", reservation_id=reservation_ids[0])
    else:
        request = fingerprint("pay", reservation_ids=",".join(map(str, reservation_ids)))
    async with answered_once(deps, user_id, key, request, now, queue_token) as attempt:
        if attempt.kept is not None:
            return attrs.evolve(PaymentReceipt.from_body(attempt.kept), replayed=True)
        token = await require_active_token(user_id, queue_token, now, deps=deps)
        receipt = await retrying(lambda: _sell(deps, attempt, user_id, reservation_ids, now))
    await follow_up(deps.queue.expire(token, deps.clock.now()), "expire a paid queue token")
    # the seats' hold timers are left to lapse with the holds' time: a sold seat can never be
    # held again, so a timer only turns contenders away before the database does
    return receipt


async def _credit(
    deps: Dependencies, attempt: Attempt, user_id: UserId, amount: int, now: datetime
) -> int:
    async with deps.uow() as uow:
        balance = await uow.wallets.credit(user_id, amount, now, BALANCE_MAX)
        if balance is None:
            raise InvalidRequest(f"a balance may not pass {BALANCE_MAX:,} won")
        await attempt.keep(uow, {"balance": balance})
        await uow.commit()
    return balance


async def _sell(
    deps: Dependencies,
    attempt: Attempt,
    user_id: UserId,
    reservation_ids: Sequence[ReservationId],
    now: datetime,
) -> PaymentReceipt:
    async with deps.uow() as uow:
        sale = await uow.payments.pay(reservation_ids, user_id, now)
        if sale is None:
            raise await _why_not_sold(uow, user_id, reservation_ids, now)
        receipt = PaymentReceipt.of(sale)
        await attempt.keep(uow, receipt.as_body())
        await uow.commit()
    return receipt


async def _why_not_sold(
    uow: UnitOfWork, user_id: UserId, reservation_ids: Sequence[ReservationId], now: datetime
) -> Exception:
    """The error that explains why the store did not sell the reservations: the first one's
    that cannot be paid."""
    for reservation_id in reservation_ids:
        reservation = await uow.reservations.get(reservation_id)
        if reservation is None or reservation.user_id != user_id:
            return NotFound(f"no reservation {reservation_id}")
        reservation.ensure_payable(now)
    return ReservationNotHeld("a hold changed while it was being paid; nothing was paid")
