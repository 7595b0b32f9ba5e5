"""A date's sold seats as CSV, written a line at a time as the seats are read, so that the
memory a listing takes does not grow with the date.

A cell that a spreadsheet would run as a formula (one that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return; an email may start with ``=``) is written with a leading
``'``, which spreadsheets show as text (OWASP's advice on CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from concert_domain.catalog import SoldSeat

CSV = "text/csv; charset=utf-8"
HEADER = ["reservation_id", "payment_id", "section", "row", "number", "price", "paid_at", "email"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LINES_PER_CHUNK = 500


def inert(cell: str) -> str:
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


async def csv_lines(sold: AsyncIterator[SoldSeat]) -> AsyncIterator[bytes]:
    """The header, then one line per sold seat, sent in chunks of a few hundred lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    lines = 0
    async for seat in sold:
        writer.writerow(
            [
                seat.reservation_id,
                seat.payment_id,
                inert(seat.section),
                inert(seat.row),
                seat.number,
                seat.price,
                seat.paid_at.isoformat(),
                inert(seat.email),
            ]
        )
        lines += 1
        if lines % LINES_PER_CHUNK == 0:
            yield _taken(buffer)
    yield _taken(buffer)


def _taken(buffer: io.StringIO) -> bytes:
    chunk = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return chunk
