"""The database-backed ports on the statements of `adapters.sql.statements`, as both dialects
run them. Where the dialects differ (holding a seat, moving money, selling a hold), each
dialect's module subclasses these (`postgres`, `sqlite`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

from adapters.sql import rows
from adapters.sql import statements as sql
from adapters.sql.schema import seats
from adapters.sql.session import DuplicateRow, Session
from concert_domain.accounts import Account, AccountOverview, Role
from concert_domain.catalog import (
    Concert,
    ConcertDate,
    DateAvailability,
    NewSeat,
    Sales,
    Seat,
    SeatStatus,
    SeatView,
    SectionSales,
    SoldSeat,
)
from concert_domain.errors import EmailTaken, InvalidRequest
from concert_domain.idempotency import IdempotencyRecord, StoredOutcome
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId, UserId
from concert_domain.paging import Position
from concert_domain.ports import (
    AccountRepository,
    CatalogRepository,
    IdempotencyRepository,
    ReservationRepository,
    WalletRepository,
)
from concert_domain.reservations import Reservation, ReservationStatus
from concert_domain.wallet import LedgerEntry


class SqlAccountRepository(AccountRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def add(
        self, email: str, password_hash: str, now: datetime, role: Role = Role.CUSTOMER
    ) -> Account:
        added = await self._db.run(
            sql.ACCOUNT_ADD,
            email=email,
            password_hash=password_hash,
            created_at=now,
            role=role.value,
        )
        if not added:
            raise self._db.refused(EmailTaken(f"{email} already has an account"))
        return rows.account_from_row(added[0])

    async def get(self, user_id: UserId) -> Account | None:
        found = await self._db.run(sql.ACCOUNT_WITH_BALANCE, user_id=user_id)
        return rows.account_from_row(found[0]) if found else None

    async def get_by_email(self, email: str) -> Account | None:
        found = await self._db.run(sql.ACCOUNT_BY_EMAIL, email=email)
        return rows.account_from_row(found[0]) if found else None

    async def exists(self, user_id: UserId) -> bool:
        return bool(await self._db.run(sql.ACCOUNT_EXISTS, user_id=user_id))

    async def set_role(self, user_id: UserId, role: Role) -> None:
        self._db.defer(sql.ACCOUNT_SET_ROLE, user_id=user_id, role=role.value)

    async def overview(self, user_id: UserId, now: datetime) -> AccountOverview | None:
        found, holds = await self._db.run_together(
            (sql.ACCOUNT_WITH_BALANCE, {"user_id": user_id}),
            (sql.HOLDS_OF, {"user_id": user_id, "now": now}),
        )
        if not found:
            return None
        return AccountOverview(
            rows.account_from_row(found[0]),
            int(found[0].balance),
            [rows.reservation_from_row(row) for row in holds],
        )


class SqlCatalogRepository(CatalogRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def add_concert(self, title: str, venue: str = "") -> Concert:
        [row] = await self._db.run(sql.CONCERT_ADD, title=title, venue=venue)
        return rows.concert_from_row(row)

    async def add_date(
        self,
        concert_id: ConcertId,
        day: date,
        starts_at: datetime,
        sale_opens_at: datetime,
        sale_closes_at: datetime,
    ) -> ConcertDate:
        if await self.get_concert(concert_id) is None:
            raise self._db.refused(InvalidRequest(f"no concert {concert_id}"))
        [row] = await self._db.run(
            sql.DATE_ADD,
            concert_id=concert_id,
            day=day,
            starts_at=starts_at,
            sale_opens_at=sale_opens_at,
            sale_closes_at=sale_closes_at,
        )
        return rows.date_from_row(row)

    async def add_seats(self, date_id: DateId, seat_list: Iterable[NewSeat]) -> int:
        concert_date = await self.get_date(date_id)
        if concert_date is None:
            raise self._db.refused(InvalidRequest(f"no date {date_id}"))
        counted = _Counted(
            rows.seat_to_row(date_id, concert_date.concert_id, seat) for seat in seat_list
        )
        try:
            await self._db.insert_many(seats, SEAT_COLUMNS, counted)
        except DuplicateRow as e:
            raise InvalidRequest(f"a seat is there twice on date {date_id}") from e
        return counted.count

    async def list_concerts(self) -> list[Concert]:
        return [rows.concert_from_row(row) for row in await self._db.run(sql.CONCERTS)]

    async def get_concert(self, concert_id: ConcertId) -> Concert | None:
        found = await self._db.run(sql.CONCERT, concert_id=concert_id)
        return rows.concert_from_row(found[0]) if found else None

    async def get_date(self, date_id: DateId) -> ConcertDate | None:
        found = await self._db.run(sql.DATE, date_id=date_id)
        return rows.date_from_row(found[0]) if found else None

    async def get_seat(self, seat_id: SeatId) -> Seat | None:
        found = await self._db.run(sql.SEAT, seat_id=seat_id)
        return rows.seat_from_row(found[0]) if found else None

    async def sections(self, date_id: DateId) -> list[str]:
        return [row.section for row in await self._db.run(sql.SECTIONS, date_id=date_id)]

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        return [
            DateAvailability(rows.date_from_row(row), row.available)
            for row in await self._db.run(sql.OPEN_DATES, concert_id=concert_id, now=now)
        ]

    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> list[SeatView]:
        if section is None:
            found = await self._db.run(sql.SEAT_MAP, date_id=date_id, now=now)
        else:
            found = await self._db.run(sql.SECTION_MAP, date_id=date_id, now=now, section=section)
        return [
            SeatView(
                rows.seat_from_row(row),
                _SEAT_STATUS[row.live_status],
                row.held_until if row.live_status == "held" else None,
            )
            for row in found
        ]

    async def sales(self, date_id: DateId, now: datetime) -> Sales:
        counted = await self._db.run(sql.SALES, date_id=date_id, now=now)
        return Sales(
            date_id,
            [
                SectionSales(
                    name=row.section,
                    seats_total=row.seats_total,
                    available=row.seats_total - row.held - row.sold,
                    held=row.held,
                    sold=row.sold,
                    revenue=int(row.revenue),
                )
                for row in counted
            ],
        )

    async def sold_seats(
        self, date_id: DateId, after: ReservationId | None, limit: int
    ) -> list[SoldSeat]:
        found = await self._db.run(sql.SOLD_SEATS, date_id=date_id, after=after or 0, limit=limit)
        return [rows.sold_seat_from_row(row) for row in found]


_SEAT_STATUS = {None: SeatStatus.AVAILABLE, "held": SeatStatus.HELD, "paid": SeatStatus.SOLD}
SEAT_COLUMNS = [column.name for column in seats.c if column.name != "seat_id"]


class _Counted(Iterator[dict[str, Any]]):
    """Rows passed through, counted as they go."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self._rows = iter(rows)
        self.count = 0

    def __next__(self) -> dict[str, Any]:
        row = next(self._rows)
        self.count += 1
        return row


