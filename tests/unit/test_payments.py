import asyncio
from datetime import datetime, timedelta
from typing import Self

import attrs
import pytest

from adapters.caching.wrapping import WrappedUnitOfWork
from adapters.clock import ManualClock
from adapters.memory import InMemoryHoldTimers, InMemoryQueueStore
from booking import Customer, add_venue, admitted_customer, memory_deps
from concert_domain import BookingPolicy, Dependencies
from concert_domain.errors import (
    HoldExpired,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    QueueTokenInvalid,
    QueueTokenRequired,
    ReservationNotHeld,
    StoreUnavailable,
    TransactionConflict,
)
from concert_domain.idempotency import PENDING_LEASE, fingerprint
from concert_domain.ids import QueueToken, ReservationId, SeatId, UserId
from concert_domain.ports import UnitOfWork
from concert_domain.reservations import Reservation
from concert_domain.usecases import (
    cancel_reservation,
    charge_wallet,
    get_balance,
    get_reservation,
    hold_seat,
    pay,
    queue_status,
    sweep_expired_holds,
)
from concert_domain.wallet import ledger_balance
from inspection import StoreInspector


async def holding(deps: Dependencies, email: str, *, balance: int) -> tuple[Customer, Reservation]:
    venue = await add_venue(deps, seats=1)
    customer = await admitted_customer(deps, email)
    if balance:
        await charge_wallet(customer.user_id, balance, deps=deps)
    held = await hold_seat(
        customer.user_id, customer.queue_token, venue.seats[0].seat_id, deps=deps
    )
    return customer, held


async def assert_balance_matches_ledger(
    deps: Dependencies, inspect: StoreInspector, customer: Customer, balance: int
) -> None:
    assert await get_balance(customer.user_id, deps=deps) == balance
    assert ledger_balance(await inspect.ledger(customer.user_id)) == balance


