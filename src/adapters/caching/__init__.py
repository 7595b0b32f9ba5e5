"""Caches and read models: adapters that wrap a port, keep what it answered, and forget it
when a write through the same wrapper changes it. Nothing in the core knows they are there.
Each is bounded and forgets the least recently used first."""

from adapters.caching.accounts import KnownAccounts
from adapters.caching.catalog import CatalogCache
from adapters.caching.seatmaps import SeatMapReadModel, SeatMapVersions
from adapters.caching.tokens import VerifiedTokens

__all__ = [
    "CatalogCache",
    "KnownAccounts",
    "SeatMapReadModel",
    "SeatMapVersions",
    "VerifiedTokens",
]
