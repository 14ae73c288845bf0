"""The loyalty reports: customers typed by behaviour and attitude in SQL with the same thresholds as the pure
typing (loyalty.py), the satisfaction traps, and the accuracy of the suggested churn reasons.

Definitions: docs/reports.md, "Retention". No I/O besides the queries; never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.reports import Period, per_customer_plan, ratio
from services.retention.reports import loyalty
from services.retention.reports.models import (
    ORDER,
)
from services.retention.reports.sql import (
    CH,
    CURRENT_TIER,
    IS_CUSTOMER,
    C,
    E,
    F,
    Filters,
    S,
    churns,
    current,
    flag,
    paged,
)

# ---- loyalty ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoyaltyColumns:
    """The pure typing (services/retention/reports/loyalty.py) as SQL over one row of customer features."""

    declining: ColumnElement[bool]
    behaviour_high: ColumnElement[bool]
    attitude_known: ColumnElement[bool]
    attitude_high: ColumnElement[bool]
    type: ColumnElement[str]
    trap: ColumnElement[bool]


def declines(recent: Any, prior: Any, t: loyalty.Thresholds) -> ColumnElement[bool]:
    """loyalty.declining: an order in the prior window and at most decline_ratio of them in the recent one."""
    return and_(prior >= 1, recent <= prior * literal(t.decline_ratio, Float))


def loyalty_columns(
    *, orders: Any, tenured: Any, declining: Any, wallet: Any, nps: Any, csat: Any, t: loyalty.Thresholds
) -> LoyaltyColumns:
    """loyalty.classify written as SQL, threshold for threshold (a unit test holds the two to agreement).

    ``tenured``: whether the first order lies at least min_tenure_days before the as-of instant (false without
    one), given as a comparison of timestamps (tenured_by) rather than a tenure computed per row: the typing is
    evaluated several times per customer, and PostgreSQL computes a tenure in days as a numeric.
    ``declining``: the customer's buying declines (declines over its order windows)."""
    behaviour = and_(
        orders >= t.repeat_orders,
        tenured,
        or_(wallet.is_(None), wallet >= t.min_share_of_wallet),
        ~declining,
    )
    known = or_(nps.is_not(None), csat.is_not(None))
    attitude = satisfied(nps, csat, t)
    kind = case(
        (~known, loyalty.LoyaltyType.unmeasured.value),
        (and_(behaviour, attitude), loyalty.LoyaltyType.true.value),
        (behaviour, loyalty.LoyaltyType.spurious.value),
        (attitude, loyalty.LoyaltyType.latent.value),
        else_=loyalty.LoyaltyType.none.value,
    )
    return LoyaltyColumns(declining, behaviour, known, attitude, kind, and_(attitude, declining))


def satisfied(nps: Any, csat: Any, t: loyalty.Thresholds) -> ColumnElement[bool]:
    """Attitude high (loyalty.attitude_high): the latest NPS recommends, or without one the latest CSAT satisfies."""
    return or_(nps >= t.nps_promoter, and_(nps.is_(None), csat >= t.csat_satisfied))


def tenured_by(first_order_at: Any, as_of: datetime, t: loyalty.Thresholds) -> ColumnElement[bool]:
    """The first order is at least min_tenure_days before ``as_of``: ``first_order_at <= as_of - min tenure``,
    which is the pure typing's ``(as_of - first).days >= min_tenure_days`` to the microsecond."""
    try:
        latest = as_of - timedelta(days=t.min_tenure_days)
    except OverflowError:  # a tenure longer than the calendar before as_of: nobody has it
        return false()
    return and_(first_order_at.is_not(None), first_order_at <= latest)


def prior_period_start(start: datetime, end: datetime) -> datetime:
    """Pure: the start of the equally long period before [start, end); the earliest representable time when
    that would lie before year 1 (a long period early in the calendar)."""
    try:
        return start - (end - start)
    except OverflowError:
        return datetime.min.replace(tzinfo=start.tzinfo)


def _window_counts(period: Period, among: Any) -> tuple[Any, ColumnElement[Any], ColumnElement[Any]]:
    """Orders grouped per customer with an order in either window: the query, its orders in the period
    (recent) and in the equally long period before it (prior), from the covering index (kind, at,
    customer_id); only the customers ``among`` selects when given (the others' orders are dropped before
    they are grouped)."""
    prior_start = prior_period_start(period.start_at, period.end_at)
    where = [E.c.kind == ORDER, E.c.at >= prior_start, E.c.at < period.end_at]
    if among is not None:
        where.append(E.c.customer_id.in_(among))
    recent = func.sum(flag(E.c.at >= period.start_at))
    prior = func.sum(flag(E.c.at < period.start_at))
    return select(E.c.customer_id).where(*where).group_by(E.c.customer_id), recent, prior


def order_windows(period: Period, among: Any = None) -> Any:
    """Per customer with an order in either window: customer_id, recent and prior (_window_counts)."""
    query, recent, prior = _window_counts(period, among)
    return query.add_columns(recent.label("recent"), prior.label("prior")).subquery()


def declining_customers(period: Period, t: loyalty.Thresholds, among: Any = None) -> Any:
    """The customers whose buying declines over the period's windows (the only use of the windows in the
    distribution): a smaller set to join than every customer's counts."""
    query, recent, prior = _window_counts(period, among)
    return query.having(declines(recent, prior, t)).subquery()


def _profile_columns() -> list[Any]:
    """The customer's identity, profile and survey columns both per-customer loyalty queries list first."""
    return [
        C.c.customer_id,
        C.c.owner,
        C.c.segment,
        CURRENT_TIER.label("tier"),
        F.c.team,
        F.c.orders,
        F.c.nps,
        F.c.csat,
    ]