class SqlReservationRepository(ReservationRepository):
    """All but `hold`, which each dialect writes its own way. An extension reads the hold and
    then extends it by a conditional write (`statements.EXTEND_TO`)."""

    def __init__(self, db: Session) -> None:
        self._db = db

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        found = await self._db.run(sql.RESERVATION, reservation_id=reservation_id)
        return rows.reservation_from_row(found[0]) if found else None

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        ended = await self._db.run(sql.CANCEL, reservation_id=reservation_id, now=now)
        return rows.reservation_from_row(ended[0]) if ended else None

    async def extend(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime, by: timedelta
    ) -> Reservation | None:
        found = await self.get(reservation_id)
        if found is None or found.user_id != user_id or found.extended:
            return None
        extended = await self._db.run(
            sql.EXTEND_TO,
            reservation_id=reservation_id,
            user_id=user_id,
            now=now,
            expires_at=found.expires_at + by,
        )
        return rows.reservation_from_row(extended[0]) if extended else None

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        expired = await self._db.run(sql.EXPIRE_DUE, now=now, limit=limit)
        return [rows.reservation_from_row(row) for row in expired]

    async def of_customer(
        self,
        user_id: UserId,
        status: ReservationStatus | None,
        before: Position | None,
        limit: int,
        now: datetime,
    ) -> list[Reservation]:
        found = await self._db.run(
            sql.RESERVATIONS_OF,
            user_id=user_id,
            status=None if status is None else status.value,
            before_at=None if before is None else before.at,
            before_id=None if before is None else before.id,
            limit=limit,
            now=now,
        )
        return [rows.reservation_from_row(row) for row in found]


class SqlWalletRepository(WalletRepository):
    """All but `credit`, which each dialect writes its own way."""

    def __init__(self, db: Session) -> None:
        self._db = db

    async def open(self, user_id: UserId) -> None:
        self._db.defer(sql.WALLET_OPEN, user_id=user_id)

    async def balance(self, user_id: UserId) -> int:
        found = await self._db.run(sql.BALANCE, user_id=user_id)
        return int(found[0].balance) if found else 0

    async def transactions(
        self, user_id: UserId, before: Position | None, limit: int
    ) -> list[LedgerEntry]:
        found = await self._db.run(
            sql.LEDGER_OF,
            user_id=user_id,
            before_id=None if before is None else before.id,
            limit=limit,
        )
        return [rows.ledger_entry_from_row(row) for row in found]


class SqlIdempotencyRepository(IdempotencyRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def claim(
        self, user_id: UserId, key: str, fingerprint: str, now: datetime, lease: timedelta
    ) -> IdempotencyRecord | None:
        record = {"user_id": user_id, "key": key}
        claim = {**record, "fingerprint": fingerprint, "created_at": now}
        for _ in range(3):  # a record deleted between our statements: try again
            if await self._db.run(sql.KEY_CLAIM, **claim):
                return None
            if await self._db.run(sql.KEY_TAKE_OVER, **claim, abandoned_by=now - lease):
                return None
            found = await self._db.run(sql.KEY, **record)
            if found:
                return rows.idempotency_from_row(found[0])
        raise RuntimeError(f"idempotency key {key!r} kept vanishing while being claimed")

    async def complete(
        self, user_id: UserId, key: str, claimed_at: datetime, outcome: StoredOutcome
    ) -> bool:
        # run, not deferred to the commit: the work must not commit if the claim is lost
        completed = await self._db.run(
            sql.KEY_COMPLETE,
            user_id=user_id,
            key=key,
            claimed_at=claimed_at,
            outcome=rows.outcome_to_json(outcome),
        )
        return bool(completed)

    async def find(self, user_id: UserId, key: str) -> IdempotencyRecord | None:
        found = await self._db.run(sql.KEY, user_id=user_id, key=key)
        return rows.idempotency_from_row(found[0]) if found else None

    async def release(self, user_id: UserId, key: str, claimed_at: datetime) -> None:
        self._db.defer(sql.KEY_RELEASE, user_id=user_id, key=key, claimed_at=claimed_at)

    async def purge(self, before: datetime) -> int:
        return len(await self._db.run(sql.KEYS_PURGE, before=before))
