"""Retention reports: SQL aggregation over the alerts and the read model (services/retention/read_model.py).

Every measure's definition and formula: docs/reports.md, "Retention". Filters: tier, segment, owner
and team, each repeatable (any of). Churn facts filter by the values at churn, alerts by the alert's
owner, tier and segment (at the alert) and the customer's team, every other report by the customer's
current values. No I/O besides the queries; never commits. Lists are paged in SQL; the loyalty reports
stream per-customer rows through the pure typing in chunks, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.reports import Period, days_between, month_of
from services.retention import loyalty
from services.retention.models import Alert, Customer, CustomerScore
from services.retention.read_model import COMPLAINT, ORDER, SURVEY, ChurnFact, CustomerFact, FactEvent

A = Alert.__table__  # type: ignore[attr-defined]
C = Customer.__table__  # type: ignore[attr-defined]
S = CustomerScore.__table__  # type: ignore[attr-defined]
F = CustomerFact.__table__  # type: ignore[attr-defined]
E = FactEvent.__table__  # type: ignore[attr-defined]
CH = ChurnFact.__table__  # type: ignore[attr-defined]
IS_CUSTOMER = ("active", "won_back")
STREAM_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Filters:
    tiers: Sequence[str] = ()
    segments: Sequence[str] = ()
    owners: Sequence[str] = ()
    teams: Sequence[str] = ()

    def on(self, tier: Any, segment: Any, owner: Any, team: Any) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        for column, values in ((tier, self.tiers), (segment, self.segments), (owner, self.owners), (team, self.teams)):
            if values:
                where.append(column.in_(list(values)))
        return where


CURRENT_TIER = func.coalesce(C.c.tier, S.c.value_tier)


def _current(filters: Filters) -> list[ColumnElement[bool]]:
    return filters.on(CURRENT_TIER, C.c.segment, C.c.owner, F.c.team)


def _customers_joined(customer_id: Any) -> Any:
    """The customer replica, latest score and facts of ``customer_id`` (outer joins: any may be missing)."""
    return (
        C.outerjoin(S, S.c.customer_id == C.c.customer_id).outerjoin(F, F.c.customer_id == C.c.customer_id),
        C.c.customer_id == customer_id,
    )


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


async def _paged(session: AsyncSession, query: Any, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.limit(limit).offset(offset))).mappings().all()
    return [dict(r) for r in rows], int(total)


# ---- owner performance -------------------------------------------------------------------------------


async def owner_performance(
    *, session: AsyncSession, period: Period, filters: Filters, sla_hours: float, now: datetime, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Per owner of the alerts raised in the period: saves, churns, SLA and response-time percentiles."""
    hours = days_between(A.c.acknowledged_at, A.c.first_triggered_at, _dialect(session)) * 24.0
    source = A.outerjoin(F, F.c.customer_id == A.c.customer_id)
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
            func.sum(_flag(acked)).label("acknowledged"),
            func.sum(_flag(or_(acked, deadline_passed))).label("sla_due"),
            func.sum(_flag(and_(acked, hours <= sla_hours))).label("sla_met"),
            func.sum(_flag(A.c.outcome == "saved")).label("saved"),
            func.sum(_flag(A.c.outcome == "churned")).label("churned"),
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
    return await _paged(session, query, limit, offset)


# ---- value lost to churn ------------------------------------------------------------------------------


def _churns(period: Period, filters: Filters) -> list[ColumnElement[bool]]:
    return [
        CH.c.churned_at >= period.start_at,
        CH.c.churned_at < period.end_at,
        *filters.on(CH.c.tier, CH.c.segment, CH.c.owner, CH.c.team),
    ]


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
    where = _churns(period, filters)
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
        .where(*_churns(period, filters))
        .group_by(group, reason)
        .subquery()
    )
    totals = select(cells.c.grp, func.sum(cells.c.churned).label("group_churned")).group_by(cells.c.grp).subquery()
    query = (
        select(cells, totals.c.group_churned)
        .select_from(cells.join(totals, cells.c.grp.is_not_distinct_from(totals.c.grp)))
        .order_by(cells.c.grp.is_(None), cells.c.grp, cells.c.churned.desc(), cells.c.reason)
    )
    return await _paged(session, query, limit, offset)


# ---- complaint-to-churn conversion --------------------------------------------------------------------


