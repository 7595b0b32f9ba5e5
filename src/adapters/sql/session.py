"""What the repositories need of a transaction, whichever the dialect."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import Table

from adapters.sql.queries import Query
from concert_domain.errors import TransactionAborted, TransactionClosed

Step = tuple[Query, dict[str, Any]]


class Session(Protocol):
    """One unit of work's hold on the database, begun at its first statement. Rows read by
    column name. Keeps the rules of `ports.UnitOfWork`: a statement that changes anything
    raises `TransactionClosed` once committed (or in a read-only session), and a commit after a
    failed change raises `TransactionAborted`."""

    read_only: bool

    async def run(self, query: Query, **params: Any) -> Sequence[Any]:
        """The rows of ``query`` (none for a statement that returns none)."""
        ...

    async def run_together(self, *steps: Step) -> list[Sequence[Any]]:
        """The rows of each statement, run in order in this transaction, in one round trip
        where the dialect allows."""
        ...

    async def insert_many(
        self, table: Table, columns: Sequence[str], rows: Iterable[dict[str, Any]]
    ) -> None:
        """Insert ``rows`` (any number, read once) into ``table``, in as few steps as the
        dialect can, after the statements waiting. Raises `DuplicateRow`, and fails the
        transaction, when one breaks a unique constraint."""
        ...

    def defer(self, query: Query, **params: Any) -> None:
        """A statement whose rows nobody needs: sent with this transaction's next round trip
        (its `commit`, on PostgreSQL), or at once. A refusal it raises comes out of that."""
        ...

    def refused(self, error: Exception) -> Exception:
        """Mark the transaction failed, as when a store refuses a change (``raise
        session.refused(...)``): it keeps nothing, and may not be committed."""
        ...

    async def commit(self) -> None: ...

    async def close(self) -> None:
        """Roll back what was not committed and let go of the connection."""
        ...


class DuplicateRow(Exception):
    """A row that `Session.insert_many` was given breaks a unique constraint."""


class _State(enum.Enum):
    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


class TransactionRules:
    """What both dialects' sessions keep the same way: the statements waiting to be sent, and
    the state that decides what may still be asked (`ports.UnitOfWork`)."""

    def __init__(self, *, read_only: bool) -> None:
        self.read_only = read_only
        self._pending: list[Step] = []
        self._state = _State.OPEN

    def defer(self, query: Query, **params: Any) -> None:
        self._check_writable()
        self._pending.append((query, params))

    def refused(self, error: Exception) -> Exception:
        self._aborted()
        return error

    @property
    def committed(self) -> bool:
        return self._state is _State.COMMITTED

    def _aborted(self) -> None:
        self._state = _State.ABORTED

    def _check_writes(self, steps: Sequence[Step]) -> None:
        if any(query.writes for query, _ in steps):
            self._check_writable()

    def _check_writable(self) -> None:
        if self.read_only:
            raise TransactionClosed("a read-only unit of work changes nothing")
        if self._state is _State.COMMITTED:
            raise TransactionClosed("this unit of work has committed; open another to change more")

    def _to_commit(self) -> list[Step] | None:
        """The statements still to send with the commit; None when it has been made already.
        Raises `TransactionAborted` after a failed change."""
        if self._state is _State.ABORTED:
            raise TransactionAborted("a change of this unit of work failed; nothing was kept")
        if self._state is _State.COMMITTED:
            return None
        return self._take_pending()

    def _take_pending(self) -> list[Step]:
        pending, self._pending = self._pending, []
        return pending

    def _committed(self) -> None:
        self._state = _State.COMMITTED
