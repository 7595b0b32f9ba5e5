"""Ports: what the core needs from the outside world, and the contract each must keep.

Adapters subclass these Protocols so mypy checks them where they are defined. Every port that a
concurrent rule depends on states which operation is atomic: the guard lives in the store, never
in a check made by the caller before a write. Stores raise only the core's errors; an
infrastructure failure comes out as `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from concert_domain.accounts import AccessToken, Account, AccountOverview, Identity, Role
from concert_domain.catalog import (
    Concert,
    ConcertDate,
    DateAvailability,
    NewSeat,
    Sales,
    Seat,
    SeatView,
    SoldSeat,
)
from concert_domain.idempotency import IdempotencyRecord, StoredOutcome
from concert_domain.ids import ConcertId, DateId, QueueToken, ReservationId, SeatId, UserId
from concert_domain.paging import Position
from concert_domain.queue import QueuePolicy, QueueTicket
from concert_domain.reservations import HoldAttempt, Reservation, ReservationStatus
from concert_domain.wallet import LedgerEntry, Refund, Sale


class Clock(Protocol):
    """The only source of time. ``now`` is timezone-aware (UTC)."""

    def now(self) -> datetime: ...


class PasswordHasher(Protocol):
    """Password hashing that never blocks the event loop."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """True only if ``password`` matches; a malformed hash is a mismatch, not an error."""
        ...

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification, so an unknown email answers as slowly as a
        wrong password."""
        ...


class AccessTokens(Protocol):
    """Signed bearer tokens that name an account and its role until they expire."""

    def issue(self, user_id: UserId, role: Role, now: datetime) -> AccessToken: ...

    def verify(self, token: str) -> Identity:
        """Whom a genuine token names, in which role, and until when; raises `Unauthorized`
        if it is malformed, tampered, or signed with another key or algorithm. Whether it has
        expired is the caller's question (`Identity.at`)."""
        ...


class AccountRepository(Protocol):
    async def add(
        self, email: str, password_hash: str, now: datetime, role: Role = Role.CUSTOMER
    ) -> Account:
        """Create an account. ``email`` is already normalized. Atomic: raises `EmailTaken` if
        the email exists, however many sign-ups race."""
        ...

    async def get(self, user_id: UserId) -> Account | None: ...

    async def get_by_email(self, email: str) -> Account | None: ...

    async def exists(self, user_id: UserId) -> bool:
        """Whether the account is there (accounts are never deleted)."""
        ...

    async def set_role(self, user_id: UserId, role: Role) -> None: ...

    async def overview(self, user_id: UserId, now: datetime) -> AccountOverview | None:
        """The account, its balance and its unexpired holds (soonest to lapse first), read
        together: what a customer sees of themselves at ``now``."""
        ...


class CatalogRepository(Protocol):
    """Concerts, dates and seats; and the seat statuses they show at an instant."""

    async def add_concert(self, title: str, venue: str = "") -> Concert: ...

    async def add_date(
        self,
        concert_id: ConcertId,
        day: date,
        starts_at: datetime,
        sale_opens_at: datetime,
        sale_closes_at: datetime,
    ) -> ConcertDate:
        """Raises `InvalidRequest` for an unknown concert."""
        ...

    async def add_seats(self, date_id: DateId, seats: Iterable[NewSeat]) -> int:
        """Add the seats of a layout, as many as a date may have, in as few steps as the store
        can; returns how many. A seat is unique by section, row and number within its date
        (raises `InvalidRequest`, as for an unknown date)."""
        ...

    async def list_concerts(self) -> list[Concert]:
        """Every concert, by id."""
        ...

    async def get_concert(self, concert_id: ConcertId) -> Concert | None: ...

    async def get_date(self, date_id: DateId) -> ConcertDate | None: ...

    async def get_seat(self, seat_id: SeatId) -> Seat | None: ...

    async def sections(self, date_id: DateId) -> list[str]:
        """The names of the date's sections in layout order, the best first; empty for an
        unknown date."""
        ...

    async def open_dates(self, concert_id: ConcertId, now: datetime) -> list[DateAvailability]:
        """Dates of the concert whose sale has not closed at ``now`` with at least one seat
        available at ``now``, soonest first. A seat is available unless it has a live
        reservation (`Reservation.is_live`)."""
        ...

    async def seat_map(
        self, date_id: DateId, now: datetime, section: str | None = None
    ) -> Sequence[SeatView]:
        """The date's seats (only ``section``'s, if named) with their status at ``now``, in
        layout order: section, row, number. Empty for a section the date does not have."""
        ...

    async def sales(self, date_id: DateId, now: datetime) -> Sales:
        """The date's seats counted at ``now``, per section, in one reading of the store."""
        ...

    async def sold_seats(
        self, date_id: DateId, after: ReservationId | None, limit: int
    ) -> list[SoldSeat]:
        """Up to ``limit`` of the date's sold seats, by reservation id, after ``after``."""
        ...


