"""Retention reports: SQL aggregation over the alerts and the read model (models.py).

Every measure's definition and formula: docs/reports.md, "Retention". Filters: tier, segment, owner
and team, each repeatable (any of). Churn facts filter by the values at churn, alerts by the alert's
owner, tier and segment (at the alert) and the customer's team, every other report by the customer's
current values. No I/O besides the queries; never commits. Lists are paged in SQL; the loyalty
reports are in loyalty_queries.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.reports import Period, days_between, month_of
from services.retention.reports.models import (
    COMPLAINT,
    SURVEY,
    SURVEY_DIMENSION,
)
from services.retention.reports.sql import (
    CH,
    A,
    E,
    F,
    Filters,
    churns,
    current,
    dialect,
    events,
    flag,
    paged,
)

# ---- owner performance -------------------------------------------------------------------------------


async def owner_performance(
    *, session: AsyncSession, period: Period, filters: Filters, sla_hours: float, now: datetime, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Per owner of the alerts raised in the period: saves, churns, SLA and response-time percentiles."""
    hours = days_between(A.c.acknowledged_at, A.c.first_triggered_at, dialect(session)) * 24.0
    source = A.outerjoin(F, F.c.customer_id == A.c.customer_id) if filters.teams else A
    where = [
        A.c.first_triggered_at >= period.start_at,
        A.c.first_triggered_at < period.end_at,
        *filters.on(A.c.tier, A.c.segment, A.c.owner, F.c.team),
    ]
    acked = A.c.acknowledged_at.is_not(None)
    deadline_passed = A.c.first_triggered_at < min(period.end_at, now) - timedelta(hours=sla_hours)
    main = (
        select(
            A.c.owner.label("grp"),
            func.count().label("alerts"),
            func.sum(flag(acked)).label("acknowledged"),
            func.sum(flag(or_(acked, deadline_passed))).label("sla_due"),
            func.sum(flag(and_(acked, hours <= sla_hours))).label("sla_met"),
            func.sum(flag(A.c.outcome == "saved")).label("saved"),
            func.sum(flag(A.c.outcome == "churned")).label("churned"),
        )
        .select_from(source)
        .where(*where)
        .group_by(A.c.owner)
        .subquery()
    )
    ranked = (
        select(
            A.c.owner.label("grp"),
            hours.label("h"),
            func.row_number().over(partition_by=A.c.owner, order_by=hours).label("rn"),
            func.count().over(partition_by=A.c.owner).label("n"),
        )
        .select_from(source)
        .where(*where, acked)
        .subquery()
    )
    pct = (
        select(
            ranked.c.grp,
            func.min(case((ranked.c.rn >= 0.5 * ranked.c.n, ranked.c.h))).label("p50"),
            func.min(case((ranked.c.rn >= 0.9 * ranked.c.n, ranked.c.h))).label("p90"),
            func.avg(ranked.c.h).label("avg"),
        )
        .group_by(ranked.c.grp)
        .subquery()
    )
    query = (
        select(main, pct.c.p50, pct.c.p90, pct.c.avg)
        .select_from(main.outerjoin(pct, main.c.grp.is_not_distinct_from(pct.c.grp)))
        .order_by(main.c.grp.is_(None), main.c.grp)
    )
    return await paged(session, query, limit, offset)


# ---- value lost to churn ------------------------------------------------------------------------------


def _value_columns() -> list[Any]:
    return [
        func.count().label("churned"),
        func.coalesce(func.sum(CH.c.historical_value), 0.0).label("historical_value_lost"),
        func.coalesce(func.sum(CH.c.predicted_value), 0.0).label("predicted_value_lost"),
        func.count(CH.c.predicted_value).label("with_prediction"),
    ]


