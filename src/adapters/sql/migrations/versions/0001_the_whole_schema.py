"""The whole schema: accounts, catalog, reservations, wallets with their ledger, payments and
idempotency records; the ledger is append-only.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
LIVE = sa.text("status IN ('held', 'paid')")
HELD = sa.text("status = 'held'")

APPEND_ONLY_POSTGRESQL = [
    """
    CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger rows are append-only';
    END $$
    """,
    """
    CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only()
    """,
]
APPEND_ONLY_SQLITE = [
    f"""
    CREATE TRIGGER ledger_no_{action.lower()} BEFORE {action} ON ledger
    BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END
    """
    for action in ("UPDATE", "DELETE")
]


def fk(column: str, target: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [target], name=op.f(f"fk_{table}_{column}_{target.split('.')[0]}")
    )


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("user_id", ID, autoincrement=True, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    op.create_table(
        "concerts",
        sa.Column("concert_id", ID, autoincrement=True, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("concert_id", name=op.f("pk_concerts")),
    )
    op.create_table(
        "concert_dates",
        sa.Column("date_id", ID, autoincrement=True, nullable=False),
        sa.Column("concert_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("starts_at", TIMESTAMP, nullable=False),
        fk("concert_id", "concerts.concert_id", "concert_dates"),
        sa.PrimaryKeyConstraint("date_id", name=op.f("pk_concert_dates")),
    )
    op.create_index(op.f("ix_concert_dates_concert_id"), "concert_dates", ["concert_id"])
    op.create_table(
        "seats",
        sa.Column("seat_id", ID, autoincrement=True, nullable=False),
        sa.Column("date_id", ID, nullable=False),
        sa.Column("concert_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("price >= 0", name=op.f("ck_seats_price_not_negative")),
        fk("concert_id", "concerts.concert_id", "seats"),
        fk("date_id", "concert_dates.date_id", "seats"),
        sa.PrimaryKeyConstraint("seat_id", name=op.f("pk_seats")),
        sa.UniqueConstraint("date_id", "number", name=op.f("uq_seats_date_id_number")),
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("seat_id", ID, nullable=False),
        sa.Column("date_id", ID, nullable=False),
        sa.Column("concert_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('held', 'paid', 'cancelled', 'expired')",
            name=op.f("ck_reservations_status_known"),
        ),
        fk("seat_id", "seats.seat_id", "reservations"),
        fk("user_id", "accounts.user_id", "reservations"),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_reservations")),
    )
    op.create_index(
        "uq_reservations_live_seat",
        "reservations",
        ["seat_id"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_index("ix_reservations_user_status", "reservations", ["user_id", "status"])
    op.create_index(
        "ix_reservations_held_expiry",
        "reservations",
        ["expires_at"],
        postgresql_where=HELD,
        sqlite_where=HELD,
    )
    op.create_table(
        "wallets",
        sa.Column("user_id", ID, autoincrement=False, nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_wallets_balance_not_negative")),
        fk("user_id", "accounts.user_id", "wallets"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_wallets")),
    )
    op.create_table(
        "ledger",
        sa.Column("entry_id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("kind IN ('charge', 'payment')", name=op.f("ck_ledger_kind_known")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_amount_positive")),
        fk("user_id", "accounts.user_id", "ledger"),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_ledger")),
    )
    op.create_index(op.f("ix_ledger_user_id"), "ledger", ["user_id"])
    for statement in (
        APPEND_ONLY_POSTGRESQL if op.get_bind().dialect.name == "postgresql" else APPEND_ONLY_SQLITE
    ):
        op.execute(statement)
    op.create_table(
        "payments",
        sa.Column("payment_id", ID, autoincrement=True, nullable=False),
        sa.Column("reservation_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        fk("reservation_id", "reservations.reservation_id", "payments"),
        fk("user_id", "accounts.user_id", "payments"),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payments")),
        sa.UniqueConstraint("reservation_id", name=op.f("uq_payments_reservation_id")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", ID, autoincrement=False, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        fk("user_id", "accounts.user_id", "idempotency_keys"),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])


def downgrade() -> None:
    for table in (
        "idempotency_keys",
        "payments",
        "ledger",
        "wallets",
        "reservations",
        "seats",
        "concert_dates",
        "concerts",
        "accounts",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_append_only()")
