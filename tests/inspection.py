"""What the tests read from a store beside its ports: a customer's ledger, the payment of a
reservation. Each store has its own way in, so that no port grows a method only tests call."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from adapters.memory import InMemoryDatabase
from adapters.sql import rows
from adapters.sql.schema import ledger, payments, reservations
from concert_domain.ids import ReservationId, UserId
from concert_domain.wallet import LedgerEntry, Payment


class StoreInspector(Protocol):
    async def ledger(self, user_id: UserId) -> list[LedgerEntry]:
        """The customer's entries, oldest first."""
        ...

    async def payment_for(self, reservation_id: ReservationId) -> Payment | None: ...


class MemoryInspector(StoreInspector):
    def __init__(self, database: InMemoryDatabase) -> None:
        self._db = database

    async def ledger(self, user_id: UserId) -> list[LedgerEntry]:
        return list(self._db.ledger.get(user_id) or ())

    async def payment_for(self, reservation_id: ReservationId) -> Payment | None:
        payment_id = self._db.payment_by_reservation.get(reservation_id)
        return None if payment_id is None else self._db.payments.get(payment_id)


def sync_engine(url: str) -> Engine:
    """A SQLAlchemy engine of the tests' own on ``url``, which keeps no connection open."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, poolclass=NullPool)


class SqlInspector(StoreInspector):
    """Reads the tables on a connection of its own (a synchronous one, in a thread)."""

    def __init__(self, url: str) -> None:
        self._engine = sync_engine(url)

    async def ledger(self, user_id: UserId) -> list[LedgerEntry]:
        query = select(ledger).where(ledger.c.user_id == user_id).order_by(ledger.c.entry_id)
        return [rows.ledger_entry_from_row(row) for row in await self._rows(query)]

    async def payment_for(self, reservation_id: ReservationId) -> Payment | None:
        """The payment that paid the reservation, with every hold it paid for, by id."""
        paid_by = select(reservations.c.payment_id).where(
            reservations.c.reservation_id == reservation_id
        )
        found = await self._rows(select(payments).where(payments.c.payment_id.in_(paid_by)))
        if not found:
            return None
        together = (
            select(reservations.c.reservation_id)
            .where(reservations.c.payment_id == found[0].payment_id)
            .order_by(reservations.c.reservation_id)
        )
        ids = [ReservationId(row.reservation_id) for row in await self._rows(together)]
        return rows.payment_from_row(found[0], ids)

    async def _rows(self, query: Any) -> list[Any]:
        def read() -> list[Any]:
            with self._engine.connect() as connection:
                return list(connection.execute(query))

        return await asyncio.to_thread(read)
