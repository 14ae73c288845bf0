"""Retention metrics from the read model (outcomes/read_model.py): the period's whole months summed from
metric_totals, its edges counted from the contribution rows, the median warning from the warned rows.

A row counts for [start, end) when lo < start <= t and u < end. By months: certainly when lo's month is
before start's, t's month is start's or later (start's only when start opens its month) and u's month is
before end's; those rows are summed from the totals. The rest that count (lo, t or u within the month of
start or of end) are counted from metric_facts, through its indexes on lo, t and u: at most the rows of
two months, whatever the period's length.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.retention.outcomes import contributions as shares
from services.retention.outcomes.core import Metrics
from services.retention.outcomes.read_model import ALL, RULE, F, T, month_of, month_start

Group = tuple[str, str]  # (kind, key)


async def metrics(
    session: AsyncSession, start: datetime, end: datetime, group_by: str | None
) -> tuple[Metrics, list[Metrics]]:
    kinds = [ALL] if group_by is None else [ALL, group_by]
    counted: dict[Group, Counter[str]] = {}
    first = month_of(start)
    whole_from = first if start == month_start(first) else first + 1
    last = month_of(end)
    summed = await session.execute(
        select(T.c.kind, T.c.key, T.c.measure, func.sum(T.c.n))
        .where(T.c.kind.in_(kinds), T.c.lo_month < first, T.c.t_month >= whole_from, T.c.u_month < last)
        .group_by(T.c.kind, T.c.key, T.c.measure)
    )
    for kind, key, measure, n in summed:
        counted.setdefault((kind, key), Counter())[measure] += int(n)
    edges = await session.execute(
        select(F.c.measure, F.c.rule, F.c.tier, F.c.segment, func.count())
        .where(
            _counts(start, end),
            or_(F.c.lo >= month_start(first), F.c.t < month_start(whole_from), F.c.u >= month_start(last)),
        )
        .group_by(F.c.measure, F.c.rule, F.c.tier, F.c.segment)
    )
    for measure, rule, tier, segment, n in edges:
        for group in _groups(group_by, rule, tier, segment):
            counted.setdefault(group, Counter())[measure] += int(n)
    warnings: dict[Group, list[float]] = {}
    warned = select(F.c.rule, F.c.tier, F.c.segment, F.c.value).where(F.c.measure == shares.WARNED, _counts(start, end))
    if group_by != RULE:
        warned = warned.where(F.c.rule.is_(None))
    for rule, tier, segment, value in await session.execute(warned):
        for group in _groups(group_by, rule, tier, segment):
            warnings.setdefault(group, []).append(shares.warning_days(int(value)))
    whole = counted.get((ALL, ""), Counter())
    overall = shares.metrics_of(whole, warnings.get((ALL, ""), []), start, end)
    if group_by is None:
        return overall, []
    groups = []
    for key in await _keys(session, group_by):
        mine = counted.get((group_by, key), Counter())
        if group_by == RULE:  # a rule's metrics count every customer: its population and churn are everyone's
            mine = mine + Counter({m: whole[m] for m in shares.CUSTOMER_MEASURES if whole[m]})
        groups.append(shares.metrics_of(mine, warnings.get((group_by, key), []), start, end, key))
    return overall, groups


def _counts(start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(F.c.lo < start, F.c.t >= start, F.c.u < end)


def _groups(group_by: str | None, rule: str | None, tier: str, segment: str) -> list[Group]:
    """The groups a row counts in: the whole and its tier or segment (rows of no rule), or its rule."""
    if rule is not None:
        return [(RULE, rule)] if group_by == RULE else []
    if group_by == "tier":
        return [(ALL, ""), ("tier", tier)]
    if group_by == "segment":
        return [(ALL, ""), ("segment", segment)]
    return [(ALL, "")]


async def _keys(session: AsyncSession, group_by: str) -> list[str]:
    """Every tier or segment of a known customer, or every rule of an alert, as the former query listed them."""
    measures = [shares.KNOWN] if group_by != RULE else [shares.TREATED, shares.CONTROL]
    rows = await session.execute(
        select(T.c.key)
        .where(T.c.kind == group_by, T.c.measure.in_(measures))
        .group_by(T.c.key)
        .having(func.sum(T.c.n) > 0)
    )
    return sorted(rows.scalars())  # in Python's order, as the former computation sorted them
