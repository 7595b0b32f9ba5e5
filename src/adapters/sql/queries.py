"""Statements defined once with SQLAlchemy Core and named parameters, and run on either dialect.

On PostgreSQL each is compiled once, at import, to SQL that a session (`postgres`) prepares on
each connection once, as a named server-side statement, and then runs by name with its
arguments bound on the client, several in one round trip: SQLAlchemy's execution path and
building a Core statement per call each cost more than the round trip itself, and parsing and
planning a statement anew costs the server more than running it (docs/benchmarks.md). On
SQLite the same statement goes through SQLAlchemy, which applies the column types there.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

_PSYCOPG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_NAMES = itertools.count(1)


class Query:
    """A statement with named parameters; ``sqlite`` when that dialect needs another form.
    ``writes`` says whether it changes anything: an INSERT, UPDATE or DELETE does; a SELECT
    that changes rows in a WITH clause, or locks them, must say so. The PostgreSQL form is
    compiled the first time it is asked for."""

    def __init__(
        self,
        statement: ClauseElement,
        *,
        sqlite: ClauseElement | None = None,
        writes: bool | None = None,
    ) -> None:
        self.statement = statement
        self.writes = isinstance(statement, UpdateBase) if writes is None else writes
        self.sqlite = statement if sqlite is None else sqlite
        self.name = f"concert_{next(_NAMES)}"

    @functools.cached_property
    def _compiled(self) -> Compiled:
        return self.statement.compile(dialect=_PSYCOPG)

    @functools.cached_property
    def postgresql(self) -> str:
        return str(self._compiled)

    @functools.cached_property
    def _order(self) -> list[str]:
        """The named parameters in their order of first use: PREPARE takes $1, $2..."""
        order: list[str] = []
        for found in _PLACEHOLDER.finditer(self.postgresql):
            if found[1] not in order:
                order.append(found[1])
        return order

    @functools.cached_property
    def prepare(self) -> str:
        order = self._order
        numbered = _PLACEHOLDER.sub(lambda m: f"${order.index(m[1]) + 1}", self.postgresql)
        return f"PREPARE {self.name} AS {numbered.replace('%%', '%')}"

    @functools.cached_property
    def execute(self) -> str:
        listed = ", ".join(f"%({name})s" for name in self._order)
        return f"EXECUTE {self.name}({listed})" if listed else f"EXECUTE {self.name}"

    @functools.cached_property
    def fixed(self) -> dict[str, Any]:
        """Values fixed in the statement itself (``status = 'held'``), which travel as
        parameters too; the caller's own (`param`) are left out, so that one not given is an
        error, not NULL."""
        return {
            name: value
            for name, value in self._compiled.params.items()
            if not name.startswith("p_")
        }


def on_each_dialect(build: Callable[[Any], ClauseElement], *, writes: bool | None = None) -> Query:
    """A Query from ``build(insert)``, where ``insert`` is the dialect's own, which knows
    ``ON CONFLICT``."""
    return Query(build(postgresql.insert), sqlite=build(sqlite.insert), writes=writes)


def param(name: str, typed: Any) -> Any:
    """A named parameter typed like ``typed`` (a column, or a SQLAlchemy type). Its SQL name
    is prefixed, for SQLAlchemy reserves column names in the VALUES and SET clauses;
    `arguments` prefixes the values."""
    type_ = typed if isinstance(typed, TypeEngine) else typed.type
    return bindparam(f"p_{name}", type_=type_)


def arguments(query: Query, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one execution on PostgreSQL: the statement's fixed values and the
    given ones."""
    return {**query.fixed, **named(given)}


def named(given: dict[str, Any]) -> dict[str, Any]:
    """The given parameters under their SQL names (`param`)."""
    return {f"p_{name}": value for name, value in given.items()}
