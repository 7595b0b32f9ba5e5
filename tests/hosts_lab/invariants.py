"""What PostgreSQL holds after a scenario, read directly, against DESIGN.md's invariants and
what the customers were told:

- no seat in two live reservations (held and unexpired, or paid);
- sold seats = paid reservations: each date's sold count as the service reports it
  (``/admin/.../sales``) equals its paid reservations in PostgreSQL, every payment is the sum
  of the reservations it paid and has one ledger entry of its amount, and every payment a
  customer was told of (201) is there;
- every wallet's balance = its credits - debits + refunds in the ledger, never below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import psycopg

from .load import Shop, Stage


@attrs.frozen
class Invariant:
    name: str
    figure: str  # what was counted, for the table
    problems: list[str]

    @property
    def held(self) -> bool:
        return not self.problems


async def _rows(db: psycopg.AsyncConnection[Any], query: str, *args: Any) -> list[tuple[Any, ...]]:
    cursor = await db.execute(query, args or None)
    return list(await cursor.fetchall())


def _some(rows: Sequence[tuple[Any, ...]]) -> str:
    return f"{len(rows)}: {rows[:5]}{' ...' if len(rows) > 5 else ''}"


async def check(
    database_url: str, stages: Sequence[Stage], sold_reported: dict[int, int], shop: Shop
) -> list[Invariant]:
    """``sold_reported``: each stage's date to the sold count the service reported."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, connect_timeout=5
    ) as db:
        doubles = await _rows(
            db,
            "SELECT seat_id, array_agg(reservation_id ORDER BY reservation_id) FROM reservations "
            "WHERE status = 'paid' OR (status = 'held' AND expires_at > now()) "
            "GROUP BY seat_id HAVING count(*) > 1",
        )
        [(live,)] = await _rows(
            db,
            "SELECT count(*) FROM reservations "
            "WHERE status = 'paid' OR (status = 'held' AND expires_at > now())",
        )
        one_each = Invariant(
            "no seat in two live reservations",
            f"{live} live",
            [f"seats in two live reservations {_some(doubles)}"] if doubles else [],
        )
        sold = await _sold_is_paid(db, stages, sold_reported, shop)
        wallets = await _wallets_match_the_ledger(db)
    return [one_each, sold, wallets]


async def _sold_is_paid(
    db: psycopg.AsyncConnection[Any],
    stages: Sequence[Stage],
    sold_reported: dict[int, int],
    shop: Shop,
) -> Invariant:
    problems = []
    date_ids = [stage.date_id for stage in stages]
    paid_by_date = dict(
        await _rows(
            db,
            "SELECT date_id, count(*) FROM reservations WHERE status = 'paid' "
            "AND date_id = ANY(%s) GROUP BY date_id",
            date_ids,
        )
    )
    figures = []
    for stage in stages:
        paid = int(paid_by_date.get(stage.date_id, 0))
        reported = sold_reported.get(stage.date_id)
        figures.append(f"{stage.name} {reported}={paid}")
        if reported != paid:
            problems.append(
                f"{stage.name}: the service reports {reported} sold, PostgreSQL has {paid} paid"
            )
    uneven = await _rows(
        db,
        "SELECT p.payment_id, p.amount, coalesce(sum(r.price), 0) FROM payments p "
        "LEFT JOIN reservations r ON r.payment_id = p.payment_id "
        "AND r.status IN ('paid', 'refunded') GROUP BY p.payment_id, p.amount "
        "HAVING p.amount <> coalesce(sum(r.price), 0)",
    )
    if uneven:
        problems.append(f"payments that are not the sum of what they paid {_some(uneven)}")
    unpaid = await _rows(
        db,
        "SELECT r.reservation_id FROM reservations r WHERE r.status = 'paid' "
        "AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.payment_id = r.payment_id)",
    )
    if unpaid:
        problems.append(f"paid reservations without a payment {_some(unpaid)}")
    unledgered = await _rows(
        db,
        "SELECT p.payment_id, count(l.entry_id) FROM payments p LEFT JOIN ledger l "
        "ON l.payment_id = p.payment_id AND l.kind = 'payment' AND l.amount = p.amount "
        "AND l.user_id = p.user_id GROUP BY p.payment_id HAVING count(l.entry_id) <> 1",
    )
    if unledgered:
        problems.append(f"payments without exactly one ledger entry {_some(unledgered)}")
    told = sorted(shop.paid)
    stored = dict(
        await _rows(
            db,
            "SELECT reservation_id, status FROM reservations WHERE reservation_id = ANY(%s)",
            told,
        )
    )
    lost = [rid for rid in told if stored.get(rid) != "paid"]
    if lost:
        problems.append(f"payments answered 201 that are not stored as paid: {lost[:10]}")
    figures.append(f"{len(told)} told")
    return Invariant("sold seats = paid reservations", ", ".join(figures), problems)


async def _wallets_match_the_ledger(db: psycopg.AsyncConnection[Any]) -> Invariant:
    sums = (
        "coalesce(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0) "
        "- coalesce(sum(l.amount) FILTER (WHERE l.kind = 'payment'), 0) "
        "+ coalesce(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0)"
    )
    wrong = await _rows(
        db,
        f"SELECT w.user_id, w.balance, {sums} FROM wallets w "
        "LEFT JOIN ledger l ON l.user_id = w.user_id GROUP BY w.user_id, w.balance "
        f"HAVING w.balance <> {sums} OR w.balance < 0",
    )
    [(wallets,)] = await _rows(db, "SELECT count(*) FROM wallets")
    problems = [f"balances that are not credits - debits + refunds {_some(wrong)}"] if wrong else []
    return Invariant("balance = ledger", f"{wallets} wallets", problems)
