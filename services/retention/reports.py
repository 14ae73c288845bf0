"""Retention reports: SQL aggregation over the alerts and the read model (services/retention/read_model.py).

Every measure's definition and formula: docs/reports.md, "Retention". Filters: tier, segment, owner
and team, each repeatable (any of). Churn facts filter by the values at churn, alerts by the alert's
owner, tier and segment (at the alert) and the customer's team, every other report by the customer's
current values. No I/O besides the queries; never commits. Lists are paged in SQL; the loyalty reports
type customers in SQL with the same thresholds as the pure typing (loyalty_columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.reports import Period, days_between, month_of
from services.retention import loyalty
from services.retention.alerts.models import Alert
from services.retention.read_model import (
    COMPLAINT,
    ORDER,
    SURVEY,
    SURVEY_DIMENSION,
    ChurnFact,
    CustomerFact,
    FactEvent,
)
from services.retention.replica.models import Customer, CustomerScore

A = Alert.__table__  # type: ignore[attr-defined]
C = Customer.__table__  # type: ignore[attr-defined]
S = CustomerScore.__table__  # type: ignore[attr-defined]
F = CustomerFact.__table__  # type: ignore[attr-defined]
E = FactEvent.__table__  # type: ignore[attr-defined]
CH = ChurnFact.__table__  # type: ignore[attr-defined]
IS_CUSTOMER = ("active", "won_back")


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


def _events(filters: Filters) -> Any:
    """fact_events, joined to the customer's current values only when a filter needs them."""
    if not (filters.tiers or filters.segments or filters.owners or filters.teams):
        return E
    source, joined = _customers_joined(E.c.customer_id)
    return E.join(source, joined)


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
        .select_from(_events(filters))
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
        .select_from(_events(filters))
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
    in_period = [E.c.at >= period.start_at, E.c.at < period.end_at, *_current(filters)]
    # By dimension: the answers (their dimension, if the survey named one) and survey-link dimension scores.
    where = [E.c.kind.in_([SURVEY, SURVEY_DIMENSION]), *in_period]
    dimension = func.coalesce(E.c.dimension, "unspecified")
    by_dimension = (
        await session.execute(
            select(E.c.category.label("survey"), dimension.label("dimension"), *_survey_measures())
            .select_from(_events(filters))
            .where(*where)
            .group_by(E.c.category, dimension)
            .order_by(E.c.category, dimension)
        )
    ).mappings()
    month = month_of(E.c.at, _dialect(session))
    trend = (
        select(month.label("month"), E.c.category.label("survey"), *_survey_measures())
        .select_from(_events(filters))
        .where(E.c.kind == SURVEY, *in_period)
        .group_by(month, E.c.category)
        .order_by(month, E.c.category)
    )
    rows, total = await _paged(session, trend, limit, offset)
    return [dict(r) for r in by_dimension], rows, total


# ---- loyalty ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoyaltyColumns:
    """The pure typing (services/retention/loyalty.py) as SQL over one row of customer features."""

    declining: ColumnElement[bool]
    behaviour_high: ColumnElement[bool]
    attitude_known: ColumnElement[bool]
    attitude_high: ColumnElement[bool]
    type: ColumnElement[str]
    trap: ColumnElement[bool]


def loyalty_columns(
    *, orders: Any, tenure_days: Any, recent: Any, prior: Any, wallet: Any, nps: Any, csat: Any, t: loyalty.Thresholds
) -> LoyaltyColumns:
    """loyalty.classify written as SQL, threshold for threshold (a unit test holds the two to agreement)."""
    declining = and_(prior >= 1, recent <= prior * t.decline_ratio)
    behaviour = and_(
        orders >= t.repeat_orders,
        tenure_days.is_not(None),
        tenure_days >= t.min_tenure_days,
        or_(wallet.is_(None), wallet >= t.min_share_of_wallet),
        ~declining,
    )
    known = or_(nps.is_not(None), csat.is_not(None))
    attitude = or_(nps >= t.nps_promoter, and_(nps.is_(None), csat >= t.csat_satisfied))
    kind = case(
        (~known, loyalty.LoyaltyType.unmeasured.value),
        (and_(behaviour, attitude), loyalty.LoyaltyType.true.value),
        (behaviour, loyalty.LoyaltyType.spurious.value),
        (attitude, loyalty.LoyaltyType.latent.value),
        else_=loyalty.LoyaltyType.none.value,
    )
    return LoyaltyColumns(declining, behaviour, known, attitude, kind, and_(attitude, declining))