class ReservationRepository(Protocol):
    async def hold(
        self,
        user_id: UserId,
        seats: Sequence[Seat],
        now: datetime,
        expires_at: datetime,
        max_holds: int,
    ) -> list[Reservation]:
        """Record `Reservation.hold` of every seat, in the order given, all or none, decided
        by the store under any concurrency: refused with `HoldLimitReached` if the customer's
        unexpired holds and these would pass ``max_holds``, else with `SeatUnavailable` if any
        seat has a live reservation at ``now``. A refusal comes out of this call or of
        `UnitOfWork.commit`, and leaves nothing."""
        ...

    async def extend(
        self, reservation_id: ReservationId, user_id: UserId, now: datetime, by: timedelta
    ) -> Reservation | None:
        """Conditional write: the customer's hold, if held at ``now`` and never extended,
        lapses ``by`` later and is marked extended; None, having changed nothing, when not."""
        ...

    async def get(self, reservation_id: ReservationId) -> Reservation | None:
        """The reservation as stored (a lapsed hold may still read ``held``; see
        `Reservation.as_of`)."""
        ...

    async def cancel(self, reservation_id: ReservationId, now: datetime) -> Reservation | None:
        """Conditional write: held and unexpired becomes cancelled; None when not."""
        ...

    async def expire_due(self, now: datetime, limit: int) -> list[Reservation]:
        """Mark up to ``limit`` holds whose ``expires_at`` has passed as expired and return
        them. Any number of sweepers may run at once: each hold is returned by exactly one."""
        ...

    async def of_customer(
        self,
        user_id: UserId,
        status: ReservationStatus | None,
        before: Position | None,
        limit: int,
        now: datetime,
    ) -> list[Reservation]:
        """Up to ``limit`` of the customer's reservations, newest first (by ``created_at``,
        then id), made before ``before``; only those whose status is ``status`` at ``now``
        (`Reservation.as_of`: a lapsed hold is expired), if given."""
        ...


class WalletRepository(Protocol):
    """Balances with an append-only ledger. Every change writes its ledger entry in the same
    transaction, so a balance always equals its ledger. Payments debit it
    (`PaymentRepository.pay`)."""

    async def open(self, user_id: UserId) -> None:
        """Create the customer's empty wallet."""
        ...

    async def balance(self, user_id: UserId) -> int: ...

    async def credit(
        self, user_id: UserId, amount: int, now: datetime, max_balance: int
    ) -> int | None:
        """Conditional write: add ``amount`` unless the balance would pass ``max_balance``.
        Returns the new balance, or None having changed nothing."""
        ...

    async def transactions(
        self, user_id: UserId, before: Position | None, limit: int
    ) -> list[LedgerEntry]:
        """Up to ``limit`` of the customer's ledger entries, newest first, before ``before``
        (its ``id`` an entry id)."""
        ...