async def value_lost(
    *, session: AsyncSession, period: Period, filters: Filters
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Churns in the period with the value they took: overall, by tier at churn and by side."""
    where = churns(period, filters)
    overall = (await session.execute(select(*_value_columns()).where(*where))).mappings().one()
    by_tier = (
        await session.execute(
            select(CH.c.tier.label("tier"), *_value_columns())
            .where(*where)
            .group_by(CH.c.tier)
            .order_by(CH.c.tier.is_(None), CH.c.tier)
        )
    ).mappings()
    side = func.coalesce(CH.c.side, "unknown")
    by_side = (
        await session.execute(select(side.label("side"), *_value_columns()).where(*where).group_by(side).order_by(side))
    ).mappings()
    return dict(overall), [dict(r) for r in by_tier], [dict(r) for r in by_side]


async def reason_mix(
    *, session: AsyncSession, period: Period, filters: Filters, group_by: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Churns in the period per (tier or segment at churn, reason), with the group's churns and value lost."""
    group = {"tier": CH.c.tier, "segment": CH.c.segment}[group_by]
    reason = func.coalesce(CH.c.reason, "unknown")
    cells = (
        select(
            group.label("grp"),
            reason.label("reason"),
            func.count().label("churned"),
            func.coalesce(func.sum(CH.c.historical_value), 0.0).label("historical_value_lost"),
            func.coalesce(func.sum(CH.c.predicted_value), 0.0).label("predicted_value_lost"),
        )
        .where(*churns(period, filters))
        .group_by(group, reason)
        .subquery()
    )
    totals = select(cells.c.grp, func.sum(cells.c.churned).label("group_churned")).group_by(cells.c.grp).subquery()
    query = (
        select(cells, totals.c.group_churned)
        .select_from(cells.join(totals, cells.c.grp.is_not_distinct_from(totals.c.grp)))
        .order_by(cells.c.grp.is_(None), cells.c.grp, cells.c.churned.desc(), cells.c.reason)
    )
    return await paged(session, query, limit, offset)


# ---- complaint-to-churn conversion --------------------------------------------------------------------


async def complaint_conversion(
    *, session: AsyncSession, period: Period, filters: Filters, within_days: int, limit: int, offset: int
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Customers with a complaint opened in the period, and those who churned within N days of their first one."""
    d = dialect(session)
    base = [E.c.kind == COMPLAINT, E.c.at >= period.start_at, E.c.at < period.end_at, *current(filters)]
    category = func.coalesce(E.c.category, "other")

    def converted(firsts: Any) -> Any:
        gap = days_between(CH.c.churned_at, firsts.c.first_at, d)
        churned = (
            select(literal(1))
            .where(CH.c.customer_id == firsts.c.customer_id, gap >= 0, gap <= within_days)
            .correlate(firsts)
            .exists()
        )
        return func.sum(flag(churned))

    firsts_all = (
        select(E.c.customer_id, func.min(E.c.at).label("first_at"))
        .select_from(events(filters))
        .where(*base)
        .group_by(E.c.customer_id)
        .subquery()
    )
    overall = (
        (
            await session.execute(
                select(func.count().label("complainers"), converted(firsts_all).label("churned")).select_from(
                    firsts_all
                )
            )
        )
        .mappings()
        .one()
    )
    firsts = (
        select(E.c.customer_id, category.label("category"), func.min(E.c.at).label("first_at"))
        .select_from(events(filters))
        .where(*base)
        .group_by(E.c.customer_id, category)
        .subquery()
    )
    query = (
        select(firsts.c.category, func.count().label("complainers"), converted(firsts).label("churned"))
        .group_by(firsts.c.category)
        .order_by(firsts.c.category)
    )
    rows, total = await paged(session, query, limit, offset)
    return {k: int(v or 0) for k, v in overall.items()}, rows, total


# ---- satisfaction --------------------------------------------------------------------------------------


def _survey_measures() -> list[Any]:
    nps = E.c.category == "nps"
    return [
        func.count().label("answers"),
        func.avg(E.c.score).label("avg_score"),
        func.sum(flag(and_(nps, E.c.score >= 9))).label("promoters"),
        func.sum(flag(and_(nps, E.c.score <= 6))).label("detractors"),
        func.sum(flag(and_(E.c.category == "csat", E.c.score >= 4))).label("satisfied"),
    ]


async def satisfaction(
    *, session: AsyncSession, period: Period, filters: Filters, limit: int, offset: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Survey answers in the period by (survey, dimension), and by (month, survey) as the trend."""
    in_period = [E.c.at >= period.start_at, E.c.at < period.end_at, *current(filters)]
    # By dimension: the answers (their dimension, if the survey named one) and survey-link dimension scores.
    where = [E.c.kind.in_([SURVEY, SURVEY_DIMENSION]), *in_period]
    dimension = func.coalesce(E.c.dimension, "unspecified")
    by_dimension = (
        await session.execute(
            select(E.c.category.label("survey"), dimension.label("dimension"), *_survey_measures())
            .select_from(events(filters))
            .where(*where)
            .group_by(E.c.category, dimension)
            .order_by(E.c.category, dimension)
        )
    ).mappings()
    month = month_of(E.c.at, dialect(session))
    trend = (
        select(month.label("month"), E.c.category.label("survey"), *_survey_measures())
        .select_from(events(filters))
        .where(E.c.kind == SURVEY, *in_period)
        .group_by(month, E.c.category)
        .order_by(month, E.c.category)
    )
    rows, total = await paged(session, trend, limit, offset)
    return [dict(r) for r in by_dimension], rows, total
