"""Bounded retries of a whole transaction that the store gave up under contention."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from concert_domain.errors import TransactionConflict

T = TypeVar("T")

ATTEMPTS = 3


async def retrying(transaction: Callable[[], Awaitable[T]]) -> T:
    """Run ``transaction`` (which opens and commits its own unit of work) again when it raises
    `TransactionConflict`, at most ``ATTEMPTS`` times in all."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await transaction()
        except TransactionConflict:
            continue
    return await transaction()
