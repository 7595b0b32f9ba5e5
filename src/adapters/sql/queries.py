"""Statements defined once with SQLAlchemy Core and named parameters, and run on either dialect.

On PostgreSQL each is compiled once, at import, to psycopg's SQL and bound on the client by
the session (`sessions.PostgresSession`), which sends a transaction's statements in as few
round trips as it can: SQLAlchemy's async execution path costs several times a round trip on
this hardware (DESIGN.md), and building a Core statement per call costs as much again. On
SQLite the same statement goes through SQLAlchemy, which applies the column types there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Executable, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.types import TypeEngine

_PSYCOPG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


class Query:
    """A statement with named parameters; ``sqlite`` when that dialect needs another form."""

    def __init__(self, statement: ClauseElement, *, sqlite: ClauseElement | None = None) -> None:
        self.statement = statement
        self.sqlite_statement = statement if sqlite is None else sqlite
        compiled: Compiled = statement.compile(dialect=_PSYCOPG)
        self.postgresql = str(compiled)
        # values fixed in the statement itself (``status = 'held'``) travel as parameters too;
        # the caller's own (`param`) are left out, so that one not given is an error, not NULL
        self.fixed: dict[str, Any] = {
            name: value for name, value in compiled.params.items() if not name.startswith("p_")
        }

    def for_dialect(self, dialect: str) -> Executable:
        chosen = self.sqlite_statement if dialect == "sqlite" else self.statement
        assert isinstance(chosen, Executable)
        return chosen


def on_each_dialect(build: Callable[[Any], ClauseElement]) -> Query:
    """A Query from ``build(insert)``, where ``insert`` is the dialect's own, which knows
    ``ON CONFLICT``."""
    return Query(build(postgresql.insert), sqlite=build(sqlite.insert))


def param(name: str, typed: Any) -> Any:
    """A named parameter typed like ``typed`` (a column, or a SQLAlchemy type). Its SQL name
    is prefixed, for SQLAlchemy reserves column names in the VALUES and SET clauses;
    `arguments` prefixes the values."""
    type_ = typed if isinstance(typed, TypeEngine) else typed.type
    return bindparam(f"p_{name}", type_=type_)


def arguments(query: Query, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one execution: the statement's fixed values and the given ones."""
    return {**query.fixed, **{f"p_{name}": value for name, value in given.items()}}
