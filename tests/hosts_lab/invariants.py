"""What PostgreSQL holds after a scenario, read directly, against DESIGN.md's invariants and
what the customers were told:

- no seat in two live reservations (held and unexpired, or paid); a unique index enforces it
  too, so this one is a last line rather than a test;
- sold seats = paid reservations: each date's sold count as the service reports it
  (``/admin/.../sales``) equals its paid reservations in PostgreSQL, every payment is the sum
  of the reservations it paid, and every payment a customer was told of (201) is there;
- every reservation's status agrees with the payments and the ledger: a paid (or refunded)
  one has a payment of its customer's, and no other has any; each payment names one of the
  reservations it paid and has exactly one debit of its amount in the ledger, and every debit
  has its payment; a refunded reservation has exactly one refund of its price, and every
  refund's reservation is refunded; no hold is left unswept long after it lapsed;
- every wallet's balance = its credits - debits + refunds in the ledger, never below zero,
  and each ledger entry's balance = the sum of the customer's entries up to it;
- each keyed write took effect at most once, and every one answered with success did: for
  each customer, the reservations, charges and payments in PostgreSQL number no fewer than
  those answered 201/200 and no more than the keys sent (`load.Shop`), so that a request run
  twice (a retry HAProxy should not have made, a key not honoured) shows.
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
        agree = await _statuses_agree(db)
        wallets = await _wallets_match_the_ledger(db)
        once = await _at_most_once(db, shop)
    return [one_each, sold, agree, wallets, once]


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
    running = await _rows(
        db,
        "SELECT entry_id, user_id, balance, running FROM (SELECT entry_id, user_id, balance, "
        "sum(CASE WHEN kind = 'payment' THEN -amount ELSE amount END) "
        "OVER (PARTITION BY user_id ORDER BY entry_id) AS running FROM ledger) entries "
        "WHERE balance <> running",
    )
    if running:
        problems.append(
            "ledger entries whose balance is not the sum of the entries up to them "
            f"(entry, customer, balance, sum) {_some(running)}"
        )
    [(entries,)] = await _rows(db, "SELECT count(*) FROM ledger")
    return Invariant("balance = ledger", f"{wallets} wallets, {entries} entries", problems)


# each a query of the rows that break a rule, and what they are
_DISAGREEMENTS = [
    (
        "paid or refunded reservations without a payment of their customer's",
        "SELECT r.reservation_id, r.status, r.payment_id FROM reservations r "
        "LEFT JOIN payments p ON p.payment_id = r.payment_id "
        "WHERE r.status IN ('paid', 'refunded') "
        "AND (p.payment_id IS NULL OR p.user_id <> r.user_id)",
    ),
    (
        "reservations neither paid nor refunded that name a payment",
        "SELECT reservation_id, status, payment_id FROM reservations "
        "WHERE status NOT IN ('paid', 'refunded') AND payment_id IS NOT NULL",
    ),
    (
        "payments whose own reservation is not among those they paid",
        "SELECT p.payment_id, p.reservation_id FROM payments p WHERE NOT EXISTS ("
        "SELECT 1 FROM reservations r WHERE r.payment_id = p.payment_id "
        "AND r.reservation_id = p.reservation_id)",
    ),
    (
        "payments without exactly one debit of their amount",
        "SELECT p.payment_id, count(l.entry_id) FROM payments p LEFT JOIN ledger l "
        "ON l.payment_id = p.payment_id AND l.kind = 'payment' AND l.amount = p.amount "
        "AND l.user_id = p.user_id GROUP BY p.payment_id HAVING count(l.entry_id) <> 1",
    ),
    (
        "debits without their payment",
        "SELECT l.entry_id, l.payment_id FROM ledger l WHERE l.kind = 'payment' AND NOT EXISTS "
        "(SELECT 1 FROM payments p WHERE p.payment_id = l.payment_id AND p.user_id = l.user_id)",
    ),
    (
        "refunded reservations without exactly one refund of their price",
        "SELECT r.reservation_id, count(l.entry_id) FROM reservations r LEFT JOIN ledger l "
        "ON l.reservation_id = r.reservation_id AND l.kind = 'refund' AND l.amount = r.price "
        "AND l.user_id = r.user_id WHERE r.status = 'refunded' GROUP BY r.reservation_id "
        "HAVING count(l.entry_id) <> 1",
    ),
    (
        "refunds of reservations not refunded",
        "SELECT l.entry_id, l.reservation_id FROM ledger l LEFT JOIN reservations r "
        "ON r.reservation_id = l.reservation_id WHERE l.kind = 'refund' "
        "AND r.status IS DISTINCT FROM 'refunded'",
    ),
    (
        "holds still held 30 s after they lapsed (the schedulers sweep them)",
        "SELECT reservation_id, expires_at FROM reservations WHERE status = 'held' "
        "AND expires_at < now() - interval '30 seconds'",
    ),
]


async def _statuses_agree(db: psycopg.AsyncConnection[Any]) -> Invariant:
    problems = []
    for what, query in _DISAGREEMENTS:
        found = await _rows(db, query)
        if found:
            problems.append(f"{what} {_some(found)}")
    counted = await _rows(
        db,
        "SELECT status, count(*) FROM reservations GROUP BY status ORDER BY status",
    )
    [(payments,)] = await _rows(db, "SELECT count(*) FROM payments")
    figure = ", ".join(f"{n} {status}" for status, n in counted) + f"; {payments} payments"
    return Invariant("statuses = payments = ledger", figure, problems)


async def _at_most_once(db: psycopg.AsyncConnection[Any], shop: Shop) -> Invariant:
    """Each customer's rows of each keyed write against what was answered and sent."""
    made = {
        "hold": "SELECT user_id, count(*) FROM reservations WHERE user_id = ANY(%s) "
        "GROUP BY user_id",
        "charge": "SELECT user_id, count(*) FROM ledger WHERE kind = 'charge' "
        "AND user_id = ANY(%s) GROUP BY user_id",
        "pay": "SELECT user_id, count(*) FROM payments WHERE user_id = ANY(%s) GROUP BY user_id",
    }
    problems, figures = [], []
    customers = sorted({user for user, _ in shop.sent})  # everyone who sent a keyed write
    for kind, query in made.items():
        expected = shop.counts(kind)
        rows = await _rows(db, query, customers) if customers else []
        stored = {int(user): int(n) for user, n in rows}
        wrong = [
            (user, stored.get(user, 0), answered, sent)
            for user in customers
            for answered, sent in [expected.get(user, (0, 0))]
            if not answered <= stored.get(user, 0) <= sent
        ]
        if wrong:
            problems.append(
                f"customers whose {kind}s stored are not between those answered and those "
                f"sent (customer, stored, answered, sent) {_some(wrong)}"
            )
        answered_all = sum(answered for answered, _ in expected.values())
        sent_all = sum(sent for _, sent in expected.values())
        figures.append(f"{kind}s {sum(stored.values())} stored/{answered_all} told/{sent_all} sent")
    return Invariant("each keyed write at most once", ", ".join(figures), problems)
