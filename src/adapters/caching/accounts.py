"""The accounts each process has seen to exist.

Every authenticated request asks whether the account its token names is there. Accounts are
never deleted, so one found once is there for good: only what a read-only unit of work found
is kept (it reads only what is committed), and an account not found is asked about again.
"""

from __future__ import annotations

from adapters.caching.lru import LeastRecentlyUsed
from adapters.caching.wrapping import WrappedAccounts, WrappedUnitOfWork
from concert_domain.ids import UserId
from concert_domain.ports import AccountRepository, UnitOfWork, UnitOfWorkFactory

LIMIT = 1_000_000


class KnownAccounts:
    """A `UnitOfWorkFactory` over ``inner`` whose read-only units of work keep the accounts
    found to exist."""

    def __init__(self, inner: UnitOfWorkFactory, *, limit: int = LIMIT) -> None:
        self._inner = inner
        self._known: LeastRecentlyUsed[UserId, bool] = LeastRecentlyUsed(limit)

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        uow = WrappedUnitOfWork(self._inner(read_only=read_only))
        if read_only:
            uow.accounts = _Kept(uow.inner.accounts, self._known)
        return uow


class _Kept(WrappedAccounts):
    def __init__(self, inner: AccountRepository, known: LeastRecentlyUsed[UserId, bool]) -> None:
        super().__init__(inner)
        self._known = known

    async def exists(self, user_id: UserId) -> bool:
        if self._known.get(user_id):
            return True
        found = await self.inner.exists(user_id)
        if found:
            self._known.put(user_id, True)
        return found
