"""The loyalty reports: customers typed by behaviour and attitude in SQL with the same thresholds as the pure
typing (loyalty.py), the satisfaction traps, and the accuracy of the suggested churn reasons.

Definitions: docs/reports.md, "Retention". No I/O besides the queries; never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from servicekit.reports import Period, days_between, ratio
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
    dialect,
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


def loyalty_features(session: AsyncSession, period: Period, filters: Filters, t: loyalty.Thresholds) -> Any:
    """Per customer now (active or won back, not erased): the current orders, first order, latest NPS and
    CSAT and share of wallet (customer_facts); orders in the period (recent) and in the equally long
    period before it (prior); the tenure at ``to``; and the typing columns."""
    prior_start = prior_period_start(period.start_at, period.end_at)
    windows = (
        select(
            E.c.customer_id,
            func.sum(flag(E.c.at >= period.start_at)).label("recent"),
            func.sum(flag(E.c.at < period.start_at)).label("prior"),
        )
        .where(E.c.kind == ORDER, E.c.at >= prior_start, E.c.at < period.end_at)
        .group_by(E.c.customer_id)
        .subquery()
    )
    recent = func.coalesce(windows.c.recent, 0)
    prior = func.coalesce(windows.c.prior, 0)
    tenure = days_between(literal(period.end_at), F.c.first_order_at, dialect(session))
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
            flag(typed.trap).label("trap"),
        )
        .select_from(source.outerjoin(windows, windows.c.customer_id == C.c.customer_id))
        .where(C.c.status.in_(IS_CUSTOMER), C.c.erased_at.is_(None), *current(filters))
    )


async def loyalty_distribution(
    *, session: AsyncSession, period: Period, filters: Filters, thresholds: loyalty.Thresholds
) -> dict[str, Any]:
    """Customers per loyalty type, the satisfaction-trap count and the repeat rate's counts, in one query."""
    rows = loyalty_features(session, period, filters, thresholds).subquery()
    query = select(
        rows.c.type,
        func.count().label("customers"),
        func.sum(rows.c.trap).label("traps"),
        func.sum(flag(rows.c.orders >= 1)).label("buyers"),
        func.sum(flag(rows.c.orders >= 2)).label("repeaters"),
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
    rows = loyalty_features(session, period, filters, thresholds).subquery()
    query = select(rows).where(rows.c.trap == 1).order_by(rows.c.customer_id)
    # The page and the total from one typing pass: the count travels with each row of the page.
    counted = query.add_columns(func.count().over().label("_total")).limit(limit).offset(offset)
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
