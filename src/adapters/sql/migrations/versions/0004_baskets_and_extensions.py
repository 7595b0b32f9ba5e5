"""Several holds paid at once, refunded one by one, and a hold extended once.

A payment may now cover several reservations: each paid reservation names its payment
(``reservations.payment_id``), and the payment keeps the first of them as before. A refund is
of one reservation, so the ledger's refund entries name their reservation too
(``ledger.reservation_id``), and what is unique is the refund of a reservation, where it was
the refund of a payment. A reservation says whether its hold was extended
(``reservations.extended``).

Every row is kept: a paid or refunded reservation takes the payment made for it, a refund
entry the reservation of its payment; no hold was ever extended. Columns are only added, so
neither dialect rebuilds a table; the ledger's append-only triggers step aside for the one
backfill of its refund entries.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUND = sa.text("kind = 'refund'")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
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
    op.add_column(
        "reservations",
        sa.Column("extended", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("reservations", sa.Column("payment_id", ID, nullable=True))
    op.execute(
        """
        UPDATE reservations SET payment_id = (
            SELECT payments.payment_id FROM payments
            WHERE payments.reservation_id = reservations.reservation_id
        )
        WHERE status IN ('paid', 'refunded')
        """
    )
    op.add_column("ledger", sa.Column("reservation_id", ID, nullable=True))
    _append_only(False)
    op.execute(
        """
        UPDATE ledger SET reservation_id = (
            SELECT payments.reservation_id FROM payments
            WHERE payments.payment_id = ledger.payment_id
        )
        WHERE kind = 'refund'
        """
    )
    _append_only(True)
    op.drop_index("uq_ledger_refund_of_payment", "ledger")
    op.create_index(
        "uq_ledger_refund_of_reservation",
        "ledger",
        ["reservation_id"],
        unique=True,
        postgresql_where=REFUND,
        sqlite_where=REFUND,
    )


def _append_only(on: bool) -> None:
    if not on_sqlite():
        op.execute(f"ALTER TABLE ledger {'ENABLE' if on else 'DISABLE'} TRIGGER ledger_append_only")
    elif on:
        for statement in APPEND_ONLY_SQLITE:
            op.execute(statement)
    else:
        op.execute("DROP TRIGGER ledger_no_update")
        op.execute("DROP TRIGGER ledger_no_delete")


def downgrade() -> None:
    raise NotImplementedError(
        "0004 keeps payments of several holds that 0003 cannot hold: restore a backup instead"
    )
