"""Hold seats: one seat, several named seats all or none, or the best seats side by side; and
extend a hold once.

Every way of holding goes the same two steps. The seats' timers turn most contenders away before
the database, in one step that also checks the caller's place in line: offered several blocks of
seats, they take the first block that is free and, as the timers stand at that instant, strands
no seat (so that customers choosing at once from the same map do not strand seats between their
blocks). Then the database decides, all the block or none of it. Best available offers its best
blocks by the rule of `seating`; when the timers or the database turn them all down, the seats
found taken are struck off and the next best are offered, so that concurrent customers converge
on blocks that do not overlap.

A hold may carry an idempotency key, as a payment does: a retry with the same key and request
gets the first answer again (the same reservations, as they were answered) and holds nothing
more, so that a customer whose answer was lost with its host can ask again safely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from concert_domain import queue
from concert_domain.catalog import ConcertDate, Seat, SeatStatus, SeatView
from concert_domain.dependencies import Dependencies
from concert_domain.errors import (
    InvalidRequest,
    NotFound,
    RateLimited,
    ReservationNotHeld,
    SeatsNotTogether,
    SeatUnavailable,
)
from concert_domain.idempotency import JsonScalar, fingerprint, validate_idempotency_key
from concert_domain.ids import DateId, QueueToken, ReservationId, SeatId, UserId
from concert_domain.ports import Offer
from concert_domain.reservations import HoldAttempt, Reservation, ReservationStatus
from concert_domain.seating import Block, Side, best_blocks, blocks_in_row, rows_of
from concert_domain.usecases._follow_up import follow_up
from concert_domain.usecases._idempotent import Attempt, answered_once
from concert_domain.usecases._retry import retrying
from concert_domain.usecases.queue import require_active_token

# how many blocks best available offers the timers at once, and how many rounds of offers it
# makes before it gives up on a date that keeps changing under it
OFFERED_BLOCKS = 48
BEST_AVAILABLE_ROUNDS = 32


async def hold_seat(
    user_id: UserId,
    queue_token: str | None,
    seat_id: SeatId,
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> Reservation:
    """Hold a seat for ``policy.hold_seconds``. Raises `NotFound` (no such seat),
    `SaleNotOpen`, `SaleClosed`, `SeatUnavailable`, `HoldLimitReached`, `RateLimited` (too
    many attempts this minute), the queue gate's errors and the idempotency errors."""
    [held] = await hold_seats(user_id, queue_token, [seat_id], idempotency_key, deps=deps)
    return held


