"""Purchase months: the calendar months (UTC) in which a customer bought, kept per customer as a bit set
relative to the month of its first order (bit k: it bought k months after that month), so the cohort
curves read one number per customer instead of every order. Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Bits 0..62 of a signed 64-bit integer (the same on PostgreSQL's bigint and SQLite's integer): purchases
# more than MONTH_BITS - 1 months after the first one are not kept (the curves reach 36 months).
MONTH_BITS = 63
ALL_BITS = (1 << MONTH_BITS) - 1


def month_number(at: datetime) -> int:
    """The calendar month (UTC) of ``at`` as year x 12 + month - 1 (naive times count as UTC)."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at
    return utc.year * 12 + utc.month - 1


def with_order(months: int, first_order_at: datetime | None, at: datetime) -> int:
    """The set ``months`` (relative to the month of ``first_order_at``, the first order before this one)
    with an order at ``at`` added, relative to the month of the first order after it: an order before
    the first one moves every bit up by the months between them."""
    month = month_number(at)
    if first_order_at is None:
        return 1
    first = month_number(first_order_at)
    if month >= first:
        offset = month - first
        return months | (1 << offset) if offset < MONTH_BITS else months
    shift = first - month
    moved = (months << shift) & ALL_BITS if shift < MONTH_BITS else 0
    return moved | 1


def offsets(months: int) -> list[int]:
    """The months after the first order's month in which the customer bought (0: that month)."""
    return [k for k in range(MONTH_BITS) if months >> k & 1]
