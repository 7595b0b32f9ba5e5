"""The in-memory store's transactions behave like a database's."""

import asyncio
from datetime import UTC, datetime

import pytest

from adapters.memory import InMemoryDatabase
from concert_domain.errors import EmailTaken
from concert_domain.ids import UserId

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class TestInMemoryUnitOfWork:
    async def test_leaving_without_commit_undoes_every_write(self) -> None:
        db = InMemoryDatabase()
        async with db.unit_of_work() as uow:
            account = await uow.accounts.add("mina@example.com", "hash", NOW)
            await uow.wallets.open(account.user_id)
            await uow.wallets.credit(account.user_id, 5_000, NOW, 100_000)
        async with db.unit_of_work() as uow:
            assert await uow.accounts.get_by_email("mina@example.com") is None
        assert db.ledger.get(account.user_id) is None
        assert db.wallets.get(account.user_id) is None

    async def test_an_error_rolls_back_and_the_next_transaction_starts_clean(self) -> None:
        db = InMemoryDatabase()
        async with db.unit_of_work() as uow:
            await uow.accounts.add("mina@example.com", "hash", NOW)
            await uow.commit()

        async def sign_up_both() -> None:
            async with db.unit_of_work() as uow:
                await uow.accounts.add("joon@example.com", "hash", NOW)
                await uow.accounts.add("mina@example.com", "hash", NOW)

        with pytest.raises(EmailTaken):
            await sign_up_both()
        async with db.unit_of_work() as uow:
            assert await uow.accounts.get_by_email("joon@example.com") is None
            assert await uow.accounts.get_by_email("mina@example.com") is not None

    async def test_a_read_only_unit_of_work_waits_for_a_writer_to_finish_each_read(
        self,
    ) -> None:
        db = InMemoryDatabase()
        async with db.unit_of_work() as uow:
            await uow.wallets.open(UserId(1))
            await uow.commit()
        inside, give_up = asyncio.Event(), asyncio.Event()

        async def write_and_give_up() -> None:
            async with db.unit_of_work() as uow:
                await uow.wallets.credit(UserId(1), 10, NOW, 100)
                inside.set()
                await give_up.wait()
            # left without commit: the 10 never was

        async def read() -> int:
            await inside.wait()
            async with db.unit_of_work(read_only=True) as uow:
                return await uow.wallets.balance(UserId(1))

        writing, reading = asyncio.ensure_future(write_and_give_up()), asyncio.ensure_future(read())
        await inside.wait()
        await asyncio.sleep(0)  # the reader is waiting for its turn now
        give_up.set()
        await writing
        assert await reading == 0

    async def test_transactions_take_turns(self) -> None:
        db = InMemoryDatabase()
        order: list[str] = []

        async def work(name: str) -> None:
            async with db.unit_of_work():
                order.append(f"{name} in")
                await asyncio.sleep(0)
                order.append(f"{name} out")

        await asyncio.gather(work("a"), work("b"))
        assert order == ["a in", "a out", "b in", "b out"]

    def test_refuses_writes_outside_a_unit_of_work(self) -> None:
        db = InMemoryDatabase()
        with pytest.raises(RuntimeError, match="unit of work"):
            db.wallets.put(UserId(1), 0)