class PaymentRepository(Protocol):
    async def pay(
        self, reservation_ids: Sequence[ReservationId], user_id: UserId, now: datetime
    ) -> Sale | None:
        """Pay for the customer's holds (distinct ids) in one atomic step, decided by the
        store under any concurrency: if every reservation is ``user_id``'s and held at
        ``now`` (`Reservation.is_held`), all become paid; one payment of their total is
        recorded; the wallet is debited by the total, with one ledger entry. A reservation is
        paid at most once and a balance never goes below zero.

        Returns the sale; None, having changed nothing, when any reservation is not the
        customer's unexpired hold. Refused with `InsufficientBalance` when the balance does
        not cover the total: from this call or from `UnitOfWork.commit`, leaving nothing."""
        ...

    async def refund(self, reservation_id: ReservationId, now: datetime) -> Refund | None:
        """Give a paid seat back in one atomic step, decided by the store under any
        concurrency: the reservation, if paid, becomes refunded (its seat is then available);
        its price goes back to its customer's wallet, whatever the balance cap, with a
        ``refund`` ledger entry naming the payment, which stays on record. A reservation is
        refunded at most once. None, having changed nothing, when it is not paid."""
        ...


class IdempotencyRepository(Protocol):
    async def claim(
        self, user_id: UserId, key: str, fingerprint: str, now: datetime, lease: timedelta
    ) -> IdempotencyRecord | None:
        """Atomically claim ``(user_id, key)``: store a pending record and return None, or
        return the record already there. A pending record older than ``lease`` belongs to a
        request that died: it is taken over (fingerprint and time replaced) and None returned."""
        ...

    async def complete(
        self, user_id: UserId, key: str, claimed_at: datetime, outcome: StoredOutcome
    ) -> bool:
        """Store the first answer and mark the record done, if the claim made at
        ``claimed_at`` is still pending (a retry past its lease has not taken it over);
        returns whether it was. Checked when called, within the transaction."""
        ...

    async def find(self, user_id: UserId, key: str) -> IdempotencyRecord | None:
        """The record of ``(user_id, key)`` as it stands, if any; claims nothing."""
        ...

    async def release(self, user_id: UserId, key: str, claimed_at: datetime) -> None:
        """Drop the claim made at ``claimed_at``, if still pending, for its request failed
        without an answer worth keeping."""
        ...

    async def purge(self, before: datetime) -> int:
        """Delete records created before ``before``; returns how many."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the database-backed repositories, all or nothing.

    `commit` makes its changes durable; leaving the ``async with`` block without it rolls them
    back. A store may decide a change when it is asked or when the unit of work commits, so a
    refusal a repository documents comes out of the call or of `commit`; either way the unit
    of work keeps nothing. Once committed, a unit of work may still read but raises
    `TransactionClosed` when asked to change anything; asked to commit after one of its
    changes failed, it raises `TransactionAborted`.
    """

    accounts: AccountRepository
    catalog: CatalogRepository
    reservations: ReservationRepository
    wallets: WalletRepository
    payments: PaymentRepository
    idempotency: IdempotencyRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Hands out a fresh unit of work per request or job. ``read_only`` promises that the
    work only reads, so a store may run it without taking its write lock."""

    def __call__(self, *, read_only: bool = False) -> UnitOfWork: ...


class QueueStore(Protocol):
    """The waiting line and its active tokens. Every method is atomic in the store."""

    async def join(
        self, user_id: UserId, now: datetime, policy: QueuePolicy
    ) -> tuple[QueueTicket, bool]:
        """The customer's live ticket and False if they have one (waiting, or active and
        unexpired); otherwise a new unguessable token and True. The new ticket is active at
        once when fewer than ``policy.capacity`` are active and nobody waits; else it waits at
        the back of the line. A waiting ticket carries its position and the admission rate."""
        ...

    async def get(self, token: QueueToken, now: datetime) -> QueueTicket | None:
        """The ticket as of ``now`` (with its position and the admission rate while waiting),
        or None if unknown. Expired tickets stay known for `queue.EXPIRED_RETENTION`."""
        ...

    async def admit(self, now: datetime, policy: QueuePolicy) -> int:
        """Admit waiting tickets in join order while fewer than ``policy.capacity`` are
        active; returns how many. Atomic: concurrent callers never admit past capacity."""
        ...

    async def expire_idle(self, now: datetime) -> int:
        """Expire active tickets whose time has passed; returns how many."""
        ...

    async def expire(self, token: QueueToken, now: datetime) -> None:
        """Expire one active ticket at ``now`` (its holder has paid), freeing its room."""
        ...

    async def live_ticket(self, user_id: UserId, now: datetime) -> QueueTicket | None:
        """The customer's ticket if it is waiting or active at ``now``, as `get` gives it."""
        ...

    async def sizes(self, now: datetime) -> QueueSizes:
        """How many tickets wait, and how many are active and unexpired at ``now``."""
        ...


