"""The whole booking flow as a Hypothesis state machine, with every invariant of DESIGN.md checked
after every step.

Several customers sign up, charge, join the line, hold one seat, several seats or the best seats
side by side, extend a hold, cancel, pay for one hold or several at once (with and without
idempotency keys), look at the seat map and at their own records, while an operator puts more
dates on sale (in sections, with sale windows that open and close as the clock moves), watches
the sales and refunds paid seats (with and without keys); a hand-driven clock jumps around the
hold and token lifetimes and the sale windows, and the scheduler ticks. Each rule also checks
its own answer against a small model of what must have happened; the invariants read the stores'
state directly.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import attrs
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

import strategies
from adapters.clock import ManualClock
from adapters.memory import InMemoryDatabase
from booking import OPERATOR, PASSWORD, START, add_venue, memory_deps
from concert_domain import BookingPolicy, QueuePolicy, usecases
from concert_domain.catalog import ConcertDate, DateSpec, RowSpec, Seat, SeatStatus, SectionSpec
from concert_domain.errors import (
    ConcertError,
    EmailTaken,
    ExtensionLimitReached,
    HoldExpired,
    HoldLimitReached,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    QueueTokenInvalid,
    QueueTokenNotActive,
    QueueTokenRequired,
    ReservationNotHeld,
    ReservationNotPaid,
    SaleClosed,
    SaleNotOpen,
    SeatsNotTogether,
    SeatUnavailable,
)
from concert_domain.ids import DateId, QueueToken, ReservationId, UserId
from concert_domain.queue import TicketStatus
from concert_domain.reservations import Reservation, ReservationStatus
from concert_domain.seating import blocks_in_row, rows_of, strands_avoidably
from concert_domain.wallet import BALANCE_MAX, CHARGE_MAX, LedgerKind, ledger_balance

POLICY = BookingPolicy(
    hold_seconds=120,
    hold_extension_seconds=60,
    max_holds_per_user=2,
    queue=QueuePolicy(capacity=2, active_seconds=300),
)
PRICE = 20_000
T = TypeVar("T")
QUEUE_GATE = (QueueTokenRequired, QueueTokenInvalid, QueueTokenNotActive)
MOST_DATES = 4


@attrs.define
class Ticket:
    token: QueueToken
    user_id: UserId
    joined: int
    activated: int | None = None


class BookingMachine(RuleBasedStateMachine):
    customers = Bundle("customers")
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(START)
        self.database = InMemoryDatabase()
        # kept seat maps never age out here: only versions and lapsing holds keep them exact
        self.deps = memory_deps(
            self.clock, POLICY, database=self.database, seat_map_max_age=timedelta(days=365)
        )
        self.emails: dict[str, UserId] = {}
        self.charged: dict[UserId, int] = defaultdict(int)
        self.spent: dict[UserId, int] = defaultdict(int)
        self.refunded: dict[UserId, int] = defaultdict(int)
        self.tokens: dict[UserId, QueueToken] = {}
        self.tickets: dict[QueueToken, Ticket] = {}
        self.joins = 0
        self.activations = 0
        self.paid: dict[ReservationId, Reservation] = {}  # and not refunded
        self.refunds: dict[ReservationId, Reservation] = {}  # as they were paid
        self.answers: dict[tuple[UserId, str], tuple[tuple[str, object], object]] = {}
        self.seats: list[Seat] = []  # of every date
        self.dates: dict[DateId, ConcertDate] = {}
        self.keyed_payments: list[tuple[UserId, ReservationId, str]] = []
        self.keyed_holds: list[tuple[UserId, list[int], str]] = []

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.loop.close()

    @initialize()
    def add_venue(self) -> None:
        venue = self.run(add_venue(self.deps, seats=4, price=PRICE))
        self.seats = venue.seats
        self.dates = {d.date_id: d for d in venue.dates}

    # -- rules ------------------------------------------------------------------------------

    @rule(target=customers, email=strategies.emails)
    def sign_up(self, email: str) -> object:
        known = email.lower() in self.emails
        try:
            account = self.run(usecases.sign_up(email, PASSWORD, deps=self.deps))
        except EmailTaken:
            assert known, "a new email was refused"
            return multiple()
        assert not known, "an email was signed up twice"
        self.emails[account.email] = account.user_id
        return account.user_id

    @rule(customer=customers, email=strategies.emails, right=st.booleans())
    def log_in(self, customer: UserId, email: str, right: bool) -> None:
        del customer  # logging in touches no customer state; any email of the pool will do
        password = PASSWORD if right else "wrong password"
        try:
            token = self.run(usecases.log_in(email, password, deps=self.deps))
        except ConcertError as error:
            assert not (right and email.lower() in self.emails) or error.code == "rate_limited"
            return
        assert right
        named = self.run(usecases.authenticate(token.access_token, deps=self.deps))
        assert named.user_id == self.emails[email.lower()]

    @rule(customer=customers, amount=strategies.charge_amounts, key=strategies.idempotency_keys)
    def charge(self, customer: UserId, amount: int, key: str | None) -> None:
        request = ("charge", amount)
        in_range = 1 <= amount <= CHARGE_MAX
        replay = self._replay(customer, key, request) if in_range else None
        try:
            balance = self.run(usecases.charge_wallet(customer, amount, key, deps=self.deps))
        except ConcertError as error:
            self._check_replayed(replay, error)
            if replay is None:
                assert isinstance(error, InvalidRequest)
                balance = self.charged[customer] - self.spent[customer] + self.refunded[customer]
                over = balance + amount > BALANCE_MAX
                assert not in_range or over
                self._remember(customer, key, request, error, stored=in_range)
            return
        self._check_replayed(replay, balance)
        if replay is None:
            assert in_range
            self.charged[customer] += amount
            assert balance == (
                self.charged[customer] - self.spent[customer] + self.refunded[customer]
            )
            self._remember(customer, key, request, balance)

    @rule(customer=customers)
    def join(self, customer: UserId) -> None:
        status, created = self.run(usecases.join_queue(customer, deps=self.deps))
        live = self.tokens.get(customer)
        if live is not None and self._ticket_status(live) is not TicketStatus.EXPIRED:
            assert not created and status.token == live, "a customer got a second live token"
        else:
            assert created
            self.joins += 1
            self.tickets[status.token] = Ticket(status.token, customer, self.joins)
            self.tokens[customer] = status.token
        self._observe_activations()

    @rule(target=reservations, customer=customers, index=strategies.seat_indexes)
    def hold(self, customer: UserId, index: int) -> object:
        seat = self.seats[index % len(self.seats)]
        now = self.clock.now()
        on_sale = self.dates[seat.date_id].on_sale(now)
        live_on_seat = [
            r for r in self._all_reservations() if r.seat_id == seat.seat_id and r.is_live(now)
        ]
        holds = [r for r in self._all_reservations() if r.user_id == customer and r.is_held(now)]
        try:
            held = self.run(
                usecases.hold_seat(
                    customer, self.tokens.get(customer), seat.seat_id, deps=self.deps
                )
            )
        except QUEUE_GATE as error:
            event(f"hold: {error.code}")
            self._check_gate_refusal(customer)
            return multiple()
        except (SaleNotOpen, SaleClosed) as error:
            event(f"hold: {error.code}")
            assert not on_sale, "a seat on sale was refused as off sale"
            opens = self.dates[seat.date_id].sale_opens_at
            assert isinstance(error, SaleNotOpen) == (now < opens)
            return multiple()
        except SeatUnavailable:
            event("hold: seat_unavailable")
            assert live_on_seat, "a free seat was refused"
            return multiple()
        except HoldLimitReached:
            event("hold: hold_limit_reached")
            assert len(holds) >= POLICY.max_holds_per_user  # checked before the seat
            return multiple()
        assert on_sale, "a seat was held outside its sale window"
        assert not live_on_seat, "a seat with a live reservation was held again"
        assert len(holds) < POLICY.max_holds_per_user
        assert held.expires_at == now + POLICY.hold_duration
        event("hold: held")
        return held.reservation_id

    @rule(
        target=reservations,
        customer=customers,
        indexes=st.lists(strategies.seat_indexes, min_size=1, max_size=3),
        key=strategies.idempotency_keys,
    )
    def hold_several(self, customer: UserId, indexes: list[int], key: str | None) -> object:
        """Several seats at once: all held, or none (invariant 9); with a key, a retry gets
        the first answer again and holds nothing more."""
        held = self._hold_several(customer, indexes, key)
        if key is not None and held:
            self.keyed_holds.append((customer, indexes, key))
        return multiple(*(r.reservation_id for r in held))

    @precondition(lambda self: bool(self.keyed_holds))
    @rule(data=st.data())
    def replay_hold(self, data: st.DataObject) -> None:
        """Send a hold made with an idempotency key again, exactly as before (its answer
        lost, say, with the host that gave it)."""
        customer, indexes, key = data.draw(st.sampled_from(self.keyed_holds))
        self._hold_several(customer, indexes, key)

    def _hold_several(
        self, customer: UserId, indexes: list[int], key: str | None
    ) -> list[Reservation]:
        seats = [self.seats[index % len(self.seats)] for index in indexes]
        now = self.clock.now()
        before = {r.reservation_id for r in self._all_reservations()}
        live = {r.seat_id for r in self._all_reservations() if r.is_live(now)}
        holds = [r for r in self._all_reservations() if r.user_id == customer and r.is_held(now)]
        one_date = len({seat.date_id for seat in seats}) == 1
        distinct = len({seat.seat_id for seat in seats}) == len(seats)
        asked = [seat.seat_id for seat in seats]
        token = self.tokens.get(customer)
        request = ("hold", asked[0] if len(asked) == 1 else tuple(asked))
        claimed = distinct and len(seats) <= POLICY.max_holds_per_user and token is not None
        replay = self._replay(customer, key, request) if claimed else None  # else unclaimed
        try:
            held = self.run(usecases.hold_seats(customer, token, asked, key, deps=self.deps))
        except ConcertError as error:
            event(f"hold several: {error.code}{' (replayed)' if replay is not None else ''}")
            assert {r.reservation_id for r in self._all_reservations()} == before, (
                "a refused hold of several seats left some held"
            )
            self._check_replayed(replay, error)
            if replay is not None:
                return []
            if isinstance(error, InvalidRequest):
                assert not (distinct and one_date and len(seats) <= POLICY.max_holds_per_user)
            elif isinstance(error, QUEUE_GATE):
                self._check_gate_refusal(customer)
                return []  # an answer about the place in line: the key keeps nothing
            elif isinstance(error, (SaleNotOpen, SaleClosed)):
                assert not self.dates[seats[0].date_id].on_sale(now)
            elif isinstance(error, SeatUnavailable):
                assert live & set(asked), "free seats were refused"
            else:
                assert isinstance(error, HoldLimitReached), error
                assert len(holds) + len(seats) > POLICY.max_holds_per_user
            self._remember(customer, key, request, error, stored=claimed)
            return []
        self._check_replayed(replay, held)
        if replay is not None:
            event("hold several: held (replayed)")
            assert {r.reservation_id for r in self._all_reservations()} == before, (
                "a replayed hold held more seats"
            )
            return []
        assert distinct and one_date and not live & set(asked)
        assert len(holds) + len(seats) <= POLICY.max_holds_per_user
        assert [r.seat_id for r in held] == asked
        event(f"hold several: held {len(held)}")
        self._remember(customer, key, request, held)
        return held

    @rule(
        target=reservations,
        customer=customers,
        index=strategies.seat_indexes,
        quantity=st.sampled_from([1, 2, 2, 3]),  # 3 passes the limit of two
        in_section=st.booleans(),
    )
    def hold_best(self, customer: UserId, index: int, quantity: int, in_section: bool) -> object:
        """The best seats side by side on the date of a seat (in its section, if asked):
        side by side in one row, and no single seat stranded when it could be helped
        (invariant 11)."""
        picked = self.seats[index % len(self.seats)]
        section = picked.section if in_section else None
        now = self.clock.now()
        views = [
            self.database.seat_view(seat, now)
            for seat in self.database.seats_of(picked.date_id)
            if section in (None, seat.section)
        ]
        holds = [r for r in self._all_reservations() if r.user_id == customer and r.is_held(now)]
        token = self.tokens.get(customer)
        try:
            held = self.run(
                usecases.hold_best(
                    customer, token, picked.date_id, quantity, section, deps=self.deps
                )
            )
        except ConcertError as error:
            event(f"hold best: {error.code}")
            if isinstance(error, QUEUE_GATE):
                self._check_gate_refusal(customer)
            elif isinstance(error, (SaleNotOpen, SaleClosed)):
                assert not self.dates[picked.date_id].on_sale(now)
            elif isinstance(error, SeatsNotTogether):
                free = {v.seat.seat_id for v in views if v.status is SeatStatus.AVAILABLE}
                for row in rows_of(views):
                    numbers = {v.seat.number for v in row if v.seat.seat_id in free}
                    assert not any(
                        all(n + k in numbers for k in range(quantity)) for n in numbers
                    ), "a row with the seats together was passed over"
            elif isinstance(error, InvalidRequest):
                assert quantity > POLICY.max_holds_per_user
            else:
                assert isinstance(error, HoldLimitReached), error
                assert len(holds) + quantity > POLICY.max_holds_per_user
            return multiple()
        in_row = [r.number for r in held]
        assert in_row == list(range(in_row[0], in_row[0] + quantity))
        assert len({(r.section, r.row) for r in held}) == 1
        assert len(holds) + quantity <= POLICY.max_holds_per_user
        chosen = {r.seat_id for r in held}
        status = {v.seat.seat_id: v.status for v in views}
        assert all(status[seat_id] is SeatStatus.AVAILABLE for seat_id in chosen)
        [block] = [
            block
            for row in rows_of(views)
            for block in blocks_in_row(row, quantity)
            if {seat.seat_id for seat in block.seats} == chosen
        ]
        assert not strands_avoidably(block, views, quantity), "a seat was stranded needlessly"
        event(f"hold best: held {quantity}")
        return multiple(*(r.reservation_id for r in held))

    @rule(customer=customers, reservation_id=reservations)
    def extend(self, customer: UserId, reservation_id: ReservationId) -> None:
        before = self._stored(reservation_id)
        now = self.clock.now()
        try:
            extended = self.run(
                usecases.extend_hold(
                    customer, self.tokens.get(customer), reservation_id, deps=self.deps
                )
            )
        except QUEUE_GATE as error:
            event(f"extend: {error.code}")
            self._check_gate_refusal(customer)
            return
        except ConcertError as error:
            event(f"extend: {error.code}")
            expected = (
                NotFound
                if before.user_id != customer
                else HoldExpired
                if before.as_of(now).status is ReservationStatus.EXPIRED
                else ReservationNotHeld
                if before.status is not ReservationStatus.HELD
                else ExtensionLimitReached
            )
            assert isinstance(error, expected), (error, expected)
            return
        event("extend: extended")
        assert before.user_id == customer and before.is_held(now) and not before.extended
        assert extended.expires_at == before.expires_at + POLICY.hold_extension

    @rule(customer=customers, index=strategies.seat_indexes, whole=st.booleans())
    def look_at_seat_map(self, customer: UserId, index: int, whole: bool) -> None:
        """The whole map of a date, or the section of one of its seats."""
        picked = self.seats[index % len(self.seats)]
        section = None if whole else picked.section
        try:
            shown = self.run(
                usecases.seat_map(
                    customer,
                    self.tokens.get(customer),
                    picked.concert_id,
                    picked.date_id,
                    section,
                    deps=self.deps,
                )
            )
        except QUEUE_GATE:
            self._check_gate_refusal(customer)
            return
        now = self.clock.now()
        wanted = [
            seat
            for seat in self.seats
            if seat.date_id == picked.date_id and section in (None, seat.section)
        ]
        truth = [(s.seat_id, self.database.seat_view(s, now).status) for s in wanted]
        assert [(v.seat.seat_id, v.status) for v in shown] == truth, "the seat map is late"

    @precondition(lambda self: len(self.dates) < MOST_DATES)
    @rule(
        opens_in=st.sampled_from([0, 0, 60, 300]),
        open_for=st.sampled_from([120, 600, 3600]),
        seats=st.integers(min_value=1, max_value=3),
        sections=st.integers(min_value=1, max_value=2),
    )
    def operator_adds_a_date(self, opens_in: int, open_for: int, seats: int, sections: int) -> None:
        """A date whose sale opens now or soon and closes within the hour, in sections of one
        row each, the best the dearest."""
        now = self.clock.now()
        opens = now + timedelta(seconds=opens_in)
        closes = opens + timedelta(seconds=open_for)
        layout = [
            SectionSpec(f"S{n}", PRICE + 1_000 * (sections - n), [RowSpec("A", seats)])
            for n in range(sections)
        ]
        spec = DateSpec(closes + timedelta(hours=1), layout, opens if opens_in else None, closes)
        concert_id = self.seats[0].concert_id
        created = self.run(usecases.create_date(OPERATOR, concert_id, spec, deps=self.deps))
        assert created.seats_total == seats * sections
        made = created.date
        assert (made.sale_opens_at, made.sale_closes_at) == (opens, closes)
        self.dates[made.date_id] = made
        self.seats.extend(seat for seat in self.database.seats_of(made.date_id))

    @rule(index=strategies.seat_indexes)
    def operator_looks_at_sales(self, index: int) -> None:
        date_id = self.seats[index % len(self.seats)].date_id
        concert_id = self.dates[date_id].concert_id
        sales = self.run(usecases.date_sales(OPERATOR, concert_id, date_id, deps=self.deps))
        now = self.clock.now()
        for section in sales.sections:
            seats = [s for s in self.seats if s.date_id == date_id and s.section == section.name]
            statuses = [self.database.seat_view(s, now).status for s in seats]
            assert (
                section.seats_total
                == len(seats)
                == (section.available + section.held + section.sold)
            )
            held, sold = statuses.count(SeatStatus.HELD), statuses.count(SeatStatus.SOLD)
            assert (section.held, section.sold) == (held, sold)
        paid = [r for r in self.paid.values() if r.date_id == date_id]
        assert sales.revenue == sum(r.price for r in paid)

    @rule(reservation_id=reservations, key=strategies.idempotency_keys)
    def operator_refunds(self, reservation_id: ReservationId, key: str | None) -> None:
        request = ("refund", reservation_id)
        replay = self._replay(OPERATOR.user_id, key, request)
        before = self._stored(reservation_id)
        try:
            refunded = self.run(usecases.refund(OPERATOR, reservation_id, key, deps=self.deps))
        except ConcertError as error:
            event(f"refund: {error.code}{' (replayed)' if replay is not None else ''}")
            self._check_replayed(replay, error)
            if replay is None:
                assert isinstance(error, ReservationNotPaid), error
                assert before.status is not ReservationStatus.PAID
                self._remember(OPERATOR.user_id, key, request, error)
            return
        event(f"refund: refunded{' (replayed)' if replay is not None else ''}")
        self._check_replayed(replay, refunded)
        assert refunded.status is ReservationStatus.REFUNDED
        if replay is None:
            assert before.status is ReservationStatus.PAID
            self.refunded[before.user_id] += before.price
            self.refunds[reservation_id] = self.paid.pop(reservation_id)
            self._remember(OPERATOR.user_id, key, request, refunded)

    @rule(customer=customers, page=st.integers(min_value=1, max_value=3))
    def look_at_own_records(self, customer: UserId, page: int) -> None:
        """Every page of the customer's reservations and wallet movements, newest first."""
        now = self.clock.now()
        listed: list[Reservation] = []
        cursor: str | None = None
        while True:
            found = self.run(
                usecases.list_reservations(customer, None, cursor, page, deps=self.deps)
            )
            listed += found.items
            if found.next is None:
                break
            cursor = found.next.cursor()
        mine = [r.as_of(now) for r in self._all_reservations() if r.user_id == customer]
        newest_first = sorted(mine, key=lambda r: (r.created_at, r.reservation_id), reverse=True)
        assert listed == newest_first
        entries = []
        cursor = None
        while True:
            moves = self.run(usecases.list_transactions(customer, cursor, page, deps=self.deps))
            entries += moves.items
            if moves.next is None:
                break
            cursor = moves.next.cursor()
        assert entries == list(self.database.ledger.get(customer) or ())[::-1]

    @rule(customer=customers, reservation_id=reservations)
    def cancel(self, customer: UserId, reservation_id: ReservationId) -> None:
        before = self._stored(reservation_id)
        try:
            cancelled = self.run(
                usecases.cancel_reservation(customer, reservation_id, deps=self.deps)
            )
        except NotFound:
            assert before.user_id != customer, "the owner was told their reservation is not found"
            return
        except ReservationNotHeld:
            assert before.user_id == customer and not before.is_held(self.clock.now())
            return
        assert before.user_id == customer, "someone else cancelled a reservation"
        assert before.is_held(self.clock.now()) and cancelled.status is ReservationStatus.CANCELLED

    @rule(customer=customers, reservation_id=reservations, key=strategies.idempotency_keys)
    def pay(self, customer: UserId, reservation_id: ReservationId, key: str | None) -> None:
        request = ("pay", reservation_id)
        replay = self._replay(customer, key, request)
        if key is not None:
            self.keyed_payments.append((customer, reservation_id, key))
        before = self._stored(reservation_id)
        now = self.clock.now()
        balance = self.charged[customer] - self.spent[customer] + self.refunded[customer]
        token = self.tokens.get(customer)
        try:
            receipt = self.run(usecases.pay(customer, token, reservation_id, key, deps=self.deps))
        except QUEUE_GATE as error:
            event(f"pay: {error.code}")
            self._check_replayed(replay, error)
            if replay is None:
                self._check_gate_refusal(customer)
            return
        except ConcertError as error:
            event(f"pay: {error.code}{' (replayed)' if replay is not None else ''}")
            self._check_replayed(replay, error)
            if replay is None:
                expected = (
                    NotFound
                    if before.user_id != customer
                    else HoldExpired
                    if before.as_of(now).status is ReservationStatus.EXPIRED
                    else ReservationNotHeld
                    if before.status is not ReservationStatus.HELD
                    else InsufficientBalance
                )
                assert isinstance(error, expected), (error, expected)
                if expected is InsufficientBalance:
                    assert balance < before.price
                self._remember(customer, key, request, error)
            return
        event(f"pay: paid{' (replayed)' if replay is not None else ''}")
        self._check_replayed(replay, receipt)
        if replay is None:
            assert before.user_id == customer and before.is_held(now) and balance >= before.price
            self.spent[customer] += receipt.amount
            self.paid[reservation_id] = self._stored(reservation_id)
            assert self._ticket_status(token) is TicketStatus.EXPIRED  # type: ignore[arg-type]
            self._remember(customer, key, request, receipt)

    @rule(reservation_id=reservations, key=strategies.idempotency_keys)
    def pay_own(self, reservation_id: ReservationId, key: str | None) -> None:
        """The owner pays: the common case, which random pairs of customer and reservation
        seldom hit."""
        self.pay(self._stored(reservation_id).user_id, reservation_id, key)

    @rule(
        customer=customers,
        reservation_ids=st.lists(reservations, min_size=1, max_size=3),
        key=strategies.idempotency_keys,
    )
    def pay_several(
        self, customer: UserId, reservation_ids: list[ReservationId], key: str | None
    ) -> None:
        """Several holds paid at once: every seat sold with one debit, or nothing
        (invariant 9)."""
        single = len(reservation_ids) == 1  # then the same request as `pay`'s
        request = ("pay", reservation_ids[0] if single else tuple(reservation_ids))
        valid = len(set(reservation_ids)) == len(reservation_ids) <= POLICY.max_holds_per_user
        replay = self._replay(customer, key, request) if valid else None  # refused unclaimed
        befores = [self._stored(r) for r in reservation_ids]
        now = self.clock.now()
        balance = self.charged[customer] - self.spent[customer] + self.refunded[customer]
        token = self.tokens.get(customer)
        sold_before = len(self.database.payments)
        try:
            receipt = self.run(
                usecases.pay_holds(customer, token, reservation_ids, key, deps=self.deps)
            )
        except ConcertError as error:
            event(f"pay several: {error.code}{' (replayed)' if replay is not None else ''}")
            assert len(self.database.payments) == sold_before, "a refused payment paid"
            self._check_replayed(replay, error)
            if replay is not None:
                return
            if isinstance(error, InvalidRequest):
                assert not valid
                return
            if isinstance(error, QUEUE_GATE):
                self._check_gate_refusal(customer)
                return
            failing = [
                NotFound
                if before.user_id != customer
                else HoldExpired
                if before.as_of(now).status is ReservationStatus.EXPIRED
                else ReservationNotHeld
                for before in befores
                if not (before.user_id == customer and before.is_held(now))
            ]
            expected = failing[0] if failing else InsufficientBalance
            assert isinstance(error, expected), (error, expected)
            if expected is InsufficientBalance:
                assert balance < sum(before.price for before in befores)
            self._remember(customer, key, request, error)
            return
        event(f"pay several: paid{' (replayed)' if replay is not None else ''}")
        self._check_replayed(replay, receipt)
        if replay is None:
            assert all(b.user_id == customer and b.is_held(now) for b in befores)
            assert receipt.amount == sum(before.price for before in befores) <= balance
            self.spent[customer] += receipt.amount
            for reservation_id in reservation_ids:
                self.paid[reservation_id] = self._stored(reservation_id)
            assert self._ticket_status(token) is TicketStatus.EXPIRED  # type: ignore[arg-type]
            self._remember(customer, key, request, receipt)

    @precondition(lambda self: bool(self._holders()))
    @rule(data=st.data(), key=strategies.idempotency_keys)
    def pay_own_holds(self, data: st.DataObject, key: str | None) -> None:
        """A customer pays for every hold they have at once: the common case of paying for
        several, which random lists of reservations seldom hit."""
        customer = data.draw(st.sampled_from(sorted(self._holders())))
        now = self.clock.now()
        holds = [
            r.reservation_id
            for r in self._all_reservations()
            if r.user_id == customer and r.is_held(now)
        ]
        self.pay_several(customer, holds, key)

    @precondition(lambda self: bool(self.keyed_payments))
    @rule(data=st.data())
    def replay_payment(self, data: st.DataObject) -> None:
        """Send a payment made with an idempotency key again, exactly as before."""
        customer, reservation_id, key = data.draw(st.sampled_from(self.keyed_payments))
        self.pay(customer, reservation_id, key)

    @rule(seconds=strategies.time_steps)
    def advance_time(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @rule()
    def scheduler_tick(self) -> None:
        self.run(usecases.run_scheduler_tick(deps=self.deps))
        self._observe_activations()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def one_live_reservation_per_seat(self) -> None:
        now = self.clock.now()
        live = [r.seat_id for r in self._all_reservations() if r.is_live(now)]
        assert len(live) == len(set(live)), "a seat has two live reservations"

    @invariant()
    def a_paid_seat_stays_sold_until_refunded(self) -> None:
        for reservation_id, paid in self.paid.items():
            assert self._stored(reservation_id).status is ReservationStatus.PAID
            seat = self.database.seats.get(paid.seat_id)
            assert seat is not None
            assert self.database.seat_view(seat, self.clock.now()).status == "sold"

    @invariant()
    def a_refund_is_made_once_for_what_was_paid_and_frees_the_seat(self) -> None:
        now = self.clock.now()
        for reservation_id, paid in self.refunds.items():
            assert self._stored(reservation_id).status is ReservationStatus.REFUNDED
            payment_id = self.database.payment_by_reservation.get(reservation_id)
            payment = None if payment_id is None else self.database.payments.get(payment_id)
            assert payment is not None, "the payment is lost"
            assert reservation_id in payment.reservation_ids
            entries = list(self.database.ledger.get(paid.user_id) or ())
            refunds = [
                e
                for e in entries
                if e.kind is LedgerKind.REFUND and e.reservation_id == reservation_id
            ]
            assert [(e.amount, e.payment_id) for e in refunds] == [(paid.price, payment_id)]
            live = self.database.live_reservation(paid.seat_id, now)
            assert live is None or live.reservation_id != reservation_id

    @invariant()
    def an_expired_hold_blocks_nothing_and_was_never_paid(self) -> None:
        now = self.clock.now()
        for reservation in self._all_reservations():
            if reservation.as_of(now).status is ReservationStatus.EXPIRED:
                assert reservation.reservation_id not in self.database.payment_by_reservation
                live = self.database.live_reservation(reservation.seat_id, now)
                assert live is None or live.reservation_id != reservation.reservation_id
        for payment in self.database.payments.values():
            for reservation_id in payment.reservation_ids:
                assert payment.created_at < self._stored(reservation_id).expires_at

    @invariant()
    def balances_are_never_negative_and_equal_their_ledger(self) -> None:
        for user_id in self.emails.values():
            balance = self.database.wallets.get(user_id)
            assert balance is not None and balance >= 0
            entries = list(self.database.ledger.get(user_id) or ())
            expected = self.charged[user_id] - self.spent[user_id] + self.refunded[user_id]
            assert balance == ledger_balance(entries) == expected
            assert [e.balance for e in entries] == [
                ledger_balance(entries[: n + 1]) for n in range(len(entries))
            ], "an entry names a balance it did not leave"

    @invariant()
    def a_reservation_is_paid_at_most_once(self) -> None:
        payments = [r for p in self.database.payments.values() for r in p.reservation_ids]
        assert len(payments) == len(set(payments))
        assert set(payments) == set(self.paid) | set(self.refunds)  # a refund keeps its payment

    @invariant()
    def a_payment_of_several_holds_paid_them_all_for_their_total(self) -> None:
        for payment in self.database.payments.values():
            paid = [self._stored(r) for r in payment.reservation_ids]
            assert {r.status for r in paid} <= {ReservationStatus.PAID, ReservationStatus.REFUNDED}
            assert payment.amount == sum(r.price for r in paid)
            assert len({r.user_id for r in paid}) == 1

    @invariant()
    def a_hold_is_extended_at_most_once_and_never_past_its_bound(self) -> None:
        for reservation in self._all_reservations():
            lasts = reservation.expires_at - reservation.created_at
            assert lasts == POLICY.hold_duration + (
                POLICY.hold_extension if reservation.extended else timedelta(0)
            )

    @invariant()
    def the_queue_admits_in_order_within_capacity_one_token_each(self) -> None:
        statuses = {token: self._ticket_status(token) for token in self.tickets}
        active = [t for t, s in statuses.items() if s is TicketStatus.ACTIVE]
        assert len(active) <= POLICY.queue.capacity
        for user_id in set(self.emails.values()):
            live = [
                t
                for t, s in statuses.items()
                if self.tickets[t].user_id == user_id and s is not TicketStatus.EXPIRED
            ]
            assert len(live) <= 1, "a customer has two live tokens"
        admitted = sorted(
            (t for t in self.tickets.values() if t.activated is not None),
            key=lambda t: t.activated or 0,
        )
        assert [t.joined for t in admitted] == sorted(t.joined for t in admitted)
        for ticket in self.tickets.values():
            if statuses[ticket.token] is TicketStatus.WAITING:
                assert all(a.joined < ticket.joined for a in admitted), "admitted out of order"

    @invariant()
    def nobody_holds_more_than_the_limit(self) -> None:
        now = self.clock.now()
        per_user: dict[UserId, int] = defaultdict(int)
        for reservation in self._all_reservations():
            if reservation.is_held(now):
                per_user[reservation.user_id] += 1
        assert max(per_user.values(), default=0) <= POLICY.max_holds_per_user

    # -- helpers ----------------------------------------------------------------------------

    def _all_reservations(self) -> list[Reservation]:
        return list(self.database.reservations.values())

    def _stored(self, reservation_id: ReservationId) -> Reservation:
        reservation = self.database.reservations.get(reservation_id)
        assert reservation is not None
        return reservation

    def _holders(self) -> set[UserId]:
        now = self.clock.now()
        return {r.user_id for r in self._all_reservations() if r.is_held(now)}

    def _ticket_status(self, token: QueueToken) -> TicketStatus:
        ticket = self.run(self.deps.queue.get(token, self.clock.now()))
        # expired tickets are known for a while, then forgotten: forgotten means expired
        return TicketStatus.EXPIRED if ticket is None else ticket.status

    def _observe_activations(self) -> None:
        for ticket in self.tickets.values():
            if (
                ticket.activated is None
                and self._ticket_status(ticket.token) is not TicketStatus.WAITING
            ):
                self.activations += 1
                ticket.activated = self.activations

    def _check_gate_refusal(self, customer: UserId) -> None:
        token = self.tokens.get(customer)
        assert token is None or self._ticket_status(token) is not TicketStatus.ACTIVE, (
            "an active token was refused at the queue gate"
        )

    def _replay(self, customer: UserId, key: str | None, request: tuple[str, object]) -> object:
        """None when this request runs for real; else the answer it must get back."""
        if key is None or (customer, key) not in self.answers:
            return None
        first_request, answer = self.answers[(customer, key)]
        return answer if first_request == request else IdempotencyKeyReused

    def _check_replayed(self, replay: object, got: object) -> None:
        if replay is None:
            return
        if isinstance(replay, type):
            assert isinstance(got, replay), (got, replay)
        elif isinstance(replay, ConcertError):
            assert type(got) is type(replay) and got.message == replay.message
        else:
            assert got == replay, (got, replay)

    def _remember(
        self,
        customer: UserId,
        key: str | None,
        request: tuple[str, object],
        answer: object,
        stored: bool = True,
    ) -> None:
        if key is not None and stored:
            self.answers[(customer, key)] = (request, answer)


TestBookingFlow = BookingMachine.TestCase
# long runs: a payment needs sign-up, charge, join, hold and pay to line up
TestBookingFlow.settings = settings(TestBookingFlow.settings, stateful_step_count=100)
