"""A write answered at most once per idempotency key, its first answer replayed to retries.

The claim is committed on its own, so that a concurrent retry sees it and is told the first is
still running. The work keeps its answer (`Attempt.keep`) in the unit of work that makes its
change, so the two commit or roll back together. A domain error raised by the work is an answer
too and is kept; an answer about the caller's place in line (`NotAdmitted`) or pace
(`RateLimited`), a store failure or the request's cancellation drops the claim instead, so that
the retry can go through (after a store failure or a cancellation, without waiting for it; if
the store is still down, the claim's lease runs out on its own). Only a pending claim is
dropped: work whose commit went through keeps its answer.

A request behind the queue gate names its queue token, and a caller still waiting in line
writes nothing: the key is only read, its kept answer replayed if it has one (it was answered
before the caller went back into line), else the caller is told to wait. So the crowd in line
costs the database a read at most, keys or none. Any other refusal of the gate is left to the
work, after the claim, for a key may keep an answer given before its token lapsed (a payment
expires it at once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime

import attrs

from concert_domain.dependencies import Dependencies
from concert_domain.errors import (
    ConcertError,
    IdempotencyKeyInUse,
    NotAdmitted,
    QueueTokenInvalid,
    QueueTokenNotActive,
    QueueTokenRequired,
    RateLimited,
    StoreUnavailable,
    error_from_code,
)
from concert_domain.idempotency import (
    PENDING_LEASE,
    IdempotencyRecord,
    JsonScalar,
    StoredOutcome,
)
from concert_domain.ids import UserId
from concert_domain.ports import UnitOfWork
from concert_domain.usecases._follow_up import follow_up_later
from concert_domain.usecases.queue import require_active_token

Body = Mapping[str, JsonScalar]


@attrs.frozen
class Attempt:
    """One run of a request. ``kept`` is the first answer when this run is a retry of it."""

    kept: Body | None = None
    claim: tuple[UserId, str, datetime] | None = None  # the customer, the key, when claimed

    async def keep(self, uow: UnitOfWork, body: Body) -> None:
        """Keep ``body`` as the answer, in the unit of work that makes the change. Raises
        `IdempotencyKeyInUse` when a retry has taken the claim over (this run outlived the
        lease): the change must then not be committed, for the retry makes it."""
        if self.claim is None:
            return
        if not await uow.idempotency.complete(*self.claim, StoredOutcome(body=body)):
            raise IdempotencyKeyInUse(
                "a retry with this Idempotency-Key took over from this request, which ran "
                "past its lease; the retry's answer is the one kept"
            )


@contextlib.asynccontextmanager
async def answered_once(
    deps: Dependencies,
    user_id: UserId,
    key: str | None,
    fingerprint: str,
    now: datetime,
    queue_token: str | None = None,
) -> AsyncIterator[Attempt]:
    """Claim ``key`` (already validated) for this request; without a key, every run is new.
    With a key and ``queue_token`` (the request is behind the queue gate), a caller still
    waiting in line claims nothing (see the module's note).

    Raises `IdempotencyKeyReused`, `IdempotencyKeyInUse`, a kept error answer again, and
    `QueueTokenNotActive`."""
    if key is None:
        yield Attempt()
        return
    waiting = None if queue_token is None else await _waiting(deps, user_id, queue_token, now)
    if waiting is not None:
        async with deps.uow(read_only=True) as uow:
            existing = await uow.idempotency.find(user_id, key)
        if existing is None or existing.abandoned(now):
            raise waiting
    else:
        async with deps.uow() as uow:
            existing = await uow.idempotency.claim(user_id, key, fingerprint, now, PENDING_LEASE)
            await uow.commit()
    if existing is not None:
        yield _replayed(existing, fingerprint)
        return
    claim = (user_id, key, now)
    try:
        yield Attempt(claim=claim)
    except (NotAdmitted, RateLimited):
        await _release(deps, claim)
        raise
    except (StoreUnavailable, asyncio.CancelledError):  # not waited for: the store has just
        # failed this request, or the request is being let go (a server stopping)
        follow_up_later(_release(deps, claim), "drop an idempotency claim")
        raise
    except ConcertError as error:  # kept, unless the claim is no longer this request's
        async with deps.uow() as uow:
            await uow.idempotency.complete(*claim, StoredOutcome.of_error(error))
            await uow.commit()
        raise


def _replayed(existing: IdempotencyRecord, fingerprint: str) -> Attempt:
    """The run of a retry: the first answer's body, or its error raised again."""
    outcome = existing.replay(fingerprint)
    if outcome.error_code is not None:
        raise error_from_code(outcome.error_code, outcome.error_message or "")
    return Attempt(kept=outcome.body or {})


async def _waiting(
    deps: Dependencies, user_id: UserId, queue_token: str, now: datetime
) -> QueueTokenNotActive | None:
    """The refusal for a caller whose ``queue_token`` still waits in line; `None` for any
    other token, which goes on to the claim (see the module's note), and when the line cannot
    be asked: a retry's kept answer must not depend on Redis."""
    try:
        await require_active_token(user_id, queue_token, now, deps=deps)
    except QueueTokenNotActive as refusal:
        return refusal
    except (QueueTokenRequired, QueueTokenInvalid, StoreUnavailable):
        return None
    return None


async def _release(deps: Dependencies, claim: tuple[UserId, str, datetime]) -> None:
    """Drop the claim if the store lets us; if not, its lease runs out on its own."""
    with contextlib.suppress(StoreUnavailable):
        async with deps.uow() as uow:
            await uow.idempotency.release(*claim)
            await uow.commit()
