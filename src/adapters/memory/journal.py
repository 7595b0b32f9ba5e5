"""Tables with an undo journal: the transactions of the in-memory store.

Writes record the value they replace; rolling back replays the journal backwards. One lock
serializes units of work, so every transaction sees and leaves a consistent state, the way a
database at SERIALIZABLE would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


class Journal:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._undo: list[tuple[dict[object, object], object, object]] | None = None

    def begin(self) -> None:
        self._undo = []

    def record(self, rows: dict[object, object], key: object) -> None:
        if self._undo is None:
            raise RuntimeError("in-memory stores are written only inside a unit of work")
        self._undo.append((rows, key, rows.get(key, _MISSING)))

    def commit(self) -> None:
        if self._undo is not None:
            self._undo.clear()

    def rollback(self) -> None:
        for rows, key, old in reversed(self._undo or []):
            if old is _MISSING:
                rows.pop(key, None)
            else:
                rows[key] = old
        self.end()

    def end(self) -> None:
        self._undo = None


class Table(Generic[K, V]):
    """A dict whose writes are journaled."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._rows: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._rows.get(key)

    def __contains__(self, key: K) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def values(self) -> Iterator[V]:
        return iter(list(self._rows.values()))

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._rows.items()))

    def put(self, key: K, value: V) -> None:
        self._journal.record(self._rows, key)  # type: ignore[arg-type]
        self._rows[key] = value

    def delete(self, key: K) -> None:
        if key in self._rows:
            self._journal.record(self._rows, key)  # type: ignore[arg-type]
            del self._rows[key]


class Numbering:
    """Ids that are never handed out twice, rolled back or not (like a database sequence)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def __call__(self) -> int:
        return next(self._next)
