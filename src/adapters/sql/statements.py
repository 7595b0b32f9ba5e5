"""Every statement of the SQL adapter, built once at import (`queries.Query`).

The rules that must hold under concurrency are decided here, by one conditional statement or a
constraint each: ``INSERT ... ON CONFLICT DO NOTHING`` against the live-seat index for a hold,
``UPDATE ... WHERE status = 'held' AND expires_at > :now`` to pay or cancel,
``UPDATE ... WHERE balance >= :amount`` to debit, and a locked customer row for the hold limit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, delete, exists, func, literal, or_, select, text, true, update

from adapters.sql.queries import Query, on_each_dialect, param
from adapters.sql.schema import (
    LIVE,
    accounts,
    concert_dates,
    concerts,
    idempotency_keys,
    ledger,
    payments,
    reservations,
    seats,
    wallets,
)
from concert_domain.idempotency import IdempotencyState
from concert_domain.wallet import LedgerKind

_NOW = param("now", reservations.c.expires_at)


def _live(now: Any) -> Any:
    """A reservation that blocks its seat at ``now``: paid, or held and unexpired."""
    return or_(
        reservations.c.status == "paid",
        and_(reservations.c.status == "held", reservations.c.expires_at > now),
    )


# -- accounts -------------------------------------------------------------------------------

ACCOUNT_ADD = on_each_dialect(
    lambda insert: (
        insert(accounts)
        .values(
            email=param("email", accounts.c.email),
            password_hash=param("password_hash", accounts.c.password_hash),
            created_at=param("created_at", accounts.c.created_at),
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(*accounts.c)
    )
)
ACCOUNT_BY_EMAIL = Query(
    select(accounts).where(accounts.c.email == param("email", accounts.c.email))
)

# -- catalog --------------------------------------------------------------------------------

CONCERT_ADD = Query(
    concerts.insert().values(title=param("title", concerts.c.title)).returning(*concerts.c)
)
CONCERTS = Query(select(concerts).order_by(concerts.c.concert_id))
CONCERT = Query(
    select(concerts).where(concerts.c.concert_id == param("concert_id", concerts.c.concert_id))
)
DATE_ADD = Query(
    concert_dates.insert()
    .values(
        concert_id=param("concert_id", concert_dates.c.concert_id),
        day=param("day", concert_dates.c.day),
        starts_at=param("starts_at", concert_dates.c.starts_at),
    )
    .returning(*concert_dates.c)
)
DATE = Query(
    select(concert_dates).where(
        concert_dates.c.date_id == param("date_id", concert_dates.c.date_id)
    )
)
# a seat whose number the date already has is left out: the caller compares what came back
SEAT_ADD = on_each_dialect(
    lambda insert: (
        insert(seats)
        .values({n: param(n, seats.c[n]) for n in ("date_id", "concert_id", "number", "price")})
        .on_conflict_do_nothing(index_elements=["date_id", "number"])
        .returning(*seats.c)
    )
)
_SEAT_ID = param("seat_id", seats.c.seat_id)
SEAT = Query(select(seats).where(seats.c.seat_id == _SEAT_ID))
SEATS_OF_THE_DATE_OF = Query(
    select(seats).where(
        seats.c.date_id
        == select(seats.c.date_id).where(seats.c.seat_id == _SEAT_ID).scalar_subquery()
    )
)
_AVAILABLE = func.count(seats.c.seat_id).label("available")
OPEN_DATES = Query(
    select(concert_dates, _AVAILABLE)
    .join(seats, seats.c.date_id == concert_dates.c.date_id)
    .where(
        concert_dates.c.concert_id == param("concert_id", concert_dates.c.concert_id),
        concert_dates.c.starts_at > _NOW,
        ~exists().where(reservations.c.seat_id == seats.c.seat_id, _live(_NOW)),
    )
    .group_by(*concert_dates.c)
    .order_by(concert_dates.c.starts_at, concert_dates.c.date_id)
)
SEAT_MAP = Query(
    select(
        seats,
        reservations.c.status.label("live_status"),
        reservations.c.expires_at.label("held_until"),
    )
    .outerjoin(reservations, and_(reservations.c.seat_id == seats.c.seat_id, _live(_NOW)))
    .where(seats.c.date_id == param("date_id", seats.c.date_id))
    .order_by(seats.c.number)
)

# -- reservations ---------------------------------------------------------------------------

# A hold, step 1: take the customer's row lock, so that one customer's holds take turns
# (SQLite's BEGIN IMMEDIATE already makes every writer wait), and mark the seat's lapsed hold
# expired so that it leaves the live-seat index. One statement on PostgreSQL, two on SQLite.
_LOCK_CUSTOMER = (
    select(accounts.c.user_id)
    .where(accounts.c.user_id == param("user_id", accounts.c.user_id))
    .with_for_update(of=accounts)
)
_LAPSE_SEAT = (
    update(reservations)
    .where(
        reservations.c.seat_id == param("seat_id", reservations.c.seat_id),
        reservations.c.status == "held",
        reservations.c.expires_at <= _NOW,
    )
    .values(status="expired")
)
LOCK_AND_LAPSE = Query(_LOCK_CUSTOMER.add_cte(_LAPSE_SEAT.cte("lapsed")))
LAPSE = Query(_LAPSE_SEAT)
LOCK = Query(_LOCK_CUSTOMER)

# Step 2, in a statement of its own, whose snapshot sees every hold committed before the lock
# was granted (on PostgreSQL it is sent with step 1, one round trip for both): insert only if
# the customer is under the limit, and only if the seat has no held or paid row (the partial
# unique index decides, whatever the race).
_UNEXPIRED_HOLDS = (
    select(func.count())
    .where(
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        reservations.c.status == "held",
        reservations.c.expires_at > _NOW,
    )
    .scalar_subquery()
)
_HOLD_COLUMNS = [
    "user_id",
    "seat_id",
    "date_id",
    "concert_id",
    "number",
    "price",
    "status",
    "expires_at",
]
HOLD = on_each_dialect(
    lambda insert: (
        insert(reservations)
        .from_select(
            [*_HOLD_COLUMNS, "created_at"],
            select(*(param(name, reservations.c[name]) for name in _HOLD_COLUMNS), _NOW).where(
                param("max_holds", Integer()) > _UNEXPIRED_HOLDS
            ),
        )
        .on_conflict_do_nothing(index_elements=["seat_id"], index_where=text(LIVE))
        .returning(*reservations.c)
    )
)
COUNT_HOLDS = Query(select(_UNEXPIRED_HOLDS))
_RESERVATION_ID = param("reservation_id", reservations.c.reservation_id)
RESERVATION = Query(select(reservations).where(reservations.c.reservation_id == _RESERVATION_ID))
END_HOLD = Query(
    update(reservations)
    .where(
        reservations.c.reservation_id == _RESERVATION_ID,
        reservations.c.status == "held",
        reservations.c.expires_at > _NOW,
    )
    .values(status=param("new_status", reservations.c.status))
    .returning(*reservations.c)
)
# a CTE, not IN (subquery): PostgreSQL may rescan an IN subquery and pass the LIMIT
_DUE = (
    select(reservations.c.reservation_id)
    .where(reservations.c.status == "held", reservations.c.expires_at <= _NOW)
    .order_by(reservations.c.expires_at)
    .limit(param("limit", Integer()))
    .with_for_update(skip_locked=True)
    .cte("due")
)
EXPIRE_DUE = Query(
    update(reservations)
    .where(
        reservations.c.reservation_id == _DUE.c.reservation_id,
        reservations.c.status == "held",
    )
    .values(status="expired")
    .returning(*reservations.c)
)

# -- wallets and payments -------------------------------------------------------------------

_WALLET_OF = wallets.c.user_id == param("user_id", wallets.c.user_id)
_AMOUNT = param("amount", wallets.c.balance)
WALLET_OPEN = on_each_dialect(
    lambda insert: (
        insert(wallets)
        .values(user_id=param("user_id", wallets.c.user_id), balance=0)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
)
BALANCE = Query(select(wallets.c.balance).where(_WALLET_OF))
CREDIT = Query(
    update(wallets)
    .where(_WALLET_OF, wallets.c.balance + _AMOUNT <= param("max_balance", wallets.c.balance))
    .values(balance=wallets.c.balance + _AMOUNT)
    .returning(wallets.c.balance)
)
DEBIT = Query(
    update(wallets)
    .where(_WALLET_OF, wallets.c.balance >= _AMOUNT)
    .values(balance=wallets.c.balance - _AMOUNT)
    .returning(wallets.c.balance)
)
_LEDGER_COLUMNS = [c.name for c in ledger.c if c.name != "entry_id"]
LEDGER_ENTRY = Query(ledger.insert().values({n: param(n, ledger.c[n]) for n in _LEDGER_COLUMNS}))
LEDGER = Query(
    select(ledger)
    .where(ledger.c.user_id == param("user_id", ledger.c.user_id))
    .order_by(ledger.c.entry_id)
)


def _moved_and_recorded(move: Any) -> Query:
    """On PostgreSQL, a wallet move and its ledger entry in one statement: the entry is
    written only if the move returned a balance, which the statement answers."""
    moved = move.cte("moved")
    entry = (
        ledger.insert()
        .from_select(
            _LEDGER_COLUMNS,
            select(*(param(n, ledger.c[n]) for n in _LEDGER_COLUMNS)).select_from(moved),
        )
        .cte("entry")
    )
    return Query(select(moved.c.balance).add_cte(moved, entry))


CREDIT_RECORDED = _moved_and_recorded(CREDIT.statement)

# A sale: the customer's unexpired hold becomes paid, if the customer has a wallet to pay from
# (wallets are never deleted: a snapshot's word on that holds); on SQLite the payment, the
# debit and its ledger entry follow as statements of their own (its writers take turns)
_SELL = (
    update(reservations)
    .where(
        reservations.c.reservation_id == _RESERVATION_ID,
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        reservations.c.status == "held",
        reservations.c.expires_at > _NOW,
        exists().where(wallets.c.user_id == reservations.c.user_id),
    )
    .values(status="paid")
    .returning(*reservations.c)
)
SELL = Query(_SELL)
PAYMENT_ADD = Query(
    payments.insert()
    .values({c.name: param(c.name, c) for c in payments.c if c.name != "payment_id"})
    .returning(*payments.c)
)
# the constraint a debit past the balance breaks, whatever the race
BALANCE_NOT_NEGATIVE = "ck_wallets_balance_not_negative"


def _sale_in_one_statement() -> Query:
    """On PostgreSQL the whole sale is one statement: the hold sold, the debit, the payment
    and its ledger entry, each written only if the hold is sold. The debit takes the price
    whatever the balance: one that would go below zero breaks `BALANCE_NOT_NEGATIVE` (checked
    on the newest row, if another payment changed it meanwhile), which fails the statement
    and so writes nothing. Answers nothing when the hold is not sold."""
    sold = _SELL.cte("sold")
    debited = (
        update(wallets)
        .where(wallets.c.user_id == sold.c.user_id)
        .values(balance=wallets.c.balance - sold.c.price)
        .returning(wallets.c.balance)
        .cte("debited")
    )
    paid = (
        payments.insert()
        .from_select(
            ["reservation_id", "user_id", "amount", "created_at"],
            select(sold.c.reservation_id, sold.c.user_id, sold.c.price, _NOW),
        )
        .returning(payments.c.payment_id, payments.c.user_id, payments.c.amount)
        .cte("paid")
    )
    entry = (
        ledger.insert()
        .from_select(
            _LEDGER_COLUMNS,
            select(
                paid.c.user_id,
                literal(LedgerKind.PAYMENT.value),
                paid.c.amount,
                paid.c.payment_id,
                _NOW,
            ),
        )
        .cte("entry")
    )
    return Query(
        select(sold, paid.c.payment_id, debited.c.balance)
        .select_from(sold.join(paid, true()).join(debited, true()))
        .add_cte(entry)
    )


SALE = _sale_in_one_statement()
PAYMENT_FOR = Query(
    select(payments).where(
        payments.c.reservation_id == param("reservation_id", payments.c.reservation_id)
    )
)

# -- idempotency ----------------------------------------------------------------------------

_KEY_IS = and_(
    idempotency_keys.c.user_id == param("user_id", idempotency_keys.c.user_id),
    idempotency_keys.c.key == param("key", idempotency_keys.c.key),
)
_PENDING = idempotency_keys.c.state == IdempotencyState.PENDING.value
KEY_CLAIM = on_each_dialect(
    lambda insert: (
        insert(idempotency_keys)
        .values(
            {
                **{
                    name: param(name, idempotency_keys.c[name])
                    for name in ("user_id", "key", "fingerprint", "created_at")
                },
                "state": IdempotencyState.PENDING.value,
            }
        )
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(idempotency_keys.c.key)
    )
)
# a pending claim older than its lease belongs to a request that died: it is taken over
KEY_TAKE_OVER = Query(
    update(idempotency_keys)
    .where(
        _KEY_IS,
        _PENDING,
        idempotency_keys.c.created_at <= param("abandoned_by", idempotency_keys.c.created_at),
    )
    .values(
        fingerprint=param("fingerprint", idempotency_keys.c.fingerprint),
        created_at=param("created_at", idempotency_keys.c.created_at),
    )
    .returning(idempotency_keys.c.key)
)
KEY = Query(select(idempotency_keys).where(_KEY_IS))
KEY_COMPLETE = Query(
    update(idempotency_keys)
    .where(_KEY_IS)
    .values(
        state=IdempotencyState.DONE.value,
        outcome=param("outcome", idempotency_keys.c.outcome),
    )
)
KEY_RELEASE = Query(delete(idempotency_keys).where(_KEY_IS, _PENDING))
KEYS_PURGE = Query(
    delete(idempotency_keys)
    .where(idempotency_keys.c.created_at < param("before", idempotency_keys.c.created_at))
    .returning(idempotency_keys.c.key)
)
