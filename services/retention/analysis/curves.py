"""Cohort curves by first-purchase month from aggregated cells. Pure: no I/O, no clock.

A cohort is the customers whose first purchase fell in one calendar month (UTC). For each month after it
(0: the cohort month itself), two curves: ``active``, the members who bought in that month, and
``retained``, the members with no churn before that month ended (their first churn, if any, falls in a
later month). Definitions and formulas: docs/reports.md, "Cohorts by first-purchase month".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_MONTHS = 36


def month_index(month: str) -> int:
    """'YYYY-MM' as a month count (year x 12 + month - 1), so months subtract."""
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1


def month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True, slots=True)
class CohortPoint:
    cohort: str
    size: int
    month: int
    active: int
    active_share: float
    retained: int
    retention: float


def cohort_points(
    members: Iterable[tuple[str, str | None, int]],
    active: Iterable[tuple[str, str, int]],
    *,
    months: int,
    last_month: str,
) -> list[CohortPoint]:
    """Every cohort's points from month 0 to ``months`` (never past ``last_month``, the latest month that
    has ended), in cohort then month order.

    members: (cohort month, month of the member's first churn or None, members);
    active: (cohort month, month of purchase, distinct members who bought in it).
    """
    churns: dict[str, list[tuple[int | None, int]]] = {}
    for cohort, churn_month, count in members:
        churns.setdefault(cohort, []).append((None if churn_month is None else month_index(churn_month), count))
    buyers = {(cohort, month_index(month)): count for cohort, month, count in active}
    last = month_index(last_month)
    points: list[CohortPoint] = []
    for cohort, cells in sorted(churns.items()):
        start = month_index(cohort)
        size = sum(n for _, n in cells)
        for offset in range(0, min(months, last - start) + 1):
            retained = sum(n for m, n in cells if m is None or m > start + offset)
            bought = buyers.get((cohort, start + offset), 0)
            points.append(
                CohortPoint(
                    cohort=cohort,
                    size=size,
                    month=offset,
                    active=bought,
                    active_share=bought / size,
                    retained=retained,
                    retention=retained / size,
                )
            )
    return points
