"""Database errors as the core's errors: nothing above this adapter sees a driver exception."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from concert_domain.errors import StoreUnavailable, TransactionConflict

# serialization_failure, deadlock_detected, lock_not_available
CONFLICT_STATES = {"40001", "40P01", "55P03"}


class MigrationRefused(Exception):
    """The database holds rows that the schema's next version refuses (a reference that does
    not hold, say); the migration was rolled back whole."""


def translate(error: DBAPIError) -> Exception:
    """The core's error for an error from SQLAlchemy's drivers (SQLite); constraint violations
    and other programming errors stay as they are, for they are bugs, not conditions to
    handle."""
    if "database is locked" in str(error.orig):
        return TransactionConflict("the database gave up a transaction under contention")
    if isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated:
        return StoreUnavailable("the database cannot be reached")
    return error


def translate_psycopg(error: psycopg.Error) -> Exception:
    """The same for psycopg's errors (PostgreSQL)."""
    if error.sqlstate in CONFLICT_STATES:
        return TransactionConflict("the database gave up a transaction under contention")
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable("the database cannot be reached")
    return error
