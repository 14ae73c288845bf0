"""Purchase months: the calendar months (UTC) in which a customer bought, as month numbers that subtract.

The cohort report reads each member's set of purchase months (``customer_order_months``), kept as orders
arrive. Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime


def month_number(at: datetime) -> int:
    """The calendar month (UTC) of ``at`` as year x 12 + month - 1 (naive times count as UTC)."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at
    return utc.year * 12 + utc.month - 1


def known_month(at: datetime, first_order_at: datetime | None, last_order_at: datetime | None) -> bool:
    """Whether the month of an order at ``at`` is surely in the customer's set already: it is the month of
    the first or the latest order recorded before it (both are in the set). False means: add it (adding
    is idempotent, so a False for a month already there costs one statement, never a duplicate)."""
    month = month_number(at)
    return any(known is not None and month_number(known) == month for known in (first_order_at, last_order_at))