class TestChargeWallet:
    async def test_adds_to_the_balance_and_the_ledger(
        self, deps: Dependencies, inspect: StoreInspector
    ) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        assert await charge_wallet(mina.user_id, 30_000, deps=deps) == 30_000
        assert await charge_wallet(mina.user_id, 20_000, deps=deps) == 50_000
        assert await get_balance(mina.user_id, deps=deps) == 50_000
        entries = await inspect.ledger(mina.user_id)
        assert [(e.kind, e.amount) for e in entries] == [("charge", 30_000), ("charge", 20_000)]

    @pytest.mark.parametrize("amount", [0, -1, 10_000_001, True])
    async def test_refuses_an_amount_outside_1_to_10_million(
        self, deps: Dependencies, amount: int
    ) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(InvalidRequest):
            await charge_wallet(mina.user_id, amount, deps=deps)
        assert await get_balance(mina.user_id, deps=deps) == 0

    async def test_refuses_a_charge_that_would_pass_100_million(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        for _ in range(10):
            await charge_wallet(mina.user_id, 10_000_000, deps=deps)
        with pytest.raises(InvalidRequest):
            await charge_wallet(mina.user_id, 1, deps=deps)
        assert await get_balance(mina.user_id, deps=deps) == 100_000_000

    async def test_forty_concurrent_charges_lose_no_update(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        await asyncio.gather(*(charge_wallet(mina.user_id, 1_000, deps=deps) for _ in range(40)))
        assert await get_balance(mina.user_id, deps=deps) == 40_000

    async def test_applies_a_retried_charge_once_and_answers_the_same(
        self, deps: Dependencies
    ) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        first = await charge_wallet(mina.user_id, 5_000, "charge-1", deps=deps)
        again = await charge_wallet(mina.user_id, 5_000, "charge-1", deps=deps)
        assert first == again == 5_000
        assert await get_balance(mina.user_id, deps=deps) == 5_000

    async def test_scopes_idempotency_keys_to_the_customer(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        joon = await admitted_customer(deps, "joon@example.com")
        await charge_wallet(mina.user_id, 5_000, "same-key", deps=deps)
        assert await charge_wallet(joon.user_id, 7_000, "same-key", deps=deps) == 7_000

    @pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ünïcode", " k", "k ", " "])
    async def test_refuses_a_malformed_idempotency_key(self, deps: Dependencies, key: str) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        with pytest.raises(InvalidRequest):
            await charge_wallet(mina.user_id, 5_000, key, deps=deps)


class TestPay:
    async def test_sells_the_seat_debits_the_balance_and_expires_the_queue_token(
        self, deps: Dependencies, inspect: StoreInspector
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=80_000)
        receipt = await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        assert (receipt.reservation_id, receipt.amount, receipt.balance, receipt.status) == (
            held.reservation_id,
            50_000,
            30_000,
            "paid",
        )
        assert (
            await get_reservation(mina.user_id, held.reservation_id, deps=deps)
        ).status == "paid"
        assert await get_balance(mina.user_id, deps=deps) == 30_000
        assert (await queue_status(mina.user_id, mina.queue_token, deps=deps)).status == "expired"
        payment = await inspect.payment_for(held.reservation_id)
        entries = await inspect.ledger(mina.user_id)
        assert payment is not None and payment.payment_id == receipt.payment_id
        assert [(e.kind, e.amount, e.payment_id) for e in entries][-1] == (
            "payment",
            50_000,
            receipt.payment_id,
        )

    async def test_a_paid_seat_stays_sold_after_its_hold_time_and_a_sweep(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        clock.advance(timedelta(hours=2))
        assert await sweep_expired_holds(deps=deps) == 0
        assert (
            await get_reservation(mina.user_id, held.reservation_id, deps=deps)
        ).status == "paid"

    async def test_refuses_a_balance_that_does_not_cover_the_price_and_changes_nothing(
        self, deps: Dependencies, clock: ManualClock, inspect: StoreInspector
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=49_999)
        with pytest.raises(InsufficientBalance):
            await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        await assert_balance_matches_ledger(deps, inspect, mina, 49_999)
        assert (
            await get_reservation(mina.user_id, held.reservation_id, deps=deps)
        ).status == "held"
        assert (await queue_status(mina.user_id, mina.queue_token, deps=deps)).status == "active"
        assert await inspect.payment_for(held.reservation_id) is None

    async def test_never_pays_an_expired_hold(
        self, deps: Dependencies, clock: ManualClock, inspect: StoreInspector
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        clock.advance(timedelta(minutes=5))
        with pytest.raises(HoldExpired):
            await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        await sweep_expired_holds(deps=deps)
        with pytest.raises(HoldExpired):
            await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        await assert_balance_matches_ledger(deps, inspect, mina, 50_000)

    async def test_refuses_to_pay_twice_or_pay_a_cancelled_hold(
        self, deps: Dependencies, inspect: StoreInspector
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=100_000)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)
        joon, other = await holding(deps, "joon@example.com", balance=100_000)
        await cancel_reservation(joon.user_id, other.reservation_id, deps=deps)
        with pytest.raises(ReservationNotHeld):
            await pay(joon.user_id, joon.queue_token, other.reservation_id, deps=deps)
        await assert_balance_matches_ledger(deps, inspect, joon, 100_000)

    async def test_reports_another_customers_reservation_as_not_found(
        self, deps: Dependencies, inspect: StoreInspector
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        joon = await admitted_customer(deps, "joon@example.com")
        await charge_wallet(joon.user_id, 50_000, deps=deps)
        for reservation_id in (held.reservation_id, ReservationId(999)):
            with pytest.raises(NotFound):
                await pay(joon.user_id, joon.queue_token, reservation_id, deps=deps)
        await assert_balance_matches_ledger(deps, inspect, joon, 50_000)
        # the attempt left Mina's hold as it was: still hers to pay
        assert (
            await get_reservation(mina.user_id, held.reservation_id, deps=deps)
        ).status == "held"
        await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=deps)

    async def test_needs_an_active_queue_token(
        self, deps: Dependencies, inspect: StoreInspector
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        with pytest.raises(QueueTokenRequired):
            await pay(mina.user_id, None, held.reservation_id, deps=deps)
        await assert_balance_matches_ledger(deps, inspect, mina, 50_000)

    async def test_twenty_concurrent_payments_against_a_balance_that_covers_one(
        self, clock: ManualClock, inspect: StoreInspector
    ) -> None:
        deps = memory_deps(clock, BookingPolicy(max_holds_per_user=20))
        venue = await add_venue(deps, seats=20)
        mina = await admitted_customer(deps, "mina@example.com")
        await charge_wallet(mina.user_id, 50_000, deps=deps)
        holds = [
            await hold_seat(mina.user_id, mina.queue_token, seat.seat_id, deps=deps)
            for seat in venue.seats
        ]
        results = await asyncio.gather(
            *(pay(mina.user_id, mina.queue_token, h.reservation_id, deps=deps) for h in holds),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        refused = [type(r) for r in results if isinstance(r, BaseException)]
        assert set(refused) <= {InsufficientBalance, QueueTokenInvalid}, refused
        await assert_balance_matches_ledger(deps, inspect, mina, 0)


class TestPayIdempotently:
    async def test_a_retry_replays_the_first_answer_after_the_queue_token_expired(
        self, deps: Dependencies
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=120_000)
        first = await pay(mina.user_id, mina.queue_token, held.reservation_id, "pay-1", deps=deps)
        again = await pay(mina.user_id, mina.queue_token, held.reservation_id, "pay-1", deps=deps)
        assert again == first
        assert await get_balance(mina.user_id, deps=deps) == 70_000

    async def test_refuses_the_same_key_for_a_different_request(self, deps: Dependencies) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=120_000)
        await pay(mina.user_id, mina.queue_token, held.reservation_id, "key", deps=deps)
        with pytest.raises(IdempotencyKeyReused):
            await pay(mina.user_id, mina.queue_token, ReservationId(999), "key", deps=deps)
        with pytest.raises(IdempotencyKeyReused):
            await charge_wallet(mina.user_id, 1_000, "key", deps=deps)

    async def test_replays_an_error_answer_too(self, deps: Dependencies) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=1_000)
        with pytest.raises(InsufficientBalance) as first:
            await pay(mina.user_id, mina.queue_token, held.reservation_id, "k", deps=deps)
        await charge_wallet(mina.user_id, 100_000, deps=deps)
        with pytest.raises(InsufficientBalance) as again:
            await pay(mina.user_id, mina.queue_token, held.reservation_id, "k", deps=deps)
        assert again.value.message == first.value.message
        receipt = await pay(mina.user_id, mina.queue_token, held.reservation_id, "k2", deps=deps)
        assert receipt.balance == 51_000

    async def test_a_closed_queue_gate_is_not_stored_as_the_answer(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        with pytest.raises(QueueTokenInvalid):
            await pay(mina.user_id, "forged", held.reservation_id, "k", deps=deps)
        receipt = await pay(mina.user_id, mina.queue_token, held.reservation_id, "k", deps=deps)
        assert receipt.balance == 0

    async def test_tells_a_retry_that_the_first_is_still_running(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        request = fingerprint("pay", reservation_id=held.reservation_id)
        async with deps.uow() as uow:  # a first request that claimed the key and is still at work
            await uow.idempotency.claim(mina.user_id, "k", request, clock.now(), PENDING_LEASE)
            await uow.commit()
        with pytest.raises(IdempotencyKeyInUse):
            await pay(mina.user_id, mina.queue_token, held.reservation_id, "k", deps=deps)
        clock.advance(PENDING_LEASE)  # the first request died: its claim is taken over
        receipt = await pay(mina.user_id, mina.queue_token, held.reservation_id, "k", deps=deps)
        assert receipt.balance == 0

    async def test_concurrent_retries_with_one_key_debit_once(self, deps: Dependencies) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=200_000)
        results = await asyncio.gather(
            *(
                pay(mina.user_id, mina.queue_token, held.reservation_id, "k", deps=deps)
                for _ in range(10)
            ),
            return_exceptions=True,
        )
        receipts = {r for r in results if not isinstance(r, BaseException)}
        assert len(receipts) == 1
        assert all(
            isinstance(r, IdempotencyKeyInUse) for r in results if isinstance(r, BaseException)
        )
        assert await get_balance(mina.user_id, deps=deps) == 150_000


class CommitSignalled(WrappedUnitOfWork):
    def __init__(self, inner: UnitOfWork, committed: asyncio.Event) -> None:
        super().__init__(inner)
        self._committed = committed

    async def commit(self) -> None:
        await self.inner.commit()
        self._committed.set()


class TestStoreLostAfterTheClaim:
    async def test_the_failure_is_answered_at_once_and_the_claim_dropped_after(
        self, deps: Dependencies
    ) -> None:
        mina = await admitted_customer(deps, "mina@example.com")
        opened: list[bool] = []
        released = asyncio.Event()

        def fails_after_the_claim(*, read_only: bool = False) -> UnitOfWork:
            opened.append(read_only)
            if len(opened) == 2:  # the charge itself: its store is gone
                raise StoreUnavailable("the database cannot be reached")
            if len(opened) == 3:  # the release, which the failed request does not wait for
                return CommitSignalled(deps.uow(read_only=read_only), released)
            return deps.uow(read_only=read_only)

        flaky = attrs.evolve(deps, uow=fails_after_the_claim)
        with pytest.raises(StoreUnavailable):
            await charge_wallet(mina.user_id, 1_000, "k", deps=flaky)
        assert len(opened) == 2  # answered before the claim was dropped
        await asyncio.wait_for(released.wait(), timeout=5)
        assert await charge_wallet(mina.user_id, 1_000, "k", deps=deps) == 1_000

    async def test_a_request_let_go_drops_its_claim(self, deps: Dependencies) -> None:
        """Cancelled (a stopping server's drain ran out): the key is free for the retry at
        once, not after its lease."""
        mina = await admitted_customer(deps, "mina@example.com")
        working = asyncio.Event()
        released = asyncio.Event()
        opened = 0

        def stalls_the_charge(*, read_only: bool = False) -> UnitOfWork:
            nonlocal opened
            opened += 1
            if opened == 2:  # the charge itself: it never ends
                working.set()
                return StallingUnitOfWork(deps.uow(read_only=read_only))
            if opened == 3:  # the release
                return CommitSignalled(deps.uow(read_only=read_only), released)
            return deps.uow(read_only=read_only)

        stalled = attrs.evolve(deps, uow=stalls_the_charge)
        charge = asyncio.create_task(charge_wallet(mina.user_id, 1_000, "k", deps=stalled))
        await asyncio.wait_for(working.wait(), timeout=5)
        charge.cancel()
        with pytest.raises(asyncio.CancelledError):
            await charge
        await asyncio.wait_for(released.wait(), timeout=5)
        assert await charge_wallet(mina.user_id, 1_000, "k", deps=deps) == 1_000

    async def test_a_request_that_outlived_its_lease_changes_nothing(
        self, deps: Dependencies, clock: ManualClock
    ) -> None:
        """Its claim taken over by a retry meanwhile: the retry's change is the one made,
        the late request's is rolled back and it is told 409."""
        mina = await admitted_customer(deps, "mina@example.com")
        entered, go_on = asyncio.Event(), asyncio.Event()
        opened = 0

        def slow_charge(*, read_only: bool = False) -> UnitOfWork:
            nonlocal opened
            opened += 1
            if opened == 2:  # the charge itself waits
                return WaitingUnitOfWork(deps.uow(read_only=read_only), entered, go_on)
            return deps.uow(read_only=read_only)

        slow = attrs.evolve(deps, uow=slow_charge)
        late = asyncio.create_task(charge_wallet(mina.user_id, 1_000, "k", deps=slow))
        await asyncio.wait_for(entered.wait(), timeout=5)
        clock.advance(PENDING_LEASE)
        assert await charge_wallet(mina.user_id, 1_000, "k", deps=deps) == 1_000
        go_on.set()
        with pytest.raises(IdempotencyKeyInUse):
            await late
        assert await get_balance(mina.user_id, deps=deps) == 1_000
        assert await charge_wallet(mina.user_id, 1_000, "k", deps=deps) == 1_000  # kept


class WaitingUnitOfWork(WrappedUnitOfWork):
    def __init__(self, inner: UnitOfWork, entered: asyncio.Event, go_on: asyncio.Event):
        super().__init__(inner)
        self._entered, self._go_on = entered, go_on

    async def __aenter__(self) -> Self:
        self._entered.set()
        await self._go_on.wait()
        return await super().__aenter__()


class StallingUnitOfWork(WrappedUnitOfWork):
    async def commit(self) -> None:
        await asyncio.Event().wait()  # until cancelled


class TestRetriesUnderContention:
    async def test_a_payment_the_store_gave_up_under_contention_is_retried(
        self, deps: Dependencies
    ) -> None:
        mina, held = await holding(deps, "mina@example.com", balance=50_000)
        failures = iter([TransactionConflict("busy"), TransactionConflict("busy")])
        real = deps.uow

        def flaky(*, read_only: bool = False) -> UnitOfWork:
            failure = next(failures, None)
            if failure is not None:
                raise failure
            return real(read_only=read_only)

        flaky_deps = attrs.evolve(deps, uow=flaky)
        receipt = await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=flaky_deps)
        assert receipt.balance == 0

    async def test_gives_up_after_three_attempts(self, deps: Dependencies) -> None:
        mina = await admitted_customer(deps, "mina@example.com")

        def always_busy(*, read_only: bool = False) -> UnitOfWork:
            raise TransactionConflict("busy")

        with pytest.raises(TransactionConflict):
            await charge_wallet(mina.user_id, 1_000, deps=attrs.evolve(deps, uow=always_busy))


class ExpiryFails(InMemoryQueueStore):
    """A queue whose Redis goes away just when a paid token is to be expired."""

    async def expire(self, token: QueueToken, now: datetime) -> None:
        raise StoreUnavailable("redis is down")


class ReleaseFails(InMemoryHoldTimers):
    """Hold timers whose Redis goes away just when a timer is to be dropped."""

    async def release(self, seat_id: SeatId, user_id: UserId) -> None:
        raise StoreUnavailable("redis is down")


class TestRedisLostAfterCommit:
    @pytest.fixture
    def flaky(self, deps: Dependencies) -> Dependencies:
        line = ExpiryFails()
        return attrs.evolve(deps, queue=line, timers=ReleaseFails(line))

    async def test_a_committed_payment_succeeds_though_its_token_stays(
        self, flaky: Dependencies
    ) -> None:
        mina, held = await holding(flaky, "mina@example.com", balance=50_000)
        receipt = await pay(mina.user_id, mina.queue_token, held.reservation_id, deps=flaky)
        assert receipt.balance == 0
        assert (
            await get_reservation(mina.user_id, held.reservation_id, deps=flaky)
        ).status == "paid"

    async def test_a_committed_cancel_succeeds_though_its_timer_stays(
        self, flaky: Dependencies
    ) -> None:
        mina, held = await holding(flaky, "mina@example.com", balance=0)
        cancelled = await cancel_reservation(mina.user_id, held.reservation_id, deps=flaky)
        assert cancelled.status == "cancelled"
