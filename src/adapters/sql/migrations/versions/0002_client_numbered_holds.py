"""PostgreSQL: reservation ids taken by each process a block at a time, and the function by
which a statement refuses a change it cannot make.

A hold names its reservation before it is written (`adapters.sql.postgres`), so that it can be
sent with its commit: each process takes a block of ids from the sequence, whose increment is
the block's size. ``concert_refuse`` raises SQLSTATE CR001 with a refusal code as its message
and a number as its detail, which fails the statement and so leaves nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from adapters.sql.postgres import RESERVATION_ID_BLOCK

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # the next value a process takes starts a block past every id handed out so far
    op.execute(
        "SELECT setval('reservations_reservation_id_seq', "
        "COALESCE((SELECT max(reservation_id) FROM reservations), 0) + 1, false)"
    )
    op.execute(
        f"ALTER SEQUENCE reservations_reservation_id_seq INCREMENT BY {RESERVATION_ID_BLOCK}"
    )
    op.execute(
        """
        CREATE FUNCTION concert_refuse(code text, detail text) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING ERRCODE = 'CR001', MESSAGE = code, DETAIL = detail;
        END $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION concert_refuse(text, text)")
    op.execute("ALTER SEQUENCE reservations_reservation_id_seq INCREMENT BY 1")
