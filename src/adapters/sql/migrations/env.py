"""Alembic environment: runs on the connection handed over in ``config.attributes``."""

from alembic import context

from adapters.sql.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit(
        "run migrations with `concert migrate` (or SqlDatabase.migrate), which hands Alembic "
        "its connection"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
