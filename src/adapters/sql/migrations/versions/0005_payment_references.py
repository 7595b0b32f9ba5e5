"""The references 0004 added, held by the database: a paid reservation's payment, a ledger
entry's payment and a refund's reservation must exist.

``reservations.payment_id`` refers to ``payments``, which refers back to ``reservations`` by
``payments.reservation_id``; both are checked at the end of each statement, so a payment that
numbers itself and marks its reservations in one statement (PostgreSQL) or inserts itself
first (SQLite) passes. Rows are only checked, never changed: a database whose references do
not hold stops the migration (on PostgreSQL, adding the constraint fails; on SQLite, the check
that follows every migration).

SQLite cannot add a constraint to a table, so there the two tables are rebuilt (SQLite's own
procedure, with foreign keys off while it runs); their partial indexes and the ledger's
append-only triggers are made again after, as 0003 did.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("status IN ('held', 'paid')")
HELD = sa.text("status = 'held'")
REFUND = sa.text("kind = 'refund'")
APPEND_ONLY_SQLITE = [
    f"""
    CREATE TRIGGER ledger_no_{action.lower()} BEFORE {action} ON ledger
    BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END
    """
    for action in ("UPDATE", "DELETE")
]
# (table, column, referred table, referred column)
REFERENCES = [
    ("reservations", "payment_id", "payments", "payment_id"),
    ("ledger", "payment_id", "payments", "payment_id"),
    ("ledger", "reservation_id", "reservations", "reservation_id"),
]


def on_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if not on_sqlite():
        for table, column, referred, referred_column in REFERENCES:
            op.create_foreign_key(
                _name(table, column, referred), table, referred, [column], [referred_column]
            )
        return
    _partial_indexes(made=False)
    for statement in ("DROP TRIGGER ledger_no_update", "DROP TRIGGER ledger_no_delete"):
        op.execute(statement)
    for table in ("reservations", "ledger"):
        with op.batch_alter_table(table) as batch:
            for of, column, referred, referred_column in REFERENCES:
                if of == table:
                    batch.create_foreign_key(
                        _name(table, column, referred), referred, [column], [referred_column]
                    )
    for statement in APPEND_ONLY_SQLITE:
        op.execute(statement)
    _partial_indexes(made=True)


def _name(table: str, column: str, referred: str) -> str:
    return op.f(f"fk_{table}_{column}_{referred}")


def _partial_indexes(*, made: bool) -> None:
    """The partial indexes of the two tables SQLite rebuilds: dropped before, made after."""
    indexes = [
        ("uq_reservations_live_seat", "reservations", ["seat_id"], True, LIVE),
        ("ix_reservations_held_expiry", "reservations", ["expires_at"], False, HELD),
        ("uq_ledger_refund_of_reservation", "ledger", ["reservation_id"], True, REFUND),
    ]
    for name, table, columns, unique, where in indexes:
        if made:
            op.create_index(name, table, columns, unique=unique, sqlite_where=where)
        else:
            op.drop_index(name, table)


def downgrade() -> None:
    if on_sqlite():
        raise NotImplementedError("on SQLite, restore a backup made before 0005 instead")
    for table, column, referred, _ in REFERENCES:
        op.drop_constraint(_name(table, column, referred), table, type_="foreignkey")
