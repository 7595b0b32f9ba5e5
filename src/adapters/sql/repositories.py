"""The database-backed ports on the statements of `adapters.sql.statements`, as both dialects
run them. Where the dialects differ (holding a seat, moving money, selling a hold), each
dialect's module subclasses these (`postgres`, `sqlite`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from adapters.sql import rows
from adapters.sql import statements as sql
from adapters.sql.session import Session
from concert_domain.accounts import Account
from concert_domain.catalog import (
    Concert,
    ConcertDate,
    DateAvailability,
    Seat,
    SeatStatus,
    SeatView,
)
from concert_domain.errors import EmailTaken, InvalidRequest
from concert_domain.idempotency import IdempotencyRecord, StoredOutcome
from concert_domain.ids import ConcertId, DateId, ReservationId, SeatId, UserId
from concert_domain.ports import (
    AccountRepository,
    CatalogRepository,
    IdempotencyRepository,
    ReservationRepository,
    WalletRepository,
)
from concert_domain.reservations import Reservation


class SqlAccountRepository(AccountRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def add(self, email: str, password_hash: str, now: datetime) -> Account:
        added = await self._db.run(
            sql.ACCOUNT_ADD, email=email, password_hash=password_hash, created_at=now
        )
        if not added:
            raise self._db.refused(EmailTaken(f"{email} already has an account"))
        return rows.account_from_row(added[0])

    async def get_by_email(self, email: str) -> Account | None:
        found = await self._db.run(sql.ACCOUNT_BY_EMAIL, email=email)
        return rows.account_from_row(found[0]) if found else None

    async def exists(self, user_id: UserId) -> bool:
        return bool(await self._db.run(sql.ACCOUNT_EXISTS, user_id=user_id))


class SqlCatalogRepository(CatalogRepository):
    def __init__(self, db: Session) -> None:
        self._db = db

    async def add_concert(self, title: str) -> Concert:
        [row] = await self._db.run(sql.CONCERT_ADD, title=title)
        return rows.concert_from_row(row)

    async def add_date(self, concert_id: ConcertId, day: date, starts_at: datetime) -> ConcertDate:
        if await self.get_concert(concert_id) is None:
            raise self._db.refused(InvalidRequest(f"no concert {concert_id}"))
        [row] = await self._db.run(
            sql.DATE_ADD, concert_id=concert_id, day=day, starts_at=starts_at
        )
        return rows.date_from_row(row)

    async def add_seats(self, date_id: DateId, seat_list: Sequence[tuple[int, int]]) -> list[Seat]:
        concert_date = await self.get_date(date_id)
        if concert_date is None:
            raise self._db.refused(InvalidRequest(f"no date {date_id}"))
        if not seat_list:
            return []
        steps = [
            (
                sql.SEAT_ADD,
                {
                    "date_id": date_id,
                    "concert_id": concert_date.concert_id,
                    "number": number,
                    "price": price,
                },
            )
            for number, price in seat_list
        ]
        added = [
            rows.seat_from_row(row)
            for found in await self._db.run_together(*steps)
            for row in found
        ]
        if len(added) < len(seat_list):
            kept = {seat.number for seat in added}
            numbers = [number for number, _ in seat_list]
            clash = sorted({n for n in numbers if n not in kept or numbers.count(n) > 1})
            raise self._db.refused(InvalidRequest(f"seats {clash} already exist on date {date_id}"))
        return sorted(added, key=lambda seat: seat.number)

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

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        return [
            DateAvailability(rows.date_from_row(row), row.available)
            for row in await self._db.run(sql.OPEN_DATES, concert_id=concert_id, now=now)
        ]

    async def seat_map(self, date_id: DateId, now: datetime) -> list[SeatView]:
        return [
            SeatView(
                rows.seat_from_row(row),
                _SEAT_STATUS[row.live_status],
                row.held_until if row.live_status == "held" else None,
            )
            for row in await self._db.run(sql.SEAT_MAP, date_id=date_id, now=now)
        ]


_SEAT_STATUS = {None: SeatStatus.AVAILABLE, "held": SeatStatus.HELD, "paid": SeatStatus.SOLD}


class SqlReservationRepository(ReservationRepository):
    """All but `hold`, which each dialect writes its own way."""

    def __init__(self, db: Session) -> None:
        self._db = db

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        found = await self._db.run(sql.RESERVATION, reservation_id=reservation_id)
        return rows.reservation_from_row(found[0]) if found else None

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        ended = await self._db.run(sql.CANCEL, reservation_id=reservation_id, now=now)
        return rows.reservation_from_row(ended[0]) if ended else None

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        expired = await self._db.run(sql.EXPIRE_DUE, now=now, limit=limit)
        return [rows.reservation_from_row(row) for row in expired]


class SqlWalletRepository(WalletRepository):
    """All but `credit`, which each dialect writes its own way."""

    def __init__(self, db: Session) -> None:
        self._db = db

    async def open(self, user_id: UserId) -> None:
        self._db.defer(sql.WALLET_OPEN, user_id=user_id)

    async def balance(self, user_id: UserId) -> int:
        found = await self._db.run(sql.BALANCE, user_id=user_id)
        return int(found[0].balance) if found else 0


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

    async def complete(self, user_id: UserId, key: str, outcome: StoredOutcome) -> None:
        outcome_json = rows.outcome_to_json(outcome)
        self._db.defer(sql.KEY_COMPLETE, user_id=user_id, key=key, outcome=outcome_json)

    async def release(self, user_id: UserId, key: str) -> None:
        self._db.defer(sql.KEY_RELEASE, user_id=user_id, key=key)

    async def purge(self, before: datetime) -> int:
        return len(await self._db.run(sql.KEYS_PURGE, before=before))
