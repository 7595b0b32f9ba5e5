"""Run a write at most once per idempotency key, replaying its first answer to retries.

The claim is committed on its own so that a concurrent retry sees it and is told the first is
still running. The answer is stored in the same transaction as the work, so the two commit or
roll back together; without a key, the work's one change is committed with it (`Finish`). A
domain error raised by the work is an answer too and is kept; an error raised before the work
(a closed queue gate, say) or a store failure drops the claim, so that the retry can go
through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Protocol, TypeVar

from concert_domain.dependencies import Dependencies
from concert_domain.errors import ConcertError, StoreUnavailable, error_from_code
from concert_domain.idempotency import PENDING_LEASE, JsonScalar, StoredOutcome
from concert_domain.ids import UserId
from concert_domain.ports import UnitOfWork
from concert_domain.usecases._retry import retrying

Body = Mapping[str, JsonScalar]
T = TypeVar("T")


class Finish(Protocol):
    """How ``work`` makes its one change: with `UnitOfWork.commit_with` when nothing follows it
    in the transaction, else as it is."""

    def __call__(self, change: Awaitable[T], /) -> Awaitable[T]: ...


Work = Callable[[UnitOfWork, datetime, Finish], Awaitable[Body]]


async def run_idempotently(
    *,
    deps: Dependencies,
    user_id: UserId,
    key: str | None,
    fingerprint: str,
    before: Callable[[datetime], Awaitable[None]] | None = None,
    work: Work,
) -> tuple[Body, bool]:
    """The answer's body, and True if it is a replay of the first answer.

    ``before`` runs after the claim and outside the transaction; ``work`` runs in it.
    """
    now = deps.clock.now()
    if key is None:
        if before is not None:
            await before(now)
        return await retrying(lambda: _work_once(deps, work, now, None)), False

    async with deps.uow() as uow:
        existing = await uow.idempotency.claim(user_id, key, fingerprint, now, PENDING_LEASE)
        await uow.commit()
    if existing is not None:
        outcome = existing.replay(fingerprint)
        if outcome.error_code is not None:
            raise error_from_code(outcome.error_code, outcome.error_message or "")
        return outcome.body or {}, True

    try:
        if before is not None:
            await before(now)
    except Exception:
        await _release(deps, user_id, key)
        raise
    try:
        return await retrying(lambda: _work_once(deps, work, now, (user_id, key))), False
    except StoreUnavailable:
        await _release(deps, user_id, key)
        raise
    except ConcertError as error:
        async with deps.uow() as uow:
            await uow.idempotency.complete(user_id, key, StoredOutcome.of_error(error))
            await uow.commit()
        raise


async def _work_once(
    deps: Dependencies, work: Work, now: datetime, claim: tuple[UserId, str] | None
) -> Body:
    async with deps.uow() as uow:
        if claim is None:
            return await work(uow, now, uow.commit_with)
        body = await work(uow, now, _as_it_is)
        await uow.idempotency.complete(*claim, StoredOutcome(body=body))
        await uow.commit()
    return body


async def _as_it_is(change: Awaitable[T]) -> T:
    return await change


async def _release(deps: Dependencies, user_id: UserId, key: str) -> None:
    """Drop the claim if the store lets us; if not, its lease runs out on its own."""
    try:
        async with deps.uow() as uow:
            await uow.idempotency.release(user_id, key)
            await uow.commit()
    except StoreUnavailable:
        pass