async def hold_seats(
    user_id: UserId,
    queue_token: str | None,
    seat_ids: Sequence[SeatId],
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> list[Reservation]:
    """Hold 1 to ``policy.max_holds_per_user`` distinct seats of one date, all or none; the
    holds in the order asked. Raises `InvalidRequest` (none, too many, repeated, or of
    several dates), the errors of `hold_seat`, and `SeatUnavailable` naming the seats taken."""
    _check_count(len(seat_ids), deps.policy.max_holds_per_user)
    if len(set(seat_ids)) != len(seat_ids):
        raise InvalidRequest("a seat may be asked for once")
    token = queue.required(queue_token)
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    now = deps.clock.now()
    if len(seat_ids) == 1:  # a list of one asks what one seat does
        request = fingerprint("hold", seat_id=seat_ids[0])
    else:
        request = fingerprint("hold", seat_ids=",".join(map(str, seat_ids)))
    async with answered_once(deps, user_id, key, request, now, token) as attempt:
        if attempt.kept is not None:
            return await _replayed(attempt.kept, deps)
        seats = await _seats_on_sale(seat_ids, now, deps)
        return await _Offer(deps, attempt, user_id, token, now).hold(seats)


async def hold_best(
    user_id: UserId,
    queue_token: str | None,
    date_id: DateId,
    quantity: int,
    section: str | None = None,
    idempotency_key: str | None = None,
    *,
    deps: Dependencies,
) -> list[Reservation]:
    """Hold ``quantity`` seats side by side in one row of the date (of ``section`` only, if
    named), chosen by the rule of `seating`; the holds by number. Raises `InvalidRequest`,
    `NotFound` (no such date or section), `SeatsNotTogether` (no row has that many available
    side by side), and the errors of `hold_seat`."""
    _check_count(quantity, deps.policy.max_holds_per_user)
    token = queue.required(queue_token)
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    now = deps.clock.now()
    request = fingerprint("hold", date_id=date_id, quantity=quantity, section=section)
    async with answered_once(deps, user_id, key, request, now, token) as attempt:
        if attempt.kept is not None:
            return await _replayed(attempt.kept, deps)
        hall = _Hall(deps, await _date_on_sale(date_id, now, deps), section, quantity, now)
        return await _hold_best(hall, _Offer(deps, attempt, user_id, token, now), quantity)


async def _hold_best(hall: _Hall, offer: _Offer, quantity: int) -> list[Reservation]:
    """Offer the hall's best blocks until one is held, striking off the seats found taken."""
    for _ in range(BEST_AVAILABLE_ROUNDS):
        blocks = await hall.best()
        if not blocks:
            break
        # a block that strands a seat is taken only when the map, with every seat found
        # taken so far struck off, has none that does not
        alone_allowed = all(block.strands for block in blocks)
        try:
            return await offer.choose(
                [list(b.seats) for b in blocks], [b.sides for b in blocks], alone_allowed
            )
        except _AllBusy as busy:
            hall.strike(busy.seats)
        except _Refused as refused:  # taken in the database with no timer: look again
            hall.look_again(refused.seats)
    raise SeatsNotTogether(f"no row has {quantity} available seats side by side")


async def extend_hold(
    user_id: UserId,
    queue_token: str | None,
    reservation_id: ReservationId,
    *,
    deps: Dependencies,
) -> Reservation:
    """Make the caller's hold lapse ``policy.hold_extension`` later, once, while their queue
    token is active; its timer follows. Raises `NotFound`, `HoldExpired`,
    `ReservationNotHeld`, `ExtensionLimitReached` and the queue gate's errors."""
    now = deps.clock.now()
    await require_active_token(user_id, queue_token, now, deps=deps)
    async with deps.uow() as uow:
        extended = await uow.reservations.extend(
            reservation_id, user_id, now, deps.policy.hold_extension
        )
        if extended is None:
            found = await uow.reservations.get(reservation_id)
            if found is None or found.user_id != user_id:
                raise NotFound(f"no reservation {reservation_id}")
            found.ensure_extendable(now)
            raise ReservationNotHeld(f"reservation {reservation_id} is no longer held")
        await uow.commit()
    timer = deps.timers.extend(extended.seat_id, user_id, now, extended.expires_at)
    await follow_up(timer, "move an extended hold's timer")
    return extended


class _AllBusy(Exception):
    """The timers found every block offered busy: ``seats`` are those they found taken."""

    def __init__(self, seats: frozenset[SeatId]) -> None:
        self.seats = seats


class _Refused(Exception):
    """The database refused the block the timers gave (a seat taken with no timer)."""

    def __init__(self, seats: frozenset[SeatId]) -> None:
        self.seats = seats


class _Offer:
    """Seats offered to the timers and then to the database, for one caller at one instant."""

    def __init__(
        self,
        deps: Dependencies,
        attempt: Attempt,
        user_id: UserId,
        token: QueueToken,
        now: datetime,
    ) -> None:
        self._deps = deps
        self._attempt = attempt
        self._user_id = user_id
        self._token = token
        self._now = now
        self._expires_at = now + deps.policy.hold_duration
        self._busy: frozenset[SeatId] = frozenset()  # what the timers last found busy

    async def hold(self, seats: Sequence[Seat]) -> list[Reservation]:
        """Hold ``seats``, all or none. Raises `SeatUnavailable` naming the seats taken."""
        taken = await self._take_timers([seats], [], alone_allowed=True)
        if taken is None:  # the timers name the seats they found busy
            busy = [seat.label for seat in seats if seat.seat_id in self._busy]
            raise SeatUnavailable.taken_seats(busy or [seat.label for seat in seats])
        try:
            return await self._write(seats)
        except SeatUnavailable as refused:
            if len(seats) == 1:
                raise
            named = await self._labels_taken(seats)
            raise (SeatUnavailable.taken_seats(named) if named else refused) from refused

    async def choose(
        self,
        blocks: Sequence[Sequence[Seat]],
        sides: Sequence[Sequence[Side]],
        alone_allowed: bool,
    ) -> list[Reservation]:
        """Hold the block the timers take (`HoldTimers.take`: the first free one that leaves
        no seat alone as they stand now, else, if ``alone_allowed``, the first free one).
        Raises `_AllBusy` when none is taken, `_Refused` when the database refuses the
        block."""
        chosen = await self._take_timers(blocks, sides, alone_allowed)
        if chosen is None:
            raise _AllBusy(self._busy)
        try:
            return await self._write(blocks[chosen])
        except SeatUnavailable as refused:
            raise _Refused(frozenset(s.seat_id for s in blocks[chosen])) from refused

    async def _take_timers(
        self,
        blocks: Sequence[Sequence[Seat]],
        sides: Sequence[Sequence[Side]],
        alone_allowed: bool,
    ) -> int | None:
        """The index of the block whose timers the caller now holds; None when every block
        is busy (the seats found busy in ``_busy``). Raises the queue gate's errors and
        `RateLimited`."""
        deps, user_id = self._deps, self._user_id
        taken = await deps.timers.take(
            self._token,
            user_id,
            [
                Offer([seat.seat_id for seat in block], sides[n] if sides else ())
                for n, block in enumerate(blocks)
            ],
            self._now,
            self._expires_at,
            deps.policy.hold_attempts_per_customer,
            alone_allowed=alone_allowed,
        )
        queue.admitted(taken.ticket, user_id, self._now)
        if taken.attempt is HoldAttempt.TOO_FREQUENT:
            raise RateLimited("too many attempts to hold seats; try again within a minute")
        self._busy = taken.busy
        return taken.block if taken.attempt is HoldAttempt.TAKEN else None

    async def _write(self, block: Sequence[Seat]) -> list[Reservation]:
        """The block held in the database, all or none; its timers dropped if not."""
        try:
            return await retrying(lambda: self._insert(block))
        except BaseException:
            for seat in block:
                release = self._deps.timers.release(seat.seat_id, self._user_id)
                await follow_up(release, "drop a hold timer")
            raise

    async def _insert(self, block: Sequence[Seat]) -> list[Reservation]:
        async with self._deps.uow() as uow:
            limit = self._deps.policy.max_holds_per_user
            held = await uow.reservations.hold(
                self._user_id, block, self._now, self._expires_at, limit
            )
            await self._attempt.keep(uow, _kept(held))
            await uow.commit()
        return held

    async def _labels_taken(self, seats: Sequence[Seat]) -> list[str]:
        """The labels of ``seats`` taken in the database (read again after it refused them)."""
        busy: set[SeatId] = set()
        async with self._deps.uow(read_only=True) as uow:
            for section in dict.fromkeys(seat.section for seat in seats):
                views = await uow.catalog.seat_map(seats[0].date_id, self._now, section)
                busy |= {v.seat.seat_id for v in views if v.status is not SeatStatus.AVAILABLE}
        return [seat.label for seat in seats if seat.seat_id in busy] or [
            seat.label for seat in seats
        ]


class _Hall:
    """A date's seat map as best available reads it: a section at a time, the best first,
    only as far as it must to find the best blocks (a block that strands no seat in a worse
    section still beats every block that strands one)."""

    def __init__(
        self,
        deps: Dependencies,
        concert_date: ConcertDate,
        section: str | None,
        quantity: int,
        now: datetime,
    ) -> None:
        self._deps = deps
        self._date = concert_date
        self._section = section
        self._quantity = quantity
        self._now = now
        self._sections: list[str] | None = None
        self._read: list[list[list[SeatView]]] = []  # the sections read, a row at a time
        self._struck: frozenset[SeatId] = frozenset()
        self._refused: frozenset[SeatId] = frozenset()

    async def best(self) -> list[Block]:
        sections = await self._section_names()
        while True:
            found = [
                block
                for rows in self._read
                for row in rows
                for block in blocks_in_row(row, self._quantity, self._struck)
            ]
            clean = sum(1 for block in found if not block.strands)
            if clean >= OFFERED_BLOCKS or len(self._read) == len(sections):
                if self._still_shown_free():
                    self._struck |= self._refused
                    continue
                return best_blocks(found, OFFERED_BLOCKS)
            self._read.append(await self._seat_map(sections[len(self._read)]))

    def strike(self, seats: frozenset[SeatId]) -> None:
        """Count ``seats`` as taken from now on."""
        self._struck |= seats

    def look_again(self, refused: frozenset[SeatId]) -> None:
        """Read the date again: the database refused ``refused``, a block the map showed
        free. If the map read again still shows it all free (a kept map not yet renewed),
        its seats are struck off, so that the same block is not offered again."""
        self._read = []
        self._refused = refused

    def _still_shown_free(self) -> bool:
        """Whether the map read shows every seat of the block last refused available."""
        if not self._refused or self._refused <= self._struck:
            return False
        shown = {
            view.seat.seat_id
            for rows in self._read
            for row in rows
            for view in row
            if view.status is SeatStatus.AVAILABLE
        }
        return self._refused <= shown

    async def _section_names(self) -> list[str]:
        if self._sections is None:
            async with self._deps.uow(read_only=True) as uow:
                names = await uow.catalog.sections(self._date.date_id)
            if self._section is not None:
                if self._section not in names:
                    raise NotFound(f"no section {self._section!r} on {self._date.date}")
                names = [self._section]
            self._sections = names
        return self._sections

    async def _seat_map(self, section: str) -> list[list[SeatView]]:
        async with self._deps.uow(read_only=True) as uow:
            views = await uow.catalog.seat_map(self._date.date_id, self._now, section)
        return list(rows_of(views))


def _kept(holds: Sequence[Reservation]) -> dict[str, JsonScalar]:
    """The answer an idempotency key keeps: the holds' ids (as one string) and expiry; every
    other field of a reservation never changes."""
    return {
        "reservation_ids": ",".join(str(held.reservation_id) for held in holds),
        "expires_at": holds[0].expires_at.isoformat(),
    }


async def _replayed(kept: Mapping[str, JsonScalar], deps: Dependencies) -> list[Reservation]:
    """The holds as they were first answered (since paid, cancelled or extended, maybe)."""
    ids, expires_at = kept["reservation_ids"], kept["expires_at"]
    if not isinstance(ids, str) or not isinstance(expires_at, str):
        raise TypeError(f"a kept hold answer is malformed: {dict(kept)!r}")
    async with deps.uow(read_only=True) as uow:
        found = [await uow.reservations.get(ReservationId(int(r))) for r in ids.split(",")]
    if None in found:
        raise LookupError(f"a kept hold answer names a reservation that is gone: {ids}")
    first = datetime.fromisoformat(expires_at)
    return [
        attrs.evolve(held, status=ReservationStatus.HELD, expires_at=first, extended=False)
        for held in found
        if held is not None
    ]


def _check_count(count: int, most: int) -> None:
    if isinstance(count, bool) or not 1 <= count <= most:
        raise InvalidRequest(f"from 1 to {most} seats may be held at once")


async def _seats_on_sale(
    seat_ids: Sequence[SeatId], now: datetime, deps: Dependencies
) -> list[Seat]:
    """The seats, of one date that is on sale at ``now``. Raises `NotFound`,
    `InvalidRequest` (several dates), `SaleNotOpen`, `SaleClosed`."""
    async with deps.uow(read_only=True) as uow:
        seats = []
        for seat_id in seat_ids:
            seat = await uow.catalog.get_seat(seat_id)
            if seat is None:
                raise NotFound(f"no seat {seat_id}")
            seats.append(seat)
    if len({seat.date_id for seat in seats}) > 1:
        raise InvalidRequest("the seats held together must be of one date")
    await _date_on_sale(seats[0].date_id, now, deps)
    return seats


async def _date_on_sale(date_id: DateId, now: datetime, deps: Dependencies) -> ConcertDate:
    async with deps.uow(read_only=True) as uow:
        concert_date = await uow.catalog.get_date(date_id)
    if concert_date is None:
        raise NotFound(f"no date {date_id}")
    concert_date.ensure_on_sale(now)
    return concert_date
