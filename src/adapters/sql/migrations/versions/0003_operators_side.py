"""The operator's side: roles, venues, sale windows, seats laid out in sections and rows,
refunds, and the balance each ledger entry left.

Every row is kept. What was there before reads as it did: accounts are customers; concerts have
no venue; a date was on sale until it started, so its sale closes at its start and opens when
this migration runs (or a second before the start of a date already past); every seat is in
section ``Floor``, row ``A``, with its number, as the demo's are; a reservation takes its
seat's section and row; each ledger entry gets the running balance of its customer.

On SQLite a changed constraint means a rebuilt table (Alembic's batch mode), which drops the
table's indexes and triggers: the partial indexes and the ledger's append-only triggers are
dropped first and made again last. The caller turns foreign keys off around it, as SQLite
asks (`adapters.sql.sqlite.SqliteSessions.migrate`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LIVE = sa.text("status IN ('held', 'paid')")
HELD = sa.text("status = 'held'")
REFUND = sa.text("kind = 'refund'")
STATUSES = "'held', 'paid', 'cancelled', 'expired'"
KINDS = "'charge', 'payment'"
APPEND_ONLY_SQLITE = [
    f"""
    CREATE TRIGGER ledger_no_{action.lower()} BEFORE {action} ON ledger
    BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END
    """
    for action in ("UPDATE", "DELETE")
]


def on_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("role", sa.String(16), nullable=False, server_default=sa.text("'customer'"))
        )
        batch.create_check_constraint(
            op.f("ck_accounts_role_known"), "role IN ('customer', 'admin')"
        )
    op.add_column(
        "concerts",
        sa.Column("venue", sa.String(200), nullable=False, server_default=sa.text("''")),
    )
    _sale_windows()
    _seat_places()
    _reservation_places()
    _ledger_balances()


def _sale_windows() -> None:
    with op.batch_alter_table("concert_dates") as batch:
        batch.add_column(sa.Column("sale_opens_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("sale_closes_at", TIMESTAMP, nullable=True))
    dates = sa.table(
        "concert_dates",
        sa.column("date_id", sa.BigInteger()),
        sa.column("starts_at", TIMESTAMP),
        sa.column("sale_opens_at", TIMESTAMP),
        sa.column("sale_closes_at", TIMESTAMP),
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    for date_id, starts_at in bind.execute(sa.select(dates.c.date_id, dates.c.starts_at)).all():
        # SQLite gives back the naive UTC it keeps
        current = now.replace(tzinfo=None) if starts_at.tzinfo is None else now
        bind.execute(
            dates.update()
            .where(dates.c.date_id == date_id)
            .values(
                sale_opens_at=min(current, starts_at - timedelta(seconds=1)),
                sale_closes_at=starts_at,
            )
        )
    with op.batch_alter_table("concert_dates") as batch:
        batch.alter_column("sale_opens_at", existing_type=TIMESTAMP, nullable=False)
        batch.alter_column("sale_closes_at", existing_type=TIMESTAMP, nullable=False)
        batch.create_check_constraint(
            op.f("ck_concert_dates_sale_window"),
            "sale_opens_at < sale_closes_at AND sale_closes_at <= starts_at",
        )


def _seat_places() -> None:
    with op.batch_alter_table("seats") as batch:
        for name, type_ in _PLACE_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.execute(
        "UPDATE seats SET section = 'Floor', section_order = 0, row_label = 'A', row_order = 0"
    )
    with op.batch_alter_table("seats") as batch:
        for name, type_ in _PLACE_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=False)
        batch.drop_constraint(op.f("uq_seats_date_id_number"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_seats_date_id_section_row_label_number"),
            ["date_id", "section", "row_label", "number"],
        )
        batch.create_check_constraint(op.f("ck_seats_number_positive"), "number >= 1")


_PLACE_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("section", sa.String(50)),
    ("section_order", sa.Integer()),
    ("row_label", sa.String(10)),
    ("row_order", sa.Integer()),
]


def _reservation_places() -> None:
    # rebuilt on SQLite: its partial indexes are made again after
    op.drop_index("uq_reservations_live_seat", "reservations")
    op.drop_index("ix_reservations_held_expiry", "reservations")
    op.drop_index("ix_reservations_user_status", "reservations")
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("section", sa.String(50), nullable=True))
        batch.add_column(sa.Column("row_label", sa.String(10), nullable=True))
    op.execute(
        "UPDATE reservations SET "
        "section = (SELECT section FROM seats WHERE seats.seat_id = reservations.seat_id), "
        "row_label = (SELECT row_label FROM seats WHERE seats.seat_id = reservations.seat_id)"
    )
    with op.batch_alter_table("reservations") as batch:
        batch.alter_column("section", existing_type=sa.String(50), nullable=False)
        batch.alter_column("row_label", existing_type=sa.String(10), nullable=False)
        batch.drop_constraint(op.f("ck_reservations_status_known"), type_="check")
        batch.create_check_constraint(
            op.f("ck_reservations_status_known"), f"status IN ({STATUSES}, 'refunded')"
        )
    op.create_index(
        "uq_reservations_live_seat",
        "reservations",
        ["seat_id"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_index(
        "ix_reservations_held_expiry",
        "reservations",
        ["expires_at"],
        postgresql_where=HELD,
        sqlite_where=HELD,
    )
    op.create_index(
        "ix_reservations_user_id_created_at",
        "reservations",
        ["user_id", "created_at", "reservation_id"],
    )


def _ledger_balances() -> None:
    if on_sqlite():
        op.execute("DROP TRIGGER ledger_no_update")
        op.execute("DROP TRIGGER ledger_no_delete")
    else:
        op.execute("ALTER TABLE ledger DISABLE TRIGGER ledger_append_only")
    op.drop_index("ix_ledger_user_id", "ledger")
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("balance", sa.BigInteger(), nullable=True))
    op.execute(
        """
        UPDATE ledger SET balance = (
            SELECT running.balance FROM (
                SELECT entry_id, SUM(CASE WHEN kind = 'payment' THEN -amount ELSE amount END)
                    OVER (PARTITION BY user_id ORDER BY entry_id) AS balance
                FROM ledger
            ) AS running
            WHERE running.entry_id = ledger.entry_id
        )
        """
    )
    with op.batch_alter_table("ledger") as batch:
        batch.alter_column("balance", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_constraint(op.f("ck_ledger_kind_known"), type_="check")
        batch.create_check_constraint(op.f("ck_ledger_kind_known"), f"kind IN ({KINDS}, 'refund')")
    op.create_index("ix_ledger_user_id_entry_id", "ledger", ["user_id", "entry_id"])
    op.create_index(
        "uq_ledger_refund_of_payment",
        "ledger",
        ["payment_id"],
        unique=True,
        postgresql_where=REFUND,
        sqlite_where=REFUND,
    )
    if on_sqlite():
        for statement in APPEND_ONLY_SQLITE:
            op.execute(statement)
    else:
        op.execute("ALTER TABLE ledger ENABLE TRIGGER ledger_append_only")


def downgrade() -> None:
    raise NotImplementedError(
        "0003 keeps sections, roles and refunds that 0002 cannot hold: restore a backup instead"
    )