def _typed(declining: Any, period: Period, t: loyalty.Thresholds) -> LoyaltyColumns:
    return loyalty_columns(
        orders=F.c.orders,
        tenured=tenured_by(F.c.first_order_at, period.end_at, t),
        declining=declining,
        wallet=F.c.share_of_wallet,
        nps=F.c.nps,
        csat=F.c.csat,
        t=t,
    )


def _customers_now(filters: Filters) -> list[ColumnElement[bool]]:
    return [C.c.status.in_(IS_CUSTOMER), C.c.erased_at.is_(None), *current(filters)]


def loyalty_features(session: AsyncSession, period: Period, filters: Filters, t: loyalty.Thresholds) -> Any:
    """Per customer now (active or won back, not erased): the current orders, first order, latest NPS and
    CSAT and share of wallet (customer_facts); orders in the period (recent) and in the equally long
    period before it (prior); the tenure at ``to``; and the typing columns."""
    windows = order_windows(period)
    recent = func.coalesce(windows.c.recent, 0)
    prior = func.coalesce(windows.c.prior, 0)
    typed = _typed(declines(recent, prior, t), period, t)
    source = C.outerjoin(S, S.c.customer_id == C.c.customer_id).join(F, F.c.customer_id == C.c.customer_id)
    return (
        select(
            *_profile_columns(),
            recent.label("recent"),
            prior.label("prior"),
            typed.type.label("type"),
            flag(typed.trap).label("trap"),
        )
        .select_from(source.outerjoin(windows, windows.c.customer_id == C.c.customer_id))
        .where(*_customers_now(filters))
    )


async def loyalty_distribution(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds
) -> dict[str, Any]:
    """Customers per loyalty type, the satisfaction-trap count and the repeat rate's counts, in one query
    over customer_facts and the order windows (the replica's score joined only for a tier filter)."""
    falling = declining_customers(period, thresholds)
    typed = _typed(falling.c.customer_id.is_not(None), period, thresholds)
    source = C.join(F, F.c.customer_id == C.c.customer_id)
    if filters.tiers:
        source = source.outerjoin(S, S.c.customer_id == C.c.customer_id)
    query = (
        select(
            typed.type.label("type"),
            func.count().label("customers"),
            func.sum(flag(typed.trap)).label("traps"),
            func.sum(flag(F.c.orders >= 1)).label("buyers"),
            func.sum(flag(F.c.orders >= 2)).label("repeaters"),
        )
        .select_from(source.outerjoin(falling, falling.c.customer_id == C.c.customer_id))
        .where(*_customers_now(filters))
        .group_by(typed.type)
    )
    counts = {t.value: 0 for t in loyalty.LoyaltyType}
    totals = {"customers": 0, "traps": 0, "buyers": 0, "repeaters": 0}
    await per_customer_plan(session)
    for row in (await session.execute(query)).mappings():
        counts[row["type"]] = int(row["customers"])
        for key in totals:
            totals[key] += int(row[key] or 0)
    return {**totals, "counts": counts}


async def satisfaction_traps(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """The satisfied customers whose buying declines, by customer id: one page of them and how many in all.

    A trap is satisfied and had an order in the prior window: only the satisfied customers' orders are
    grouped (a sixth of them on the bench store), the windows join inner, and the trap's conditions filter
    the rows before the typing is computed for the few that remain."""
    windows = order_windows(period, among=select(F.c.customer_id).where(satisfied(F.c.nps, F.c.csat, thresholds)))
    typed = _typed(declines(windows.c.recent, windows.c.prior, thresholds), period, thresholds)
    source = (
        C.join(F, F.c.customer_id == C.c.customer_id)
        .join(windows, windows.c.customer_id == C.c.customer_id)
        .outerjoin(S, S.c.customer_id == C.c.customer_id)
    )
    query = (
        select(
            *_profile_columns(),
            windows.c.recent,
            windows.c.prior,
            typed.type.label("type"),
        )
        .select_from(source)
        .where(*_customers_now(filters), typed.attitude_high, typed.declining)
        .order_by(C.c.customer_id)
    )
    # The page and the total from one typing pass: the count travels with each row of the page.
    counted = query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
    await per_customer_plan(session)
    page = [dict(r) for r in (await session.execute(counted)).mappings().all()]
    if not page:  # past the end (or none at all): the total needs its own count
        return await paged(session, query, limit, offset)
    total = int(page[0]["_total"])
    return [{k: v for k, v in r.items() if k != "_total"} for r in page], total


# ---- suggested churn reasons: accuracy ------------------------------------------------------------------


async def suggestion_accuracy(
    *, session: AsyncSession, period: Period, filters: Filters, limit: int, offset: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], int]:
    """Suggested against recorded reasons of the churns in the period: overall, per reason, confusion cells."""
    where = churns(period, filters)
    suggested = CH.c.suggested_reason.is_not(None)
    correct = and_(suggested, CH.c.suggested_reason == CH.c.reason)
    measures = [
        func.count().label("churned"),
        func.sum(flag(suggested)).label("suggested"),
        func.sum(flag(correct)).label("correct"),
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
                func.sum(flag(correct)).label("correct"),
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
    cells, total = await paged(session, confusion, limit, offset)
    return (
        {k: int(v or 0) for k, v in overall.items()},
        [dict(r) for r in per_reason],
        [dict(r) for r in per_suggestion],
        cells,
        total,
    )


def distribution_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """A loyalty distribution's report fields from its counts (the period report and the one as of today)."""
    customers = result["customers"]
    return {
        "customers": customers,
        "repeat_rate": ratio(result["repeaters"], result["buyers"]),
        "satisfaction_traps": result["traps"],
        "items": [{"type": t, "customers": n, "share": ratio(n, customers)} for t, n in result["counts"].items()],
    }
