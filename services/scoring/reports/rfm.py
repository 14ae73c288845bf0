"""RFM quintiles in SQL: the cuts of each dimension over the report's population, each customer's bucket by
comparison with them, and the RFM cell counts. The formulas are those of services.scoring.value.measures;
docs/reports.md (Value) defines them. No I/O besides the queries; never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.scoring.reports.service import F, Filters, _population, _rows, _source
from services.scoring.value.measures import RFM_BUCKETS

RFM_COLUMNS = {"r": F.c.last_purchase_at, "f": F.c.purchases, "m": F.c.total_spend}


@dataclass(frozen=True, slots=True)
class RfmCuts:
    """Per dimension, the values a customer must exceed to reach quintile 2, 3, 4 and 5.

    With the population's values ascending v[1..n] and c_k = ceil(k x n / 5), a customer with value x has
    at least c_k customers below it exactly when x > v[c_k]; so its quintile 1 + floor(5 x #{v < x} / n)
    (measures.bucket) is 1 + the number of cuts it exceeds. Finding the cuts takes one sort of one column
    per dimension; every customer's quintile is then a comparison, with no window over whole rows."""

    n: int
    cuts: dict[str, list[Any]]

    def bucket(self, name: str, column: ColumnElement[Any]) -> ColumnElement[int]:
        steps = [case((column > cut, 1), else_=0) for cut in self.cuts[name]]
        total: ColumnElement[int] = literal(1)
        for step in steps:
            total = total + step
        return total


def _positions(n: int) -> list[int]:
    return [(k * n + RFM_BUCKETS - 1) // RFM_BUCKETS for k in range(1, RFM_BUCKETS)]


async def rfm_cuts(session: AsyncSession, filters: Filters) -> RfmCuts:
    """The cuts of the three dimensions. Frequency (a purchase count, few distinct values) from its
    histogram, which also gives the population's size; recency and monetary in one query: one scan, a row
    number per dimension (one sort of one column each), keeping only the rows at the cut positions
    c_k = ceil(k x n / 5) (at most 8 rows)."""
    source, where = _source(filters), _population(filters)
    histogram = (
        await session.execute(
            select(F.c.purchases, func.count()).select_from(source).where(*where).group_by(F.c.purchases)
        )
    ).all()
    n = sum(int(count) for _, count in histogram)
    if n == 0:
        return RfmCuts(0, {name: [] for name in RFM_COLUMNS})
    positions = _positions(n)
    cuts: dict[str, list[Any]] = {"f": []}
    seen, wanted = 0, iter(positions)
    target = next(wanted)
    for value, count in sorted(histogram):
        seen += int(count)
        while target is not None and seen >= target:
            cuts["f"].append(value)
            target = next(wanted, None)
    sorted_dims = {name: RFM_COLUMNS[name] for name in ("r", "m")}
    numbered = (
        select(
            *(column.label(name) for name, column in sorted_dims.items()),
            *(func.row_number().over(order_by=column).label(f"i_{name}") for name, column in sorted_dims.items()),
        )
        .select_from(source)
        .where(*where)
        .subquery()
    )
    query = select(numbered).where(or_(*(numbered.c[f"i_{name}"].in_(positions) for name in sorted_dims)))
    rows = _rows(await session.execute(query))
    for name in sorted_dims:
        found = {int(r[f"i_{name}"]): r[name] for r in rows}
        cuts[name] = [found[p] for p in positions]
    return RfmCuts(n, cuts)


def rfm_columns(cuts: RfmCuts) -> dict[str, ColumnElement[int]]:
    """r, f, m of a customer row (None for a customer without purchases)."""
    bought = and_(F.c.erased == false(), F.c.purchases > 0)
    return {name: case((bought, cuts.bucket(name, column)), else_=None) for name, column in RFM_COLUMNS.items()}


async def rfm_cells(*, session: AsyncSession, filters: Filters) -> list[dict[str, Any]]:
    """(r, f, m, customers, revenue) for every occupied cell: at most 125 rows."""
    cuts = await rfm_cuts(session, filters)
    if not cuts.n:
        return []
    rfm = rfm_columns(cuts)
    r, f, m = rfm["r"].label("r"), rfm["f"].label("f"), rfm["m"].label("m")
    query = (
        select(r, f, m, func.count().label("customers"), func.sum(F.c.total_spend).label("revenue"))
        .select_from(_source(filters))
        .where(*_population(filters))
        .group_by(r, f, m)
        .order_by(r.desc(), f.desc(), m.desc())
    )
    return _rows(await session.execute(query))