async def complaint_conversion(
    *, session: AsyncSession, period: Period, filters: Filters, within_days: int, limit: int, offset: int
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Customers with a complaint opened in the period, and those who churned within N days of their first one."""
    d = _dialect(session)
    source, joined = _customers_joined(E.c.customer_id)
    base = [E.c.kind == COMPLAINT, E.c.at >= period.start_at, E.c.at < period.end_at, *_current(filters)]
    category = func.coalesce(E.c.category, "other")

    def converted(firsts: Any) -> Any:
        gap = days_between(CH.c.churned_at, firsts.c.first_at, d)
        churned = (
            select(literal(1))
            .where(CH.c.customer_id == firsts.c.customer_id, gap >= 0, gap <= within_days)
            .correlate(firsts)
            .exists()
        )
        return func.sum(_flag(churned))

    firsts_all = (
        select(E.c.customer_id, func.min(E.c.at).label("first_at"))
        .select_from(E.join(source, joined))
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
        .select_from(E.join(source, joined))
        .where(*base)
        .group_by(E.c.customer_id, category)
        .subquery()
    )
    query = (
        select(firsts.c.category, func.count().label("complainers"), converted(firsts).label("churned"))
        .group_by(firsts.c.category)
        .order_by(firsts.c.category)
    )
    rows, total = await _paged(session, query, limit, offset)
    return {k: int(v or 0) for k, v in overall.items()}, rows, total


# ---- satisfaction --------------------------------------------------------------------------------------


def _survey_measures() -> list[Any]:
    nps = E.c.category == "nps"
    return [
        func.count().label("answers"),
        func.avg(E.c.score).label("avg_score"),
        func.sum(_flag(and_(nps, E.c.score >= 9))).label("promoters"),
        func.sum(_flag(and_(nps, E.c.score <= 6))).label("detractors"),
        func.sum(_flag(and_(E.c.category == "csat", E.c.score >= 4))).label("satisfied"),
    ]


async def satisfaction(
    *, session: AsyncSession, period: Period, filters: Filters, limit: int, offset: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Survey answers in the period by (survey, dimension), and by (month, survey) as the trend."""
    source, joined = _customers_joined(E.c.customer_id)
    where = [E.c.kind == SURVEY, E.c.at >= period.start_at, E.c.at < period.end_at, *_current(filters)]
    dimension = func.coalesce(E.c.dimension, "unspecified")
    by_dimension = (
        await session.execute(
            select(E.c.category.label("survey"), dimension.label("dimension"), *_survey_measures())
            .select_from(E.join(source, joined))
            .where(*where)
            .group_by(E.c.category, dimension)
            .order_by(E.c.category, dimension)
        )
    ).mappings()
    month = month_of(E.c.at, _dialect(session))
    trend = (
        select(month.label("month"), E.c.category.label("survey"), *_survey_measures())
        .select_from(E.join(source, joined))
        .where(*where)
        .group_by(month, E.c.category)
        .order_by(month, E.c.category)
    )
    rows, total = await _paged(session, trend, limit, offset)
    return [dict(r) for r in by_dimension], rows, total


# ---- loyalty ---------------------------------------------------------------------------------------------


def _loyalty_rows(period: Period, filters: Filters) -> Any:
    """Per customer now (active or won back): orders before ``to``, in the period and in the period before,
    the first order, the latest NPS and CSAT answered before ``to``."""
    prior_start = period.start_at - (period.end_at - period.start_at)
    orders = (
        select(
            E.c.customer_id,
            func.count().label("orders"),
            func.min(E.c.at).label("first_at"),
            func.sum(_flag(E.c.at >= period.start_at)).label("recent"),
            func.sum(_flag(and_(E.c.at >= prior_start, E.c.at < period.start_at))).label("prior"),
        )
        .where(E.c.kind == ORDER, E.c.at < period.end_at)
        .group_by(E.c.customer_id)
        .subquery()
    )
    ranked = (
        select(
            E.c.customer_id,
            E.c.category,
            E.c.score,
            func.row_number()
            .over(partition_by=(E.c.customer_id, E.c.category), order_by=(E.c.at.desc(), E.c.id.desc()))
            .label("rn"),
        )
        .where(E.c.kind == SURVEY, E.c.category.in_(["nps", "csat"]), E.c.at < period.end_at)
        .subquery()
    )
    nps = select(ranked.c.customer_id, ranked.c.score).where(ranked.c.rn == 1, ranked.c.category == "nps").subquery()
    csat = select(ranked.c.customer_id, ranked.c.score).where(ranked.c.rn == 1, ranked.c.category == "csat").subquery()
    source, _ = _customers_joined(None)
    return (
        select(
            C.c.customer_id,
            C.c.owner,
            C.c.segment,
            CURRENT_TIER.label("tier"),
            F.c.team,
            F.c.share_of_wallet,
            func.coalesce(orders.c.orders, 0).label("orders"),
            orders.c.first_at,
            func.coalesce(orders.c.recent, 0).label("recent"),
            func.coalesce(orders.c.prior, 0).label("prior"),
            nps.c.score.label("nps"),
            csat.c.score.label("csat"),
        )
        .select_from(
            source.outerjoin(orders, orders.c.customer_id == C.c.customer_id)
            .outerjoin(nps, nps.c.customer_id == C.c.customer_id)
            .outerjoin(csat, csat.c.customer_id == C.c.customer_id)
        )
        .where(C.c.status.in_(IS_CUSTOMER), C.c.erased_at.is_(None), *_current(filters))
        .order_by(C.c.customer_id)
    )


def classify_row(row: Any, as_of: datetime, thresholds: loyalty.Thresholds) -> loyalty.Loyalty:
    first = row["first_at"]
    tenure = None
    if first is not None:
        first_at = first if isinstance(first, datetime) else datetime.fromisoformat(str(first))
        if first_at.tzinfo is None:
            first_at = first_at.replace(tzinfo=as_of.tzinfo)
        tenure = (as_of - first_at).total_seconds() / 86400.0
    behaviour = loyalty.Behaviour(
        orders=int(row["orders"]),
        tenure_days=tenure,
        recent_orders=int(row["recent"]),
        prior_orders=int(row["prior"]),
        share_of_wallet=row["share_of_wallet"],
    )
    return loyalty.classify(behaviour, loyalty.Attitude(nps=row["nps"], csat=row["csat"]), thresholds)


async def _stream(session: AsyncSession, query: Any) -> AsyncIterator[Any]:
    result = await session.stream(query.execution_options(yield_per=STREAM_CHUNK))
    async for partition in result.mappings().partitions(STREAM_CHUNK):
        for row in partition:
            yield row


async def loyalty_distribution(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds
) -> dict[str, Any]:
    """Customers per loyalty type, behaviour x attitude cells, and the satisfaction-trap count."""
    counts = {t.value: 0 for t in loyalty.LoyaltyType}
    traps = customers = repeaters = buyers = 0
    async for row in _stream(session, _loyalty_rows(period, filters)):
        typed = classify_row(row, period.end_at, thresholds)
        customers += 1
        counts[typed.type.value] += 1
        traps += typed.satisfaction_trap
        buyers += row["orders"] >= 1
        repeaters += row["orders"] >= 2
    return {"customers": customers, "counts": counts, "traps": traps, "buyers": buyers, "repeaters": repeaters}


async def satisfaction_traps(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The satisfied customers whose buying declines, by customer id, one page of them and how many in all."""
    items: list[dict[str, Any]] = []
    total = 0
    async for row in _stream(session, _loyalty_rows(period, filters)):
        typed = classify_row(row, period.end_at, thresholds)
        if not typed.satisfaction_trap:
            continue
        if offset <= total < offset + limit:
            items.append({**dict(row), "type": typed.type.value})
        total += 1
    return items, total


# ---- suggested churn reasons: accuracy ------------------------------------------------------------------


async def suggestion_accuracy(
    *, session: AsyncSession, period: Period, filters: Filters, limit: int, offset: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], int]:
    """Suggested against recorded reasons of the churns in the period: overall, per reason, confusion cells."""
    where = _churns(period, filters)
    suggested = CH.c.suggested_reason.is_not(None)
    correct = and_(suggested, CH.c.suggested_reason == CH.c.reason)
    measures = [
        func.count().label("churned"),
        func.sum(_flag(suggested)).label("suggested"),
        func.sum(_flag(correct)).label("correct"),
    ]
    overall = (await session.execute(select(*measures).where(*where))).mappings().one()
    recorded = func.coalesce(CH.c.reason, "unknown")
    per_reason = (
        await session.execute(
            select(recorded.label("reason"), *measures).where(*where).group_by(recorded).order_by(recorded)
        )
    ).mappings()
    per_suggestion = (
        await session.execute(
            select(
                CH.c.suggested_reason.label("reason"),
                func.count().label("suggested"),
                func.sum(_flag(correct)).label("correct"),
            )
            .where(*where, suggested)
            .group_by(CH.c.suggested_reason)
            .order_by(CH.c.suggested_reason)
        )
    ).mappings()
    confusion = (
        select(recorded.label("recorded"), CH.c.suggested_reason.label("suggested"), func.count().label("churns"))
        .where(*where)
        .group_by(recorded, CH.c.suggested_reason)
        .order_by(recorded, CH.c.suggested_reason.is_(None), CH.c.suggested_reason)
    )
    cells, total = await _paged(session, confusion, limit, offset)
    return (
        {k: int(v or 0) for k, v in overall.items()},
        [dict(r) for r in per_reason],
        [dict(r) for r in per_suggestion],
        cells,
        total,
    )
