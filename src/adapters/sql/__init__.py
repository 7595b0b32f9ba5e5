"""The SQL adapter: PostgreSQL (psycopg 3) and the embedded SQLite, statements in SQLAlchemy
Core; what differs between them is in `postgres` and `sqlite`."""

from adapters.sql.database import SqlDatabase, SqlUnitOfWork
from adapters.sql.errors import MigrationRefused

__all__ = ["MigrationRefused", "SqlDatabase", "SqlUnitOfWork"]
