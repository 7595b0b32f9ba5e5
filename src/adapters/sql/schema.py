"""The database schema as SQLAlchemy Core tables: the one definition migrations are checked
against.

The constraints carry the rules that must hold under any concurrency: one live reservation per
seat (a partial unique index over held and paid rows), one payment per reservation and one
refund per reservation, balances that never go below zero, one idempotency record per customer and
key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT ids, except on SQLite where only INTEGER PRIMARY KEY numbers rows by itself
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every dialect. SQLite keeps naive UTC text, which
    sorts and compares correctly because every value is in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


accounts = Table(
    "accounts",
    metadata,
    Column("user_id", Id, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(512), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("role", String(16), nullable=False, server_default=text("'customer'")),
    CheckConstraint("role IN ('customer', 'admin')", name="role_known"),
)

concerts = Table(
    "concerts",
    metadata,
    Column("concert_id", Id, primary_key=True, autoincrement=True),
    Column("title", String(200), nullable=False),
    Column("venue", String(200), nullable=False, server_default=text("''")),
)

concert_dates = Table(
    "concert_dates",
    metadata,
    Column("date_id", Id, primary_key=True, autoincrement=True),
    Column("concert_id", Id, ForeignKey("concerts.concert_id"), nullable=False, index=True),
    Column("day", Date(), nullable=False),
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("sale_opens_at", UtcDateTime(), nullable=False),
    Column("sale_closes_at", UtcDateTime(), nullable=False),
    CheckConstraint(
        "sale_opens_at < sale_closes_at AND sale_closes_at <= starts_at", name="sale_window"
    ),
)

# A seat's place: its section and row by name, and their places in the layout (0 the best)
seats = Table(
    "seats",
    metadata,
    Column("seat_id", Id, primary_key=True, autoincrement=True),
    Column("date_id", Id, ForeignKey("concert_dates.date_id"), nullable=False),
    Column("concert_id", Id, ForeignKey("concerts.concert_id"), nullable=False),
    Column("section", String(50), nullable=False),
    Column("section_order", Integer(), nullable=False),
    Column("row_label", String(10), nullable=False),
    Column("row_order", Integer(), nullable=False),
    Column("number", Integer(), nullable=False),
    Column("price", BigInteger(), nullable=False),
    # also the index of a section's seats
    UniqueConstraint("date_id", "section", "row_label", "number"),
    CheckConstraint("price >= 0", name="price_not_negative"),
    CheckConstraint("number >= 1", name="number_positive"),
)

# the rows the live-seat index covers: a hold is marked expired before another takes its seat
HELD_OR_PAID = "status IN ('held', 'paid')"

reservations = Table(
    "reservations",
    metadata,
    Column("reservation_id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("accounts.user_id"), nullable=False),
    Column("seat_id", Id, ForeignKey("seats.seat_id"), nullable=False),
    Column("date_id", Id, nullable=False),
    Column("concert_id", Id, nullable=False),
    Column("section", String(50), nullable=False),
    Column("row_label", String(10), nullable=False),
    Column("number", Integer(), nullable=False),
    Column("price", BigInteger(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("extended", Boolean(), nullable=False, server_default=false()),
    # the payment that paid it, with the other holds paid together (payments refers back to
    # the first of them: the cycle is made by ALTER, after both tables)
    Column("payment_id", Id, ForeignKey("payments.payment_id", use_alter=True), nullable=True),
    CheckConstraint(
        "status IN ('held', 'paid', 'cancelled', 'expired', 'refunded')", name="status_known"
    ),
    # at most one held-or-paid row per seat
    Index(
        "uq_reservations_live_seat",
        "seat_id",
        unique=True,
        postgresql_where=text(HELD_OR_PAID),
        sqlite_where=text(HELD_OR_PAID),
    ),
    # a customer's reservations newest first, and their holds counted
    Index("ix_reservations_user_id_created_at", "user_id", "created_at", "reservation_id"),
    Index(
        "ix_reservations_held_expiry",
        "expires_at",
        postgresql_where=text("status = 'held'"),
        sqlite_where=text("status = 'held'"),
    ),
)

wallets = Table(
    "wallets",
    metadata,
    Column("user_id", Id, ForeignKey("accounts.user_id"), primary_key=True, autoincrement=False),
    Column("balance", BigInteger(), nullable=False, server_default=text("0")),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
)

REFUND = "kind = 'refund'"

ledger = Table(
    "ledger",
    metadata,
    Column("entry_id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("accounts.user_id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger(), nullable=False),
    Column("payment_id", Id, ForeignKey("payments.payment_id"), nullable=True),
    # a refund's reservation (a payment may have paid for several)
    Column("reservation_id", Id, ForeignKey("reservations.reservation_id"), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    # the balance this entry left
    Column("balance", BigInteger(), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("kind IN ('charge', 'payment', 'refund')", name="kind_known"),
    # a customer's entries newest first
    Index("ix_ledger_user_id_entry_id", "user_id", "entry_id"),
    # a reservation is refunded at most once
    Index(
        "uq_ledger_refund_of_reservation",
        "reservation_id",
        unique=True,
        postgresql_where=text(REFUND),
        sqlite_where=text(REFUND),
    ),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", Id, primary_key=True, autoincrement=True),
    Column(
        "reservation_id",
        Id,
        ForeignKey("reservations.reservation_id"),
        nullable=False,
        unique=True,
    ),
    Column("user_id", Id, ForeignKey("accounts.user_id"), nullable=False),
    Column("amount", BigInteger(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", Id, ForeignKey("accounts.user_id"), primary_key=True, autoincrement=False),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("outcome", JSON(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, index=True),
)
