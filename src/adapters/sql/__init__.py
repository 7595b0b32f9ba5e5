"""The SQL adapter: PostgreSQL (psycopg 3) and the embedded SQLite, through SQLAlchemy Core."""

from adapters.sql.database import SqlDatabase, SqlUnitOfWork

__all__ = ["SqlDatabase", "SqlUnitOfWork"]