def prior_period_start(start: datetime, end: datetime) -> datetime:
    """Pure: the start of the equally long period before [start, end); the earliest representable time when
    that would lie before year 1 (a long period early in the calendar)."""
    try:
        return start - (end - start)
    except OverflowError:
        return datetime.min.replace(tzinfo=start.tzinfo)


def _loyalty_features(session: AsyncSession, period: Period, filters: Filters, t: loyalty.Thresholds) -> Any:
    """Per customer now (active or won back, not erased): the current orders, first order, latest NPS and
    CSAT and share of wallet (customer_facts); orders in the period (recent) and in the equally long
    period before it (prior); the tenure at ``to``; and the typing columns."""
    prior_start = prior_period_start(period.start_at, period.end_at)
    windows = (
        select(
            E.c.customer_id,
            func.sum(_flag(E.c.at >= period.start_at)).label("recent"),
            func.sum(_flag(E.c.at < period.start_at)).label("prior"),
        )
        .where(E.c.kind == ORDER, E.c.at >= prior_start, E.c.at < period.end_at)
        .group_by(E.c.customer_id)
        .subquery()
    )
    recent = func.coalesce(windows.c.recent, 0)
    prior = func.coalesce(windows.c.prior, 0)
    tenure = days_between(literal(period.end_at), F.c.first_order_at, _dialect(session))
    typed = loyalty_columns(
        orders=F.c.orders,
        tenure_days=tenure,
        recent=recent,
        prior=prior,
        wallet=F.c.share_of_wallet,
        nps=F.c.nps,
        csat=F.c.csat,
        t=t,
    )
    source = C.outerjoin(S, S.c.customer_id == C.c.customer_id).join(F, F.c.customer_id == C.c.customer_id)
    return (
        select(
            C.c.customer_id,
            C.c.owner,
            C.c.segment,
            CURRENT_TIER.label("tier"),
            F.c.team,
            F.c.orders,
            F.c.nps,
            F.c.csat,
            recent.label("recent"),
            prior.label("prior"),
            typed.type.label("type"),
            _flag(typed.trap).label("trap"),
        )
        .select_from(source.outerjoin(windows, windows.c.customer_id == C.c.customer_id))
        .where(C.c.status.in_(IS_CUSTOMER), C.c.erased_at.is_(None), *_current(filters))
    )


async def loyalty_distribution(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds
) -> dict[str, Any]:
    """Customers per loyalty type, the satisfaction-trap count and the repeat rate's counts, in one query."""
    rows = _loyalty_features(session, period, filters, thresholds).subquery()
    query = select(
        rows.c.type,
        func.count().label("customers"),
        func.sum(rows.c.trap).label("traps"),
        func.sum(_flag(rows.c.orders >= 1)).label("buyers"),
        func.sum(_flag(rows.c.orders >= 2)).label("repeaters"),
    ).group_by(rows.c.type)
    counts = {t.value: 0 for t in loyalty.LoyaltyType}
    totals = {"customers": 0, "traps": 0, "buyers": 0, "repeaters": 0}
    for row in (await session.execute(query)).mappings():
        counts[row["type"]] = int(row["customers"])
        for key in totals:
            totals[key] += int(row[key] or 0)
    return {**totals, "counts": counts}


async def satisfaction_traps(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The satisfied customers whose buying declines, by customer id: one page of them and how many in all."""
    rows = _loyalty_features(session, period, filters, thresholds).subquery()
    query = select(rows).where(rows.c.trap == 1).order_by(rows.c.customer_id)
    # The page and the total from one typing pass: the count travels with each row of the page.
    counted = query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
    page = [dict(r) for r in (await session.execute(counted)).mappings().all()]
    if not page:  # past the end (or none at all): the total needs its own count
        return await _paged(session, query, limit, offset)
    total = int(page[0]["_total"])
    return [{k: v for k, v in r.items() if k != "_total"} for r in page], total


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
