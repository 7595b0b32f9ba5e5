"""The statements both dialects run, built once at import (`queries.Query`).

A rule that must hold under concurrency is decided by one conditional statement or a
constraint: ``UPDATE ... WHERE status = 'held' AND expires_at > :now`` to cancel, a partial
unique index over the held and paid rows of a seat for a hold. How each dialect holds a seat,
sells a hold and moves money is in its own module (`postgres`, `sqlite`), on the pieces here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)

from adapters.sql.queries import Query, on_each_dialect, param
from adapters.sql.schema import (
    HELD_OR_PAID,
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

NOW = param("now", reservations.c.expires_at)


def live(now: Any) -> Any:
    """`Reservation.is_live` in SQL: paid, or held and unexpired at ``now``."""
    return or_(reservations.c.status == "paid", held_at(now))


def held_at(now: Any, table: Any = reservations) -> Any:
    """`Reservation.is_held` in SQL: held and unexpired at ``now`` (in ``table``, the
    reservations or an alias of them)."""
    return and_(table.c.status == "held", table.c.expires_at > now)


def status_at(now: Any) -> Any:
    """`Reservation.as_of` in SQL: the status, a lapsed hold reading as expired."""
    lapsed = and_(reservations.c.status == "held", reservations.c.expires_at <= now)
    return case((lapsed, literal("expired")), else_=reservations.c.status)


# -- accounts -------------------------------------------------------------------------------

_USER_ID = param("user_id", accounts.c.user_id)
ACCOUNT_ADD = on_each_dialect(
    lambda insert: (
        insert(accounts)
        .values(
            {n: param(n, accounts.c[n]) for n in ("email", "password_hash", "created_at", "role")}
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(*accounts.c)
    )
)
ACCOUNT_BY_EMAIL = Query(
    select(accounts).where(accounts.c.email == param("email", accounts.c.email))
)
ACCOUNT_EXISTS = Query(select(accounts.c.user_id).where(accounts.c.user_id == _USER_ID))
ACCOUNT_SET_ROLE = Query(
    update(accounts)
    .where(accounts.c.user_id == _USER_ID)
    .values(role=param("role", accounts.c.role))
)
# the account with its balance, in one statement: one instant
ACCOUNT_WITH_BALANCE = Query(
    select(
        accounts,
        func.coalesce(
            select(wallets.c.balance)
            .where(wallets.c.user_id == accounts.c.user_id)
            .scalar_subquery(),
            0,
        ).label("balance"),
    ).where(accounts.c.user_id == _USER_ID)
)

# -- catalog --------------------------------------------------------------------------------

CONCERT_ADD = Query(
    concerts.insert()
    .values(title=param("title", concerts.c.title), venue=param("venue", concerts.c.venue))
    .returning(*concerts.c)
)
CONCERTS = Query(select(concerts).order_by(concerts.c.concert_id))
CONCERT = Query(
    select(concerts).where(concerts.c.concert_id == param("concert_id", concerts.c.concert_id))
)
DATE_ADD = Query(
    concert_dates.insert()
    .values(
        {
            n: param(n, concert_dates.c[n])
            for n in ("concert_id", "day", "starts_at", "sale_opens_at", "sale_closes_at")
        }
    )
    .returning(*concert_dates.c)
)
DATE = Query(
    select(concert_dates).where(
        concert_dates.c.date_id == param("date_id", concert_dates.c.date_id)
    )
)
SEAT = Query(select(seats).where(seats.c.seat_id == param("seat_id", seats.c.seat_id)))
SECTIONS = Query(
    select(seats.c.section)
    .where(seats.c.date_id == param("date_id", seats.c.date_id))
    .group_by(seats.c.section_order, seats.c.section)
    .order_by(seats.c.section_order)
)
# the status test the live-seat index is made for, beside `live`, so that the join reads
# that index (SQLite's planner does not see that `live` implies it)
_LIVE_RESERVATION = and_(
    reservations.c.seat_id == seats.c.seat_id,
    text(f"reservations.{HELD_OR_PAID}"),
    live(NOW),
)
# a date is open while its sale has not closed and a seat is available
OPEN_DATES = Query(
    select(concert_dates, func.count(seats.c.seat_id).label("available"))
    .join(seats, seats.c.date_id == concert_dates.c.date_id)
    .where(
        concert_dates.c.concert_id == param("concert_id", concert_dates.c.concert_id),
        concert_dates.c.sale_closes_at > NOW,
        ~exists().where(_LIVE_RESERVATION),
    )
    .group_by(*concert_dates.c)
    .order_by(concert_dates.c.starts_at, concert_dates.c.date_id)
)
_DATE_ID = param("date_id", seats.c.date_id)
_SEATS_WITH_STATUS = (
    select(
        seats,
        reservations.c.status.label("live_status"),
        reservations.c.expires_at.label("held_until"),
    )
    .outerjoin(reservations, _LIVE_RESERVATION)
    .order_by(seats.c.section_order, seats.c.row_order, seats.c.number)
)
SEAT_MAP = Query(_SEATS_WITH_STATUS.where(seats.c.date_id == _DATE_ID))
SECTION_MAP = Query(
    _SEATS_WITH_STATUS.where(
        seats.c.date_id == _DATE_ID, seats.c.section == param("section", seats.c.section)
    )
)
# every section's counts in one statement, so at one instant
_HELD = reservations.c.status == "held"
_PAID = reservations.c.status == "paid"
SALES = Query(
    select(
        seats.c.section,
        func.count().label("seats_total"),
        func.count(case((_HELD, 1))).label("held"),
        func.count(case((_PAID, 1))).label("sold"),
        func.coalesce(func.sum(case((_PAID, reservations.c.price))), 0).label("revenue"),
    )
    .select_from(seats.outerjoin(reservations, _LIVE_RESERVATION))
    .where(seats.c.date_id == _DATE_ID)
    .group_by(seats.c.section_order, seats.c.section)
    .order_by(seats.c.section_order)
)
# reached through the date's seats, whose live reservation the live-seat index finds
SOLD_SEATS = Query(
    select(
        reservations.c.reservation_id,
        payments.c.payment_id,
        reservations.c.section,
        reservations.c.row_label,
        reservations.c.number,
        reservations.c.price,
        payments.c.created_at.label("paid_at"),
        accounts.c.email,
    )
    .select_from(
        seats.join(reservations, and_(reservations.c.seat_id == seats.c.seat_id, _PAID))
        .join(payments, payments.c.payment_id == reservations.c.payment_id)
        .join(accounts, accounts.c.user_id == reservations.c.user_id)
    )
    .where(
        seats.c.date_id == _DATE_ID,
        reservations.c.reservation_id > param("after", reservations.c.reservation_id),
    )
    .order_by(reservations.c.reservation_id)
    .limit(param("limit", Integer()))
)

# -- reservations ---------------------------------------------------------------------------

# A hold takes the customer's row lock, so that one customer's holds take turns, and marks
# the seat's lapsed hold expired, so that it leaves the live-seat index
LOCK_CUSTOMER = (
    select(accounts.c.user_id)
    .where(accounts.c.user_id == param("user_id", accounts.c.user_id))
    .with_for_update(of=accounts)
)
EXPIRE_LAPSED_HOLD_OF_SEAT = (
    update(reservations)
    .where(
        reservations.c.seat_id == param("seat_id", reservations.c.seat_id),
        reservations.c.status == "held",
        reservations.c.expires_at <= NOW,
    )
    .values(status="expired")
)
UNEXPIRED_HOLDS = (
    select(func.count())
    .where(
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        held_at(NOW),
    )
    .scalar_subquery()
)
HOLD_COLUMNS = [
    "user_id",
    "seat_id",
    "date_id",
    "concert_id",
    "section",
    "row_label",
    "number",
    "price",
    "status",
    "created_at",
    "expires_at",
]
_RESERVATION_ID = param("reservation_id", reservations.c.reservation_id)
RESERVATION = Query(select(reservations).where(reservations.c.reservation_id == _RESERVATION_ID))
CANCEL = Query(
    update(reservations)
    .where(reservations.c.reservation_id == _RESERVATION_ID, held_at(NOW))
    .values(status="cancelled")
    .returning(*reservations.c)
)
# the customer's hold, held at now and never extended, lapses later (only an extension moves
# a hold's expiry, so the guard on ``extended`` makes a value computed from a read safe)
EXTEND_TO = Query(
    update(reservations)
    .where(
        reservations.c.reservation_id == _RESERVATION_ID,
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        held_at(NOW),
        reservations.c.extended.is_(false()),
    )
    .values(expires_at=param("expires_at", reservations.c.expires_at), extended=True)
    .returning(*reservations.c)
)
# a CTE, not IN (subquery): PostgreSQL may rescan an IN subquery and pass the LIMIT
_DUE = (
    select(reservations.c.reservation_id)
    .where(reservations.c.status == "held", reservations.c.expires_at <= NOW)
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


_STATUS = param("status", reservations.c.status)
_BEFORE_AT = param("before_at", reservations.c.created_at)
# newest first, with the status as of now if one is asked for, before the cursor if one is
# given (parameters that may be NULL: psycopg's SQL names their types)
RESERVATIONS_OF = Query(
    select(reservations)
    .where(
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        or_(_STATUS.is_(null()), status_at(NOW) == _STATUS),
        or_(
            _BEFORE_AT.is_(null()),
            tuple_(reservations.c.created_at, reservations.c.reservation_id)
            < tuple_(_BEFORE_AT, param("before_id", reservations.c.reservation_id)),
        ),
    )
    .order_by(reservations.c.created_at.desc(), reservations.c.reservation_id.desc())
    .limit(param("limit", Integer()))
)
# a customer's unexpired holds, soonest to lapse first
HOLDS_OF = Query(
    select(reservations)
    .where(reservations.c.user_id == param("user_id", reservations.c.user_id), held_at(NOW))
    .order_by(reservations.c.expires_at, reservations.c.reservation_id)
)

# -- wallets and payments -------------------------------------------------------------------

WALLET_OF = wallets.c.user_id == param("user_id", wallets.c.user_id)
AMOUNT = param("amount", wallets.c.balance)
WALLET_OPEN = on_each_dialect(
    lambda insert: (
        insert(wallets)
        .values(user_id=param("user_id", wallets.c.user_id), balance=0)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
)
BALANCE = Query(select(wallets.c.balance).where(WALLET_OF))
CREDIT = (
    update(wallets)
    .where(WALLET_OF, wallets.c.balance + AMOUNT <= param("max_balance", wallets.c.balance))
    .values(balance=wallets.c.balance + AMOUNT)
    .returning(wallets.c.balance)
)
LEDGER_COLUMNS = [c.name for c in ledger.c if c.name != "entry_id"]
_BEFORE_ENTRY = param("before_id", ledger.c.entry_id)
LEDGER_OF = Query(
    select(ledger)
    .where(
        ledger.c.user_id == param("user_id", ledger.c.user_id),
        or_(_BEFORE_ENTRY.is_(null()), ledger.c.entry_id < _BEFORE_ENTRY),
    )
    .order_by(ledger.c.entry_id.desc())
    .limit(param("limit", Integer()))
)
# the customer's unexpired hold becomes paid by the payment named, if the customer has a
# wallet to pay from (wallets are never deleted: a snapshot's word on that holds)
SELL = (
    update(reservations)
    .where(
        reservations.c.reservation_id == _RESERVATION_ID,
        reservations.c.user_id == param("user_id", reservations.c.user_id),
        held_at(NOW),
        exists().where(wallets.c.user_id == reservations.c.user_id),
    )
    .values(status="paid", payment_id=param("payment_id", reservations.c.payment_id))
    .returning(*reservations.c)
)

# a paid reservation becomes refunded: at most once, however many race
UNSELL = (
    update(reservations)
    .where(reservations.c.reservation_id == _RESERVATION_ID, reservations.c.status == "paid")
    .values(status="refunded")
    .returning(*reservations.c)
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
# a claim is its request's while pending with the time it was made (a retry that takes it over
# gives it its own)
_CLAIM_IS = and_(
    _KEY_IS,
    _PENDING,
    idempotency_keys.c.created_at == param("claimed_at", idempotency_keys.c.created_at),
)
KEY_COMPLETE = Query(
    update(idempotency_keys)
    .where(_CLAIM_IS)
    .values(
        state=IdempotencyState.DONE.value,
        outcome=param("outcome", idempotency_keys.c.outcome),
    )
    .returning(idempotency_keys.c.key),
    writes=True,
)
KEY_RELEASE = Query(delete(idempotency_keys).where(_CLAIM_IS))
KEYS_PURGE = Query(
    delete(idempotency_keys)
    .where(idempotency_keys.c.created_at < param("before", idempotency_keys.c.created_at))
    .returning(idempotency_keys.c.key)
)
