"""Best available: which seats side by side to offer a customer who asks for a quantity.

The rule, in one sentence: of all blocks of that many available seats side by side in one row,
take those that strand no single available seat (between the block and a taken seat or the
row's end), or all of them when every block would; and of these the one in the best section,
then the best row, then nearest the middle of its row (then the lowest number).

Box offices choose the same way: a best-first order of sections and rows, centre seats before
aisle seats, and no lone seat left that nobody buying in pairs can use. Leaving no single seat
comes first, across the whole date, so that it is a promise (invariant 11) and not a hope.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

import attrs

from concert_domain.catalog import Seat, SeatStatus, SeatView
from concert_domain.ids import SeatId

# a side of a block: the available seat next to it and the one beyond, None when that one is
# taken or past the row's end (then the seat next to the block would be left alone)
Side = tuple[SeatId, SeatId | None]


@attrs.frozen(order=True)
class Block:
    """Seats side by side in one row, with what ranks it (lower is better), and its sides:
    what another customer's hold would have to change for the block to strand a seat, or to
    stop stranding one (`HoldTimers.take` looks again at them when it takes the block)."""

    strands: bool
    section_order: int
    row_order: int
    off_centre: float
    first_number: int
    seats: tuple[Seat, ...] = attrs.field(order=False)
    sides: tuple[Side, ...] = attrs.field(default=(), order=False, eq=False)

    @property
    def seat_ids(self) -> list[SeatId]:
        return [seat.seat_id for seat in self.seats]


def rows_of(views: Iterable[SeatView]) -> Iterator[list[SeatView]]:
    """Views in layout order, a row at a time."""
    for _, row in groupby(views, key=lambda view: (view.seat.section_order, view.seat.row_order)):
        yield list(row)


def blocks_in_row(
    row: Sequence[SeatView], quantity: int, unavailable: frozenset[SeatId] = frozenset()
) -> Iterator[Block]:
    """Every block of ``quantity`` available seats side by side in ``row`` (its views by
    number); a seat in ``unavailable`` counts as taken, whatever its view says."""
    if not row:
        return
    middle = (row[0].seat.number + row[-1].seat.number) / 2
    for run in _runs(row, unavailable):
        for start in range(len(run) - quantity + 1):
            seats = tuple(run[start : start + quantity])
            left, right = run[start - 1 :: -1][:2] if start else [], run[start + quantity :][:2]
            sides = tuple(_side(beside) for beside in (left, right) if beside)
            yield Block(
                strands=any(far is None for _, far in sides),
                section_order=seats[0].section_order,
                row_order=seats[0].row_order,
                off_centre=abs((seats[0].number + seats[-1].number) / 2 - middle),
                first_number=seats[0].number,
                seats=seats,
                sides=sides,
            )


def _side(beside: list[Seat]) -> Side:
    """The side a block has where ``beside`` are the available seats next to it, nearest
    first (one or two of them)."""
    return beside[0].seat_id, beside[1].seat_id if len(beside) > 1 else None


def _runs(row: Sequence[SeatView], unavailable: frozenset[SeatId]) -> Iterator[list[Seat]]:
    """The row's maximal runs of available seats with consecutive numbers."""
    run: list[Seat] = []
    for view in row:
        seat = view.seat
        free = view.status is SeatStatus.AVAILABLE and seat.seat_id not in unavailable
        if free and run and seat.number == run[-1].number + 1:
            run.append(seat)
            continue
        if run:
            yield run
        run = [seat] if free else []
    if run:
        yield run


def best_blocks(blocks: Iterable[Block], limit: int) -> list[Block]:
    """The ``limit`` best of ``blocks`` by the rule, best first (a heap, not a sort: a big
    section has hundreds of blocks and only the best few are wanted)."""
    return heapq.nsmallest(limit, blocks, key=_rank)


def _rank(block: Block) -> tuple[bool, int, int, float, int]:
    return (
        block.strands,
        block.section_order,
        block.row_order,
        block.off_centre,
        block.first_number,
    )


def strands_avoidably(chosen: Block, views: Sequence[SeatView], quantity: int) -> bool:
    """Whether ``chosen`` (a block among ``views``, a whole date as it stood when it was
    chosen) strands a single seat when another block of that size would not: what invariant 11
    forbids."""
    if not chosen.strands:
        return False
    return any(
        not block.strands for row in rows_of(views) for block in blocks_in_row(row, quantity)
    )
