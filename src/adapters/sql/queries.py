"""Statements of the hot paths, defined once with SQLAlchemy Core and named parameters.

On PostgreSQL each is compiled once, at import, to psycopg's SQL and run on the driver
connection directly: SQLAlchemy's async execution path costs several times the round trip on
this hardware (DESIGN.md), and building a Core statement per call costs as much again. On
SQLite the same statement goes through SQLAlchemy, which applies the column types there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled

_PSYCOPG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


class Query:
    """A statement with named parameters; ``sqlite`` when that dialect needs another form."""

    def __init__(self, statement: ClauseElement, *, sqlite: ClauseElement | None = None) -> None:
        self.statement = statement
        self.sqlite_statement = statement if sqlite is None else sqlite
        compiled: Compiled = statement.compile(dialect=_PSYCOPG)
        self.postgresql = str(compiled)
        # values fixed in the statement itself (``status = 'held'``) travel as parameters too
        self.fixed: dict[str, Any] = dict(compiled.params)

    def for_dialect(self, dialect: str) -> Executable:
        chosen = self.sqlite_statement if dialect == "sqlite" else self.statement
        assert isinstance(chosen, Executable)
        return chosen


def param(name: str, column: Any) -> Any:
    """A named parameter typed like ``column``. Its SQL name is prefixed, for SQLAlchemy
    reserves column names in the VALUES and SET clauses; `arguments` prefixes the values."""
    return bindparam(f"p_{name}", type_=column.type)


def arguments(query: Query, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one execution: the statement's fixed values and the given ones."""
    return {**query.fixed, **{f"p_{name}": value for name, value in given.items()}}