class HoldTimers(Protocol):
    """A fast front guard before the database: one owner per seat for a hold's length, taken
    only by a customer the waiting line admits.

    Advisory: the database decides every hold. A missing timer never lets a seat be sold
    twice, and a timer left behind blocks its seat for at most the hold's length.
    """

    async def take(
        self,
        token: QueueToken,
        user_id: UserId,
        blocks: Sequence[Offer],
        now: datetime,
        expires_at: datetime,
        attempt_limit: int,
        *,
        alone_allowed: bool = True,
    ) -> TimersTaken:
        """One atomic step: the queue ticket ``token`` as `QueueStore.get` gives it, and how
        the attempt went. For a ticket that is not ``user_id``'s and active at ``now``
        (`queue.admitted`): NOT_ADMITTED. Otherwise the attempt is counted, in windows of
        `policy.ATTEMPT_WINDOW` per customer: past ``attempt_limit`` of them (0: no limit),
        TOO_FREQUENT. Else a block is free when none of its seats has a timer of another
        customer running past ``now`` (``user_id``'s own, left by a request of theirs that
        died before the database, is no bar: the database decides), and leaves a seat alone
        when, on one of its sides, the seat next to it has no such timer and the one beyond
        has one (or is None). The timers of the first free block (in the order given) that
        leaves no seat alone are taken for ``user_id`` until ``expires_at``, or failing that,
        if ``alone_allowed``, of the first free block (TAKEN, with that block's index); else
        none (SEAT_BUSY). Either way ``busy`` names the seats found with running timers, the
        blocks' own (of others) and their sides'."""
        ...

    async def extend(
        self, seat_id: SeatId, user_id: UserId, now: datetime, expires_at: datetime
    ) -> None:
        """Move the seat's timer to ``expires_at`` if it is ``user_id``'s and runs past
        ``now``; else change nothing (a timer dropped meanwhile, by a cancel, stays dropped).
        An extended hold is the database's to decide; this only follows it."""
        ...

    async def release(self, seat_id: SeatId, user_id: UserId) -> None:
        """Drop the seat's timer if, and only if, ``user_id`` holds it (compare-and-delete)."""
        ...


class QueueSizes(NamedTuple):
    """The line now: tickets waiting, tickets active, and the recent admission rate (as a
    waiting `QueueTicket` carries it: admissions within `queue.RATE_WINDOW`, per second)."""

    waiting: int
    active: int
    admissions_per_second: float = 0.0


class Offer(NamedTuple):
    """Seats side by side offered to `HoldTimers.take` together, and the block's sides as
    `seating.Side` gives them."""

    seats: Sequence[SeatId]
    sides: Sequence[tuple[SeatId, SeatId | None]] = ()


class TimersTaken(NamedTuple):
    """What `HoldTimers.take` answers."""

    ticket: QueueTicket | None
    attempt: HoldAttempt
    block: int | None = None  # the index of the block taken
    busy: frozenset[SeatId] = frozenset()


class AttemptLimiter(Protocol):
    """Attempts counted per key (an email, a client address) in fixed windows that open at a
    key's first attempt and close ``window`` later."""

    async def attempt(self, key: str, now: datetime, window: timedelta, limit: int) -> bool:
        """Count one attempt and return True; or, when ``limit`` attempts are already counted
        in the window open at ``now``, count nothing and return False. Atomic: attempts made
        at once never pass the limit together."""
        ...

    async def forgive(self, key: str, now: datetime) -> None:
        """Uncount one attempt of the window open at ``now`` (it turned out well)."""
        ...
