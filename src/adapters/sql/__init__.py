"""The SQL adapter: PostgreSQL (psycopg 3) and the embedded SQLite, statements in SQLAlchemy
Core; what differs between them is in `postgres` and `sqlite`."""

from adapters.sql.database import SqlDatabase, SqlUnitOfWork

__all__ = ["SqlDatabase", "SqlUnitOfWork"]
