"""The best-available rule (`concert_domain.seating`), on examples and on any hall."""

from hypothesis import given
from hypothesis import strategies as st

from concert_domain.catalog import Seat, SeatStatus, SeatView
from concert_domain.ids import ConcertId, DateId, SeatId
from concert_domain.seating import Block, best_blocks, blocks_in_row, rows_of, strands_avoidably


def hall(*rows: str) -> list[SeatView]:
    """A hall from one string a row (``.`` available, ``x`` taken), a section of its own
    for each ``|`` in the string; seats numbered from 1 in each row."""
    views, seat_id = [], 0
    for row_order, row in enumerate(rows):
        section = row.count("|")
        for number, mark in enumerate(row.replace("|", ""), start=1):
            seat_id += 1
            seat = Seat(
                SeatId(seat_id),
                DateId(1),
                ConcertId(1),
                f"S{section}",
                f"R{row_order}",
                number,
                10_000,
                section,
                row_order,
            )
            status = SeatStatus.AVAILABLE if mark == "." else SeatStatus.SOLD
            views.append(SeatView(seat, status))
    return views


def best(views: list[SeatView], quantity: int) -> list[str]:
    blocks = [b for row in rows_of(views) for b in blocks_in_row(row, quantity)]
    return [f"{b.seats[0].row}:{b.first_number}" for b in best_blocks(blocks, 3)]


def test_the_middle_of_the_best_row_first() -> None:
    assert best(hall("......", "......"), 2) == ["R0:3", "R0:1", "R0:5"]


def test_a_block_that_strands_no_seat_beats_a_better_placed_one_that_does() -> None:
    # row 0: 1-3 free, 4 taken, 5-6 free: 2-3 would strand seat 1, 1-2 strands 3
    assert best(hall("...x..", "......"), 2)[:2] == ["R0:5", "R1:3"]


def test_a_worse_section_without_a_stranded_seat_beats_a_better_one_with_it() -> None:
    # section 0 has one row of three: any pair there strands the third seat
    assert best(hall("...", "|...."), 2)[0] == "R1:1"


def test_when_every_block_strands_a_seat_the_best_placed_is_taken() -> None:
    assert best(hall("...x..."), 2) == ["R0:2", "R0:5", "R0:1"]


def test_seats_taken_by_others_or_struck_off_are_passed_over() -> None:
    views = hall("......")
    struck = frozenset({SeatId(3), SeatId(4)})
    found = [b.first_number for b in blocks_in_row(list(views), 2, struck)]
    assert found == [1, 5]


@st.composite
def halls(draw: st.DrawFn) -> tuple[list[SeatView], int]:
    rows = draw(st.lists(st.text(alphabet=".x", min_size=1, max_size=12), min_size=1, max_size=5))
    sections = draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    marked = ["|" * sum(sections[: i + 1]) + row for i, row in enumerate(rows)]
    return hall(*marked), draw(st.integers(min_value=1, max_value=4))


@given(halls())
def test_the_best_block_is_side_by_side_available_and_strands_nothing_avoidably(
    drawn: tuple[list[SeatView], int],
) -> None:
    views, quantity = drawn
    blocks = [b for row in rows_of(views) for b in blocks_in_row(row, quantity)]
    chosen = best_blocks(blocks, 1)
    if not chosen:  # then no row has that many available side by side
        assert not _any_run(views, quantity)
        return
    [block] = chosen
    numbers = [seat.number for seat in block.seats]
    assert numbers == list(range(numbers[0], numbers[0] + quantity))
    assert len({(seat.section_order, seat.row_order) for seat in block.seats}) == 1
    status = {view.seat.seat_id: view.status for view in views}
    assert all(status[seat.seat_id] is SeatStatus.AVAILABLE for seat in block.seats)
    assert not strands_avoidably(block, views, quantity)
    assert block == min(_brute_force(views, quantity))


def _any_run(views: list[SeatView], quantity: int) -> bool:
    return any(True for _ in _brute_force(views, quantity))


def _brute_force(views: list[SeatView], quantity: int) -> list[Block]:
    """Every block, ranked as the rule says, found the slow way."""
    found = []
    for row in rows_of(views):
        free = {v.seat.number for v in row if v.status is SeatStatus.AVAILABLE}
        middle = (row[0].seat.number + row[-1].seat.number) / 2
        for start in free:
            wanted = range(start, start + quantity)
            if not all(n in free for n in wanted):
                continue
            left = start - 1 in free and start - 2 not in free
            right = start + quantity in free and start + quantity + 1 not in free
            seats = tuple(v.seat for v in row if v.seat.number in wanted)
            found.append(
                Block(
                    left or right,
                    seats[0].section_order,
                    seats[0].row_order,
                    abs(start + (quantity - 1) / 2 - middle),
                    start,
                    seats,
                )
            )
    return found
