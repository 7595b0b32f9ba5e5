"""Statements defined once with SQLAlchemy Core and named parameters, and run on either dialect.

On PostgreSQL each is compiled once, at import, to SQL that a session (`sessions`) prepares on
each connection once, as a named server-side statement, and then runs by name with its
arguments bound on the client, several in one round trip: SQLAlchemy's async execution path
costs several times a round trip on this hardware (DESIGN.md), building a Core statement per
call costs as much again, and parsing and planning them anew costs the server more than
running them. On SQLite the same statement goes through SQLAlchemy, which applies the column
types there.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import Executable, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.types import TypeEngine

_PSYCOPG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_NAMES = itertools.count(1)


class Query:
    """A statement with named parameters; ``sqlite`` when that dialect needs another form."""

    def __init__(self, statement: ClauseElement, *, sqlite: ClauseElement | None = None) -> None:
        self.statement = statement
        self.sqlite_statement = statement if sqlite is None else sqlite
        compiled: Compiled = statement.compile(dialect=_PSYCOPG)
        self.postgresql = str(compiled)
        self.name = f"concert_{next(_NAMES)}"
        # PREPARE takes $1, $2...: the named parameters in their order of first use
        order: list[str] = []

        def numbered(found: re.Match[str]) -> str:
            if found[1] not in order:
                order.append(found[1])
            return f"${order.index(found[1]) + 1}"

        numbered_sql = _PLACEHOLDER.sub(numbered, self.postgresql).replace("%%", "%")
        self.prepare = f"PREPARE {self.name} AS {numbered_sql}"
        listed = ", ".join(f"%({name})s" for name in order)
        self.execute = f"EXECUTE {self.name}({listed})" if order else f"EXECUTE {self.name}"
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
